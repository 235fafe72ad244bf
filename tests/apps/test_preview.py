"""echotune://artifacts/{id}/preview: what the in-chat player and mixer play.

A 3-minute piece must come back as one small Ogg file (under 4 MB as the issue asks, and under the 1 MiB an
MCP client of the SDK accepts in one streamable-HTTP message), decode to the right length, be cached for its
owner, and be out of reach of every other principal.
"""

from __future__ import annotations

import base64
import io
import time
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.shared.exceptions import MCPError

from echotune_mcp.auth.context import LOCAL, VerifiedToken
from echotune_mcp.music.preview import MAX_BYTES, WIRE_BUDGET

SR = 44_100
SECONDS = 180.0
SDK_SSE_EVENT_CAP = 1024 * 1024  # mcp.client.streamable_http.DEFAULT_MAX_SSE_EVENT_SIZE


def music(seconds: float = SECONDS, sr: int = SR) -> np.ndarray:
    """Stereo material with the density of a mix: a chord that moves, a pulsing bass, a noisy hi-hat."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(7)
    chord = sum(0.12 * np.sin(2 * np.pi * f * (1 + 0.01 * np.sin(0.3 * t)) * t) for f in (220, 277.2, 329.6))
    bass = 0.3 * np.sin(2 * np.pi * 55 * t) * (0.5 + 0.5 * np.sign(np.sin(2 * np.pi * 2 * t)))
    hat = 0.05 * rng.standard_normal(t.size) * (np.mod(t * 4, 1) < 0.05)
    return np.stack([chord + bass + hat, 0.8 * chord + bass - hat], axis=1).astype(np.float32)


def encoded(y: np.ndarray, fmt: str = "WAV", subtype: str | None = None, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@contextmanager
def as_user(sub: str):
    token = VerifiedToken(token="t", client_id="cli", scopes=["echotune:read", "echotune:write"], subject=sub,
                          issuer="https://idp.example", amr=["pwd"])
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield
    finally:
        auth_context_var.reset(reset)


async def read_preview(client, art_id: str):
    res = await client.read_resource(f"echotune://artifacts/{art_id}/preview")
    [content] = res.contents
    return content


async def test_three_minute_preview_is_small_decodes_and_is_cached(make_client):
    async with make_client(toolsets=("jobs", "artifacts")) as (client, app):
        rec = await app.artifacts.create(owner=LOCAL, data=encoded(music()), kind="audio", media_type="audio/wav",
                                         name="three-minutes.wav")
        t0 = time.monotonic()
        first = await read_preview(client, rec.id)
        encode_s = time.monotonic() - t0
        assert first.mime_type == "audio/ogg"
        wire = len(first.blob)  # base64 text, as carried in the message
        data = base64.b64decode(first.blob)
        assert wire < 4_000_000 and wire < SDK_SSE_EVENT_CAP - 16 * 1024, wire
        assert len(data) <= MAX_BYTES and WIRE_BUDGET == SDK_SSE_EVENT_CAP
        decoded, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        assert abs(decoded.shape[0] / sr - SECONDS) < 0.05
        assert decoded.shape[1] == 2  # stereo kept: the mixer's pan must be audible
        assert 0.05 < float(np.abs(decoded).max()) <= 1.0

        # Cached for its owner: the second read is the same file without encoding again.
        doc = await app.storage.collection("idempotency").get(LOCAL, f"preview-v1-{rec.sha256}")
        assert doc is not None and doc["owner"] == LOCAL and doc["codec"] == "opus"
        t0 = time.monotonic()
        again = await read_preview(client, rec.id)
        assert again.blob == first.blob
        assert time.monotonic() - t0 < max(0.5, encode_s / 2)


async def test_preview_is_owner_scoped(make_client):
    async with make_client(toolsets=("jobs", "artifacts")) as (client, app):
        rec = await app.artifacts.create(owner=LOCAL, data=encoded(music(5.0)), kind="audio",
                                         media_type="audio/wav", name="mine.wav")
        assert base64.b64decode((await read_preview(client, rec.id)).blob)[:4] == b"OggS"
        with as_user("mallory"):
            with pytest.raises(MCPError) as err:
                await read_preview(client, rec.id)
            assert "list_artifacts" in str(err.value)  # the not-found of another's id, nothing of its content
        others = await app.storage.collection("idempotency").find(None, {"key": f"preview:{rec.sha256}"})
        assert [d["owner"] for d in others.items] == [LOCAL]


async def test_preview_of_non_audio_says_so(make_client):
    async with make_client(toolsets=("jobs", "artifacts")) as (client, app):
        rec = await app.artifacts.create(owner=LOCAL, data=b"{}", kind="json", media_type="application/json",
                                         name="x.json")
        with pytest.raises(MCPError, match="not audio"):
            await read_preview(client, rec.id)


def test_preview_of_a_three_minute_piece_crosses_real_http_with_the_sdk_client(tmp_path):
    """Over streamable HTTP the answer is one SSE event; the SDK client's default cap (1 MiB) must hold it."""
    import anyio
    from mcp import Client

    from tests.node.conftest import _start_http_server

    upload = encoded(music(sr=48_000), "OGG", "OPUS", sr=48_000)  # 3 minutes, well under the 4 MiB request cap
    servers = _start_http_server(tmp_path)
    server = next(servers)
    try:
        async def run():
            with anyio.fail_after(120):
                return await talk()

        async def talk():
            async with Client(server.url) as client:
                made = await client.call_tool("import_audio", {"data_base64": base64.b64encode(upload).decode(),
                                                               "filename": "three-minutes.ogg"})
                assert not made.is_error, made.content
                content = await read_preview(client, made.structured_content["artifact_id"])
                data = base64.b64decode(content.blob)
                decoded, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
                assert abs(decoded.shape[0] / sr - SECONDS) < 0.05
                return len(content.blob)

        wire = anyio.run(run)
        assert wire < SDK_SSE_EVENT_CAP
    finally:
        servers.close()


async def test_cached_preview_goes_with_delete_my_data(make_client):
    """The cache holds a listenable copy of the owner's audio: erasure must take it with everything else."""
    from echotune_mcp.privacy.delete import DeleteReport, delete_principal

    async def progress(fraction, message):
        pass

    async with make_client(toolsets=("jobs", "artifacts")) as (client, app):
        rec = await app.artifacts.create(owner=LOCAL, data=encoded(music(3.0)), kind="audio",
                                         media_type="audio/wav", name="erase-me.wav")
        await read_preview(client, rec.id)
        cache = app.storage.collection("idempotency")
        assert await cache.count(LOCAL, {"key": f"preview:{rec.sha256}"}) == 1
        report = await delete_principal(app, LOCAL, keep_job=None, progress=progress,
                                        report=DeleteReport(principal=LOCAL, complete=False))
        assert report.complete, report
        assert await cache.count(LOCAL, {"key": f"preview:{rec.sha256}"}) == 0


def test_vorbis_fallback_and_no_encoder(monkeypatch):
    """A libsndfile without Opus writes Ogg Vorbis within the same budget; one without Ogg says what to do."""
    from echotune_mcp.music import preview

    monkeypatch.setattr(preview, "codecs", lambda: ["VORBIS"])
    small = preview.make_preview(music(20.0), SR, max_bytes=120_000)
    assert small.codec == "vorbis" and len(small.data) <= 120_000
    decoded, sr = sf.read(io.BytesIO(small.data), always_2d=True)
    assert abs(decoded.shape[0] / sr - 20.0) < 0.05
    monkeypatch.setattr(preview, "codecs", lambda: [])
    with pytest.raises(preview.PreviewError, match=r"\.\.\./content"):
        preview.make_preview(music(1.0), SR)


async def test_artifact_results_link_the_preview_of_audio_only(make_client):
    async with make_client(toolsets=("jobs", "artifacts")) as (client, app):
        audio = await app.artifacts.create(owner=LOCAL, data=encoded(music(1.0)), kind="audio",
                                           media_type="audio/wav", name="a.wav")
        other = await app.artifacts.create(owner=LOCAL, data=b"{}", kind="json", media_type="application/json",
                                           name="b.json")
        got = (await client.call_tool("get_artifact", {"artifact": audio.id})).structured_content
        assert got["preview_uri"] == f"echotune://artifacts/{audio.id}/preview"
        assert base64.b64decode((await read_preview(client, audio.id)).blob)[:4] == b"OggS"
        assert (await client.call_tool("get_artifact", {"artifact": other.id})).structured_content["preview_uri"] is None
