"""Licensing operations over the app's artifacts: check a use, set a licence, sign and verify.

The tools and the artifact-created hook share this one object so the same lineage walk, the same
factors and the same policy answer every question; nothing here is MCP-specific.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..artifacts import HOW_TO_LIST, PathPolicy, package_version
from ..audio_inputs import read_capped
from ..errors import BadInput
from ..music.audio_io import MAX_DECODED_BYTES
from ..storage.records import ArtifactRecord, now
from . import catalog, credentials
from .factors import ATTESTATION_KEY, Factor, factors_of
from .keys import SigningKey, signing_key
from .lineage import Lineage, walk
from .policy import LicenseCheck, Policy, Reason, load_policy
from .provenance import card_dirs

if TYPE_CHECKING:
    from ..app import App
    from ..artifacts import ArtifactService

log = logging.getLogger(__name__)

CREDENTIALS_META_KEY = "content_credentials"  # audio artifact meta -> id of its current manifest
POLICY_MAX_DEPTH = 64  # a licence check reads the whole lineage, up to this many generations
POLICY_MAX_NODES = 500
RIGHTS = ("own_work", "licensed", "public_domain")
# verify_credentials reads files from disk: the audio is hashed in chunks up to the largest audio this
# server decodes (so it bounds time, not memory), the manifest JSON is read whole up to 1 MiB.
VERIFY_MAX_BYTES = MAX_DECODED_BYTES
TOMBSTONES = "tombstones"
# Provenance a tombstone keeps: exactly what factors_of and get_provenance's summary read for rights.
TOMBSTONE_PROVENANCE = ("tool", "backend", "model", "soundfont", "source", "input", "melody_input", "inputs",
                        "rights", "owner", "job_id", "created_at", "artifact_id", "sha256", "package")
MANIFEST_MAX_BYTES = 1024 * 1024
ATTESTATION_FIELDS = "holder (who holds the rights), statement (what you attest), " \
                     "rights (own_work | licensed | public_domain), evidence_url (optional, http(s))"


def _reason_text(reasons: list[Reason]) -> str:
    return "; ".join(f"{r.explanation} [rule {r.rule}, artifact {r.artifact_id}]" +
                     (f" — to fix: {r.remedy}" if r.remedy else "") for r in reasons)


def _sha256_capped(path: Path, limit: int, field: str, shown: str) -> str:
    """The file's sha256, read in 1 MiB chunks; refused (before reading) when it is over ``limit`` bytes."""
    size = path.stat().st_size
    if size > limit:
        raise BadInput(field, f"{shown} is {size} bytes", f"files up to {limit} bytes")
    digest, seen = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            seen += len(chunk)
            if seen > limit:
                raise BadInput(field, f"{shown} is larger than {limit} bytes", f"files up to {limit} bytes")
            digest.update(chunk)
    return digest.hexdigest()


def validate_attestation(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The attestation with its required fields checked; BadInput naming every field otherwise."""
    if raw is None:
        return None
    missing = [k for k in ("holder", "statement", "rights") if not str(raw.get(k) or "").strip()]
    if missing:
        raise BadInput("attestation", f"missing {', '.join(missing)}", ATTESTATION_FIELDS)
    if raw["rights"] not in RIGHTS:
        raise BadInput("attestation.rights", f"{raw['rights']!r} is not a kind of rights", RIGHTS)
    url = raw.get("evidence_url")
    if url and not re.match(r"^https?://\S+$", str(url)):
        raise BadInput("attestation.evidence_url", f"{url!r} is not an http(s) URL", ATTESTATION_FIELDS)
    return {"holder": str(raw["holder"]).strip(), "statement": str(raw["statement"]).strip(),
            "rights": raw["rights"], "evidence_url": url or None}


class Licensing:
    def __init__(self, app: App, policy: Policy | None = None):
        self.app = app
        self.policy = policy or load_policy()

    @property
    def key(self) -> SigningKey:
        return signing_key(self.app.settings.data_dir, self.app.settings.secret_key,
                           self.app.settings.signing_key_file)

    @property
    def card_dirs(self) -> tuple[Path, ...]:
        return card_dirs(self.app.settings)

    # -- lineage and factors ------------------------------------------------------------------------
    async def lineage(self, owner: str, record: ArtifactRecord, depth: int) -> Lineage:
        return await walk(self.app.storage.artifacts, owner, record, max_depth=depth, max_nodes=POLICY_MAX_NODES,
                          tombstones=self.tombstone)

    # -- tombstones ---------------------------------------------------------------------------------
    async def keep_tombstone(self, record: ArtifactRecord) -> None:
        """Before ``record`` is deleted, keep what licence checks need of it: its parents, licence, rights
        attestation and the provenance fields factors read (never its bytes, prompt or parameters).

        Without it, deleting an upload of unknown rights would leave its derivatives with only a
        "deleted ancestor" and let them be relicensed as if the upload had never been there.
        """
        prov = {k: v for k, v in (record.provenance or {}).items() if k in TOMBSTONE_PROVENANCE}
        meta = {k: v for k, v in (record.meta or {}).items() if k == ATTESTATION_KEY}
        kept = record.model_copy(update={"provenance": prov, "meta": meta})
        doc = {"id": record.id, "owner": record.owner, "created_at": now(), "record": kept.model_dump(mode="json")}
        coll = self.app.storage.collection(TOMBSTONES)
        if await coll.get(record.owner, record.id) is None:
            await coll.insert(doc)

    async def tombstone(self, owner: str, artifact_id: str) -> ArtifactRecord | None:
        doc = await self.app.storage.collection(TOMBSTONES).get(owner, artifact_id)
        return ArtifactRecord.model_validate(doc["record"]) if doc else None

    async def factors(self, owner: str, record: ArtifactRecord) -> tuple[list[Factor], Lineage]:
        """Every licence fact in ``record``'s whole lineage, nearest artifacts first."""
        lin = await self.lineage(owner, record, POLICY_MAX_DEPTH)
        out: list[Factor] = []
        for node in sorted(lin.nodes.values(), key=lambda n: n.depth):
            if node.record is None:
                out.append(Factor("lineage", "deleted", node.id))
                if node.tombstone is not None:  # what it contained still binds what was made from it
                    out.extend(factors_of(node.tombstone, self.card_dirs, is_root=False))
            else:
                out.extend(factors_of(node.record, self.card_dirs, is_root=node.id == record.id))
            if node.unexpanded_parents:
                out.append(Factor("lineage", "truncated", node.id))
        return out, lin

    # -- check_usage --------------------------------------------------------------------------------
    def require_use(self, use: str) -> str:
        if use not in self.policy.uses:
            raise BadInput("use", f"{use!r} is not a use the licence policy knows", list(self.policy.uses))
        return use

    async def check_usage(self, owner: str, ref: str, use: str) -> dict[str, Any]:
        self.require_use(use)
        record = await self.app.artifacts.resolve(owner, ref)
        factors, lin = await self.factors(owner, record)
        decision = self.policy.decide(factors, use)
        permitted = self.policy.check_output_licenses(factors).permitted
        return {
            "artifact_id": record.id, "use": use, "use_description": self.policy.uses[use],
            "decision": decision.decision, "reasons": [r.as_dict() for r in decision.reasons],
            "guidance": decision.guidance, "license": record.license, "permitted_licenses": permitted,
            "lineage": {"artifacts_checked": len(lin.nodes), "missing": lin.missing,
                        "truncated": lin.truncated or any(n.unexpanded_parents for n in lin.nodes.values())},
        }

    # -- set_license --------------------------------------------------------------------------------
    def require_license(self, license: str) -> str:
        lid = catalog.normalize(license)
        if lid is None or lid not in self.policy.choosable:
            raise BadInput("license", f"{license!r} is not a licence you can choose for an output",
                           self.policy.choosable)
        return lid

    async def set_license(self, owner: str, ref: str, license: str,
                          attestation: dict[str, Any] | None) -> dict[str, Any]:
        lid = self.require_license(license)
        att = validate_attestation(attestation)
        record = await self.app.artifacts.resolve(owner, ref)
        if record.kind == "manifest":
            raise BadInput("artifact", f"{record.id} is a content-credentials manifest; licence its audio instead",
                           "the audio artifact named in the manifest's parents")
        meta = dict(record.meta or {})
        own = [f for f in factors_of(record, self.card_dirs, is_root=True) if f.value == "upload_unattested"]
        if own and att is None and not isinstance(meta.get(ATTESTATION_KEY), dict):
            raise BadInput("attestation", f"artifact {record.id} contains outside audio ({own[0].detail}) whose "
                           "rights are unknown; attest your rights in it to license it", ATTESTATION_FIELDS)
        if att is not None:
            meta[ATTESTATION_KEY] = {**att, "attested_at": now(), "attested_by": owner}
        candidate = record.model_copy(update={"license": lid, "meta": meta})
        factors, _ = await self.factors(owner, candidate)
        check: LicenseCheck = self.policy.check_output_licenses(factors)
        if lid not in check.permitted:
            allowed = ", ".join(check.permitted) or "none until the reasons above are resolved"
            raise BadInput("license", f"the lineage of {record.id} does not permit {lid}: "
                           f"{_reason_text(check.blockers.get(lid, []))}", allowed)
        updated = await self.app.artifacts.update_meta(owner, record.id, license=lid, meta=meta)
        manifest = await self.write_manifest(updated) if credentials.is_signable(updated) else None
        return {"artifact_id": updated.id, "license": lid, "license_info": catalog.licenses()[lid].describe(),
                "attestation": meta.get(ATTESTATION_KEY), "permitted_licenses": check.permitted,
                "manifest_artifact_id": manifest.id if manifest else None,
                "note": "the licence is stored on the artifact and in a newly signed manifest; the tags inside "
                        "the file keep what was known when it was made"}

    # -- content credentials ------------------------------------------------------------------------
    async def write_manifest(self, record: ArtifactRecord, service: ArtifactService | None = None) -> ArtifactRecord:
        """Sign a manifest for ``record``, store it as its child, and point the record's meta at it."""
        service = service or self.app.artifacts
        license_info = {"license": record.license,
                        "rights_attestation": (record.meta or {}).get(ATTESTATION_KEY)}
        generator = f"echotune-mcp/{package_version()}"
        key = await anyio.to_thread.run_sync(lambda: self.key)
        manifest = credentials.sign(credentials.build_claim(record, generator, license_info), key)
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        stored = await service.create(
            owner=record.owner, data=data, kind="manifest", media_type="application/json",
            name=f"{record.name}.manifest.json", parents=[record.id], job_id=record.job_id,
            meta={"signs": record.id, "key_id": key.key_id},
            provenance={"tool": "content_credentials", "signs": record.id, "key_id": key.key_id})
        current = await service.storage.artifacts.get(record.owner, record.id)
        if current is not None:
            await service.storage.artifacts.update(
                record.owner, record.id, {"meta": {**current.meta, CREDENTIALS_META_KEY: stored.id}})
        return stored

    async def manifest_for(self, owner: str, record: ArtifactRecord) -> ArtifactRecord | None:
        """The current manifest of ``record``: the one its meta names, else the newest that signs it."""
        ref = (record.meta or {}).get(CREDENTIALS_META_KEY)
        if ref:
            found = await self.app.storage.artifacts.get(owner, ref)
            if found is not None:
                return found
        cursor = None
        for _ in range(20):  # bounded scan; the meta reference is the normal path
            page, cursor = await self.app.artifacts.list(owner, kind="manifest", job_id=record.job_id,
                                                         limit=100, cursor=cursor)
            for m in page:
                if record.id in m.parents:
                    return m
            if not cursor:
                break
        return None

    async def _raw(self, record: ArtifactRecord) -> bytes:
        """Bytes as stored, unverified: a verifier must see tampering rather than a storage error."""
        return await self.app.storage.blobs.get(record.sha256)

    async def verify_artifact(self, owner: str, ref: str) -> dict[str, Any]:
        record = await self.app.artifacts.resolve(owner, ref)
        if record.kind == "manifest" and record.parents:
            manifest_rec: ArtifactRecord | None = record
            record = await self.app.artifacts.get(owner, record.parents[0])
        else:
            manifest_rec = await self.manifest_for(owner, record)
        if manifest_rec is None:
            raise BadInput("artifact", f"{record.id} has no content-credentials manifest",
                           "an audio artifact made after credentials were enabled; " + HOW_TO_LIST)
        content = await self._raw(record)
        result = credentials.verify(await self._raw(manifest_rec), content, self.key.public_raw)
        if result.content_matches and result.content_sha256 != record.sha256:
            result.problems.append("the stored bytes differ from the artifact record's sha256")
            result.valid = False
        if result.claim and result.claim.get("asset", {}).get("artifact_id") != record.id:
            result.problems.append("the manifest signs a different artifact")
            result.valid = False
        return {"target": record.id, "manifest": manifest_rec.id, **result.as_dict()}

    async def verify_file(self, owner: str, path: str, manifest: str | None) -> dict[str, Any]:
        policy = await self.app.path_policy(owner)
        file_path = self._allowed(policy, path, "path")
        sha = await anyio.to_thread.run_sync(lambda: _sha256_capped(file_path, VERIFY_MAX_BYTES, "path", path))
        if manifest is None:
            sidecar = file_path.with_name(file_path.name + ".manifest.json")
            if sidecar.is_file():
                manifest = str(sidecar)  # read below through the allowed-roots check, like any path
        if manifest is None:
            recs, _ = await self.app.storage.artifacts.find(owner, {"sha256": sha}, limit=5)
            for rec in recs:
                found = await self.manifest_for(owner, rec)
                if found is not None:
                    manifest = found.id
                    break
        if manifest is None:
            raise BadInput("manifest", f"no manifest found for {path} (no {file_path.name}.manifest.json beside it, "
                           "and no artifact of this server has these exact bytes — they may have been changed)",
                           "a manifest artifact id/URI, or an absolute path to the manifest JSON inside the allowed roots")
        if manifest.startswith(("/", "~")):
            manifest_path = self._allowed(policy, manifest, "manifest")
            manifest_bytes = await anyio.to_thread.run_sync(
                lambda: read_capped(manifest_path, MANIFEST_MAX_BYTES, "manifest", manifest))
            manifest_name = manifest
        else:
            rec = await self.app.artifacts.resolve(owner, manifest)
            if rec.kind != "manifest":
                raise BadInput("manifest", f"{rec.id} is a {rec.kind} artifact, not a manifest",
                               "the manifest artifact (kind manifest) whose parent is the audio")
            manifest_bytes, manifest_name = await self._raw(rec), rec.id
        result = credentials.verify(manifest_bytes, None, self.key.public_raw, content_sha256=sha)
        return {"target": str(file_path), "manifest": manifest_name, **result.as_dict()}

    @staticmethod
    def _allowed(policy: PathPolicy, path: str, field: str) -> Path:
        try:
            return policy.check(path)
        except BadInput as exc:
            raise BadInput(field, str(exc).removeprefix("invalid audio: ")) from None
