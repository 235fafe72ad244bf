"""The fixed set of measured prompts: stated tempo and key spread over genres, moods, modes and accidentals."""

from __future__ import annotations

# (prompt, bpm, key) — bpm and key are stated in the prompt text; the tests check the rendered audio.
CASES: list[tuple[str, float, str]] = [
    ("warm lofi hip hop with piano, 84 bpm in D minor", 84, "D minor"),
    ("sad lofi hip hop beat at 72 bpm in F minor", 72, "F minor"),
    ("happy house groove, 124 bpm in A major", 124, "A major"),
    ("deep house in Bb minor at 122 bpm", 122, "Bb minor"),
    ("dark techno, 132 bpm in E minor", 132, "E minor"),
    ("energetic techno at 128 bpm in G minor", 128, "G minor"),
    ("driving rock anthem, 140 bpm in E major", 140, "E major"),
    ("indie rock in D major at 118 bpm", 118, "D major"),
    ("uplifting pop song in C major, 110 bpm", 110, "C major"),
    ("sad pop ballad at 90 bpm in C# minor", 90, "C# minor"),
    ("calm jazz trio, 120 bpm in F major", 120, "F major"),
    ("smoky jazz in Eb major at 100 bpm", 100, "Eb major"),
    ("calm ambient soundscape with pads, 76 bpm in G major", 76, "G major"),
    ("dark ambient drone at 80 bpm in B minor", 80, "B minor"),
    ("epic cinematic score in D minor at 96 bpm", 96, "D minor"),
    ("tense cinematic thriller cue, 104 bpm in F# minor", 104, "F# minor"),
    ("funky groove with slap bass, 108 bpm in A minor", 108, "A minor"),
    ("happy funk in Ab major at 112 bpm", 112, "Ab major"),
    ("energetic drum and bass at 174 bpm in F minor", 174, "F minor"),
    ("liquid drum and bass, 170 bpm in Db major", 170, "Db major"),
    ("happy reggae at 80 bpm in G major", 80, "G major"),
    ("synthwave night drive in A minor, 100 bpm", 100, "A minor"),
    ("romantic pop with strings in B major at 96 bpm", 96, "B major"),
    ("relaxed house with rhodes in F# major, 120 bpm", 120, "F# major"),
]
