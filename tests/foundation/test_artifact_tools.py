"""Artifact tools and resources through a real MCP client (in-memory transport)."""

from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pytest
import soundfile as sf
from mcp.shared.exceptions import MCPError

from echotune_mcp.audio_inputs import load_audio_input
from echotune_mcp.errors import BadInput, NotFound


def wav_bytes(seconds=0.5, sr=22050, channels=2, fmt="WAV", value=0.25) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    tone = (value * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([tone] * channels, axis=1), sr, format=fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def text_of(result) -> str:
    return " ".join(b.text for b in result.content if getattr(b, "type", "") == "text")


@pytest.mark.parametrize("fmt,media", [("WAV", "audio/wav"), ("FLAC", "audio/flac"), ("OGG", "audio/ogg"),
                                       ("MP3", "audio/mpeg")])
async def test_import_audio_each_format(make_client, fmt, media):
    async with make_client() as (client, _app):
        payload = wav_bytes(fmt=fmt)
        r = await client.call_tool("import_audio", {"data_base64": b64(payload), "filename": f"x.{fmt}"})
        assert not r.is_error, text_of(r)
        art = r.structured_content
        assert art["media_type"] == media and art["kind"] == "upload"
        assert abs(art["meta"]["duration_s"] - 0.5) < 0.06
        links = [b for b in r.content if b.type == "resource_link"]
        assert links and links[0].uri == art["content_uri"]
        content = await client.read_resource(art["content_uri"])
        assert content.contents[0].mime_type == media
        assert base64.b64decode(content.contents[0].blob) == payload  # the upload is kept byte for byte


@pytest.mark.parametrize("payload,needle", [
    (b"", "empty"),
    (b"this is not audio at all" * 10, "not a readable audio file"),
    (wav_bytes()[:60] + b"\x00" * 10, ""),
])
async def test_import_audio_refuses_bad_files(make_client, payload, needle):
    async with make_client() as (client, app):
        if not payload:
            r = await client.call_tool("import_audio", {"data_base64": "", "filename": "x.wav"})
            assert r.is_error and "data_base64" in text_of(r)
        else:
            r = await client.call_tool("import_audio", {"data_base64": b64(payload), "filename": "x.wav"})
            assert r.is_error and "data_base64" in text_of(r) and needle in text_of(r)
        assert (await app.storage.artifacts.count("local")) == 0, "a refused upload left a record behind"



async def test_import_audio_refuses_oversize_before_decoding_and_overlong(make_client):
    async with make_client(max_upload_bytes=10_000, max_audio_seconds=1.0) as (client, app):
        r = await client.call_tool("import_audio", {"data_base64": "A" * 20_000, "filename": "x.wav"})
        assert r.is_error and "at most 10000 bytes" in text_of(r)
        r = await client.call_tool("import_audio", {"data_base64": "@@@@", "filename": "x.wav"})
        assert r.is_error and "not valid base64" in text_of(r)
    async with make_client(max_audio_seconds=1.0) as (client, app):
        r = await client.call_tool("import_audio", {"data_base64": b64(wav_bytes(seconds=2.0, sr=8000)),
                                                    "filename": "long.wav"})
        assert r.is_error and "maximum is 1 s" in text_of(r)


async def test_artifact_resources_list_and_delete(make_client):
    async with make_client() as (client, app):
        ids = []
        for i in range(3):
            r = await client.call_tool("import_audio", {"data_base64": b64(wav_bytes(value=0.1 + i / 10)),
                                                        "filename": f"t{i}.wav"})
            ids.append(r.structured_content["artifact_id"])
        page1 = (await client.call_tool("list_artifacts", {"limit": 2, "kind": "upload"})).structured_content
        page2 = (await client.call_tool("list_artifacts", {"limit": 2, "kind": "upload", "cursor": page1["next_cursor"]})).structured_content
        assert [a["artifact_id"] for a in page1["artifacts"] + page2["artifacts"]] == ids[::-1]
        assert page2["next_cursor"] is None
        meta = await client.read_resource(f"echotune://artifacts/{ids[0]}")
        assert meta.contents[0].mime_type == "application/json"
        assert json.loads(meta.contents[0].text)["artifact_id"] == ids[0]
        png = await client.read_resource(f"echotune://artifacts/{ids[0]}/waveform.png")
        assert base64.b64decode(png.contents[0].blob)[:8] == b"\x89PNG\r\n\x1a\n"
        gone = await client.call_tool("delete_artifact", {"artifact": f"echotune://artifacts/{ids[0]}"})
        assert not gone.is_error
        with pytest.raises(MCPError) as err:
            await client.read_resource(f"echotune://artifacts/{ids[0]}")
        assert err.value.error.code == -32602 and ids[0] in err.value.error.data["uri"]
        again = await client.call_tool("get_artifact", {"artifact": ids[0]})
        assert again.is_error and "list_artifacts" in text_of(again)
        rec_sha = page1["artifacts"][-1]["sha256"]
        assert await app.storage.blobs.exists(rec_sha)


async def test_unknown_ids_and_out_of_range_numbers_are_named(make_client):
    async with make_client() as (client, _):
        r = await client.call_tool("get_job", {"job_id": "job_nope"})
        assert r.is_error and "job_nope" in text_of(r) and "list_jobs" in text_of(r)
        r = await client.call_tool("list_jobs", {"limit": 1000})
        assert r.is_error and "limit" in text_of(r) and "100" in text_of(r)
        r = await client.call_tool("get_job", {"job_id": "x", "wait_seconds": 99})
        assert r.is_error and "wait_seconds" in text_of(r) and "25" in text_of(r)
        r = await client.call_tool("list_jobs", {"status": "exploded"})
        assert r.is_error and "status" in text_of(r) and "succeeded" in text_of(r)
        with pytest.raises(MCPError) as err:
            await client.read_resource("echotune://jobs/job_missing")
        assert err.value.error.code == -32602
        # ... and the server is still up.
        assert (await client.call_tool("list_jobs", {})).structured_content["jobs"] == []


async def test_local_paths_only_inside_allowed_roots(make_client, settings, tmp_path):
    root = settings.allowed_roots[0]
    inside = root / "ok.wav"
    inside.write_bytes(wav_bytes())
    outside = tmp_path / "secret.wav"
    outside.write_bytes(wav_bytes())
    link = root / "sneaky.wav"
    os.symlink(outside, link)
    async with make_client() as (_client, app):
        good = await load_audio_input(app, "local", str(inside))
        assert good.audio.channels == 2 and good.source["type"] == "local_file"
        for bad in (str(outside), str(link), str(root / ".." / "secret.wav")):
            with pytest.raises(BadInput, match="outside the allowed roots"):
                await load_audio_input(app, "local", bad)
        with pytest.raises(BadInput, match="neither an artifact nor an absolute path"):
            await load_audio_input(app, "local", "relative/file.wav")
        with pytest.raises(NotFound):
            await load_audio_input(app, "local", "echotune://artifacts/art_doesnotexist")


async def test_nan_audio_is_refused(make_client, settings):
    data = io.BytesIO()
    sf.write(data, np.full((1000, 1), np.nan, dtype=np.float32), 8000, format="WAV", subtype="FLOAT")
    path = settings.allowed_roots[0] / "nan.wav"
    path.write_bytes(data.getvalue())
    async with make_client() as (_client, app):
        with pytest.raises(BadInput, match="NaN"):
            await load_audio_input(app, "local", str(path))
