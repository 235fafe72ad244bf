"""Content credentials: a signed JSON manifest per audio artifact, in the spirit of C2PA.

The manifest binds the asset's SHA-256 to claims about how it was made (generator, model, soundfont,
ingredients = the parents' hashes) and its licence, signed with the server's Ed25519 key over a
canonical JSON encoding of the claim. Verifying recomputes the content hash and checks the
signature and the signing key, so a changed byte in either the audio or the manifest is caught.
It is a sidecar, not an embedded JUMBF box: WAV/FLAC/OGG players ignore it and it never alters
the audio bytes whose hash it signs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..storage.records import ArtifactRecord
from .keys import SigningKey, key_id_of

FORMAT = "echotune-content-credentials/1"
SOURCE_TYPES = {  # IPTC digital source types, as C2PA uses them
    "trained": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
    "algorithmic": "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia",
    "composite": "http://cv.iptc.org/newscodes/digitalsourcetype/composite",
}


def canonical(obj: Any) -> bytes:
    """The exact bytes that are signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def is_signable(record: ArtifactRecord) -> bool:
    """Audio artifacts get credentials; MIDI (note data, not sound) and manifests do not."""
    return record.kind != "manifest" and record.media_type.startswith("audio/") and record.media_type != "audio/midi"


def _action(prov: dict[str, Any], has_parents: bool) -> dict[str, Any]:
    source = prov.get("source") if isinstance(prov.get("source"), dict) else {}
    model = prov.get("model") if isinstance(prov.get("model"), dict) else {}
    if source.get("type") in ("upload", "local_file"):
        return {"action": "c2pa.opened", "parameters": {"source": source.get("type")}}
    action: dict[str, Any] = {"action": "c2pa.edited" if has_parents else "c2pa.created"}
    if prov.get("backend"):
        trained = bool(model.get("weights_license")) or prov.get("backend") not in ("composer", "dsp")
        action["digitalSourceType"] = SOURCE_TYPES["trained" if trained else "algorithmic"]
    return action


def build_claim(record: ArtifactRecord, generator: str, license_info: dict[str, Any] | None) -> dict[str, Any]:
    """The claim for ``record``: asset hash, ingredients (parents' hashes), generator, licence."""
    prov = record.provenance or {}
    model = prov.get("model") if isinstance(prov.get("model"), dict) else None
    sf = prov.get("soundfont") if isinstance(prov.get("soundfont"), dict) else None
    inputs = [i for i in prov.get("inputs") or [] if isinstance(i, dict)]
    action = {**_action(prov, bool(record.parents)), "softwareAgent": generator, "when": _iso(record.created_at)}
    return {
        "claim_generator": generator,
        "created_at": _iso(record.created_at),
        "asset": {"artifact_id": record.id, "name": record.name, "media_type": record.media_type,
                  "size": record.size, "hash": {"alg": "sha256", "value": record.sha256}},
        "ingredients": [{"artifact_id": i.get("artifact_id"), "kind": i.get("kind"), "relationship": "parentOf",
                         "hash": {"alg": "sha256", "value": i.get("sha256")}} for i in inputs],
        "assertions": {
            "c2pa.actions": {"actions": [action]},
            "echotune.generator": {
                "tool": prov.get("tool"), "job_id": record.job_id, "backend": prov.get("backend"),
                "model": {k: model.get(k) for k in ("model_id", "weights_license", "weights_revision")} if model else None,
                "soundfont": {"name": sf.get("name"), "sha256": sf.get("sha256"),
                              "license": (sf.get("license") or {}).get("id") if isinstance(sf.get("license"), dict)
                              else sf.get("license")} if sf else None,
                "seed": prov.get("seed"),
            },
            "echotune.license": license_info or {"license": record.license},
        },
    }


def sign(claim: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    signature = key.private.sign(canonical(claim))
    return {"format": FORMAT, "claim": claim,
            "signature": {"alg": "Ed25519", "key_id": key.key_id,
                          "public_key": base64.b64encode(key.public_raw).decode(),
                          "value": base64.b64encode(signature).decode()}}


@dataclass
class Verification:
    valid: bool
    signature_valid: bool
    signed_by_this_server: bool
    content_matches: bool
    content_sha256: str
    claimed_sha256: str | None
    key_id: str | None
    problems: list[str] = field(default_factory=list)
    claim: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(manifest_bytes: bytes, content: bytes | None, trusted_public_key: bytes, *,
           content_sha256: str | None = None) -> Verification:
    """Check a manifest against content (or its ``content_sha256``): hash match, Ed25519 signature, and that
    our key signed it.

    "Our key" means the manifest's public key is byte for byte the server's 32-byte public key: the
    key id is a 64-bit fingerprint for people to read, never what trust is decided on.
    """
    actual = content_sha256 if content is None else hashlib.sha256(content).hexdigest()
    assert actual is not None, "give content or content_sha256"
    problems: list[str] = []
    try:
        manifest = json.loads(manifest_bytes)
        claim = manifest["claim"]
        sig = manifest["signature"]
        claimed = claim["asset"]["hash"]["value"]
        public_raw = base64.b64decode(sig["public_key"])
        signature = base64.b64decode(sig["value"])
    except (ValueError, KeyError, TypeError) as exc:
        return Verification(False, False, False, False, actual, None, None,
                            [f"the manifest is not a well-formed {FORMAT} manifest ({exc.__class__.__name__})"])
    signature_ok = True
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, canonical(claim))
    except (InvalidSignature, ValueError):
        signature_ok = False
        problems.append("the signature does not match the claim: the manifest was changed after signing")
    key_id = key_id_of(public_raw) if len(public_raw) == 32 else None
    ours = hmac.compare_digest(public_raw, trusted_public_key) and sig.get("key_id") == key_id
    if not ours:
        problems.append(f"signed by key {key_id} ({sig.get('public_key')!s:.60}), not this server's key "
                        f"{key_id_of(trusted_public_key)} ({base64.b64encode(trusted_public_key).decode()})")
    matches = claimed == actual
    if not matches:
        problems.append(f"the content's sha256 {actual[:16]}… differs from the signed {str(claimed)[:16]}…: "
                        "the file was changed after it was signed")
    return Verification(valid=signature_ok and ours and matches, signature_valid=signature_ok,
                        signed_by_this_server=ours, content_matches=matches, content_sha256=actual,
                        claimed_sha256=claimed, key_id=key_id, problems=problems, claim=claim)
