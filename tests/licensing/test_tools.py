"""The licensing toolset through a real MCP client: schemas, bad input, resources, an upload's journey."""

from __future__ import annotations

import base64
import json

from .conftest import COMPOSER, FLUIDR3, gen_prov, text_of, wav

ATTEST = {"holder": "Me", "statement": "my own recording", "rights": "own_work"}


async def test_tools_and_annotations(lic_client):
    async with lic_client() as (client, _app):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for name in ("get_provenance", "check_usage", "set_license", "verify_credentials"):
            assert name in tools and tools[name].description
        assert tools["check_usage"].annotations.read_only_hint
        assert not tools["set_license"].annotations.read_only_hint
        schema = tools["check_usage"].input_schema["properties"]["use"]
        assert "sync_advertising" in json.dumps(schema)
        depth = tools["get_provenance"].input_schema["properties"]["depth"]
        assert depth["minimum"] == 0 and depth["maximum"] == 10


async def test_bad_input_lists_valid_values(lic_client):
    async with lic_client() as (client, app):
        art = await app.artifacts.create(owner="local", data=wav(), kind="audio", media_type="audio/wav",
                                         name="m.wav", provenance=gen_prov(COMPOSER, FLUIDR3))
        r = await client.call_tool("set_license", {"artifact": art.id, "license": "WTFPL"})
        assert r.is_error and "CC-BY-SA-4.0" in text_of(r) and "all-rights-reserved" in text_of(r), text_of(r)
        r = await client.call_tool("check_usage", {"artifact": art.id, "use": "karaoke"})
        assert r.is_error and "commercial_release" in text_of(r) and "sample_in_other_work" in text_of(r), text_of(r)
        r = await client.call_tool("set_license", {"artifact": art.id, "license": "CC0-1.0",
                                                   "attestation": {"rights": "own_work"}})
        assert r.is_error and "holder" in text_of(r) and "statement" in text_of(r), text_of(r)
        r = await client.call_tool("set_license", {"artifact": art.id, "license": "CC0-1.0",
                                                   "attestation": {**ATTEST, "rights": "stolen"}})
        assert r.is_error and "own_work" in text_of(r) and "public_domain" in text_of(r), text_of(r)
        r = await client.call_tool("get_provenance", {"artifact": art.id, "depth": 11})
        assert r.is_error
        r = await client.call_tool("verify_credentials", {})
        assert r.is_error and "exactly one of artifact or path" in text_of(r)
        r = await client.call_tool("check_usage", {"artifact": "art_nope", "use": "personal"})
        assert r.is_error and "list_artifacts" in text_of(r)


async def test_upload_journey_and_resources(lic_client):
    async with lic_client() as (client, app):
        r = await client.call_tool("import_audio", {"data_base64": base64.b64encode(wav(4)).decode(),
                                                    "filename": "take.wav"})
        up = r.structured_content["artifact_id"]
        remix = await app.artifacts.create(owner="local", data=wav(5), kind="audio", media_type="audio/wav",
                                           name="remix.wav", parents=[up],
                                           provenance={"tool": "remix", "backend": "dsp", "model": None,
                                                       "parameters": {}})
        r = await client.call_tool("check_usage", {"artifact": f"echotune://artifacts/{remix.id}",
                                                   "use": "streaming_upload"})
        assert not r.is_error, text_of(r)
        out = r.structured_content
        assert out["decision"] == "not_allowed" and out["reasons"][0]["artifact_id"] == up
        r = await client.call_tool("set_license", {"artifact": remix.id, "license": "CC-BY-4.0"})
        assert r.is_error and "upload-unattested" in text_of(r) and up in text_of(r)
        r = await client.call_tool("set_license", {"artifact": up, "license": "CC-BY-4.0", "attestation": ATTEST})
        assert not r.is_error, text_of(r)
        r = await client.call_tool("check_usage", {"artifact": remix.id, "use": "streaming_upload"})
        assert r.structured_content["decision"] == "allowed"
        r = await client.call_tool("get_provenance", {"artifact": remix.id, "depth": 2})
        graph = r.structured_content
        assert graph["edges"] == [{"child": remix.id, "parent": up}]
        node = next(n for n in graph["nodes"] if n["artifact_id"] == up)
        assert node["provenance"]["rights_attestation"]["holder"] == "Me"
        r = await client.call_tool("verify_credentials", {"artifact": remix.id})
        assert r.structured_content["valid"], text_of(r)

        res = await client.read_resource(f"echotune://artifacts/{up}/provenance")
        doc = json.loads(res.contents[0].text)
        assert doc["provenance"]["source"]["type"] == "upload" and doc["license"] == "CC-BY-4.0"
        assert doc["content_credentials"]
        cat = json.loads((await client.read_resource("echotune://licenses")).contents[0].text)
        by_id = {x["id"]: x for x in cat["licenses"]}
        assert by_id["CC-BY-NC-4.0"]["commercial_use"] is False and by_id["CC-BY-SA-4.0"]["share_alike"] is True
        assert by_id["CC0-1.0"]["attribution"] is False and "sync_advertising" in cat["uses"]


async def test_prompt_file_loads_and_names_the_tools():
    from echotune_mcp.config import PROMPTS_DIR
    from echotune_mcp.prompt_files import load_prompt_file

    pf = load_prompt_file(PROMPTS_DIR / "can_i_release.md")
    text = pf.render({"artifact": "art_x", "use": "commercial_release"})
    for tool in ("check_usage", "get_provenance", "set_license", "verify_credentials"):
        assert tool in text
    assert "art_x" in text
