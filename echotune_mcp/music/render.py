"""Render an arrangement to audio, one stem at a time, through FluidSynth.

Each stem gets its own synth so stems are truly separate (and can be re-rendered alone when one
is regenerated). The synth is driven straight from the note list: we ask FluidSynth for exactly
the samples between consecutive events, send the events, and continue — a few thousand calls per
minute of music, each rendering a large block, with no per-sample Python.

Output is float (``fluid_synth_write_float`` into the final buffer): no int16 clipping inside a
stem and no dither noise, so two renders of the same arrangement are bit-identical. Reverb and
chorus are switched off for the same reason and because mixing decisions belong to the master.
FluidSynth applies events at its 64-sample block boundaries, so onsets are exact to 1.5 ms at
44.1 kHz, identically on every run.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TAIL_S = 2.0  # release tail rendered after the last note so the ending rings out
DRUM_CHANNEL = 9  # MIDI channel 10
_SYNTH_GAIN = 0.6  # float output cannot clip; this keeps stems well under full scale when saved as PCM
_SETTINGS = {
    "synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1, "synth.polyphony": 256,
    "synth.threadsafe-api": 0,
    # load only the samples of the preset a stem plays (each stem has its own synth); with the keeper below
    # holding the whole soundfont in FluidSynth's sample cache, that is ~0.03 s per stem instead of 0.1-0.5 s
    "synth.dynamic-sample-loading": 1,
}
_keepers: dict[tuple[str, int, int], Any] = {}
_keepers_lock = threading.Lock()


def _keep_loaded(soundfont: Path) -> None:
    """Hold one synth per soundfont file with all of it loaded, for the life of the process.

    FluidSynth shares loaded sample data between synths of one process (its sample cache), so while this
    synth holds the file, every per-stem synth loads its preset without reading the file again. Each stem
    still gets a fresh synth (stems separate, renders bit-identical); the cost is the soundfont's size in
    memory (FluidR3_GM: ~150 MB).
    """
    import fluidsynth

    st = soundfont.stat()
    key = (str(soundfont), st.st_size, st.st_mtime_ns)
    with _keepers_lock:
        if key in _keepers:
            return
        keeper = fluidsynth.Synth(samplerate=44100, **{**_SETTINGS, "synth.dynamic-sample-loading": 0})
        if keeper.sfload(str(soundfont)) < 0:
            keeper.delete()
            return
        _keepers[key] = keeper


# Debian's fluid-soundfont-gm (FluidR3_GM, MIT): better instruments than TimGM6mb and a licence with
# no doubt for commercial release. The Makefile's system-deps installs it; other systems ship it here too.
FLUID_R3_PATHS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
                  Path("/usr/local/share/soundfonts/FluidR3_GM.sf2"), Path("/opt/homebrew/share/soundfonts/FluidR3_GM.sf2"))


def bundled_soundfont() -> Path:
    """The General MIDI soundfont that ships inside pretty_midi (always installed with this package)."""
    import pretty_midi

    return Path(os.path.dirname(pretty_midi.__file__)) / "TimGM6mb.sf2"


def default_soundfont() -> Path:
    """FluidR3_GM where installed (MIT), else the bundled TimGM6mb (GPL-2.0-or-later).

    ECHOTUNE_SOUNDFONT (settings.soundfont) overrides both; whichever file is used is hashed and its
    licence recorded in each piece's provenance (``soundfont_info``), so the licence decision always
    follows the soundfont that actually rendered the audio.
    """
    return next((p for p in FLUID_R3_PATHS if p.is_file()), None) or bundled_soundfont()


_KNOWN_LICENCES = {
    "timgm6mb": {"id": "GPL-2.0-or-later", "note": "TimGM6mb by Tim Brechbill, shipped with pretty_midi"},
    "fluidr3_gm": {"id": "MIT", "note": "FluidR3_GM by Frank Wen (Debian fluid-soundfont-gm)"},
    "musescore_general": {"id": "MIT", "note": "MuseScore_General by S. Christian Collins"},
}
# Files recognised by content, so a renamed copy still gets its licence (name matching is the fallback).
_KNOWN_SHA256 = {
    "74594e8f4250680adf590507a306655a299935343583256f3b722c48a1bc1cb0": "fluidr3_gm",  # Debian 3.1-5.x
    "82475b91a76de15cb28a104707d3247ba932e228bada3f47bba63c6b31aaf7a1": "timgm6mb",  # pretty_midi 0.2.x
}


def soundfont_info(path: Path | str | None) -> dict[str, Any]:
    """Provenance of the soundfont: path, name, content hash and licence (where recognised)."""
    p = Path(path) if path else default_soundfont()
    st = p.stat()
    info = _soundfont_info(str(p), st.st_size, st.st_mtime_ns)
    return {**info, "license": dict(info["license"]) if isinstance(info["license"], dict) else info["license"]}


@functools.lru_cache(maxsize=8)
def _soundfont_info(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    """Hashing FluidR3_GM (148 MB) takes a noticeable fraction of a second: once per file version."""
    p = Path(path)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    stem = p.stem.lower()
    known = _KNOWN_SHA256.get(h.hexdigest())
    licence = _KNOWN_LICENCES[known] if known else \
        next((v for k, v in _KNOWN_LICENCES.items() if stem.startswith(k)), None)
    return {"path": str(p), "name": p.name, "sha256": h.hexdigest(),
            "license": dict(licence) if licence else "unknown"}


def _float_writer() -> Callable[..., int] | None:
    """ctypes binding of fluid_synth_write_float from the library pyfluidsynth already loaded."""
    import fluidsynth

    lib = getattr(fluidsynth, "_fl", None)
    fn = getattr(lib, "fluid_synth_write_float", None) if lib is not None else None
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                   ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _events(notes: list[tuple[float, float, int, int]], sr: int, n_total: int) -> list[tuple[int, int, int, int]]:
    """(sample, 0=off/1=on, pitch, velocity), sorted; offs before ons at the same sample.

    A note that is still sounding when the same pitch starts again is cut at the new onset:
    FluidSynth's note-off would otherwise silence the newer note too.
    """
    ev: list[tuple[int, int, int, int]] = []
    pending_off: dict[int, int] = {}
    for s, e, p, v in sorted(notes, key=lambda n: (n[0], n[2])):
        a = round(s * sr)
        if a >= n_total:
            continue
        b = min(n_total, max(a + 1, round(e * sr)))
        if p in pending_off:
            ev.append((min(pending_off[p], a), 0, p, 0))
        ev.append((a, 1, p, v))
        pending_off[p] = b
    ev += [(b, 0, p, 0) for p, b in pending_off.items()]
    ev.sort(key=lambda x: (x[0], x[1], x[2]))
    return ev


def render_track(track: Any, *, sample_rate: int, soundfont: Path, n_total: int,
                 on_block: Callable[[int], None] | None = None) -> np.ndarray:
    """One stem as float32 (n_total, 2)."""
    import fluidsynth

    _keep_loaded(Path(soundfont))
    synth = fluidsynth.Synth(gain=_SYNTH_GAIN, samplerate=sample_rate, **_SETTINGS)
    try:
        sfid = synth.sfload(str(soundfont))
        if sfid < 0:
            raise RuntimeError(f"FluidSynth could not load the soundfont {soundfont}")
        ch = DRUM_CHANNEL if track.is_drum else 0
        synth.program_select(ch, sfid, 128 if track.is_drum else 0, 0 if track.is_drum else int(track.program))
        synth.cc(ch, 7, int(track.volume))
        synth.cc(ch, 10, int(track.pan))
        synth.cc(ch, 91, 0)
        synth.cc(ch, 93, 0)
        out = np.zeros((n_total, 2), dtype=np.float32)
        write = _float_writer()
        base = out.ctypes.data
        pos = 0

        def advance(to: int) -> None:
            nonlocal pos
            if to <= pos:
                return
            n = to - pos
            if synth.get_active_voice_count() == 0:
                pass  # nothing sounding until the next event: the buffer is already silent
            elif write is not None:
                addr = base + pos * 8
                write(synth.synth, n, addr, 0, 2, addr + 4, 0, 2)
            else:  # older bindings: interleaved int16 from the public API
                out[pos:to] = synth.get_samples(n).reshape(-1, 2).astype(np.float32) / 32768.0
            pos = to
            if on_block:
                on_block(pos)

        for sample, kind, pitch, vel in _events(track.notes, sample_rate, n_total):
            advance(sample)
            if kind:
                synth.noteon(ch, pitch, vel)
            else:
                synth.noteoff(ch, pitch)
        advance(n_total)
        return out
    finally:
        synth.delete()


def render_stems(arr: Any, sample_rate: int = 44100, soundfont: Path | None = None, until_s: float | None = None,
                 on_progress: Callable[[float, str], None] | None = None) -> dict[str, np.ndarray]:
    """Every track of ``arr`` as a float32 (n, 2) array, all the same length.

    Length is the arrangement's duration plus ``TAIL_S`` of release, or exactly ``until_s`` seconds
    for a quick preview of the opening (with a 20 ms fade so the cut does not click).
    """
    sf = Path(soundfont) if soundfont else default_soundfont()
    if not sf.is_file():
        raise FileNotFoundError(f"soundfont not found: {sf}")
    end_s = arr.duration_s + TAIL_S if until_s is None else min(float(until_s), arr.duration_s + TAIL_S)
    n_total = max(1, round(end_s * sample_rate))
    sections = [(round(s.start_s * sample_rate), s.name) for s in arr.sections]
    stems: dict[str, np.ndarray] = {}
    tracks = list(arr.tracks)
    for i, track in enumerate(tracks):
        def on_block(pos: int, i: int = i, name: str = track.name, reported: dict[str, int] = {"idx": -1}) -> None:  # noqa: B006 (fresh per stem)
            idx = max((k for k, (start, _) in enumerate(sections) if start <= pos), default=0)
            if idx != reported["idx"] and on_progress is not None and pos < n_total:
                reported["idx"] = idx
                on_progress((i + pos / n_total) / len(tracks), f"rendering {name}: {sections[idx][1]}")

        if on_progress:
            on_progress(i / len(tracks), f"rendering {track.name}: {sections[0][1] if sections else 'start'}")
        audio = render_track(track, sample_rate=sample_rate, soundfont=sf, n_total=n_total,
                             on_block=on_block if on_progress else None)
        if until_s is not None:
            fade = min(n_total, int(0.02 * sample_rate))
            audio[n_total - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
        stems[track.name] = audio
    if on_progress:
        on_progress(1.0, "rendered all stems")
    return stems
