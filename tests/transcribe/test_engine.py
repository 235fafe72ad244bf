"""The transcription engine: basic-pitch on onnxruntime without TensorFlow, F1 floors on composer parts."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

bp = pytest.importorskip("basic_pitch", reason="could not import basic_pitch")
pytest.importorskip("onnxruntime", reason="could not import onnxruntime")

from echotune_mcp.music import transcribe as tr  # noqa: E402
from tools.bench_transcription import drum_f1, note_f1  # noqa: E402

# Floors: measured on these exact 10 s excerpts (docs/TRANSCRIPTION.md has the full run), minus a margin for
# platform differences in FluidSynth, soxr and onnxruntime.
FLOORS = {"bass": 0.85, "lead": 0.85, "chords": 0.7, "drums": 0.7}


def test_tensorflow_is_not_installed_and_basic_pitch_runs_on_onnx():
    """The Makefile installs basic-pitch with --no-deps: TensorFlow must not come back through a dependency."""
    assert importlib.util.find_spec("tensorflow") is None, "TensorFlow is installed; basic-pitch must run on ONNX"
    code = ("import sys; from echotune_mcp.music import transcribe as tr; info = tr.backend_info(); "
            "tr._session(1); print(info['model_file']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tflite_runtime', 'coremltools')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    model_file, loaded = out.strip().splitlines()
    assert model_file.endswith("saved_models/icassp_2022/nmp.onnx") and loaded == "[]"
    info = tr.backend_info()
    assert info["name"].startswith("basic-pitch onnxruntime ") and len(info["model_sha256"]) == 64


def test_importing_basic_pitch_leaves_logging_alone():
    code = ("import logging; from echotune_mcp.music import transcribe as tr; tr.backend_info(); "
            "print(len(logging.getLogger().handlers))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "0" and "Tensorflow is not installed" not in out.stderr


def test_sine_melody_is_transcribed_note_for_note():
    sr = 22050
    t = np.arange(int(sr * 4.2)) / sr
    y = np.zeros_like(t)
    ref = []
    for i, pitch in enumerate((60, 64, 67, 72)):
        on = (t >= i) & (t < i + 0.8)
        y[on] += 0.3 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t[on])
        ref.append((float(i), i + 0.8, pitch, 100))
    res = tr.transcribe(y[:, None].astype(np.float32), sr, drums=False, opts=tr.Options(bpm=90))
    assert [n[2] for n in res.notes] == [60, 64, 67, 72]
    assert note_f1(ref, res.notes)["f1_offset"] == 1.0
    assert res.bpm == 90 and res.bpm_source == "argument" and res.midi[:4] == b"MThd"


def test_composer_parts_score_above_their_floors(funk_piece):
    arr, stems = funk_piece
    scores = {}
    for track in arr.tracks:
        if track.is_drum:
            est = tr.transcribe(stems[track.name], 44100, drums=True, opts=tr.Options(bpm=arr.bpm), stem="drums")
            scores["drums"] = drum_f1(track.notes, est.notes)["f1_micro"]
        else:
            lo, hi, _, _ = tr.stem_defaults(track.role if track.role == "bass" else None)
            est = tr.transcribe(stems[track.name], 44100, drums=False, stem=track.role,
                                opts=tr.Options(bpm=arr.bpm, min_pitch=lo, max_pitch=hi))
            scores[track.role] = note_f1(track.notes, est.notes)["f1_onset"]
    assert {"drums", "bass", "lead"} <= set(scores), scores  # parts named by the composer's roles
    assert all(scores[k] >= floor for k, floor in FLOORS.items() if k in scores), scores


def test_midi_file_round_trips_with_program_drums_and_tempo(funk_piece):
    import io

    import pretty_midi

    arr, stems = funk_piece
    res = tr.transcribe(stems["bass"], 44100, drums=False, stem="bass", opts=tr.Options(min_pitch=24, max_pitch=72))
    pm = pretty_midi.PrettyMIDI(io.BytesIO(res.midi))
    (inst,) = pm.instruments
    assert inst.program == 33 and not inst.is_drum and inst.name == "bass" and len(inst.notes) == len(res.notes)
    assert abs(pm.get_tempo_changes()[1][0] - res.bpm) < 0.01
    assert res.details["overtones_dropped"] >= 0
    drums = tr.transcribe(stems["drums"], 44100, drums=True, stem="drums", opts=tr.Options(bpm=arr.bpm))
    (kit,) = pretty_midi.PrettyMIDI(io.BytesIO(drums.midi)).instruments
    assert kit.is_drum and {n.pitch for n in kit.notes} <= {36, 38, 42}
    assert all(1 <= n.velocity <= 127 for n in kit.notes)


@pytest.mark.parametrize("drums", [False, True])
@pytest.mark.parametrize("frames", [22050 * 3, 2000])
def test_silence_and_a_sliver_give_an_empty_midi_file_without_warnings(drums, frames):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = tr.transcribe(np.zeros((frames, 2), np.float32), 22050, drums=drums, opts=tr.Options(), stem="bass")
    assert res.notes == [] and res.summary()["pitch_range"] is None and res.midi[:4] == b"MThd"


def test_overtones_of_a_louder_note_are_dropped_for_monophonic_parts():
    notes = [(0.0, 1.0, 40, 100), (0.01, 0.5, 52, 50), (1.0, 2.0, 43, 90), (1.5, 2.0, 55, 95)]
    kept, dropped = tr.drop_overtones(notes)
    assert dropped == 1 and (0.01, 0.5, 52, 50) not in kept and (1.5, 2.0, 55, 95) in kept


def test_a_harmonic_heard_over_a_sub_bass_moves_to_the_fundamental():
    sr = 22050
    t = np.arange(sr * 2) / sr
    f0 = 440 * 2 ** ((24 - 69) / 12)  # C1, 32.7 Hz: a synth sub-bass
    y = (0.5 * np.sin(2 * np.pi * f0 * t) + 0.15 * np.sin(2 * np.pi * 2 * f0 * t)
         + 0.1 * np.sin(2 * np.pi * 4 * f0 * t)).astype(np.float32)
    fixed, moved = tr.fix_low_fundamentals([(0.2, 1.6, 48, 90), (0.21, 1.5, 36, 60)], y, sr, low=24)
    assert moved == 2 and fixed == [(0.2, 1.6, 24, 90)]  # both harmonics were one C1
    a1 = (0.5 * np.sin(2 * np.pi * 55.0 * t)).astype(np.float32)
    assert tr.fix_low_fundamentals([(0.2, 1.6, 33, 90)], a1, sr, low=24) == ([(0.2, 1.6, 33, 90)], 0)


def test_progress_can_cancel_between_batches():
    sr = 22050
    y = (0.1 * np.sin(2 * np.pi * 220 * np.arange(sr * 40) / sr)).astype(np.float32)[:, None]
    calls = []

    class Stop(Exception):
        pass

    def progress(f, msg):
        calls.append(f)
        if len(calls) == 2:
            raise Stop

    with pytest.raises(Stop):
        tr.model_output(y, sr, batch=4, progress=progress)
    assert calls == [0.0, pytest.approx(4 / 25, abs=0.01)]  # 40 s = 25 windows; stopped before the second batch
