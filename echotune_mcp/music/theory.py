"""Pitch classes, key names and scales: the small amount of music theory everything else shares.

Kept separate so the parser (params), the composer, the MIDI writer and the key estimator agree
on one spelling of every key and one definition of "in the scale".
"""

from __future__ import annotations

import re

_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

MODES = ("major", "minor")
# Scale steps (semitones above the tonic). Minor is natural minor; the harmonic-minor leading tone
# is added by ``key_scale_pcs(..., leading_tone=True)`` because minor-key cadences use it.
SCALE_STEPS = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}

# Conventional spelling (the one with the fewest accidentals; mido accepts exactly these).
_MAJOR_SPELLING = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_SPELLING = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")

_KEY_RE = re.compile(
    r"^\s*([A-Ga-g])\s*(#|♯|b|♭|-?sharp|-?flat)?\s*(major|minor|maj|min|m|dur|moll)?\s*$", re.IGNORECASE)


def pitch_class_of(letter: str, accidental: str | None) -> int:
    """Pitch class of a note letter plus an optional accidental spelled any common way."""
    pc = _LETTER_PC[letter.upper()]
    acc = (accidental or "").lower().lstrip("-")
    if acc in ("#", "♯", "sharp"):
        pc += 1
    elif acc in ("b", "♭", "flat"):
        pc -= 1
    return pc % 12


def parse_key(text: str) -> tuple[int, str, str] | None:
    """'F# major', 'Bb minor', 'Am', 'c' → (tonic pitch class, mode, tonic as written); None if unparseable.

    A bare letter means major. The spelling the user wrote is kept for display ("A#" stays "A#").
    """
    m = _KEY_RE.match(text)
    if not m:
        return None
    letter, acc, mode_word = m.group(1), m.group(2), (m.group(3) or "")
    # "b" after a letter is a flat, but "Bb"/"bb" both mean B-flat; a lone "b" is the letter B.
    pc = pitch_class_of(letter, acc)
    mw = mode_word.lower()
    if mode_word == "M" or mw in ("major", "maj", "dur", ""):
        mode = "major"
    else:
        mode = "minor"
    written = letter.upper() + {"#": "#", "♯": "#", "sharp": "#", "b": "b", "♭": "b", "flat": "b"}.get(
        (acc or "").lower().lstrip("-"), "")
    return pc, mode, written


def key_display_name(tonic_pc: int, mode: str, written: str | None = None) -> str:
    """Human key name, e.g. 'A minor'; keeps the user's spelling when it names the same pitch class."""
    if written:
        parsed = parse_key(written)
        if parsed and parsed[0] == tonic_pc % 12:
            return f"{written} {mode}"
    return f"{conventional_tonic_name(tonic_pc, mode)} {mode}"


def conventional_tonic_name(tonic_pc: int, mode: str) -> str:
    """Tonic spelled as in the key signature with the fewest accidentals."""
    return (_MAJOR_SPELLING if mode == "major" else _MINOR_SPELLING)[tonic_pc % 12]


def midi_key_signature(tonic_pc: int, mode: str) -> str:
    """The key string mido's key_signature meta message accepts ('Bbm', 'F#', ...)."""
    name = conventional_tonic_name(tonic_pc, mode)
    return name + ("m" if mode == "minor" else "")


def key_scale_pcs(tonic_pc: int, mode: str, *, leading_tone: bool = False) -> frozenset[int]:
    """Pitch classes of the key's scale; with ``leading_tone`` a minor key also includes the raised 7th."""
    pcs = {(tonic_pc + s) % 12 for s in SCALE_STEPS[mode]}
    if leading_tone and mode == "minor":
        pcs.add((tonic_pc + 11) % 12)
    return frozenset(pcs)


def nearest_pitch_with_pc(pc: int, target: int) -> int:
    """The MIDI pitch with pitch class ``pc`` closest to ``target`` (ties go down)."""
    below = target - ((target - pc) % 12)
    above = below + 12
    return below if target - below <= above - target else above


# -- chords ---------------------------------------------------------------------------------------
def chord_pcs(tonic_pc: int, mode: str, degree: int, *, seventh: bool = False,
              raise_leading_tone: bool = False) -> tuple[int, ...]:
    """Diatonic chord on a scale degree as pitch classes (root first).

    ``raise_leading_tone`` turns the minor-key v into a major V (harmonic minor), which is what
    makes a minor-key cadence sound like one and what key finders listen for.
    """
    steps = SCALE_STEPS[mode]
    pcs = [(tonic_pc + steps[(degree + k) % 7]) % 12 for k in ((0, 2, 4, 6) if seventh else (0, 2, 4))]
    if raise_leading_tone and mode == "minor" and degree % 7 == 4:
        pcs[1] = (pcs[1] + 1) % 12  # the 3rd of V is the leading tone
    return tuple(pcs)


def voice_chord(pcs: tuple[int, ...], previous: tuple[int, ...] | None, center: int,
                low: int, high: int) -> tuple[int, ...]:
    """Close-position voicing of ``pcs`` in [low, high] that moves least from ``previous``.

    Smooth voice leading (common tones held, other voices moving by step) is what keeps chord
    changes from sounding like block jumps; without a previous chord the voicing nearest
    ``center`` is chosen. Deterministic: ties resolve to the lower voicing.
    """
    n = len(pcs)
    best: tuple[float, tuple[int, ...]] | None = None
    for inversion in range(n):
        order = pcs[inversion:] + pcs[:inversion]
        for base in range(low - 12, high + 1):
            if base % 12 != order[0]:
                continue
            voicing = [base]
            for pc in order[1:]:
                nxt = voicing[-1] + ((pc - voicing[-1]) % 12 or 12)
                voicing.append(nxt)
            if voicing[0] < low or voicing[-1] > high:
                continue
            v = tuple(voicing)
            mean = sum(v) / n
            if previous and len(previous) == n:
                cost = sum(abs(a - b) for a, b in zip(sorted(previous), v)) + 0.25 * abs(mean - center)
            elif previous:
                cost = abs(mean - sum(previous) / len(previous)) * n + 0.25 * abs(mean - center)
            else:
                cost = abs(mean - center)
            if best is None or cost < best[0]:
                best = (cost, v)
    if best is None:  # range too narrow for this chord: stack from the root near the center
        root = nearest_pitch_with_pc(pcs[0], center - 4)
        out = [root]
        for pc in pcs[1:]:
            out.append(out[-1] + ((pc - out[-1]) % 12 or 12))
        return tuple(out)
    return best[1]
