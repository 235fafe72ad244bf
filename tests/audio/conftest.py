"""Audio-toolset fixtures: the toolset enabled, small audio files in the allowed root, a tiny Demucs on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import shared_path

TOOLSETS = ("jobs", "artifacts", "audio")


@pytest.fixture(autouse=True)
def _close_runners():
    """Each test gets fresh separation runners (they hold worker threads and models)."""
    yield
    from echotune_mcp.engine import separation_backend

    separation_backend.close_runners()


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    return tmp_path / "allowed"


def dev_excerpt(song: str, seconds: float, start_s: float = 5.0) -> tuple[np.ndarray, int, dict[str, np.ndarray]]:
    """A stretch of a real dev song and its true stems."""
    base = shared_path("data", "separation", "dev", song)
    info = sf.info(str(base / "mixture.flac"))
    start, frames = int(start_s * info.samplerate), int(seconds * info.samplerate)
    read = lambda name: sf.read(str(base / f"{name}.flac"), start=start, frames=frames, dtype="float32")[0]
    return read("mixture"), info.samplerate, {s: read(s) for s in ("drums", "bass", "other", "vocals")}


def write_wav(path: Path, samples: np.ndarray, sr: int, subtype: str = "PCM_24") -> str:
    sf.write(str(path), samples, sr, subtype=subtype)
    return str(path)


def text_of(result) -> str:
    return " ".join(b.text for b in result.content if getattr(b, "type", "") == "text")


async def run_job(client, tool: str, args: dict, on_progress=None) -> dict:
    result = await client.call_tool(tool, {**args, "wait_seconds": 25}, progress_callback=on_progress)
    assert not result.is_error, text_of(result)
    data = result.structured_content
    while data["status"] in ("queued", "running"):
        result = await client.call_tool("get_job", {"job_id": data["job_id"], "wait_seconds": 25})
        data = result.structured_content
    return data


TINY_KWARGS = dict(sources=["drums", "bass", "other", "vocals"], channels=8, depth=2, nfft=512, t_layers=1, t_heads=2,
                   segment=1.5, dconv_comp=4)


def save_tiny_htdemucs(folder: Path, name: str = "htdemucs", seed: int = 0) -> None:
    """A randomly initialised tiny HTDemucs stored in the Hugging Face layout ``models pull`` downloads."""
    import torch
    from demucs.htdemucs import HTDemucs
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = HTDemucs(**TINY_KWARGS)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "tiny0001.safetensors"),
              metadata={"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json.dumps(TINY_KWARGS)})
    (folder / f"{name}.yaml").write_text("models: ['tiny0001']\n")
    (folder / ".revision").write_text("test-random-init\n")
