"""Shared by the Ray Serve tests: one local Ray cluster, started and torn down the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def local_ray_cluster() -> Iterator[None]:
    """A local Ray (2 CPUs, loopback, no dashboard, no usage stats) for Serve deployments. After: Serve and Ray
    shut down, and the handles this process keeps to that cluster (RayEngine registry, CLAP embedders) dropped,
    so a later test never reaches a cluster that is gone."""
    import ray
    from ray import serve

    from echotune_mcp.engine import musicgen_backend
    from echotune_mcp.recommend import sound

    env = pytest.MonkeyPatch()
    env.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, namespace="echotune", log_to_driver=False,
             _node_ip_address="127.0.0.1", configure_logging=False)
    try:
        yield
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            env.undo()
            musicgen_backend._ray_engines.clear()
            sound.clear_embedders()
