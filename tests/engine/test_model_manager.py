"""Model cards, pull/verify/load against a local folder, memory budget, and the `models` CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from echotune_mcp.engine.device import pick_device
from echotune_mcp.engine.model_cards import load_cards
from echotune_mcp.engine.model_manager import ModelManager, ModelMissing
from tests.audio.conftest import run_job, save_tiny_htdemucs, write_wav


def test_every_card_is_complete_and_licensed():
    cards = load_cards()
    assert {"musicgen-small", "musicgen-medium", "musicgen-large", "musicgen-melody",
            "htdemucs", "htdemucs_6s", "htdemucs_ft"} <= set(cards)
    for card in cards.values():
        assert card.hf_repo and card.revision and card.license and card.parameters > 0 and card.memory_mb > 0
    assert all(c.license == "CC-BY-NC-4.0" for c in cards.values() if c.backend.startswith("musicgen"))
    assert len(cards["htdemucs_6s"].sources) == 6


def test_missing_model_error_says_how_to_fix(settings):
    manager = ModelManager(settings)
    with pytest.raises(ModelMissing, match=r"musicgen-small is not downloaded: run `echotune-mcp models pull "
                                           r"musicgen-small`, or use backend=composer"):
        manager.require("musicgen-small")
    with pytest.raises(ValueError, match="known models"):
        manager.card("no-such-model")


def test_pull_from_folder_verify_and_detect_damage(settings, tmp_path):
    src = tmp_path / "src"
    save_tiny_htdemucs(src)
    manager = ModelManager(settings)
    manifest = manager.pull("htdemucs", from_dir=src, log=lambda _m: None)
    assert manifest["revision"] == "local" and "tiny0001.safetensors" in manifest["files"]
    assert manager.is_downloaded("htdemucs") and manager.verify("htdemucs") == []
    assert manager.weights_dir.stat().st_mode & 0o777 == 0o700  # a new weights folder is private to the user
    weights = manager.folder("htdemucs") / "tiny0001.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert manager.verify("htdemucs") == ["changed file tiny0001.safetensors (sha256 differs from the pull)"]
    (manager.folder("htdemucs") / "htdemucs.yaml").unlink()
    assert "missing file htdemucs.yaml" in manager.verify("htdemucs")


def test_lru_eviction_under_memory_budget(settings, tmp_path):
    manager = ModelManager(settings, budget_mb=2000)
    for mid in ("htdemucs", "htdemucs_6s", "htdemucs_ft"):
        src = tmp_path / mid
        save_tiny_htdemucs(src, name=mid)
        manager.pull(mid, from_dir=src, log=lambda _m: None)
    loads = []

    def loader(folder, card):
        loads.append(card.id)
        return {"folder": folder}

    manager.get("htdemucs", loader)       # 900 MB
    manager.get("htdemucs_6s", loader)    # +800 = 1700 MB
    manager.get("htdemucs", loader)       # cache hit; htdemucs becomes most recent
    manager.get("htdemucs_ft", loader)    # +2600: evicts least recently used until under budget
    assert loads == ["htdemucs", "htdemucs_6s", "htdemucs_ft"]
    assert manager.loaded() == ["htdemucs_ft"]


def test_device_choice_on_cpu_and_bad_override():
    choice = pick_device(None)
    assert choice.device in ("cpu", "cuda", "mps") and choice.dtype
    assert pick_device("cpu").dtype == "float32"
    with pytest.raises(ValueError, match="not a device"):
        pick_device("tpu")


async def test_pulled_weights_serve_separate_stems(make_client, settings, tmp_path):
    import numpy as np

    src = tmp_path / "src"
    save_tiny_htdemucs(src)
    ModelManager(settings).pull("htdemucs", from_dir=src, log=lambda _m: None)
    t = np.arange(44100) / 44100
    path = write_wav(settings.allowed_roots[0] / "in.wav", np.stack([np.sin(2 * np.pi * 110 * t)] * 2, 1) * 0.3, 44100)
    async with make_client() as (client, _):
        job = await run_job(client, "separate_stems", {"audio": path, "model": "htdemucs"})
    assert job["result"]["model"]["model_id"] == "htdemucs"
    assert job["result"]["model"]["weights_revision"] == "local"
    assert sorted(a["meta"]["stem"] for a in job["artifacts"] if a["kind"] == "stem") == ["bass", "drums", "other",
                                                                                          "vocals"]


def test_models_cli_list_pull_verify(settings, tmp_path):
    src = tmp_path / "src"
    save_tiny_htdemucs(src)
    env = {**os.environ, "ECHOTUNE_DATA_DIR": str(settings.data_dir)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "echotune_mcp", "models", *args], capture_output=True,
                              text=True, env=env, timeout=120)

    assert "musicgen-small" in cli("list").stdout
    assert cli("verify", "htdemucs").returncode == 1
    assert cli("pull", "htdemucs", "--from-dir", str(src)).returncode == 0
    ok = cli("verify", "htdemucs")
    assert ok.returncode == 0 and "ok" in ok.stdout
    listed = cli("list").stdout
    assert any(line.startswith("htdemucs ") and "yes @ local" in line for line in listed.splitlines())
    bad = cli("pull", "nope")
    assert bad.returncode == 2 and "known models" in bad.stderr


def test_budget_closes_idle_least_recently_used_models_and_keeps_busy_ones(settings):
    class Held:
        def __init__(self, name, busy=False):
            self.name, self.is_busy, self.closed = name, busy, False

        def busy(self):
            return self.is_busy

        def close(self):
            self.closed = True

    manager = ModelManager(settings)
    mb = manager.card("htdemucs").memory_mb
    manager.budget_mb = 2 * mb  # room for two
    a, b, c = Held("a", busy=True), Held("b"), Held("c")
    manager.put("htdemucs", a, mb)
    manager.put("htdemucs_6s", b, mb)
    manager.put("htdemucs_ft", c, mb)  # over budget: a is older but busy, so b goes
    assert manager.loaded() == ["htdemucs", "htdemucs_ft"] and b.closed and not a.closed
    def not_there():
        raise LookupError("hand-placed weights missing")

    with pytest.raises(LookupError, match="hand-placed weights missing"):  # the backend's own check, not the manifest
        manager.get("htdemucs_6s", lambda folder, card: Held("x"), available=not_there)
    manager.close_all()
    assert a.closed and c.closed and manager.loaded() == []
