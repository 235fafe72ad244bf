"""generate_music / regenerate_stem / add_stem through a real MCP client, on the offline composer."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf

TOOLSETS = ("jobs", "artifacts", "compose")


def text_of(result) -> str:
    return " ".join(b.text for b in result.content if getattr(b, "type", "") == "text")


async def _run(client, tool, args, on_progress=None):
    result = await client.call_tool(tool, {**args, "wait_seconds": 25}, progress_callback=on_progress)
    assert not result.is_error, text_of(result)
    data = result.structured_content
    while data["status"] in ("queued", "running"):
        result = await client.call_tool("get_job", {"job_id": data["job_id"], "wait_seconds": 25},
                                        progress_callback=on_progress)
        data = result.structured_content
    assert data["status"] == "succeeded", data
    return result, data


async def _audio(client, uri):
    res = await client.read_resource(uri)
    data = base64.b64decode(res.contents[0].blob)
    y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return y, sr, res.contents[0].mime_type


async def test_generate_music_end_to_end(make_client):
    progress: list[tuple[float, str]] = []

    async def on_progress(p, total, message):
        progress.append((p, message or ""))

    async with make_client(toolsets=TOOLSETS) as (client, app):
        result, job = await _run(client, "generate_music",
                                 {"prompt": "warm lofi hip hop with piano, 84 bpm in D minor", "duration_s": 10,
                                  "seed": 7, "inline_preview": True}, on_progress)
        res = job["result"]
        kinds = sorted(a["kind"] for a in job["artifacts"])
        assert {"preview", "audio", "midi", "arrangement", "image"} <= set(kinds)
        assert kinds.count("stem") == len(res["stems"]) >= 3
        assert res["backend"] == "composer" and res["bpm"] == pytest.approx(84, abs=0.01)
        assert "bpm" in res["from_text"] and "key" in res["from_text"]
        mix, sr, mime = await _audio(client, res["mix_uri"])
        assert mime == "audio/wav" and sr == 44100 and 10 <= len(mix) / sr <= 14
        assert 20 * np.log10(np.abs(mix).max()) <= -0.9
        # the preview exists and was published before the mix (artifacts are ordered by creation)
        by_kind = {a["kind"]: a for a in job["artifacts"]}
        assert by_kind["preview"]["created_at"] < by_kind["audio"]["created_at"]
        assert any(b.type == "audio" for b in result.content), "inline preview requested but not attached"
        assert all(0 <= p <= 1 for p, _ in progress) and progress
        assert any("render" in m for _, m in progress), [m for _, m in progress]
        # links, not inline megabytes
        links = [b for b in result.content if b.type == "resource_link"]
        assert len(links) == len(job["artifacts"])
        mix_art = next(a for a in job["artifacts"] if a["kind"] == "audio")
        assert set(res["stems"].values()) <= set(mix_art["parents"])
        midi = await client.read_resource(f"echotune://artifacts/{res['midi_artifact_id']}/content")
        assert base64.b64decode(midi.contents[0].blob)[:4] == b"MThd" and midi.contents[0].mime_type == "audio/midi"


async def test_same_seed_same_music(make_client):
    args = {"prompt": "upbeat house", "duration_s": 6, "seed": 123, "bpm": 124, "key": "A minor"}
    async with make_client(toolsets=TOOLSETS) as (client, _):
        _, a = await _run(client, "generate_music", args)
        _, b = await _run(client, "generate_music", args)
    sha = lambda job, kind: sorted(x["sha256"] for x in job["artifacts"] if x["kind"] == kind)  # noqa: E731
    assert sha(a, "midi") == sha(b, "midi")
    assert sha(a, "audio") == sha(b, "audio")
    assert sha(a, "stem") == sha(b, "stem")


async def test_regenerate_and_add_stem_keep_the_rest(make_client):
    async with make_client(toolsets=TOOLSETS) as (client, _):
        _, first = await _run(client, "generate_music", {"prompt": "funk groove in E minor, 100 bpm",
                                                          "duration_s": 6, "seed": 5})
        mix_id = first["result"]["mix_artifact_id"]
        stems = first["result"]["stems"]
        _, regen = await _run(client, "regenerate_stem", {"artifact": mix_id, "stem": "drums",
                                                          "instruction": "busier drums"})
        new = regen["result"]["stems"]
        assert new["drums"] != stems["drums"]
        assert {k: v for k, v in new.items() if k != "drums"} == {k: v for k, v in stems.items() if k != "drums"}
        new_mix = next(a for a in regen["artifacts"] if a["kind"] == "audio")
        assert mix_id in new_mix["parents"] and new["drums"] in new_mix["parents"]
        _, added = await _run(client, "add_stem", {"artifact": new_mix["artifact_id"], "instrument": "strings"})
        assert len(added["result"]["stems"]) == len(new) + 1
        # the original mix is untouched
        original = await client.call_tool("get_artifact", {"artifact": mix_id})
        assert original.structured_content["sha256"] == next(a["sha256"] for a in first["artifacts"]
                                                            if a["artifact_id"] == mix_id)


@pytest.mark.parametrize("args,field", [
    ({"bpm": 900}, "bpm"),
    ({"key": "H major"}, "key"),
    ({"duration_s": 0}, "duration_s"),
    ({"duration_s": 100000}, "duration_s"),
    ({"genre": "polka-metal"}, "genre"),
    ({"instruments": ["kazoo-of-doom"]}, "instruments"),
])
async def test_impossible_controls_name_the_field(make_client, args, field):
    async with make_client(toolsets=TOOLSETS) as (client, app):
        r = await client.call_tool("generate_music", {"prompt": "something nice", **args})
        assert r.is_error and field in text_of(r), text_of(r)
        assert await app.storage.jobs.count("local") == 0, "bad input must not create a job"


async def test_duration_over_this_servers_limit_is_refused_naming_it(make_client):
    """The schema allows up to 3600 s (the most any server may be set to); this server's limit (120 s in the
    test settings) is checked when the tool is called, and the refusal names it and where it is set."""
    async with make_client(toolsets=TOOLSETS) as (client, app):
        assert app.settings.max_generation_seconds == 120
        r = await client.call_tool("generate_music", {"prompt": "something nice", "duration_s": 200})
        assert r.is_error, text_of(r)
        assert "duration_s" in text_of(r) and "120" in text_of(r), text_of(r)
        assert "ECHOTUNE_MAX_GENERATION_SECONDS" in text_of(r), text_of(r)
        assert await app.storage.jobs.count("local") == 0, "bad input must not create a job"


async def test_generate_music_is_a_plain_function_bound_to_an_app(settings):
    """A test calls the tool function itself inside using_app; the limit comes from that app's settings."""
    from dataclasses import replace

    from echotune_mcp.app import App
    from echotune_mcp.errors import BadInput
    from echotune_mcp.toolsets import compose
    from echotune_mcp.toolsets.base import using_app

    async with App(replace(settings, max_generation_seconds=5.0)) as app:
        with using_app(app), pytest.raises(BadInput, match=r"duration_s.*at most 5 seconds"):
            await compose.generate_music("something nice", None, duration_s=6)  # type: ignore[arg-type]
    assert [t.name for t in compose.toolset.tools] == ["generate_music", "regenerate_stem", "add_stem"]


@pytest.mark.parametrize("value", [0, -1, 3601, float("inf"), float("nan")])
def test_max_generation_seconds_setting_is_bounded(value):
    from echotune_mcp.config import Settings

    with pytest.raises(ValueError, match="ECHOTUNE_MAX_GENERATION_SECONDS"):
        Settings(max_generation_seconds=value).validate()
    Settings(max_generation_seconds=3600).validate()


async def test_regenerate_stem_refuses_unknown_stem_and_non_mix(make_client):
    async with make_client(toolsets=TOOLSETS) as (client, _):
        _, job = await _run(client, "generate_music", {"prompt": "ambient pad", "duration_s": 4, "seed": 1})
        mix_id = job["result"]["mix_artifact_id"]
        r = await client.call_tool("regenerate_stem", {"artifact": mix_id, "stem": "theremin"})
        assert r.is_error and "stem" in text_of(r) and "allowed" in text_of(r)
        midi_id = job["result"]["midi_artifact_id"]
        r = await client.call_tool("regenerate_stem", {"artifact": midi_id, "stem": "drums"})
        assert r.is_error and "artifact" in text_of(r)
