"""transcribe_to_midi through a real MCP client: the MIDI artifact, its lineage and licence, options, bad input."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf

from tests.audio.conftest import run_job, text_of, write_wav

from .conftest import TOOLSETS

pytest.importorskip("basic_pitch", reason="could not import basic_pitch")

COMPOSER_PROV = {"tool": "generate_music", "backend": "composer", "prompt": "funk", "seed": 7, "parameters": {},
                 "model": {"model_id": "echotune-composer", "backend": "composer", "weights_license": None},
                 "soundfont": {"path": "/sf/FluidR3_GM.sf2", "name": "FluidR3_GM.sf2", "sha256": "b" * 64,
                               "license": {"id": "MIT"}}}


def _wav_bytes(y: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_24")
    return buf.getvalue()


async def _midi(client, art_id: str):
    import pretty_midi

    res = await client.read_resource(f"echotune://artifacts/{art_id}/content")
    return pretty_midi.PrettyMIDI(io.BytesIO(base64.b64decode(res.contents[0].blob)))


async def test_bass_stem_to_midi_with_provenance_and_licence(make_client, funk_piece):
    arr, stems = funk_piece
    async with make_client(toolsets=TOOLSETS) as (client, app):
        stem = await app.artifacts.create(owner="local", data=_wav_bytes(stems["bass"][: 44100 * 6], 44100),
                                          kind="stem", media_type="audio/wav", name="stem-bass.wav",
                                          meta={"stem": "bass"}, provenance=COMPOSER_PROV)
        job = await run_job(client, "transcribe_to_midi", {"audio": stem.id, "drum_sensitivity": 0.9})
        assert job["status"] == "succeeded", job
        res = job["result"]
        assert res["applied"]["mode"] == "pitched" and res["applied"]["stem"] == "bass"
        assert res["applied"]["stem_from"] == "the stem artifact's name"
        assert res["applied"]["pitch_range"] == [24, 72] and res["applied"]["pitch_range_from"] == "the bass default"
        assert res["ignored"] == ["drum_sensitivity (drums only)"]
        assert res["backend"]["name"].startswith("basic-pitch onnxruntime") and res["backend"]["why"]
        summary = res["summary"]
        assert summary["note_count"] > 10 and 24 <= summary["pitch_range"][0] <= summary["pitch_range"][1] <= 72
        pm = await _midi(client, res["midi_artifact_id"])
        assert len(pm.instruments[0].notes) == summary["note_count"] and pm.instruments[0].program == 33
        rec = await app.artifacts.get("local", res["midi_artifact_id"])
        assert rec.kind == "midi" and rec.media_type == "audio/midi" and rec.parents == [stem.id]
        model = rec.provenance["model"]
        assert model["model_id"] == "basic-pitch" and model["weights_license"] == "Apache-2.0"
        assert model["card"].endswith("models/basic-pitch.md") and len(model["sha256"]) == 64
        check = (await client.call_tool("check_usage", {"artifact": rec.id, "use": "commercial_release"})
                 ).structured_content
        weights = [r for r in check["reasons"] if r["factor"] == "weights" and r["artifact_id"] == rec.id]
        assert weights and weights[0]["rule"] == "weights-permissive" and weights[0]["license"] == "Apache-2.0"


async def test_drum_stem_to_gm_drums_and_ignored_options(make_client, funk_piece):
    arr, stems = funk_piece
    async with make_client(toolsets=TOOLSETS) as (client, app):
        stem = await app.artifacts.create(owner="local", data=_wav_bytes(stems["drums"][: 44100 * 6], 44100),
                                          kind="stem", media_type="audio/wav", name="stem-drums.wav",
                                          meta={"stem": "drums"}, provenance=COMPOSER_PROV)
        job = await run_job(client, "transcribe_to_midi", {"audio": stem.id, "onset_threshold": 0.7, "bpm": 113})
        assert job["status"] == "succeeded", job
        res = job["result"]
        assert res["applied"]["mode"] == "drums" and res["ignored"] == ["onset_threshold (pitched parts only)"]
        assert res["summary"]["bpm"] == 113 and res["summary"]["bpm_source"] == "argument"
        counts = res["summary"]["drum_counts"]
        assert counts["kick"] > 3 and counts["snare"] > 3 and counts["hihat"] > 10, counts
        (kit,) = (await _midi(client, res["midi_artifact_id"])).instruments
        assert kit.is_drum and {n.pitch for n in kit.notes} <= {36, 38, 42}
        rec = await app.artifacts.get("local", res["midi_artifact_id"])
        assert rec.provenance["backend"] == "dsp" and rec.provenance["model"] is None


async def test_local_file_mix_and_forced_pitched_mode(make_client, allowed):
    sr = 22050
    t = np.arange(sr * 3) / sr
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * (t < 2.5)).astype(np.float32)
    path = write_wav(allowed / "a3.wav", np.stack([y, y], 1), sr)
    async with make_client(toolsets=TOOLSETS) as (client, _):
        job = await run_job(client, "transcribe_to_midi", {"audio": path, "stem": "Drums", "mode": "pitched",
                                                           "max_pitch": 70})
        assert job["status"] == "succeeded", job
        res = job["result"]
        assert res["applied"]["mode"] == "pitched" and res["applied"]["stem"] == "drums"
        assert res["applied"]["pitch_range"] == [21, 70]
        assert res["applied"]["pitch_range_from"] == "max_pitch argument, the other end basic-pitch's 88 keys"
        assert res["summary"]["pitch_range"] == [57, 57] and res["summary"]["note_count"] == 1  # A3


@pytest.mark.parametrize("args, field", [
    ({"min_pitch": 80, "max_pitch": 60}, "min_pitch"),
    ({"min_pitch": 90, "stem": "bass"}, "min_pitch"),  # above the bass default's top (72)
    ({"onset_threshold": 1.5}, "onset_threshold"),
    ({"stem": "bass; rm -rf"}, "stem"),
])
async def test_bad_options_are_refused_before_a_job(make_client, allowed, args, field):
    path = write_wav(allowed / "x.wav", np.zeros((22050, 1), np.float32) + 0.01, 22050)
    async with make_client(toolsets=TOOLSETS) as (client, _):
        res = await client.call_tool("transcribe_to_midi", {"audio": path, **args})
        assert res.is_error and field in text_of(res)
        assert (await client.call_tool("list_jobs", {})).structured_content["jobs"] == []


async def test_midi_is_not_accepted_as_audio(make_client, funk_piece):
    async with make_client(toolsets=TOOLSETS) as (client, app):
        midi = await app.artifacts.create(owner="local", data=b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0",
                                          kind="midi", media_type="audio/midi", name="a.mid", provenance=COMPOSER_PROV)
        res = await client.call_tool("transcribe_to_midi", {"audio": midi.id})
        assert res.is_error and "not audio" in text_of(res)


async def test_cancel_stops_a_long_transcription_between_batches_and_leaves_nothing(make_client, allowed):
    import anyio

    sr = 22050
    t = np.arange(sr * 110) / sr  # 55 windows of 2 s: seven batches
    y = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    path = write_wav(allowed / "long.wav", np.stack([y, y], 1), sr)
    async with make_client(toolsets=TOOLSETS) as (client, app):
        started = (await client.call_tool("transcribe_to_midi", {"audio": path, "wait_seconds": 0})).structured_content
        job_id = started["job_id"]
        with anyio.fail_after(60):
            while True:  # wait until inference has begun (a progress message from between batches)
                job = (await client.call_tool("get_job", {"job_id": job_id})).structured_content
                if job["message"].startswith("transcribing") and job["progress"] > 0.05:
                    break
                await anyio.sleep(0.05)
            await client.call_tool("cancel_job", {"job_id": job_id})
            while job["status"] in ("queued", "running"):
                job = (await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 5})).structured_content
        assert job["status"] == "cancelled", job
        assert (await client.call_tool("list_artifacts", {})).structured_content["artifacts"] == []
