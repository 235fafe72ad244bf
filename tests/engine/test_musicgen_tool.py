"""generate_music through MusicGen: a tiny random checkpoint pulled from a folder, in-process and via the daemon."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from echotune_mcp.engine.model_manager import ModelManager
from echotune_mcp.engine.musicgen_backend import choose_model
from echotune_mcp.engine.musicgen_shapes import build_random_musicgen
from tests.audio.conftest import run_job

WORDS = ["lofi", "hip", "hop", "beat", "with", "warm", "piano", "and", "soft", "drums", "ambient", "pad", "slow", "dreamy", "synth", "bass", "guitar"]


def save_tiny_checkpoint(folder: Path) -> None:
    """A random tiny MusicGen plus a word-level tokenizer, in the layout `models pull` downloads."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    build_random_musicgen("tiny", seed=2).save_pretrained(folder)
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                            eos_token="</s>").save_pretrained(folder)


@pytest.fixture
def tiny_pulled(settings, tmp_path):
    src = tmp_path / "tiny-musicgen"
    save_tiny_checkpoint(src)
    ModelManager(settings).pull("musicgen-small", from_dir=src, log=lambda _m: None)
    return settings


def test_auto_model_choice_says_why(tiny_pulled):
    manager = ModelManager(tiny_pulled)
    assert manager.verify("musicgen-small") == [] and manager.manifest("musicgen-small")["source"]["type"] == "local_folder"
    model, why = choose_model(tiny_pulled, "auto", 10.0, "cpu", latency_budget_s=60)
    assert model == "musicgen-small" and "fits the 60 s latency budget" in why
    model, why = choose_model(tiny_pulled, "auto", 30.0, "cpu", latency_budget_s=10)
    assert model == "musicgen-small" and "no downloaded model fits" in why
    with pytest.raises(LookupError, match="musicgen-large is not downloaded: run `echotune-mcp models pull"):
        choose_model(tiny_pulled, "musicgen-large", 10.0, "cpu")
    with pytest.raises(ValueError, match="not a MusicGen model"):
        choose_model(tiny_pulled, "htdemucs", 10.0, "cpu")


def test_generate_music_runs_musicgen_as_a_job_with_progress_and_previews(tiny_pulled, make_client):
    progress = []

    async def on_progress(p, total, message):
        progress.append((p, message))

    async def scenario():
        async with make_client(preview_every_s=0.3) as (client, app):  # ECHOTUNE_PREVIEW_EVERY_S
            res = await run_job(client, "generate_music", {"prompt": "lofi hip hop beat with warm piano",
                                                           "duration_s": 1.0, "backend": "auto", "seed": 3},
                                on_progress)
            assert res["status"] == "succeeded", res
            out = res["result"]
            assert out["backend"] == "musicgen" and out["model"]["model_id"] == "musicgen-small"
            assert "latency budget" in out["model"]["reason"] and out["model"]["weights_license"] == "CC-BY-NC-4.0"
            art = await app.artifacts.get("local", out["mix_artifact_id"])
            assert abs(art.meta["duration_s"] - 1.0) < 0.01 and art.meta["sample_rate"] == 16000
            previews, _ = await app.artifacts.list("local", kind="preview", job_id=res["job_id"])
            assert len(previews) >= 2
            assert any("generating:" in (m or "") for _, m in progress)

    asyncio.run(scenario())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_engine_daemon_serves_generate_music_for_another_process(tiny_pulled, make_client):
    port = _free_port()
    env = dict(os.environ, ECHOTUNE_DATA_DIR=str(tiny_pulled.data_dir), ECHOTUNE_PREVIEW_EVERY_S="0")
    proc = subprocess.Popen([sys.executable, "-m", "echotune_mcp.cli", "engine", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).json()["ok"]:
                    break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"engine daemon did not start: {proc.stdout.read() if proc.stdout else ''}")
                time.sleep(0.2)

        async def scenario():
            # a server with no weights of its own: the daemon's checkpoints are what counts
            async with make_client(engine_url=f"http://127.0.0.1:{port}", data_dir=tiny_pulled.data_dir.parent / "other") \
                    as (client, app):
                res = await run_job(client, "generate_music", {"prompt": "ambient pad", "duration_s": 0.5,
                                                               "backend": "auto", "seed": 1})
                assert res["status"] == "succeeded", res
                assert res["result"]["backend"] == "musicgen"
                assert res["result"]["model"]["model_id"] == "musicgen-small"
                assert "latency budget" in res["result"]["model"]["reason"]
                art = await app.artifacts.get("local", res["result"]["mix_artifact_id"])
                assert abs(art.meta["duration_s"] - 0.5) < 0.01

        asyncio.run(scenario())
        health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).json()
        assert health["loaded"] == ["musicgen-small"]  # the model lives in the daemon, not in this process
        assert health["musicgen"] == ["musicgen-small"] and health["melody"] == []
        bad = httpx.post(f"http://127.0.0.1:{port}/v1/generate", json={"model_id": "musicgen-small", "bogus": 1})
        assert bad.status_code == 400 and "bogus" in bad.json()["error"]

        async def abandon():  # a client that goes away mid-request frees its slot in the daemon
            from echotune_mcp.engine.remote import RemoteEngine

            handle = await RemoteEngine(f"http://127.0.0.1:{port}").generate(
                model_id="auto", prompt="ambient pad", duration_s=100.0, preview_every_s=0.0)
            events = handle.events()
            assert (await events.__anext__()).kind == "progress"
            assert httpx.get(f"http://127.0.0.1:{port}/v1/health").json()["load"]["musicgen-small"]["running"] == 1
            await events.aclose()
            deadline = time.monotonic() + 10
            while httpx.get(f"http://127.0.0.1:{port}/v1/health").json()["load"]["musicgen-small"]["running"]:
                assert time.monotonic() < deadline, "the daemon kept decoding for a client that left"
                await asyncio.sleep(0.1)

        asyncio.run(abandon())
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_generate_music_continues_a_clip(tiny_pulled, make_client):
    async def scenario():
        async with make_client() as (client, app):
            first = await run_job(client, "generate_music", {"prompt": "slow dreamy synth", "duration_s": 0.4,
                                                             "backend": "musicgen", "seed": 4})
            clip_id = first["result"]["mix_artifact_id"]
            res = await run_job(client, "generate_music", {"prompt": "slow dreamy synth", "duration_s": 0.6,
                                                           "continue_from": clip_id, "seed": 5})
            assert res["status"] == "succeeded", res
            art = await app.artifacts.get("local", res["result"]["mix_artifact_id"])
            assert art.parents == [clip_id]
            assert abs(art.meta["continued_seconds"] - 0.4) < 0.01
            assert abs(art.meta["duration_s"] - 1.0) < 0.01  # the clip's 0.4 s, then 0.6 s of new music
            bad = await client.call_tool("generate_music", {"prompt": "x", "continue_from": clip_id,
                                                            "backend": "composer"})
            assert bad.is_error and "continue_from" in bad.content[0].text

    asyncio.run(scenario())


def test_generate_music_follows_a_melody_with_musicgen_melody(settings, tmp_path, make_client):
    import numpy as np

    from echotune_mcp.music.audio_io import encode_audio

    src = tmp_path / "tiny-melody"
    save_tiny_checkpoint(src)  # a text model first, for the tokenizer files ...
    build_random_musicgen("tiny", seed=5, melody=True).save_pretrained(src)  # ... then the melody weights over it
    allowed = settings.allowed_roots[0]
    t = np.arange(16000) / 16000
    (allowed / "tune.wav").write_bytes(encode_audio(np.sin(2 * np.pi * 440 * t).astype(np.float32)[:, None], 16000))

    async def scenario():
        async with make_client() as (client, app):
            missing = await client.call_tool("generate_music", {"prompt": "x", "melody": str(allowed / "tune.wav")})
            assert missing.is_error and "models pull musicgen-melody" in missing.content[0].text
            ModelManager(app.settings).pull("musicgen-melody", from_dir=src, log=lambda _m: None)
            res = await run_job(client, "generate_music", {"prompt": "warm piano", "duration_s": 0.5,
                                                           "melody": str(allowed / "tune.wav"), "seed": 2})
            assert res["status"] == "succeeded", res
            assert res["result"]["model"]["model_id"] == "musicgen-melody"
            art = await app.artifacts.get("local", res["result"]["mix_artifact_id"])
            assert abs(art.meta["duration_s"] - 0.5) < 0.01
            assert art.provenance["melody_input"]["type"] == "local_file"

    asyncio.run(scenario())


def test_cancel_job_frees_the_engine_slot(tiny_pulled, make_client):
    from echotune_mcp.engine import musicgen_backend

    async def scenario():
        async with make_client() as (client, app):
            started = await client.call_tool("generate_music", {"prompt": "ambient pad", "duration_s": 100,
                                                                "backend": "musicgen", "wait_seconds": 0})
            job_id = started.structured_content["job_id"]
            engine = musicgen_backend.get_engine(app.settings)
            deadline = time.monotonic() + 60
            while not (engine.loaded() and engine.worker("musicgen-small").scheduler.running):
                assert time.monotonic() < deadline, "the MusicGen request never started"
                await asyncio.sleep(0.05)
            worker = engine.worker("musicgen-small")
            res = await client.call_tool("cancel_job", {"job_id": job_id})
            assert not res.is_error
            deadline = time.monotonic() + 10
            while len(worker.scheduler):
                assert time.monotonic() < deadline, "the engine kept decoding a cancelled job"
                await asyncio.sleep(0.02)
            job = await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 5})
            assert job.structured_content["status"] == "cancelled"

    asyncio.run(scenario())
