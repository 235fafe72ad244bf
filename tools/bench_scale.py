"""Requests per second and p50/p99 latency of MusicGen requests through Ray Serve against the in-process engine.

    .venv/bin/python tools/bench_scale.py [--requests 24] [--concurrency 8] [--duration 0.5]

A tiny random MusicGen (the tests' shape) so the numbers are about the serving path, not the model: the
in-process Engine, then one and two Serve replicas (1 CPU each, our continuous-batching engine inside) on a
local Ray cluster. ``overhead_ms`` is the p50 latency of one request at a time through Serve less the same
in-process, which is what Serve adds per request (routing, the streaming call, pickling events). Prints one
JSON line ``{"bench": "scale", ...}``. Needs the ml and scale extras; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _stats(latencies: list[float], wall: float) -> dict[str, float]:
    lat = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "rps": round(len(latencies) / wall, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1)}


async def _load(engine, n: int, concurrency: int, duration: float, model_id: str) -> dict[str, float]:
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            handle = await engine.generate(model_id=model_id, prompt="lofi beat with warm piano", duration_s=duration,
                                           seed=i, top_k=50)
            await handle.result()
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return _stats(latencies, time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=24)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=float, default=0.5, help="seconds of audio per request")
    p.add_argument("--sequential", type=int, default=30, help="one-at-a-time requests for the overhead figure")
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    import torch

    from echotune_mcp.config import Settings
    from echotune_mcp.engine import ray_serve as rs
    from echotune_mcp.engine.model_manager import ModelManager
    from echotune_mcp.engine.musicgen_backend import close_engines, get_engine
    from echotune_mcp.engine.ray_client import RayEngine
    from tests.engine.test_musicgen_tool import save_tiny_checkpoint

    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    settings = Settings(data_dir=root / "data", allowed_roots=(root,), max_generation_seconds=60.0)
    save_tiny_checkpoint(root / "tiny")
    ModelManager(settings).pull("musicgen-small", from_dir=root / "tiny", log=lambda _m: None)
    slots = args.concurrency
    out: dict[str, object] = {"bench": "scale", "model": "tiny random MusicGen (tests' shape)",
                              "requests": args.requests, "concurrency": args.concurrency,
                              "audio_s_per_request": args.duration, "cpus": os.cpu_count(), "slots": slots}

    torch.set_num_threads(1)  # like a 1-CPU replica
    engine = get_engine(Settings(**{**rs.replica_settings(settings), "engine_slots": slots}))
    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, namespace="echotune", log_to_driver=False,
             _node_ip_address="127.0.0.1", configure_logging=False)
    try:
        for replicas in (1, 2):
            plan = rs.DeployPlan(musicgen=["musicgen-small"], replicas_min=replicas, replicas_max=replicas,
                                 cpus_per_replica=1.0, slots=slots)
            t0 = time.perf_counter()
            rs.deploy(settings, plan, wait_timeout_s=300)
            deploy_s = time.perf_counter() - t0
            remote = RayEngine("ray:auto")

            async def run(replicas: int = replicas) -> dict[str, Any]:
                found: dict[str, Any] = {}
                await _load(remote, 2, 2, args.duration, "musicgen-small")  # warm both paths
                await _load(engine, 2, 2, args.duration, "musicgen-small")
                if replicas == 1:
                    # Per-request overhead: one request at a time, in-process and through Serve alternately (so
                    # other load on the machine hits both alike), 1 frame of audio each (the serving path, not
                    # the model, dominates).
                    local, served = [], []
                    for i in range(args.sequential):
                        for eng, into in ((engine, local), (remote, served)):
                            t = time.perf_counter()
                            await (await eng.generate(model_id="musicgen-small", prompt="lofi", duration_s=0.02,
                                                      seed=i)).result()
                            into.append(time.perf_counter() - t)
                    found["sequential_p50_ms"] = {"in_process": round(float(np.median(local)) * 1000, 1),
                                                  "serve": round(float(np.median(served)) * 1000, 1)}
                    found["overhead_ms"] = round((float(np.median(served)) - float(np.median(local))) * 1000, 1)
                    found["in_process"] = await _load(engine, args.requests, args.concurrency, args.duration,
                                                      "musicgen-small")
                found["serve"] = dict(await _load(remote, args.requests, args.concurrency, args.duration,
                                                  "musicgen-small"), deploy_s=round(deploy_s, 1))
                return found

            found = asyncio.run(run())
            out[f"serve_{replicas}_replica{'s' if replicas > 1 else ''}"] = found.pop("serve")
            out.update(found)
        out["loadavg_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine while this ran
    finally:
        from ray import serve

        close_engines()
        serve.shutdown()
        ray.shutdown()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
