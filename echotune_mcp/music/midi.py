"""Standard MIDI File export of an arrangement: one track per stem, drums on channel 10.

Written with mido from the same note list the renderer plays, so the MIDI file and the audio
agree note for note (the file carries the arrangement's own tempo and key signature).
"""

from __future__ import annotations

import io
from typing import Any

import mido

from .theory import midi_key_signature

TICKS_PER_BEAT = 480


def arrangement_to_midi_bytes(arr: Any) -> bytes:
    """Type-1 SMF bytes: a conductor track (tempo, time and key signature) then one track per stem."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    tempo = mido.bpm2tempo(arr.bpm)
    ticks_per_s = TICKS_PER_BEAT * arr.bpm / 60.0
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name="conductor", time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    num, den = arr.time_signature
    conductor.append(mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0))
    conductor.append(mido.MetaMessage("key_signature", key=midi_key_signature(arr.key.tonic, arr.key.mode), time=0))
    last = 0  # section names as markers at their start times
    for tick, name in [(round(sec.start_s * ticks_per_s), sec.name) for sec in arr.sections]:
        conductor.append(mido.MetaMessage("marker", text=name, time=tick - last))
        last = tick
    conductor.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.append(conductor)

    melodic = iter([c for c in range(16) if c != 9])
    for track in arr.tracks:
        ch = 9 if track.is_drum else next(melodic, 15)
        mt = mido.MidiTrack()
        mt.append(mido.MetaMessage("track_name", name=track.name, time=0))
        events: list[tuple[int, int, mido.Message]] = []
        if not track.is_drum:
            events.append((0, 0, mido.Message("program_change", channel=ch, program=int(track.program))))
        events.append((0, 0, mido.Message("control_change", channel=ch, control=7, value=int(track.volume))))
        events.append((0, 0, mido.Message("control_change", channel=ch, control=10, value=int(track.pan))))
        pending: dict[int, int] = {}
        for s, e, p, v in sorted(track.notes, key=lambda n: (n[0], n[2])):
            on = round(s * ticks_per_s)
            off = max(on + 1, round(e * ticks_per_s))
            if p in pending and pending[p] > on:  # same pitch re-struck before its end: cut the older note
                events = [x for x in events if not (x[1] == 0 and x[2].type == "note_off" and x[2].note == p
                                                    and x[0] == pending[p])]
                events.append((on, 0, mido.Message("note_off", channel=ch, note=p, velocity=0)))
            events.append((on, 1, mido.Message("note_on", channel=ch, note=p, velocity=int(v))))
            events.append((off, 0, mido.Message("note_off", channel=ch, note=p, velocity=0)))
            pending[p] = off
        events.sort(key=lambda x: (x[0], x[1]))
        now = 0
        for tick, _, msg in events:
            mt.append(msg.copy(time=tick - now))
            now = tick
        mt.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(mt)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()
