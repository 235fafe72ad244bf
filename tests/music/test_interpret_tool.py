"""generate_music's result says how the prompt was understood, with sources, through a real MCP client."""

from __future__ import annotations

TOOLSETS = ("jobs", "artifacts", "compose")


async def _run(client, args):
    result = await client.call_tool("generate_music", {**args, "wait_seconds": 25})
    assert not result.is_error, result.content
    data = result.structured_content
    while data["status"] in ("queued", "running"):
        data = (await client.call_tool("get_job", {"job_id": data["job_id"], "wait_seconds": 25})).structured_content
    assert data["status"] == "succeeded", data
    return data


async def test_generate_music_result_carries_the_interpretation(make_client):
    async with make_client(toolsets=TOOLSETS) as (client, _):
        job = await _run(client, {"prompt": "not sad, mellow jazz waltz in a coffee shop, no drums, 100 bpm",
                                  "duration_s": 4, "seed": 1, "feel": "straight", "backend": "composer"})
    res = job["result"]
    it = res["interpreted"]
    assert it["genre"] == {"value": "jazz", "source": "prompt", "words": ["jazz", "waltz"],
                           "note": it["genre"]["note"]} and "3/4" in it["genre"]["note"]
    assert it["meter"]["value"] == "3/4" and it["meter"]["source"] == "prompt"
    assert it["feel"] == {"value": "straight", "source": "argument", "words": [], "note": None}
    assert it["tempo"]["value"] == 100 and it["tempo"]["source"] == "prompt" and it["tempo"]["words"] == ["100 bpm"]
    assert it["mood"]["value"] == "calm" and it["mood"]["words"] == ["mellow"]
    assert it["key"]["source"] == "default", "'in a coffee shop' is a place, not A major"
    assert {(n["field"], n["value"]) for n in it["negated"]} == {("mood", "sad"), ("instruments", "drums")}
    assert "stems left out: drums" in it["instruments"]["note"]
    assert "drums" not in res["stems"]
    assert res["parameters"]["meter"] == "3/4" and res["parameters"]["feel"] == "straight"
    assert "interpreted" in res and isinstance(it["not_understood"], list)


async def test_meter_and_feel_arguments_are_validated(make_client):
    async with make_client(toolsets=TOOLSETS) as (client, app):
        r = await client.call_tool("generate_music", {"prompt": "x", "meter": "5/4"})
        assert r.is_error and "meter" in " ".join(b.text for b in r.content if b.type == "text")
        assert await app.storage.jobs.count("local") == 0
