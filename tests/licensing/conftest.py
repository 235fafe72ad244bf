"""Fixtures for the licensing tests: an app with the created-hook installed, and an MCP client
whose server has the licensing toolset, whether or not the server already enables it by default."""

from __future__ import annotations

import io
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from echotune_mcp.app import App
from echotune_mcp.licensing import Licensing, install_hooks
from echotune_mcp.music.audio_io import encode_audio

TIMGM = {"path": "/sf/TimGM6mb.sf2", "name": "TimGM6mb.sf2", "sha256": "a" * 64,
         "license": {"id": "GPL-2.0-or-later", "note": "TimGM6mb by Tim Brechbill"}}
FLUIDR3 = {"path": "/sf/FluidR3_GM.sf2", "name": "FluidR3_GM.sf2", "sha256": "b" * 64,
           "license": {"id": "MIT", "note": "FluidR3_GM by Frank Wen"}}
ODD_SF = {"path": "/sf/Mystery.sf2", "name": "Mystery.sf2", "sha256": "c" * 64, "license": "unknown"}
COMPOSER = {"model_id": "echotune-composer", "backend": "composer", "weights_license": None}
MUSICGEN = {"model_id": "facebook/musicgen-small", "backend": "musicgen", "weights_license": "CC-BY-NC-4.0",
            "weights_revision": "main"}
DEMUCS = {"model_id": "htdemucs", "backend": "demucs", "weights_license": "MIT", "weights_revision": "e51eebcc"}


def wav(seed: int = 0, seconds: float = 0.2, sr: int = 8000) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_audio((0.1 * rng.standard_normal((int(seconds * sr), 1))).astype(np.float32), sr, "wav")


def gen_prov(model: dict[str, Any] | None, soundfont: dict[str, Any] | None, tool: str = "generate_music",
             backend: str | None = None) -> dict[str, Any]:
    prov: dict[str, Any] = {"tool": tool, "backend": backend or (model or {}).get("backend", "composer"),
                            "model": model, "prompt": "calm piano", "parameters": {"bpm": 90}, "seed": 7}
    if soundfont is not None:
        prov["soundfont"] = soundfont
    return prov


UPLOAD_PROV = {"tool": "import_audio", "source": {"type": "upload", "filename": "take.wav"}, "rights": "unknown"}


@pytest.fixture
def licensed_app(settings):
    """``async with licensed_app() as (app, lic)``: a started app with content credentials enabled."""

    @asynccontextmanager
    async def factory(**overrides: Any):
        app = App(replace(settings, **overrides) if overrides else settings)
        async with app:
            install_hooks(app)
            yield app, Licensing(app)

    return factory


@pytest.fixture
def lic_client(settings):
    """``async with lic_client() as (client, app)``: an MCP client with the licensing toolset and hooks."""
    from mcp import Client

    from echotune_mcp.server import build_server
    from echotune_mcp.toolsets import licensing

    @asynccontextmanager
    async def factory(**overrides: Any):
        app = App(replace(settings, **overrides) if overrides else settings)
        server = build_server(app)
        if "licensing" not in server.echotune_toolsets:  # type: ignore[attr-defined]
            licensing.toolset.register(server, read_only_mode=app.settings.read_only)
        async with app:
            install_hooks(app)
            async with Client(server, raise_exceptions=True) as client:
                yield client, app

    return factory


def text_of(result) -> str:
    return " ".join(b.text for b in result.content if getattr(b, "type", "") == "text")


def as_bytes(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)
