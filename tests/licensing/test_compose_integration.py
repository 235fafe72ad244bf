"""The real composer pipeline with credentials on: every artifact's provenance is complete, every
audio artifact is signed, and the mix's licence check traces the soundfont the render used."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from echotune_mcp.licensing import assert_provenance_complete, install_hooks

from .conftest import text_of


@pytest.fixture
def compose_client(settings):
    from mcp import Client

    from echotune_mcp.app import App
    from echotune_mcp.server import build_server
    from echotune_mcp.toolsets import compose, licensing

    @asynccontextmanager
    async def factory():
        app = App(replace(settings, toolsets=tuple(t for t in settings.toolsets)))
        server = build_server(app)
        registered = server.echotune_toolsets  # type: ignore[attr-defined]
        if "compose" not in registered:
            compose.toolset.register(server, read_only_mode=False)
        if "licensing" not in registered:
            licensing.toolset.register(server, read_only_mode=False)
        async with app:
            install_hooks(app)
            async with Client(server, raise_exceptions=True) as client:
                yield client, app

    return factory


async def test_generated_piece_is_signed_traced_and_complete(compose_client):
    pytest.importorskip("fluidsynth")
    async with compose_client() as (client, app):
        r = await client.call_tool("generate_music", {"prompt": "calm piano", "duration_s": 4, "seed": 3,
                                                      "backend": "composer", "wait_seconds": 25})
        assert not r.is_error, text_of(r)
        job = r.structured_content
        while job["status"] in ("queued", "running"):
            job = (await client.call_tool("get_job", {"job_id": job["job_id"], "wait_seconds": 20})).structured_content
        assert job["status"] == "succeeded", job
        mix_id = job["result"]["mix_artifact_id"]
        arts, _ = await app.artifacts.list("local", job_id=job["job_id"], limit=100)
        for rec in arts:
            if rec.kind != "manifest":
                assert_provenance_complete(rec)
        audio = [a for a in arts if a.kind in ("audio", "stem", "preview")]
        manifests = [a for a in arts if a.kind == "manifest"]
        assert audio and len(manifests) == len(audio)
        r = await client.call_tool("verify_credentials", {"artifact": mix_id})
        assert r.structured_content["valid"], text_of(r)
        r = await client.call_tool("check_usage", {"artifact": mix_id, "use": "commercial_release"})
        out = r.structured_content
        sf = next(x for x in out["reasons"] if x["factor"] == "soundfont")
        assert sf["artifact_id"] == mix_id and out["decision"] in ("allowed", "allowed_with_conditions")
        r = await client.call_tool("get_provenance", {"artifact": mix_id, "depth": 2})
        kinds = {n["kind"] for n in r.structured_content["nodes"]}
        assert {"audio", "stem", "midi", "arrangement"} <= kinds
