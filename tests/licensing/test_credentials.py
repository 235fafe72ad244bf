"""Content credentials: a signed manifest per audio artifact, and tampering is detected."""

from __future__ import annotations

import io
import json
import os
import stat

import numpy as np
import pytest
import soundfile as sf

from echotune_mcp.errors import BadInput
from echotune_mcp.licensing import file_tags
from echotune_mcp.licensing.keys import key_path
from echotune_mcp.music.audio_io import encode_audio

from .conftest import COMPOSER, TIMGM, UPLOAD_PROV, gen_prov, wav


async def _audio(app, **kw):
    return await app.artifacts.create(owner="local", data=wav(kw.pop("seed", 2)), kind="audio",
                                      media_type="audio/wav", name="mix.wav",
                                      provenance=gen_prov(COMPOSER, TIMGM), **kw)


async def test_hook_signs_audio_only_and_links_the_manifest(licensed_app):
    async with licensed_app() as (app, lic):
        parent = await app.artifacts.create(owner="local", data=wav(1), kind="upload", media_type="audio/wav",
                                            name="take.wav", provenance=UPLOAD_PROV)
        art = await _audio(app, parents=[parent.id])
        await app.artifacts.create(owner="local", data=b"MThd", kind="midi", media_type="audio/midi", name="a.mid")
        await app.artifacts.create(owner="local", data=b"{}", kind="json", media_type="application/json", name="x")
        manifests, _ = await app.artifacts.list("local", kind="manifest")
        assert len(manifests) == 2  # the upload and the mix; not MIDI, JSON or the manifests themselves
        rec = await app.artifacts.get("local", art.id)
        man = await app.artifacts.get("local", rec.meta["content_credentials"])
        assert man.parents == [art.id] and man.media_type == "application/json"
        doc = json.loads(await app.artifacts.read(man))
        claim = doc["claim"]
        assert claim["asset"]["hash"]["value"] == art.sha256
        assert claim["ingredients"] == [{"artifact_id": parent.id, "kind": "upload", "relationship": "parentOf",
                                         "hash": {"alg": "sha256", "value": parent.sha256}}]
        gen = claim["assertions"]["echotune.generator"]
        assert gen["soundfont"]["license"] == "GPL-2.0-or-later" and gen["seed"] == 7
        assert doc["signature"]["alg"] == "Ed25519"
        ok = await lic.verify_artifact("local", art.id)
        assert ok["valid"] and ok["signature_valid"] and ok["content_matches"] and ok["signed_by_this_server"]
        # verifying via the manifest's own id checks the same pair
        assert (await lic.verify_artifact("local", man.id))["target"] == art.id


async def test_key_is_created_once_with_mode_0600(licensed_app, settings):
    async with licensed_app() as (app, _lic):
        await _audio(app)
        path = key_path(settings.data_dir)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        first = path.read_bytes()
    async with licensed_app() as (app, _lic):
        await _audio(app, seed=9)
        assert path.read_bytes() == first


async def test_changed_byte_in_stored_audio_is_detected(licensed_app):
    async with licensed_app() as (app, lic):
        art = await _audio(app)
        blob = app.storage.blobs.local_path(art.sha256)
        assert blob is not None
        data = bytearray(blob.read_bytes())
        data[-10] ^= 0x01
        os.chmod(blob, 0o644)
        blob.write_bytes(bytes(data))
        out = await lic.verify_artifact("local", art.id)
        assert not out["valid"] and not out["content_matches"] and out["signature_valid"]
        assert any("changed after it was signed" in p for p in out["problems"])


async def test_changed_byte_in_stored_manifest_is_detected(licensed_app):
    async with licensed_app() as (app, lic):
        art = await _audio(app)
        man = await app.artifacts.get("local", (await app.artifacts.get("local", art.id)).meta["content_credentials"])
        blob = app.storage.blobs.local_path(man.sha256)
        text = blob.read_text().replace('"seed": 7', '"seed": 8')
        assert '"seed": 8' in text
        os.chmod(blob, 0o644)
        blob.write_text(text)
        out = await lic.verify_artifact("local", art.id)
        assert not out["valid"] and not out["signature_valid"] and out["content_matches"]


async def test_local_file_and_sidecar_tampering(licensed_app, settings):
    async with licensed_app() as (app, lic):
        art = await _audio(app)
        man = await lic.manifest_for("local", await app.artifacts.get("local", art.id))
        root = settings.allowed_roots[0]
        audio_path, sidecar = root / "mix.wav", root / "mix.wav.manifest.json"
        audio_path.write_bytes(await app.artifacts.read(art))
        sidecar.write_bytes(await app.artifacts.read(man))
        assert (await lic.verify_file("local", str(audio_path), None))["valid"]
        # found by content hash when no sidecar is given
        sidecar.rename(root / "elsewhere.json")
        found = await lic.verify_file("local", str(audio_path), None)
        assert found["valid"] and found["manifest"] == man.id
        (root / "elsewhere.json").rename(sidecar)
        # one changed audio byte
        data = bytearray(audio_path.read_bytes())
        data[100] ^= 0xFF
        audio_path.write_bytes(bytes(data))
        bad = await lic.verify_file("local", str(audio_path), str(sidecar))
        assert not bad["valid"] and not bad["content_matches"]
        with pytest.raises(BadInput, match="no manifest found"):
            sidecar.unlink()
            await lic.verify_file("local", str(audio_path), None)
        # a manifest re-signed with another key is not trusted
        audio_path.write_bytes(await app.artifacts.read(art))
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from echotune_mcp.licensing import credentials
        from echotune_mcp.licensing.keys import SigningKey, key_id_of

        other = Ed25519PrivateKey.generate()
        raw = other.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        doc = json.loads(await app.artifacts.read(man))
        forged = credentials.sign(doc["claim"], SigningKey(other, other.public_key(), key_id_of(raw), sidecar))
        sidecar.write_text(json.dumps(forged))
        res = await lic.verify_file("local", str(audio_path), str(sidecar))
        assert res["signature_valid"] and not res["signed_by_this_server"] and not res["valid"]
        with pytest.raises(BadInput, match="outside the allowed roots"):
            await lic.verify_file("local", "/etc/hostname", None)


async def test_set_license_resigns_with_the_licence(licensed_app):
    async with licensed_app() as (app, lic):
        art = await _audio(app)
        first = (await app.artifacts.get("local", art.id)).meta["content_credentials"]
        out = await lic.set_license("local", art.id, "CC-BY-4.0", None)
        rec = await app.artifacts.get("local", art.id)
        assert rec.meta["content_credentials"] == out["manifest_artifact_id"] != first
        doc = json.loads(await app.artifacts.read(await app.artifacts.get("local", out["manifest_artifact_id"])))
        assert doc["claim"]["assertions"]["echotune.license"]["license"] == "CC-BY-4.0"
        assert (await lic.verify_artifact("local", art.id))["valid"]


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_file_tags_land_in_the_files_own_metadata(fmt):
    tags = file_tags(gen_prov(COMPOSER, TIMGM), "CC-BY-NC-4.0")
    data = encode_audio(np.zeros((800, 1), np.float32), 8000, fmt, tags)
    with sf.SoundFile(io.BytesIO(data)) as fh:
        meta = fh.copy_metadata()
    assert "Attribution-NonCommercial" in meta["copyright"]
    assert "TimGM6mb.sf2 (GPL-2.0-or-later)" in meta["comment"] and "seed 7" in meta["comment"]
    assert meta["software"].startswith("EchoTune MCP")
    if fmt != "wav":  # WAV INFO has no licence field; the copyright field carries it
        assert meta["license"] == "CC-BY-NC-4.0"
    assert "no licence chosen" in file_tags({}, None)["copyright"]
