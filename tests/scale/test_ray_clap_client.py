"""``ECHOTUNE_ENGINE_URL=ray://HOST:PORT`` (Ray Client, how a server outside the cluster joins it): a head started by
``ray start --head --ray-client-server-port`` on 127.0.0.1 (2 CPUs, no dashboard, usage statistics and token
authentication off: the test's client has no token), the tiny CLAP deployed through the client, and RayEngine on the
``ray://`` URL embedding on it exactly as in-process.

Its own module: Ray Client cannot share a process with an in-process cluster, and the other scale modules shut theirs
down at module end. The head's processes are ended by their ids (those whose command line names this test's
temporary Ray folder), never by ``ray stop``, which would end every Ray cluster on the machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("ray.serve")

from echotune_mcp.config import Settings
from echotune_mcp.engine import ray_serve as rs
from echotune_mcp.engine.ray_client import RayEngine
from echotune_mcp.recommend import sound
from tests.recommend.test_sound import TINY_DIM, _tone, save_tiny_clap


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_naming(text: str) -> list[int]:
    """Processes whose command line or open files name ``text`` (Ray's agents retitle themselves, e.g.
    ``ray::DashboardAgent``, but keep their logs in the cluster's temporary folder open)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            names = [Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    names.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    continue
        except OSError:
            continue
        if any(text in n for n in names):
            out.append(int(pid))
    return out


@pytest.fixture(scope="module")
def client_cluster(tmp_path_factory):
    """(settings with the tiny CLAP, the ray:// URL): a Ray head with a client server, echotune-clap deployed."""
    import ray
    from ray import serve

    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.is_file():
        pytest.fail(f"no `ray` command beside {sys.executable}")
    env = pytest.MonkeyPatch()
    env.setenv("RAY_USAGE_STATS_ENABLED", "0")
    env.setenv("RAY_AUTH_MODE", "disabled")  # the client below has no token; the head binds 127.0.0.1 only
    root = tmp_path_factory.mktemp("ray-client")
    settings = Settings(data_dir=root / "data", allowed_roots=(root,))
    save_tiny_clap(settings.weights_dir / settings.clap_model)
    temp = tempfile.mkdtemp(prefix="echotune-rayc-")  # short: Ray's socket paths must fit 107 characters
    gcs, client = _free_port(), _free_port()
    try:
        started = subprocess.run(
            [str(ray_bin), "start", "--head", "--port", str(gcs), "--ray-client-server-port", str(client),
             "--num-cpus", "2", "--include-dashboard", "false", "--node-ip-address", "127.0.0.1", "--temp-dir", temp,
             "--disable-usage-stats"], env=dict(os.environ), capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr[-2000:]
        url = f"ray://127.0.0.1:{client}"
        rs.deploy(settings, rs.DeployPlan(clap=True, replicas_min=1, replicas_max=1, cpus_per_replica=0.25),
                  address=url, wait_timeout_s=240)
        yield settings, url
    finally:
        try:
            if ray.is_initialized():
                try:
                    serve.shutdown()
                finally:
                    ray.shutdown()
        finally:
            for _ in range(2):  # the head's processes (and workers they started), by id
                for pid in _pids_naming(temp) + _pids_naming(f"127.0.0.1:{gcs}"):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.5)
            shutil.rmtree(temp, ignore_errors=True)
            env.undo()
            from echotune_mcp.engine import musicgen_backend

            musicgen_backend._ray_engines.clear()
            sound.clear_embedders()


def test_a_ray_client_url_embeds_on_the_cluster_like_in_process(client_cluster):
    settings, url = client_cluster
    local = sound.ClapEmbedder.from_dir(sound.clap_dir(settings))
    engine = RayEngine(url)
    texts = ["warm lofi hip hop", "fast techno"]
    clip = (_tone(220, 1.5), 44100)

    async def scenario():
        return await engine.clap_info(), await engine.clap_text(texts), await engine.clap_audios([clip])

    assert engine.clap_deployed()
    info, text, audio = asyncio.run(scenario())
    assert info["model_id"] == settings.clap_model and info["dim"] == TINY_DIM, info
    np.testing.assert_allclose(text, local.text(texts), atol=1e-5)
    np.testing.assert_allclose(audio, local.audios([clip]), atol=1e-5)
    rows, blocking_info = engine.clap_text_blocking(texts)  # the fit's path
    np.testing.assert_allclose(rows, local.text(texts), atol=1e-5)
    assert blocking_info["model_id"] == settings.clap_model
