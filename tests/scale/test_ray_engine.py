"""The engine on Ray Serve (issue #18): a local 2-CPU Ray cluster, two replicas each of a tiny random MusicGen and a
tiny random Demucs, driven through RayEngine and through the MCP server with ECHOTUNE_ENGINE_URL=ray:auto.

One cluster and one deployment serve the whole module (starting them is most of its time); nothing leaves the
machine: Ray binds 127.0.0.1, has no dashboard and no HTTP proxy (requests use DeploymentHandles), and usage
statistics are off.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("demucs")
pytest.importorskip("ray.serve")

from echotune_mcp.config import Settings
from echotune_mcp.engine import ray_serve as rs
from echotune_mcp.engine.model_manager import ModelManager
from echotune_mcp.engine.ray_client import RayEngine
from tests.audio.conftest import run_job, save_tiny_htdemucs
from tests.engine.test_musicgen_tool import save_tiny_checkpoint
from tests.scale.conftest import local_ray_cluster

CHECKPOINT = "musicgen-small"  # the tiny random weights are pulled under this card's id
PROMPTS = ["lofi hip hop beat", "ambient pad slow", "warm piano and soft drums", "dreamy synth bass",
           "guitar", "slow beat with warm pad"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(settings of the replicas' weights, plan): Ray on 2 CPUs, both families deployed with 2 replicas each."""
    root = tmp_path_factory.mktemp("ray-engine")
    settings = Settings(data_dir=root / "data", allowed_roots=(root,), max_generation_seconds=120.0)
    save_tiny_checkpoint(root / "tiny-musicgen")
    ModelManager(settings).pull(CHECKPOINT, from_dir=root / "tiny-musicgen", log=lambda _m: None)
    save_tiny_htdemucs(settings.weights_dir / "htdemucs")
    with local_ray_cluster():
        plan = rs.DeployPlan(musicgen=[CHECKPOINT], demucs=["htdemucs"], replicas_min=2, replicas_max=2,
                             cpus_per_replica=0.25, slots=6)  # room for stats() calls
        rs.deploy(settings, plan, wait_timeout_s=240)
        yield settings, plan


@pytest.fixture(scope="module")
def reference(cluster):
    """The in-process engine on the same weights (one thread, like a fractional-CPU replica)."""
    import torch

    from echotune_mcp.engine.musicgen_backend import close_engines, get_engine

    settings, _ = cluster
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield get_engine(settings)
    finally:
        close_engines()
        torch.set_num_threads(threads)


async def _replica_stats(handle, want: int = 2, timeout_s: float = 20.0) -> dict[str, dict]:
    """Stats of every replica (Serve routes repeated calls over all of them), by replica id."""
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < want and time.monotonic() < deadline:
        for s in await asyncio.gather(*(handle.stats.remote() for _ in range(6))):
            seen[s["replica"]] = s
    return seen


def test_deployment_options_tie_concurrency_to_slots_and_autoscale_on_queue_depth():
    plan = rs.DeployPlan(musicgen=["musicgen-small"], replicas_min=1, replicas_max=4, gpus_per_replica=0.5,
                         cpus_per_replica=2)
    opts = rs.deployment_options(plan, 16)
    assert opts["max_ongoing_requests"] == 16 and opts["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0.5}
    assert opts["autoscaling_config"]["min_replicas"] == 1 and opts["autoscaling_config"]["max_replicas"] == 4
    assert opts["autoscaling_config"]["target_ongoing_requests"] == 12
    fixed = rs.deployment_options(rs.DeployPlan(musicgen=["m"], replicas_min=2, replicas_max=2), 8)
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    for bad, field in [(dict(replicas_min=3, replicas_max=2), "--replicas-min"),
                       (dict(gpus_per_replica=-1), "--gpus-per-replica"), (dict(), "nothing to deploy")]:
        with pytest.raises(ValueError, match=field):
            rs.DeployPlan(**{"musicgen": [] if not bad else ["m"], **bad}).validate()
    secrets = Settings(data_dir=Path("/tmp/x"), secret_key="s3cret", engine_token="t0ken")
    assert "s3cret" not in repr(rs.replica_settings(secrets)) and "t0ken" not in repr(rs.replica_settings(secrets))
    with pytest.raises(ValueError, match="ray://HOST:PORT or ray:auto"):
        RayEngine("http://127.0.0.1:8771")
    # a replica refuses what generate_music would, naming the field
    assert rs.check_request({"prompt": "a", "duration_s": 5.0, "seed": 1}, 30.0) is None
    assert "duration_s: must be at most 30 s" in rs.check_request({"prompt": "a", "duration_s": 31.0}, 30.0)
    assert "top_k" in rs.check_request({"prompt": "a", "top_k": -1}, 30.0)
    assert "melody: sample rate" in rs.check_request({"melody": (np.zeros(8, np.float32), 100)}, 30.0)


def test_concurrent_requests_spread_over_both_replicas_and_equal_the_in_process_engine(cluster, reference):
    settings, _ = cluster
    engine = RayEngine("ray:auto")
    from echotune_mcp.engine import separation_backend as sb

    async def scenario():
        handles = [await engine.generate(model_id="auto", prompt=p, duration_s=0.6, seed=10 + i, top_k=50)
                   for i, p in enumerate(PROMPTS)]
        results = [await h.result() for h in handles]
        previewed = await engine.generate(model_id=CHECKPOINT, prompt="lofi", duration_s=0.6, seed=1,
                                          preview_every_s=0.2)
        previews = [e async for e in previewed.events() if e.kind == "preview"]
        local = [await (await reference.generate(model_id=CHECKPOINT, prompt=p, duration_s=0.6, seed=10 + i,
                                                 top_k=50)).result() for i, p in enumerate(PROMPTS)]
        mix = np.random.default_rng(0).standard_normal((44100 * 2, 2)).astype(np.float32) * 0.1
        seps = await asyncio.gather(*(engine.separate("htdemucs", mix * (1 + k), 44100) for k in range(2)))
        local_seps = [await sb.separate(settings, mix * (1 + k), 44100, sb.resolve_model(settings, "htdemucs", None))
                      for k in range(2)]
        return handles, results, local, seps, local_seps, previews

    handles, results, local, seps, local_seps, previews = asyncio.run(scenario())
    assert len(previews) >= 2 and all(p.audio is not None and p.audio.shape[-1] > 0 for p in previews)
    assert len({h.info["replica"] for h in handles}) == 2, [h.info for h in handles]
    assert all(h.retries == 0 and h.info["model_id"] == CHECKPOINT for h in handles)
    assert "deployed checkpoint" in handles[0].info["reason"]
    for got, want in zip(results, local):
        np.testing.assert_array_equal(got.codes, want.codes.numpy())  # same seed -> the same tokens
        np.testing.assert_allclose(got.audio, want.audio, atol=1e-5)
        assert got.sample_rate == want.sample_rate
    assert {data["model"]["replica"] for data, _ in seps} <= {*[h.info["replica"] for _, h in seps]}
    for (data, _), want in zip(seps, local_seps):
        assert list(data["stems"]) == list(want.stems)
        for name in want.stems:
            np.testing.assert_allclose(data["stems"][name], want.stems[name], atol=1e-4)


def test_a_killed_replica_is_retried_once_on_the_other_and_every_job_succeeds(cluster, make_client, reference):
    import ray
    from ray import serve

    settings, _ = cluster
    handle = serve.get_deployment_handle(rs.MUSICGEN_DEPLOYMENT, app_name=rs.musicgen_app(CHECKPOINT))

    async def scenario():
        async with make_client(engine_url="ray:auto", preview_every_s=0.0) as (client, app):
            jobs = []
            for i in range(4):
                res = await client.call_tool("generate_music", {"prompt": PROMPTS[i], "duration_s": 6.0,
                                                                "backend": "musicgen", "seed": 40 + i,
                                                                "wait_seconds": 0})
                assert not res.is_error, res
                jobs.append(res.structured_content["job_id"])
            deadline = time.monotonic() + 60
            victim = None
            while victim is None and time.monotonic() < deadline:  # all four decoding: no request still on its way
                stats = await _replica_stats(handle)
                if sum(len(s["live"]) for s in stats.values()) == len(jobs):
                    victim = max(stats.values(), key=lambda s: len(s["live"]))
                await asyncio.sleep(0.1)
            assert victim is not None, "the requests never all reached the replicas"
            ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
            done = []
            for job_id in jobs:
                job = (await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 1})).structured_content
                while job["status"] in ("queued", "running"):
                    job = (await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 25})
                           ).structured_content
                done.append(job)
            return victim, done

    victim, done = asyncio.run(scenario())
    assert [j["status"] for j in done] == ["succeeded"] * 4, done
    retried = [j for j in done if j["result"]["model"]["engine_retries"] == 1]
    assert len(retried) == len(victim["live"]) >= 1, (victim, [j["result"]["model"] for j in done])
    assert all(j["result"]["model"]["engine_retries"] in (0, 1) for j in done)


def test_a_request_cancelled_through_the_server_stops_on_its_replica(cluster, make_client):
    from ray import serve

    handle = serve.get_deployment_handle(rs.MUSICGEN_DEPLOYMENT, app_name=rs.musicgen_app(CHECKPOINT))

    async def scenario():
        async with make_client(engine_url="ray:auto", preview_every_s=0.0) as (client, _app):
            res = await client.call_tool("generate_music", {"prompt": "slow ambient pad", "duration_s": 60.0,
                                                            "backend": "musicgen", "seed": 5, "wait_seconds": 0})
            assert not res.is_error and res.structured_content, res
            job_id = res.structured_content["job_id"]
            holder, deadline = None, time.monotonic() + 60
            while holder is None and time.monotonic() < deadline:
                holder = next((s for s in (await _replica_stats(handle)).values() if s["live"] and s["steps"]), None)
                await asyncio.sleep(0.1)
            assert holder is not None, "the request never reached a replica"
            request_id = holder["live"][0]
            await client.call_tool("cancel_job", {"job_id": job_id})
            job = (await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 10})).structured_content
            stopped, deadline = None, time.monotonic() + 15
            while stopped is None and time.monotonic() < deadline:
                mine = (await _replica_stats(handle)).get(holder["replica"])
                if mine and request_id in mine["cancelled"] and request_id not in mine["live"]:
                    stopped = mine
                await asyncio.sleep(0.2)
            return job, request_id, stopped

    job, request_id, stopped = asyncio.run(scenario())
    assert job["status"] == "cancelled", job
    assert stopped is not None, f"replica never cancelled {request_id}"
    time.sleep(1.0)
    later = asyncio.run(_replica_stats(handle))[stopped["replica"]]
    assert later["load"].get(CHECKPOINT, {}).get("running", 0) == 0, later  # its slot is free
    assert later["steps"] - stopped["steps"] <= 1, (stopped, later)  # at most the step already under way
    time.sleep(0.5)
    assert asyncio.run(_replica_stats(handle))[stopped["replica"]]["steps"] == later["steps"]  # then none


def test_separate_stems_runs_on_a_demucs_replica(cluster, make_client, tmp_path):
    """The server has no Demucs weights of its own: with ECHOTUNE_ENGINE_URL=ray:auto, model=auto finds the deployed
    htdemucs and the stems come from a replica, the same as the in-process runner on the same weights."""
    from tests.audio.conftest import TOOLSETS, write_wav

    settings, _ = cluster
    allowed = tmp_path / "allowed"
    mix = (0.1 * np.random.default_rng(3).standard_normal((22050 * 2, 1))).astype(np.float32)
    path = write_wav(allowed / "mono.wav", mix, 22050, subtype="FLOAT")
    progress = []

    async def on_progress(p, total, message):
        progress.append(message)

    async def scenario():
        async with make_client(engine_url="ray:auto", toolsets=TOOLSETS, models_dir=tmp_path / "no-weights") as (
                client, _app):
            return await run_job(client, "separate_stems", {"audio": path, "stems": ["vocals"], "output_format": "wav"},
                                 on_progress)

    job = asyncio.run(scenario())
    assert job["status"] == "succeeded", job
    model = job["result"]["model"]
    assert model["model_id"] == "htdemucs" and model["engine_retries"] == 0 and model["replica"], model
    assert model["weights_revision"] == "test-random-init" and any("segment" in m for m in progress), progress
