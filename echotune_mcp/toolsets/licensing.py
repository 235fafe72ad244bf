"""Licensing toolset: provenance graphs, "may I use this for X?", licences, and content credentials.

Every answer is traced through the lineage (model weights, soundfont, uploads, provider tracks,
licences of attested material) by the rules in ``licensing/policy.toml``, so an agent can tell
its user not just yes or no but which ancestor and which licence decided it and what would change it.
"""


import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from pydantic import BaseModel, Field

from ..errors import BadInput, NotFound
from ..licensing import Licensing, catalog
from ..licensing.factors import ATTESTATION_KEY
from ..licensing.provenance import summarize
from ..licensing.service import CREDENTIALS_META_KEY
from ..principal import current_principal
from .base import Toolset, current_app

ArtifactRef = Annotated[str, Field(min_length=1, max_length=256,
                                   description="an artifact id or its echotune://artifacts/{id} URI")]
UseName = Literal[tuple(catalog.uses())]  # type: ignore[valid-type]
LicenseId = Literal[tuple(catalog.choosable_ids())]  # type: ignore[valid-type]
_USES_HELP = "; ".join(f"{k}: {v}" for k, v in catalog.uses().items())


class Attestation(BaseModel):
    holder: str = Field(min_length=1, max_length=200, description="who holds the rights (a person or company)")
    statement: str = Field(min_length=1, max_length=2000,
                           description="what you attest, e.g. 'I recorded this guitar take myself in 2024'")
    rights: Literal["own_work", "licensed", "public_domain"] = Field(
        description="own_work: you made it; licensed: you use it under the licence you are setting; "
                    "public_domain: nobody holds rights in it")
    evidence_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$",
                                     description="optional link to proof (licence page, contract, release)")


class ReasonView(BaseModel):
    rule: str = Field(description="the policy rule (licensing/policy.toml) that matched")
    factor: str = Field(description="weights | soundfont | source | inbound_license | output_license | lineage")
    license: str = Field(description="the licence or value that caused it")
    artifact_id: str = Field(description="the artifact in the lineage it came from")
    effect: str
    explanation: str
    condition: str | None = None
    remedy: str | None = Field(default=None, description="what would make this use allowed")
    also_in: list[str] = Field(default_factory=list, description="other ancestors with the same factor")


class UsageCheck(BaseModel):
    artifact_id: str
    use: str
    use_description: str
    decision: Literal["allowed", "allowed_with_conditions", "not_allowed"]
    reasons: list[ReasonView] = Field(description="most restrictive first")
    guidance: list[str] = Field(description="plain steps: remedies for what is not allowed, then conditions")
    license: str | None = Field(description="the licence currently set on the artifact")
    permitted_licenses: list[str] = Field(description="licences set_license would accept for this artifact now")
    lineage: dict[str, Any]


class ProvenanceNode(BaseModel):
    artifact_id: str
    depth: int = Field(description="generations from the requested artifact (0 = itself)")
    kind: str | None = None
    name: str | None = None
    sha256: str | None = None
    missing: bool = Field(default=False, description="the artifact was deleted; its content cannot be checked")
    more_parents: bool = Field(default=False, description="it has parents beyond the requested depth")
    provenance: dict[str, Any] | None = None


class ProvenanceGraph(BaseModel):
    artifact_id: str
    depth: int
    nodes: list[ProvenanceNode]
    edges: list[dict[str, str]] = Field(description="{child, parent}: the child was derived from the parent")
    truncated: bool


class LicenseSet(BaseModel):
    artifact_id: str
    license: str
    license_info: dict[str, Any]
    attestation: dict[str, Any] | None
    permitted_licenses: list[str]
    manifest_artifact_id: str | None
    note: str


class CredentialCheck(BaseModel):
    target: str = Field(description="the artifact id or file checked")
    manifest: str = Field(description="the manifest artifact id or path used")
    valid: bool = Field(description="true only if the signature, the signing key and the content hash all check out")
    signature_valid: bool
    signed_by_this_server: bool
    content_matches: bool
    content_sha256: str
    claimed_sha256: str | None
    key_id: str | None
    problems: list[str]
    claim: dict[str, Any] | None = None


def _licensing() -> Licensing:
    """The licensing service for the App serving this call. Built per call: it holds only the app and the
    policy, which ``load_policy`` caches, so there is nothing to keep between calls."""
    return Licensing(current_app())


toolset = Toolset("licensing", "Provenance, licence checks for intended uses, licences, and signed content credentials.")


@toolset.tool(title="Get provenance", read_only=True, ui="provenance")
async def get_provenance(
    artifact: ArtifactRef,
    depth: Annotated[int, Field(ge=0, le=10, description="generations of ancestors to include (0-10)")] = 3,
) -> ProvenanceGraph:
    """How an artifact was made, and from what: its lineage graph.

    Nodes carry a provenance summary (tool, job, owner, time, backend, model and weights
    licence, soundfont and its licence, prompt, parameters, seed, inputs with sha256, licence,
    rights attestation); edges link each child to the parents it was derived from, e.g.
    mastered mix -> remix -> separated stem -> upload. Deleted ancestors appear as missing, with
    the rights and provenance their tombstone kept (their content cannot be checked).
    """
    app, lic = current_app(), _licensing()
    owner = current_principal()
    record = await app.artifacts.resolve(owner, artifact)
    lin = await lic.lineage(owner, record, depth)
    nodes = []
    for n in sorted(lin.nodes.values(), key=lambda n: (n.depth, n.id)):
        r = n.record
        k = n.known  # a deleted ancestor shows what its tombstone kept (rights, not content)
        nodes.append(ProvenanceNode(artifact_id=n.id, depth=n.depth, missing=r is None,
                                    more_parents=n.unexpanded_parents, kind=k.kind if k else None,
                                    name=k.name if k else None, sha256=k.sha256 if k else None,
                                    provenance=summarize(k, lic.card_dirs) if k else None))
    return ProvenanceGraph(artifact_id=record.id, depth=depth, nodes=nodes, truncated=lin.truncated,
                           edges=[{"child": c, "parent": p} for c, p in lin.edges])


@toolset.tool(title="Check usage", read_only=True, ui="provenance")
async def check_usage(
    artifact: ArtifactRef,
    use: Annotated[UseName, Field(description=f"the intended use. {_USES_HELP}")],
) -> UsageCheck:
    """May this artifact be used this way? Call before publishing, selling or syncing anything.

    Checks the whole lineage against the licence policy and answers allowed,
    allowed_with_conditions or not_allowed, with each reason naming the ancestor artifact and
    the licence that caused it (model weights, soundfont, an upload of unknown rights, a
    provider track, attested third-party material, the licence you chose) and guidance on
    what would make it allowed. Also lists the licences set_license would accept.
    """
    return UsageCheck.model_validate(await _licensing().check_usage(current_principal(), artifact, use))


@toolset.tool(title="Set licence", read_only=False, destructive=False, idempotent=True)
async def set_license(
    artifact: ArtifactRef,
    license: Annotated[LicenseId, Field(description="the licence to publish this artifact under")],
    attestation: Annotated[Attestation | None, Field(
        description="required for an upload (or anything made from outside audio of unknown rights) that has "
                    "not been attested yet: who holds the rights and on what basis")] = None,
) -> LicenseSet:
    """Choose the licence for an artifact; refused, with the reasons, if its lineage does not permit it.

    E.g. audio from CC-BY-NC-4.0 model weights can only be CC-BY-NC-4.0 or all-rights-reserved,
    and material attested as CC-BY-SA-4.0 forces CC-BY-SA-4.0. Uploads have unknown rights:
    attest them here (own_work, licensed, public_domain) before they or anything derived from
    them can be licensed or released. The licence goes on the artifact and into a newly signed
    content-credentials manifest. Call check_usage first to see the permitted licences.
    """
    data = await _licensing().set_license(current_principal(), artifact, license,
                                          attestation.model_dump() if attestation else None)
    return LicenseSet.model_validate(data)


@toolset.tool(title="Verify content credentials", read_only=True)
async def verify_credentials(
    artifact: Annotated[str | None, Field(max_length=256, description="an audio (or manifest) artifact id or URI")] = None,
    path: Annotated[str | None, Field(max_length=1024,
                                      description="instead of artifact: an absolute path to an audio file inside "
                                                  "the allowed roots")] = None,
    manifest: Annotated[str | None, Field(max_length=1024,
                                          description="with path: the manifest artifact id/URI or an absolute "
                                                      "path to its JSON (default: <file>.manifest.json beside it, "
                                                      "else the manifest of the artifact with the same bytes)")] = None,
) -> CredentialCheck:
    """Check an audio file against its signed content-credentials manifest.

    Detects a changed file (its sha256 no longer matches the signed claim), a changed manifest
    (the Ed25519 signature fails) and a manifest signed by another key. Give exactly one of
    artifact or path.
    """
    owner = current_principal()
    if (artifact is None) == (path is None):
        raise BadInput("artifact", "give exactly one of artifact or path",
                       "artifact=<id or echotune://artifacts/{id}>, or path=<absolute path> (+ manifest)")
    lic = _licensing()
    if artifact is not None:
        return CredentialCheck.model_validate(await lic.verify_artifact(owner, artifact))
    return CredentialCheck.model_validate(await lic.verify_file(owner, path, manifest))


@toolset.resource("echotune://artifacts/{artifact_id}/provenance", name="artifact-provenance",
                  mime_type="application/json",
                  description="An artifact's full provenance record (as stored with it), licence, rights attestation "
                              "and current content-credentials manifest id.")
async def provenance_resource(artifact_id: str) -> str:
    try:
        rec = await current_app().artifacts.get(current_principal(), artifact_id)
    except NotFound as exc:
        raise ResourceNotFoundError(str(exc)) from None
    return json.dumps({"artifact_id": rec.id, "kind": rec.kind, "parents": rec.parents, "license": rec.license,
                       "rights_attestation": rec.meta.get(ATTESTATION_KEY),
                       "content_credentials": rec.meta.get(CREDENTIALS_META_KEY),
                       "provenance": rec.provenance})


@toolset.resource("echotune://licenses", name="license-catalog", mime_type="application/json",
                  description="The licence catalogue (id, name, url, commercial use, derivatives, attribution, "
                              "share-alike, whether it can be chosen for outputs) and the intended uses check_usage knows.")
async def license_catalog() -> str:
    return json.dumps({"licenses": [x.describe() for x in catalog.licenses().values()],
                       "uses": catalog.uses()})
