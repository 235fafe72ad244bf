"""Lineage three generations deep: upload -> separated stem -> remix -> mastered."""

from __future__ import annotations

import pytest

from echotune_mcp.licensing import assert_provenance_complete, provenance_gaps

from .conftest import DEMUCS, FLUIDR3, UPLOAD_PROV, gen_prov, wav

REMIX = {"tool": "remix", "backend": "dsp", "model": None, "parameters": {"gain_db": {"vocals": -3}}}
MASTER = {"tool": "master", "backend": "dsp", "model": None, "parameters": {"target_lufs": -14}}


async def _chain(app):
    up = await app.artifacts.create(owner="local", data=wav(1), kind="upload", media_type="audio/wav",
                                    name="song.wav", provenance=UPLOAD_PROV)
    stem = await app.artifacts.create(owner="local", data=wav(2), kind="stem", media_type="audio/wav",
                                      name="vocals.wav", parents=[up.id],
                                      provenance=gen_prov(DEMUCS, None, tool="separate_stems"))
    pad = await app.artifacts.create(owner="local", data=wav(3), kind="stem", media_type="audio/wav",
                                     name="pad.wav", provenance=gen_prov({"model_id": "echotune-composer",
                                                                         "backend": "composer",
                                                                         "weights_license": None}, FLUIDR3))
    remix = await app.artifacts.create(owner="local", data=wav(4), kind="audio", media_type="audio/wav",
                                       name="remix.wav", parents=[stem.id, pad.id], provenance=REMIX)
    master = await app.artifacts.create(owner="local", data=wav(5), kind="audio", media_type="audio/wav",
                                        name="master.wav", parents=[remix.id], provenance=MASTER)
    return up, stem, pad, remix, master


async def test_get_provenance_graph_depths(licensed_app):
    from echotune_mcp.toolsets.base import using_app
    from echotune_mcp.toolsets.licensing import get_provenance

    async with licensed_app() as (app, _lic):
        up, stem, pad, remix, master = await _chain(app)
        with using_app(app):
            full = await get_provenance(master.id, depth=10)
            shallow = await get_provenance(master.id, depth=1)
            only = await get_provenance(master.id, depth=0)
        ids = {n.artifact_id: n for n in full.nodes}
        assert set(ids) == {master.id, remix.id, stem.id, pad.id, up.id}
        assert ids[up.id].depth == 3 and ids[stem.id].depth == 2 and ids[master.id].depth == 0
        assert {(e["child"], e["parent"]) for e in full.edges} == {
            (master.id, remix.id), (remix.id, stem.id), (remix.id, pad.id), (stem.id, up.id)}
        stem_prov = ids[stem.id].provenance
        assert stem_prov["model"]["weights_license"] == "MIT" and stem_prov["model"]["weights_revision"] == "e51eebcc"
        assert stem_prov["inputs"][0] == {"artifact_id": up.id, "sha256": up.sha256, "kind": "upload"}
        assert ids[pad.id].provenance["soundfont"]["license"] == "MIT"
        assert ids[up.id].provenance["source"]["type"] == "upload" and ids[up.id].provenance["rights"] == "unknown"
        assert {n.artifact_id for n in shallow.nodes} == {master.id, remix.id}
        assert [n.more_parents for n in shallow.nodes if n.artifact_id == remix.id] == [True]
        assert [n.artifact_id for n in only.nodes] == [master.id] and only.edges == []


async def test_check_usage_traces_the_upload_three_generations_up_and_attestation_clears_it(licensed_app):
    async with licensed_app() as (app, lic):
        up, _stem, _pad, _remix, master = await _chain(app)
        out = await lic.check_usage("local", master.id, "commercial_release")
        assert out["decision"] == "not_allowed"
        top = out["reasons"][0]
        assert top["rule"] == "upload-unattested" and top["artifact_id"] == up.id
        assert f"set_license(artifact='{up.id}'" in out["guidance"][0]
        assert out["permitted_licenses"] == []
        assert out["lineage"]["artifacts_checked"] == 5
        assert {r["rule"] for r in out["reasons"]} >= {"weights-permissive", "weights-none", "soundfont-permissive"}
        assert (await lic.check_usage("local", master.id, "personal"))["decision"] == "allowed"

        await lic.set_license("local", up.id, "all-rights-reserved",
                              {"holder": "Me", "statement": "I wrote and recorded it", "rights": "own_work"})
        out = await lic.check_usage("local", master.id, "commercial_release")
        assert out["decision"] == "allowed", out
        assert "CC-BY-4.0" in out["permitted_licenses"]
        assert (await lic.set_license("local", master.id, "CC-BY-4.0", None))["license"] == "CC-BY-4.0"


async def test_licensed_material_deep_in_the_lineage_forces_share_alike(licensed_app):
    async with licensed_app() as (app, lic):
        up, _stem, _pad, _remix, master = await _chain(app)
        await lic.set_license("local", up.id, "CC-BY-SA-4.0",
                              {"holder": "Band", "statement": "CC-BY-SA release on their site", "rights": "licensed",
                               "evidence_url": "https://example.org/track"})
        out = await lic.check_usage("local", master.id, "sample_in_other_work")
        assert out["decision"] == "allowed_with_conditions"
        sa = next(r for r in out["reasons"] if r["rule"] == "inbound-cc-by-sa")
        assert sa["artifact_id"] == up.id and sa["license"] == "CC-BY-SA-4.0" and "CC-BY-SA-4.0" in sa["condition"]
        assert out["permitted_licenses"] == ["CC-BY-SA-4.0"]


async def test_deleted_ancestor_is_reported_not_ignored(licensed_app):
    async with licensed_app() as (app, lic):
        up, _stem, _pad, _remix, master = await _chain(app)
        await app.artifacts.delete("local", up.id)
        out = await lic.check_usage("local", master.id, "broadcast")
        # its tombstone still says its rights were never attested: deleting it clears nothing
        assert out["decision"] == "not_allowed"
        assert out["lineage"]["missing"] == [up.id]
        assert any(r["rule"] == "lineage-deleted" and r["artifact_id"] == up.id for r in out["reasons"])
        assert any(r["rule"] == "upload-unattested" and r["artifact_id"] == up.id for r in out["reasons"])


async def test_deleted_attested_ancestor_keeps_its_attestation(licensed_app):
    async with licensed_app() as (app, lic):
        up, _stem, _pad, _remix, master = await _chain(app)
        await lic.set_license("local", up.id, "CC-BY-4.0", {"holder": "me", "statement": "my own take",
                                                              "rights": "own_work"})
        await app.artifacts.delete("local", up.id)
        out = await lic.check_usage("local", master.id, "broadcast")
        assert out["decision"] == "allowed_with_conditions", out["reasons"]
        rules = {r["rule"] for r in out["reasons"] if r["artifact_id"] == up.id}
        assert "lineage-deleted" in rules and "upload-unattested" not in rules, rules


async def test_provenance_completeness_helper(licensed_app):
    async with licensed_app() as (app, _lic):
        up, stem, pad, remix, master = await _chain(app)
        for rec in (up, stem, pad, remix, master):
            assert_provenance_complete(rec)
        broken = pad.model_copy(update={"provenance": {k: v for k, v in pad.provenance.items()
                                                        if k not in ("seed", "package")}})
        assert set(provenance_gaps(broken)) >= {"seed", "package", "package.name/version"}
        with pytest.raises(AssertionError, match="incomplete provenance"):
            assert_provenance_complete(broken)
