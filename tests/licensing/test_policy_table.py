"""Table-driven licence decisions: model x soundfont x input x chosen licence x intended use.

Each case builds a real lineage in storage (an upload or provider track, attested or not, and a
generated/processed artifact derived from it), optionally sets the chosen licence through
set_license, then asks check_usage. The expected decision and the rule (with the ancestor that
caused it) come from policy.toml as a reviewer would read it.
"""

from __future__ import annotations

from typing import Any

import pytest

from echotune_mcp.errors import BadInput
from echotune_mcp.licensing.catalog import choosable_ids, uses
from echotune_mcp.licensing.policy import load_policy

from .conftest import COMPOSER, DEMUCS, FLUIDR3, MUSICGEN, ODD_SF, TIMGM, UPLOAD_PROV, gen_prov, wav

MYSTERY_MODEL = {"model_id": "mystery-net", "backend": "torchnet", "weights_license": None, "weights_revision": "1"}
ATTEST = {"holder": "Ada Lovelace", "statement": "I hold the rights in this recording"}

# input -> (kind of outside material, attestation rights, licence set on the input)
INPUTS: dict[str, tuple[str, str | None, str | None]] = {
    "upload": ("upload", None, None),
    "upload_own": ("upload", "own_work", "all-rights-reserved"),
    "upload_pd": ("upload", "public_domain", "CC0-1.0"),
    "licensed_by": ("upload", "licensed", "CC-BY-4.0"),
    "licensed_sa": ("upload", "licensed", "CC-BY-SA-4.0"),
    "licensed_nc": ("upload", "licensed", "CC-BY-NC-4.0"),
    "provider": ("provider", None, None),
}

A, C, N = "allowed", "allowed_with_conditions", "not_allowed"
# (model, soundfont, input, chosen licence, use, decision, decisive rule, where the rule points: input | self)
CASES: list[tuple[Any, ...]] = [
    (COMPOSER, FLUIDR3, None, None, "commercial_release", A, "soundfont-permissive", "self"),
    (COMPOSER, FLUIDR3, None, "CC0-1.0", "sync_advertising", C, "output-cc0", "self"),
    (COMPOSER, FLUIDR3, None, "CC-BY-4.0", "commercial_release", A, "weights-none", "self"),
    (COMPOSER, FLUIDR3, None, "CC-BY-NC-4.0", "commercial_release", C, "output-non-commercial", "self"),
    (COMPOSER, TIMGM, None, None, "personal", A, "soundfont-gpl", "self"),
    (COMPOSER, TIMGM, None, None, "commercial_release", C, "soundfont-gpl", "self"),
    (COMPOSER, TIMGM, None, "CC-BY-SA-4.0", "broadcast", C, "soundfont-gpl", "self"),
    (COMPOSER, TIMGM, None, "CC0-1.0", "streaming_upload", C, "soundfont-gpl", "self"),
    (COMPOSER, ODD_SF, None, None, "streaming_upload", C, "soundfont-unknown", "self"),
    (COMPOSER, ODD_SF, None, None, "personal", A, "soundfont-unknown", "self"),
    (MUSICGEN, None, None, None, "commercial_release", N, "weights-non-commercial", "self"),
    (MUSICGEN, None, None, None, "streaming_upload", C, "weights-non-commercial", "self"),
    (MUSICGEN, None, None, "CC-BY-NC-4.0", "personal", A, "weights-non-commercial", "self"),
    (MUSICGEN, None, None, "all-rights-reserved", "sync_advertising", N, "weights-non-commercial", "self"),
    (MUSICGEN, None, None, "CC-BY-NC-4.0", "sample_in_other_work", C, "weights-non-commercial", "self"),
    (MUSICGEN, None, None, None, "broadcast", C, "weights-non-commercial", "self"),
    (MYSTERY_MODEL, FLUIDR3, None, None, "commercial_release", C, "weights-unknown", "self"),
    (DEMUCS, None, "upload", None, "personal", A, "upload-unattested", "input"),
    (DEMUCS, None, "upload", None, "commercial_release", N, "upload-unattested", "input"),
    (DEMUCS, None, "upload", None, "sample_in_other_work", N, "upload-unattested", "input"),
    (DEMUCS, None, "upload_own", None, "commercial_release", A, "attested-own-work", "input"),
    (DEMUCS, None, "upload_own", "CC-BY-4.0", "broadcast", A, "weights-permissive", "self"),
    (DEMUCS, None, "upload_pd", "CC0-1.0", "sync_advertising", C, "output-cc0", "self"),
    (DEMUCS, None, "licensed_sa", "CC-BY-SA-4.0", "commercial_release", C, "inbound-cc-by-sa", "input"),
    (DEMUCS, None, "licensed_sa", "CC-BY-SA-4.0", "sync_advertising", C, "inbound-cc-by-sa", "input"),
    (DEMUCS, None, "licensed_nc", None, "commercial_release", N, "inbound-cc-by-nc", "input"),
    (DEMUCS, None, "licensed_nc", "CC-BY-NC-4.0", "streaming_upload", C, "inbound-cc-by-nc", "input"),
    (COMPOSER, TIMGM, "licensed_by", "CC-BY-4.0", "commercial_release", C, "inbound-cc-by", "input"),
    (COMPOSER, FLUIDR3, "provider", None, "personal", C, "provider-track", "input"),
    (COMPOSER, FLUIDR3, "provider", None, "broadcast", N, "provider-track", "input"),
    (MUSICGEN, None, "upload_own", None, "commercial_release", N, "weights-non-commercial", "self"),
]


async def _input_artifact(app, lic, kind: str, rights: str | None, licence: str | None):
    if kind == "provider":
        return await app.artifacts.create(
            owner="local", data=b'{"track_id": "spotify:track:1"}', kind="json", media_type="application/json",
            name="track.json", provenance={"tool": "search_tracks",
                                           "source": {"type": "provider", "uri": "spotify:track:1"}})
    up = await app.artifacts.create(owner="local", data=wav(1), kind="upload", media_type="audio/wav",
                                    name="take.wav", provenance=UPLOAD_PROV)
    if rights:
        await lic.set_license("local", up.id, licence, {**ATTEST, "rights": rights})
    return up


async def _build(app, lic, model, soundfont, input_name):
    parent = None
    if input_name:
        parent = await _input_artifact(app, lic, *INPUTS[input_name])
    art = await app.artifacts.create(owner="local", data=wav(2), kind="audio", media_type="audio/wav", name="mix.wav",
                                     parents=[parent.id] if parent else None, provenance=gen_prov(model, soundfont))
    return art, parent


@pytest.mark.parametrize("model,soundfont,input_name,chosen,use,expected,rule,where", CASES,
                         ids=[f"{c[0]['model_id']}-{(c[1] or {}).get('name', 'nosf')}-{c[2]}-{c[3]}-{c[4]}"
                              for c in CASES])
async def test_licence_case(licensed_app, model, soundfont, input_name, chosen, use, expected, rule, where):
    async with licensed_app() as (app, lic):
        art, parent = await _build(app, lic, model, soundfont, input_name)
        if chosen:
            await lic.set_license("local", art.id, chosen, None)
        out = await lic.check_usage("local", art.id, use)
        assert out["decision"] == expected, out
        matched = [r for r in out["reasons"] if r["rule"] == rule]
        assert matched, f"rule {rule} not among {[r['rule'] for r in out['reasons']]}"
        want_id = parent.id if where == "input" else art.id
        assert matched[0]["artifact_id"] == want_id
        if expected != A:  # the decisive rule is as restrictive as the decision, and says what to do
            assert matched[0]["effect"] == expected
            assert out["guidance"] and all(g for g in out["guidance"])
        if expected == N:
            assert matched[0]["remedy"] and matched[0]["remedy"] in out["guidance"]


def test_table_is_big_enough_and_covers_every_use():
    assert len(CASES) >= 20
    assert {c[4] for c in CASES} == set(uses())
    assert {c[5] for c in CASES} == {A, C, N}


REFUSALS = [
    (MUSICGEN, None, None, "CC-BY-4.0", "weights-non-commercial"),
    (MUSICGEN, None, None, "CC0-1.0", "weights-non-commercial"),
    (DEMUCS, None, "upload", "CC-BY-4.0", "upload-unattested"),
    (DEMUCS, None, "upload", "all-rights-reserved", "upload-unattested"),
    (DEMUCS, None, "licensed_sa", "CC-BY-4.0", "inbound-cc-by-sa"),
    (DEMUCS, None, "licensed_nc", "CC0-1.0", "inbound-cc-by-nc"),
    (COMPOSER, FLUIDR3, "provider", "all-rights-reserved", "provider-track"),
]


@pytest.mark.parametrize("model,soundfont,input_name,licence,rule", REFUSALS)
async def test_set_license_refuses_what_the_lineage_forbids(licensed_app, model, soundfont, input_name, licence, rule):
    async with licensed_app() as (app, lic):
        art, _ = await _build(app, lic, model, soundfont, input_name)
        with pytest.raises(BadInput) as err:
            await lic.set_license("local", art.id, licence, None)
        msg = str(err.value)
        assert f"does not permit {licence}" in msg and rule in msg and "allowed:" in msg
        assert (await app.artifacts.get("local", art.id)).license is None


async def test_gpl_soundfont_permits_every_output_licence(licensed_app):
    async with licensed_app() as (app, lic):
        art, _ = await _build(app, lic, COMPOSER, TIMGM, None)
        for lid in choosable_ids():
            out = await lic.set_license("local", art.id, lid, None)
            assert out["license"] == lid
        assert (await lic.check_usage("local", art.id, "personal"))["permitted_licenses"] == list(choosable_ids())


async def test_upload_needs_attestation_and_attestation_fields_are_checked(licensed_app):
    async with licensed_app() as (app, lic):
        up = await app.artifacts.create(owner="local", data=wav(3), kind="upload", media_type="audio/wav",
                                        name="take.wav", provenance=UPLOAD_PROV)
        with pytest.raises(BadInput, match="attestation.*rights are unknown.*own_work \\| licensed \\| public_domain"):
            await lic.set_license("local", up.id, "CC-BY-4.0", None)
        with pytest.raises(BadInput, match="missing holder, statement"):
            await lic.set_license("local", up.id, "CC-BY-4.0", {"rights": "own_work"})
        with pytest.raises(BadInput, match="own_work, licensed, public_domain"):
            await lic.set_license("local", up.id, "CC-BY-4.0", {**ATTEST, "rights": "mine"})
        out = await lic.set_license("local", up.id, "CC-BY-4.0", {**ATTEST, "rights": "own_work"})
        assert out["attestation"]["holder"] == "Ada Lovelace"
        rec = await app.artifacts.get("local", up.id)
        assert rec.license == "CC-BY-4.0" and rec.meta["rights_attestation"]["rights"] == "own_work"
        # once attested, the licence can be changed without repeating the attestation
        assert (await lic.set_license("local", up.id, "CC0-1.0", None))["license"] == "CC0-1.0"


async def test_unknown_licence_and_use_list_the_valid_values(licensed_app):
    async with licensed_app() as (app, lic):
        art, _ = await _build(app, lic, COMPOSER, FLUIDR3, None)
        with pytest.raises(BadInput, match="CC0-1.0, CC-BY-4.0, CC-BY-SA-4.0, CC-BY-NC-4.0, all-rights-reserved"):
            await lic.set_license("local", art.id, "WTFPL", None)
        with pytest.raises(BadInput, match="personal, commercial_release, streaming_upload"):
            await lic.check_usage("local", art.id, "karaoke")
        # aliases and case are accepted
        assert (await lic.set_license("local", art.id, "cc-by", None))["license"] == "CC-BY-4.0"


def test_policy_rules_are_consistent():
    policy = load_policy()
    ids = [r.id for r in policy.rules]
    assert len(ids) == len(set(ids))
    for rule in policy.rules:
        assert set(rule.effects) == set(policy.uses)
