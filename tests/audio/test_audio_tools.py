"""separate_stems / remix / analyze_audio through a real MCP client: results, provenance, bad input."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .conftest import (
    TOOLSETS,
    dev_excerpt,
    run_job,
    save_tiny_htdemucs,
    text_of,
    write_wav,
)


async def _audio(client, art_id):
    res = await client.read_resource(f"echotune://artifacts/{art_id}/content")
    return sf.read(io.BytesIO(base64.b64decode(res.contents[0].blob)), dtype="float32", always_2d=True)


async def _artifact_count(client) -> int:
    res = await client.call_tool("list_artifacts", {"limit": 100})
    return len(res.structured_content["artifacts"])


async def test_separate_with_dsp_fallback_then_remix(make_client, allowed):
    mix, sr, _ = dev_excerpt("potassium", 6.0)
    path = write_wav(allowed / "song.wav", mix, sr)
    progress = []

    async def on_progress(p, total, message):
        progress.append(message)

    async with make_client(toolsets=TOOLSETS) as (client, _):
        job = await run_job(client, "separate_stems", {"audio": path}, on_progress)
        assert job["status"] == "succeeded", job
        res = job["result"]
        assert res["backend"] == "dsp" and res["fallback"] is True and "models pull htdemucs" in res["note"]
        assert set(res["stems"]) == {"drums", "bass", "other", "vocals"}
        assert res["residual"]["energy_db"] < -60  # the DSP masks sum to one: stems add back up to the input
        total = sum([(await _audio(client, a))[0] for a in res["stems"].values()])
        assert np.abs(total - mix).max() < 1e-3  # 24-bit files: within quantisation
        assert progress
        stem_set = res["stem_set_artifact_id"]
        rjob = await run_job(client, "remix", {"artifact": stem_set, "gains_db": {"drums": -6}, "mute": ["vocals"],
                                               "pan": {"other": -0.5}, "tempo_ratio": 1.25,
                                               "pitch_shift_semitones": 2, "fade_out_s": 1.0})
        assert rjob["status"] == "succeeded", rjob
        out = rjob["result"]
        y, osr = await _audio(client, out["mix_artifact_id"])
        assert osr == sr and y.shape[1] == 2
        assert len(y) / sr == pytest.approx(6.0 / 1.25, rel=0.02)
        assert out["stats"]["integrated_lufs"] == pytest.approx(-14, abs=0.6)
        mix_art = next(a for a in rjob["artifacts"] if a["kind"] == "audio")
        assert set(mix_art["parents"]) == set(res["stems"].values())


async def test_separate_with_demucs_weights_on_disk(make_client, allowed, tmp_path):
    pytest.importorskip("demucs")
    from demucs.apply import apply_model

    from echotune_mcp.engine import separation_backend as sb

    mix, sr, _ = dev_excerpt("lithium", 3.0)
    mono22k = mix.mean(axis=1, keepdims=True)[::2]  # any rate and channel count in: mono, 22.05 kHz
    path = write_wav(allowed / "mono.wav", mono22k, sr // 2)
    async with make_client(toolsets=TOOLSETS, models_dir=tmp_path / "weights") as (client, app):
        save_tiny_htdemucs(app.settings.weights_dir / "htdemucs")
        progress = []

        async def on_progress(p, total, message):
            progress.append(message)

        job = await run_job(client, "separate_stems", {"audio": path, "stems": ["vocals"]}, on_progress)
        assert job["status"] == "succeeded", job
        res = job["result"]
        assert res["backend"] == "demucs" and res["fallback"] is False
        assert res["model"]["model_id"] == "htdemucs" and res["model"]["weights_revision"] == "test-random-init"
        assert set(res["stems"]) == {"vocals", "rest"}
        assert any("segment" in m for m in progress), progress
        vocals, vsr = await _audio(client, res["stems"]["vocals"])
        assert vsr == sr // 2 and vocals.shape == mono22k.shape
        # the same numbers demucs' own apply_model gives, through resampling and normalisation
        runner = sb.get_runner(app.settings, "htdemucs")
        x, mean, std = sb._prepare(mono22k, sr // 2, runner.samplerate, 2)
        ref = sb._finish(apply_model(runner.model, x, shifts=0, overlap=0.25), mean, std, runner.sources,
                         runner.samplerate, sr // 2, 1)["vocals"]
        assert np.abs(vocals - ref).max() < 2e-4  # 24-bit quantisation on top of the 1e-4 engine tolerance


async def test_bad_inputs_leave_nothing_behind(make_client, allowed, tmp_path):
    sr = 44100
    (allowed / "notes.txt").write_text("not audio at all")
    empty = write_wav(allowed / "empty.wav", np.zeros((0, 2), np.float32), sr)
    long = write_wav(allowed / "long.wav", 0.1 * np.ones((sr * 3, 2), np.float32), sr)
    clipped = write_wav(allowed / "clipped.wav", np.clip(3 * np.sin(np.arange(sr) / 5.0), -1, 1)[:, None]
                        .repeat(2, 1).astype(np.float32), sr)
    nan = np.full((sr, 2), 0.1, np.float32)
    nan[100] = np.nan
    nan_path = write_wav(allowed / "nan.wav", nan, sr, subtype="FLOAT")
    ok = write_wav(allowed / "ok.wav", 0.1 * np.random.default_rng(0).standard_normal((sr, 2)).astype(np.float32), sr)
    cases = [
        ("separate_stems", {"audio": str(allowed / "notes.txt")}, ["not a readable audio file", "WAV"]),
        ("separate_stems", {"audio": empty}, ["audio"]),
        ("separate_stems", {"audio": long}, ["maximum is 2 s"]),
        ("separate_stems", {"audio": clipped}, ["clipped"]),
        ("separate_stems", {"audio": nan_path}, ["NaN"]),
        ("separate_stems", {"audio": str(tmp_path / "outside.wav")}, ["audio"]),
        ("separate_stems", {"audio": ok, "model": "dsp", "stems": ["guitar"]}, ["stems", "drums, bass, other, vocals"]),
        ("separate_stems", {"audio": ok, "model": "htdemucs"}, ["models pull htdemucs", "model=dsp"]),
        ("separate_stems", {"audio": ok, "stems": ["piano"]}, ["htdemucs_6s"]),
        ("remix", {"stems": {"a": ok}, "gains_db": {"b": 3}}, ["gains_db", "'b'", "allowed: a"]),
        ("remix", {"stems": {"a": ok}, "mute": ["a"]}, ["silent"]),
        ("remix", {}, ["exactly one of artifact or stems"]),
        ("analyze_audio", {"audio": str(allowed / "notes.txt")}, ["not a readable audio file"]),
    ]
    async with make_client(toolsets=TOOLSETS, max_audio_seconds=2.0) as (client, _):
        for tool, args, words in cases:
            r = await client.call_tool(tool, args)
            assert r.is_error, (tool, args)
            for w in words:
                assert w in text_of(r), (tool, args, text_of(r))
        assert await _artifact_count(client) == 0
        jobs = await client.call_tool("list_jobs", {})
        assert not jobs.structured_content["jobs"]


async def test_failure_midway_deletes_partial_stems(make_client, allowed, monkeypatch):
    from echotune_mcp.toolsets import audio as audio_toolset

    mix, sr, _ = dev_excerpt("potassium", 2.0)
    path = write_wav(allowed / "song.wav", mix, sr)
    real = audio_toolset.encode_audio
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("disk full (simulated)")
        return real(*a, **kw)

    monkeypatch.setattr(audio_toolset, "encode_audio", flaky)
    async with make_client(toolsets=TOOLSETS) as (client, _):
        job = await run_job(client, "separate_stems", {"audio": path, "model": "dsp"})
        assert job["status"] == "failed" and "disk full" in job["error"]
        left = (await client.call_tool("list_artifacts", {"limit": 100})).structured_content["artifacts"]
        assert job["artifacts"] == [] and left == [], left


async def test_analyze_audio_cached_and_resource(make_client, allowed):
    mix, sr, _ = dev_excerpt("potassium", 10.0)
    path = write_wav(allowed / "song.wav", mix, sr)
    async with make_client(toolsets=TOOLSETS) as (client, app):
        first = await run_job(client, "analyze_audio", {"audio": path})
        assert first["status"] == "succeeded", first
        a = first["result"]
        assert a["cached"] is False and 60 < a["tempo"]["bpm"] < 200 and a["tempo"]["beat_times_s"]
        assert a["key"]["mode"] in ("major", "minor") and -40 < a["loudness"]["integrated_lufs"] < 0
        assert 0 <= a["scores"]["energy"] <= 1 and 0 <= a["scores"]["danceability"] <= 1
        assert "danceability" in a["formulas"]
        second = await run_job(client, "analyze_audio", {"audio": path})
        assert second["result"]["cached"] is True
        assert {k: v for k, v in second["result"].items() if k != "cached"} == \
               {k: v for k, v in a.items() if k != "cached"}
        from echotune_mcp.principal import LOCAL

        rec = await app.artifacts.create(owner=LOCAL, data=Path(path).read_bytes(), kind="upload",
                                         media_type="audio/wav", name="song.wav")
        res = await client.read_resource(f"echotune://artifacts/{rec.id}/analysis")
        doc = json.loads(res.contents[0].text)
        assert doc["cached"] is True and doc["tempo"] == a["tempo"]
