"""``ECHOTUNE_ENGINE_URL=ray://HOST:PORT`` (Ray Client, how a server outside the cluster joins it): a head started by
``ray start --head --ray-client-server-port`` on 127.0.0.1 (2 CPUs, no dashboard, usage statistics and token
authentication off: the test's client has no token), the tiny CLAP deployed through the client, and RayEngine on the
``ray://`` URL embedding on it exactly as in-process.

Its own module: Ray Client cannot share a process with an in-process cluster, and the other scale modules shut theirs
down at module end. The head's processes are ended by their ids (those whose command line names this test's
temporary Ray folder), never by ``ray stop``, which would end every Ray cluster on the machine.
"""

from __future__ import annotations

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


# The Ray Client side runs in its own process: a Ray Client connection left in the pytest process made the
# interpreter crash at exit (SIGSEGV in Ray's client threads after every test had passed, so `make test` failed).
CLIENT = r"""
import asyncio, json, os, sys
from pathlib import Path

from echotune_mcp.config import Settings
from echotune_mcp.engine import ray_serve as rs
from echotune_mcp.engine.ray_client import RayEngine
from tests.recommend.test_sound import _tone

root, url = Path(sys.argv[1]), sys.argv[2]
settings = Settings(data_dir=root / "data", allowed_roots=(root,))
rs.deploy(settings, rs.DeployPlan(clap=True, replicas_min=1, replicas_max=1, cpus_per_replica=0.25),
          address=url, wait_timeout_s=240)
engine = RayEngine(url)
texts = json.loads(sys.argv[3])
clip = (_tone(220, 1.5), 44100)

async def scenario():
    return await engine.clap_info(), await engine.clap_text(texts), await engine.clap_audios([clip])

deployed = engine.clap_deployed()
info, text, audio = asyncio.run(scenario())
rows, blocking_info = engine.clap_text_blocking(texts)  # the fit's path
print(json.dumps({"deployed": bool(deployed), "info": info, "text": [list(map(float, r)) for r in text],
                  "audio": [list(map(float, r)) for r in audio], "rows": [list(map(float, r)) for r in rows],
                  "blocking_info": blocking_info}, default=str), flush=True)
# Ray Client's threads can crash the interpreter at exit; everything this process had to say is said.
os._exit(0)
"""

TEXTS = ["warm lofi hip hop", "fast techno"]


@pytest.fixture(scope="module")
def client_cluster(tmp_path_factory):
    """(settings with the tiny CLAP, the ray:// URL, the client process's answers): a Ray head with a client server;
    a separate process deploys echotune-clap through ray:// and embeds through RayEngine."""
    import json

    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.is_file():
        pytest.fail(f"no `ray` command beside {sys.executable}")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled"}  # the client below has no token; the head binds 127.0.0.1 only
    root = tmp_path_factory.mktemp("ray-client")
    settings = Settings(data_dir=root / "data", allowed_roots=(root,))
    save_tiny_clap(settings.weights_dir / settings.clap_model)
    temp = tempfile.mkdtemp(prefix="echotune-rayc-")  # short: Ray's socket paths must fit 107 characters
    gcs, client = _free_port(), _free_port()
    try:
        started = subprocess.run(
            [str(ray_bin), "start", "--head", "--port", str(gcs), "--ray-client-server-port", str(client),
             "--num-cpus", "2", "--include-dashboard", "false", "--node-ip-address", "127.0.0.1", "--temp-dir", temp,
             "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr[-2000:]
        url = f"ray://127.0.0.1:{client}"
        for attempt in range(2):
            proc = subprocess.run([sys.executable, "-c", CLIENT, str(root), url, json.dumps(TEXTS)], env=env,
                                  cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300)
            # The head starts one "specific server" per client connection, with a start-up deadline that a loaded
            # 2-core machine can miss (seen once in CI); that start-up is Ray's, so it gets one more try.
            if proc.returncode == 0 or "Starting Ray client server failed" not in proc.stderr:
                break
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield settings, url, json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        for _ in range(2):  # the head's processes (and workers they started), by id
            for pid in _pids_naming(temp) + _pids_naming(f"127.0.0.1:{gcs}"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.5)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_ray_client_url_embeds_on_the_cluster_like_in_process(client_cluster):
    settings, _url, got = client_cluster
    local = sound.ClapEmbedder.from_dir(sound.clap_dir(settings))
    clip = (_tone(220, 1.5), 44100)
    assert got["deployed"]
    assert got["info"]["model_id"] == settings.clap_model and got["info"]["dim"] == TINY_DIM, got["info"]
    np.testing.assert_allclose(np.array(got["text"]), local.text(TEXTS), atol=1e-5)
    np.testing.assert_allclose(np.array(got["audio"]), local.audios([clip]), atol=1e-5)
    np.testing.assert_allclose(np.array(got["rows"]), local.text(TEXTS), atol=1e-5)  # the fit's blocking path
    assert got["blocking_info"]["model_id"] == settings.clap_model
