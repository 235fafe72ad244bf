"""Audio to MIDI: pitched parts with Spotify's basic-pitch on its bundled ONNX model, drums by onset and band.

Pitched parts (bass, vocals, piano, guitar, a mix) run basic-pitch's ICASSP 2022 network (Apache-2.0, the
``nmp.onnx`` file shipped inside the ``basic-pitch`` wheel: nothing is downloaded) through ``onnxruntime``.
basic-pitch itself would pick TensorFlow when present and builds its session with every core; we build our
own ``InferenceSession`` with a bounded thread count and feed it the same 2 s windows (30 frames of overlap)
that ``basic_pitch.inference.run_inference`` uses, a batch at a time, so a job can report progress and be
cancelled between batches. basic-pitch's own post-processing (``note_creation``) turns the frame, onset and
contour activations into notes, so the notes are exactly what the reference implementation would give.

Drums have no pitch for basic-pitch to find; they are transcribed to General MIDI drum notes (kick 36,
snare 38, closed hi-hat 42) by spectral-flux onsets in three frequency bands, with the velocity taken from
the onset strength. See ``transcribe_drums`` for the bands and why.

Everything here is a pure function of arrays (no MCP, no storage); ``progress`` may raise to cancel.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .audio_io import resample

Progress = Callable[[float, str], None]
Note = tuple[float, float, int, int]  # start s, end s, MIDI pitch, velocity 1..127

MODEL_ID = "basic-pitch"  # the model card models/basic-pitch.md names the weights' licence (Apache-2.0)
MODEL_FILE = "saved_models/icassp_2022/nmp.onnx"
INSTALL_HINT = ("basic-pitch runs without TensorFlow: `pip install --no-deps basic-pitch==0.4.0` plus "
                "`pip install onnxruntime resampy mir_eval` (the Makefile's venv step does both)")

# GM drum notes written for the three drum classes
KICK, SNARE, HIHAT = 36, 38, 42
DRUM_CLASSES = {"kick": KICK, "snare": SNARE, "hihat": HIHAT}

# What a stem name implies when the caller gives no pitch range or program: (low, high MIDI, GM program, label).
# The ranges are each instrument's usual compass with a little room; limiting them drops the octave-up
# harmonics basic-pitch sometimes reports on a bass, and sub-bass rumble under a vocal.
STEM_DEFAULTS: dict[str, tuple[int, int, int, str]] = {
    "bass": (24, 72, 33, "Electric Bass (finger)"),
    "vocals": (36, 96, 53, "Voice Oohs"),
    "piano": (21, 108, 0, "Acoustic Grand Piano"),
    "guitar": (36, 96, 25, "Acoustic Guitar (steel)"),
    "lead": (36, 108, 80, "Lead 1 (square)"),
}
# Parts that play one note at a time: a quieter note an octave, a twelfth or two octaves above a louder one that
# starts with it is its overtone, not a second note (basic-pitch reports those on bass lines).
MONOPHONIC = ("bass",)
HARMONIC_INTERVALS = (12, 19, 24)
DEFAULT_RANGE = (21, 108)  # the 88 keys basic-pitch models
DEFAULT_PROGRAM = (0, "Acoustic Grand Piano")


class TranscriberMissing(RuntimeError):
    """basic-pitch or onnxruntime is not installed; the message says how to install them."""


@dataclass(frozen=True)
class Options:
    """Bounded knobs; the tool validates them, these are basic-pitch's defaults."""

    onset_threshold: float = 0.5  # onset activation needed to start a note (higher: fewer notes)
    frame_threshold: float = 0.3  # frame activation needed to continue a note (higher: shorter notes)
    min_note_ms: float = 127.7  # shorter notes are dropped (basic-pitch's default, 11 frames)
    min_pitch: int = 21
    max_pitch: int = 108
    pitch_bends: bool = False  # bends make a polyphonic single-channel part wobble in a DAW; opt in
    melodia_trick: bool = True  # basic-pitch's step that extends notes along a continuing pitch
    bpm: float | None = None  # tempo written into the MIDI file (note times are seconds either way)


@dataclass
class Transcription:
    notes: list[Note]
    midi: bytes
    mode: str  # "pitched" | "drums"
    bpm: float
    bpm_source: str
    program: int | None
    instrument: str
    backend: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        pitches = [n[2] for n in self.notes]
        out: dict[str, Any] = {
            "mode": self.mode, "note_count": len(self.notes),
            "pitch_range": [min(pitches), max(pitches)] if pitches else None,
            "first_note_s": round(min(n[0] for n in self.notes), 3) if self.notes else None,
            "last_note_end_s": round(max(n[1] for n in self.notes), 3) if self.notes else None,
            "bpm": round(self.bpm, 2), "bpm_source": self.bpm_source, "instrument": self.instrument,
        }
        if self.program is not None:
            out["program"] = self.program
        return {**out, **self.details}


# -- the basic-pitch backend ------------------------------------------------------------------------------
def _quiet_import() -> Any:
    """Import basic-pitch without its import-time warnings about missing TensorFlow/CoreML/TFLite.

    It calls ``logging.warning`` on the root logger, which (with no handler) would install a stderr handler
    for the whole process; a temporary NullHandler keeps the server's logging as configured.
    """
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    old = root.manager.disable
    logging.disable(logging.WARNING)
    try:
        import basic_pitch
        import basic_pitch.constants
        import basic_pitch.inference  # noqa: F401 (unwrap_output)
        import basic_pitch.note_creation  # noqa: F401
    except ImportError as exc:
        raise TranscriberMissing(f"basic-pitch is not importable ({exc}); {INSTALL_HINT}") from None
    finally:
        logging.disable(old)
        root.removeHandler(guard)
    return basic_pitch


@lru_cache(maxsize=1)
def backend_info() -> dict[str, Any]:
    """Versions and the model file's hash: what provenance records and the result reports."""
    bp = _quiet_import()
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise TranscriberMissing(f"onnxruntime is not importable ({exc}); {INSTALL_HINT}") from None
    from importlib.metadata import version

    path = Path(bp.__file__).parent / MODEL_FILE
    if not path.is_file():
        raise TranscriberMissing(f"basic-pitch's bundled ONNX model is missing ({path}); {INSTALL_HINT}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    bp_version = version("basic-pitch")
    return {"name": f"basic-pitch onnxruntime {ort.__version__}", "basic_pitch": bp_version,
            "onnxruntime": ort.__version__, "model_file": str(path), "model_sha256": digest,
            "model_id": MODEL_ID, "weights_revision": f"basic-pitch {bp_version} icassp_2022/nmp.onnx sha256:{digest[:16]}",
            "why": "basic-pitch's bundled ICASSP 2022 model (Apache-2.0) runs on onnxruntime without TensorFlow; "
                   "instrument-agnostic, polyphonic, a small network that runs fast on a CPU"}


_sessions: dict[int, Any] = {}
_sessions_lock = threading.Lock()


def default_threads(workers: int = 1) -> int:
    """Threads for one inference: the cores shared among ``workers`` concurrent CPU jobs, 1..4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // max(1, workers)))


def _session(threads: int) -> Any:
    """One InferenceSession per thread count (sessions are safe to run from several threads)."""
    with _sessions_lock:
        sess = _sessions.get(threads)
        if sess is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait on shared cores
            opts.log_severity_level = 3
            sess = ort.InferenceSession(backend_info()["model_file"], opts, providers=["CPUExecutionProvider"])
            _sessions[threads] = sess
        return sess


def _mono(samples: np.ndarray) -> np.ndarray:
    return (samples.mean(axis=1) if samples.ndim == 2 else samples).astype(np.float32, copy=False)


def model_output(samples: np.ndarray, sample_rate: int, *, threads: int = 1, batch: int = 8,
                 progress: Progress | None = None) -> dict[str, np.ndarray]:
    """basic-pitch's activations (note, onset, contour) for the whole signal, as ``run_inference`` makes them."""
    _quiet_import()
    from basic_pitch.constants import AUDIO_N_SAMPLES, AUDIO_SAMPLE_RATE, FFT_HOP
    from basic_pitch.inference import unwrap_output

    y = resample(_mono(samples)[:, None], sample_rate, AUDIO_SAMPLE_RATE)[:, 0]
    n_overlap_frames = 30
    overlap = n_overlap_frames * FFT_HOP
    hop = AUDIO_N_SAMPLES - overlap
    original_length = y.shape[0]
    y = np.concatenate([np.zeros(overlap // 2, np.float32), y])
    starts = list(range(0, y.shape[0], hop))
    sess = _session(threads)
    out: dict[str, list[np.ndarray]] = {"note": [], "onset": [], "contour": []}
    names = ["StatefulPartitionedCall:1", "StatefulPartitionedCall:2", "StatefulPartitionedCall:0"]
    for b0 in range(0, len(starts), batch):
        if progress:
            progress(b0 / max(1, len(starts)), f"transcribing {b0 * hop / AUDIO_SAMPLE_RATE:.0f} s")
        chunk = np.zeros((len(starts[b0:b0 + batch]), AUDIO_N_SAMPLES, 1), np.float32)
        for i, s in enumerate(starts[b0:b0 + batch]):
            w = y[s:s + AUDIO_N_SAMPLES]
            chunk[i, :len(w), 0] = w
        note, onset, contour = sess.run(names, {"serving_default_input_2:0": chunk})
        out["note"].append(note)
        out["onset"].append(onset)
        out["contour"].append(contour)
    return {k: unwrap_output(np.concatenate(v), original_length, n_overlap_frames) for k, v in out.items()}


Bends = dict[tuple[float, int], list[int]]  # (start s rounded to 0.1 ms, pitch) -> bend curve in 1/3 semitones


def pitched_notes(samples: np.ndarray, sample_rate: int, opts: Options, *, threads: int = 1,
                  progress: Progress | None = None) -> tuple[list[Note], Bends | None]:
    """Notes of a pitched part (basic-pitch activations through its own note creation), and pitch-bend
    curves when ``opts.pitch_bends``."""
    _quiet_import()
    import librosa
    from basic_pitch.constants import AUDIO_SAMPLE_RATE, FFT_HOP
    from basic_pitch.note_creation import model_output_to_notes

    act = model_output(samples, sample_rate, threads=threads, progress=progress)
    if progress:
        progress(0.97, "making notes")
    min_len = max(1, int(round(opts.min_note_ms / 1000 * (AUDIO_SAMPLE_RATE / FFT_HOP))))
    # bin edges half a semitone outside the range, so the range's own end notes are kept; silence makes
    # basic-pitch divide 0 by 0 while rescaling (harmless: no notes), so that warning is silenced
    with np.errstate(invalid="ignore", divide="ignore"):
        _, events = model_output_to_notes(
            act, onset_thresh=opts.onset_threshold, frame_thresh=opts.frame_threshold, min_note_len=min_len,
            min_freq=float(librosa.midi_to_hz(opts.min_pitch - 0.5)),
            max_freq=float(librosa.midi_to_hz(opts.max_pitch + 0.5)), include_pitch_bends=False,
            melodia_trick=opts.melodia_trick)
    notes = [(float(s), float(e), int(p), int(np.clip(round(127 * a), 1, 127))) for s, e, p, a, _ in events
             if opts.min_pitch <= int(p) <= opts.max_pitch]
    notes.sort(key=lambda n: (n[0], n[2]))
    return notes, (_bends(act, opts, min_len) if opts.pitch_bends else None)


def _bends(act: dict[str, np.ndarray], opts: Options, min_len: int) -> Bends:
    """Pitch-bend curves keyed by (start, pitch), from basic-pitch's contour output."""
    import librosa
    from basic_pitch.note_creation import model_output_to_notes

    with np.errstate(invalid="ignore", divide="ignore"):
        _, events = model_output_to_notes(
            act, onset_thresh=opts.onset_threshold, frame_thresh=opts.frame_threshold, min_note_len=min_len,
            min_freq=float(librosa.midi_to_hz(opts.min_pitch - 0.5)),
            max_freq=float(librosa.midi_to_hz(opts.max_pitch + 0.5)), include_pitch_bends=True,
            melodia_trick=opts.melodia_trick)
    return {(round(float(s), 4), int(p)): list(b) for s, _, p, _, b in events if b}


# -- drums ------------------------------------------------------------------------------------------------
DRUM_SR = 22050
DRUM_HOP = 256
# band (Hz) and log-compression gamma of each drum class's onset envelope (see drum_notes)
DRUM_BANDS = {"kick": ((30.0, 100.0), 1.0), "snare": ((150.0, 500.0), 1.0), "hihat": ((7000.0, 11000.0), 100.0)}


def drum_notes(samples: np.ndarray, sample_rate: int, *, sensitivity: float = 0.5,
               progress: Progress | None = None) -> tuple[list[Note], dict[str, Any]]:
    """GM drum notes by onset and band.

    Each class has an onset envelope: the positive spectral flux of ``log(1 + gamma * |STFT|)`` averaged over
    its band (kick 30-100 Hz, snare 150-500 Hz where its shell sits above the kick's fundamental, hi-hat
    7-11 kHz). The low bands use a light compression (gamma 1) so quiet broadband noise does not fire them;
    the hat band a strong one (gamma 100), as hats are quiet. Each envelope is normalised by its own 95th
    percentile and peaks are picked with librosa's adaptive ``peak_pick``, at most one per band per 50 ms;
    ``sensitivity`` (0..1) lowers the threshold from 0.9 to 0.3 of that percentile. A snare peak next to a
    stronger kick peak is the kick's own spill into the snare band and is dropped; a kick peak under 3/4 of a
    snare peak beside it is the snare's (or a low tom's) spill into the kick band and is dropped. Velocity is the peak's
    normalised strength mapped to 30..127. Bands and rules were chosen on composer pieces of a seed the
    benchmark does not score (docs/TRANSCRIPTION.md).
    """
    import librosa

    y = resample(_mono(samples)[:, None], sample_rate, DRUM_SR)[:, 0]
    if progress:
        progress(0.1, "finding drum onsets")
    spec = np.abs(librosa.stft(y, n_fft=1024, hop_length=DRUM_HOP, center=True))
    freqs = librosa.fft_frequencies(sr=DRUM_SR, n_fft=1024)
    env: dict[str, np.ndarray] = {}
    for name, ((lo, hi), gamma) in DRUM_BANDS.items():
        sel = (freqs >= lo) & (freqs < hi)
        logspec = np.log1p(gamma * spec[sel])
        e = np.maximum(0.0, np.diff(logspec, axis=1, prepend=logspec[:, :1])).mean(axis=0)
        scale = float(np.percentile(e, 95)) if e.size else 0.0
        env[name] = e / scale if scale > 1e-9 else np.zeros_like(e)
    threshold = 0.9 - 0.6 * float(np.clip(sensitivity, 0.0, 1.0))
    wait = max(1, int(round(0.05 * DRUM_SR / DRUM_HOP)))
    peaks: dict[str, np.ndarray] = {}
    for name, e in env.items():
        p = librosa.util.peak_pick(e, pre_max=2, post_max=2, pre_avg=8, post_avg=2, delta=threshold * 0.25,
                                   wait=wait)
        peaks[name] = p[e[p] >= threshold] if p.size else p
    kick_frames = peaks["kick"]
    keep = []
    for f in peaks["snare"]:
        near = kick_frames[np.abs(kick_frames - f) <= 2] if kick_frames.size else kick_frames
        if near.size and env["snare"][f] < env["kick"][near].max():
            continue  # the kick's spill into the snare band
        keep.append(f)
    peaks["snare"] = np.asarray(keep, dtype=int)
    snare_frames = peaks["snare"]
    kicks = []
    for f in peaks["kick"]:
        near = snare_frames[np.abs(snare_frames - f) <= 2] if snare_frames.size else snare_frames
        if near.size and env["kick"][f] < 0.75 * env["snare"][near].max():
            continue  # the snare's (or a tom's) spill into the kick band
        kicks.append(f)
    peaks["kick"] = np.asarray(kicks, dtype=int)
    notes: list[Note] = []
    frame_s = DRUM_HOP / DRUM_SR
    for name, frames in peaks.items():
        pitch = DRUM_CLASSES[name]
        for f in frames:
            strength = float(np.clip(env[name][f] / 1.5, 0.0, 1.0))
            t = max(0.0, (int(f) - 1) * frame_s)  # flux peaks a frame after the attack
            notes.append((t, t + 0.1, pitch, int(round(30 + 97 * strength))))
    notes.sort(key=lambda n: (n[0], n[2]))
    counts = {name: int(len(p)) for name, p in peaks.items()}
    return notes, {"drum_counts": counts, "drum_bands_hz": {k: list(v[0]) for k, v in DRUM_BANDS.items()},
                   "drum_notes": DRUM_CLASSES, "sensitivity": sensitivity}


# -- MIDI ---------------------------------------------------------------------------------------------------
def estimate_bpm(samples: np.ndarray, sample_rate: int) -> float:
    """A tempo for the MIDI file's grid (notes are placed in seconds, so it never moves them)."""
    import librosa

    y = resample(_mono(samples)[:, None], sample_rate, DRUM_SR)[:, 0]
    if y.size < DRUM_SR or not np.any(y):
        return 120.0
    onset_env = librosa.onset.onset_strength(y=y, sr=DRUM_SR, hop_length=512)
    bpm = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset_env, sr=DRUM_SR, hop_length=512))[0])
    return bpm if 30.0 <= bpm <= 300.0 else 120.0


def notes_to_midi(notes: list[Note], *, bpm: float, drums: bool, program: int, name: str,
                  bends: Bends | None = None) -> bytes:
    """A type-1 Standard MIDI File with one track (drums on channel 10), tempo ``bpm``."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=float(bpm))
    inst = pretty_midi.Instrument(program=0 if drums else int(program), is_drum=drums, name=name)
    for s, e, p, v in notes:
        inst.notes.append(pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(s), end=float(max(e, s + 0.01))))
    if bends and not drums:
        from basic_pitch.constants import CONTOURS_BINS_PER_SEMITONE

        for s, e, p, _ in notes:
            curve = bends.get((round(s, 4), p))
            if not curve:
                continue
            times = np.linspace(s, e, len(curve))
            ticks = np.clip(np.round(np.asarray(curve) * 4096 / CONTOURS_BINS_PER_SEMITONE), -8192, 8191).astype(int)
            inst.pitch_bends += [pretty_midi.PitchBend(int(b), float(t)) for b, t in zip(ticks, times, strict=True)]
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


# -- the whole path -------------------------------------------------------------------------------------
def drop_overtones(notes: list[Note], *, onset_window_s: float = 0.06, ratio: float = 0.8) -> tuple[list[Note], int]:
    """Remove notes that are an overtone of a louder note sounding with them (for monophonic parts)."""
    out = []
    for n in notes:
        s, e, p, v = n
        ghost = any(abs(s - m[0]) <= onset_window_s or (m[0] <= s and m[1] >= e)
                    for m in notes if m is not n and p - m[2] in HARMONIC_INTERVALS and v <= ratio * m[3]
                    and m[0] < e and s < m[1])
        if not ghost:
            out.append(n)
    return out, len(notes) - len(out)


SUB_CANDIDATES = (12, 19, 24, 28)  # a note heard at p may be harmonic 2, 3, 4 or 5 of a fundamental this far below


def fix_low_fundamentals(notes: list[Note], samples: np.ndarray, sample_rate: int, *, low: int = 24) -> tuple[list[Note], int]:
    """Move a bass note down to its fundamental when that is where the energy is.

    basic-pitch's lowest octaves get little harmonic context, so on a synth sub-bass it often reports the
    2nd-5th harmonic instead of the fundamental (C3 or E4 over a C2). For each note, the constant-Q
    magnitude at its pitch is compared with the magnitudes 12, 19, 24 and 28 semitones below (the
    fundamentals it would be a harmonic of, down to ``low``), over the note's span: the note moves to the
    strongest of them only if that is stronger than the note's own pitch. Instruments have no energy below
    their fundamental, so a correctly transcribed note stays where it is. Duplicates this creates (two
    harmonics of one fundamental) are merged, keeping the louder.
    """
    import librosa

    if not notes:
        return notes, 0
    sr = DRUM_SR
    y = resample(_mono(samples)[:, None], sample_rate, sr)[:, 0]
    hop = 256
    fmin_midi = max(21, low)
    n_bins = 108 - fmin_midi + 1
    cqt = np.abs(librosa.cqt(y, sr=sr, hop_length=hop, fmin=float(librosa.midi_to_hz(fmin_midi)), n_bins=n_bins,
                             bins_per_octave=12))
    fr = sr / hop

    def energy(m: int, a: int, b: int) -> float:
        i = m - fmin_midi
        return float(cqt[i, a:b].mean()) if 0 <= i < n_bins and b > a else 0.0

    moved = 0
    out: list[Note] = []
    for s, e, p, v in notes:
        a, b = int(s * fr), max(int(s * fr) + 1, int(e * fr))
        own = energy(p, a, b)
        best, best_e = p, own
        for d in SUB_CANDIDATES:
            m = p - d
            if m >= low and (em := energy(m, a, b)) > best_e:
                best, best_e = m, em
        moved += best != p
        out.append((s, e, best, v))
    out.sort(key=lambda n: (n[0], n[2], -n[3]))
    merged: list[Note] = []
    for n in out:  # same pitch starting within 60 ms of a kept note: one note
        if any(m[2] == n[2] and abs(m[0] - n[0]) <= 0.06 for m in merged[-4:]):
            continue
        merged.append(n)
    return merged, moved


def stem_defaults(stem: str | None) -> tuple[int, int, int, str]:
    """(low, high, program, instrument name) for a stem name; unknown names get the piano's compass."""
    if stem and stem.lower() in STEM_DEFAULTS:
        return STEM_DEFAULTS[stem.lower()]
    return (*DEFAULT_RANGE, *DEFAULT_PROGRAM)


def transcribe(samples: np.ndarray, sample_rate: int, *, drums: bool, opts: Options, stem: str | None = None,
               threads: int = 1, drum_sensitivity: float = 0.5, progress: Progress | None = None) -> Transcription:
    """Audio to a MIDI file and its notes. ``samples`` is float (frames, channels) or mono."""
    info = backend_info() if not drums else None
    if opts.bpm:
        bpm, bpm_source = float(opts.bpm), "argument"
    else:
        bpm, bpm_source = estimate_bpm(samples, sample_rate), "estimated from the audio (librosa tempo)"
    label = stem or ("drums" if drums else "part")
    if drums:
        notes, details = drum_notes(samples, sample_rate, sensitivity=drum_sensitivity, progress=progress)
        backend = {"name": "librosa onsets + band energy", "why": "drums have no pitch for basic-pitch; "
                   "spectral-flux onsets in kick/snare/hi-hat bands give GM drum notes", "model_id": None}
        midi = notes_to_midi(notes, bpm=bpm, drums=True, program=0, name=label)
        return Transcription(notes=notes, midi=midi, mode="drums", bpm=bpm, bpm_source=bpm_source, program=None,
                             instrument="GM drum kit (channel 10)", backend=backend, details=details)
    _, _, program, instrument = stem_defaults(stem)
    notes, bends = pitched_notes(samples, sample_rate, opts, threads=threads, progress=progress)
    details: dict[str, Any] = {"pitch_bends": opts.pitch_bends, "threads": threads}
    if stem and stem.lower() in MONOPHONIC:
        notes, dropped = drop_overtones(notes)
        notes, moved = fix_low_fundamentals(notes, samples, sample_rate, low=opts.min_pitch)
        details.update({"overtones_dropped": dropped, "moved_to_fundamental": moved})
    midi = notes_to_midi(notes, bpm=bpm, drums=False, program=program, name=label, bends=bends)
    return Transcription(notes=notes, midi=midi, mode="pitched", bpm=bpm, bpm_source=bpm_source,
                         program=program, instrument=instrument, backend=dict(info or {}),
                         details=details)
