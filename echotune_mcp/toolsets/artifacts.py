"""Artifacts toolset: list, inspect, import and delete the files the server holds for this client."""


import json
import os
from typing import Annotated, Literal

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types import CallToolResult
from pydantic import Field

from .. import confirm as confirmation
from ..app import App
from ..artifacts import KINDS
from ..confirm import Confirm, Confirmation, Decision, Preview
from ..errors import BadInput, Busy, NotFound
from ..music.audio_io import AudioError, decode_audio, media_type_for
from ..previews import MEDIA_TYPE as PREVIEW_MEDIA_TYPE
from ..previews import preview_bytes
from ..principal import current_principal
from ..storage.records import ArtifactRecord
from ..views import ArtifactList, ArtifactView
from .base import Toolset, current_app, tool_result
from .common import cursor_argument, decoded_upload

ArtifactRef = Annotated[str, Field(min_length=1, max_length=256,
                                   description="an artifact id or its echotune://artifacts/{id} URI")]
KindFilter = Literal["audio", "stem", "preview", "midi", "image", "json", "arrangement", "upload", "manifest",
                     "export", "daw_export"]
assert set(KindFilter.__args__) == set(KINDS)  # type: ignore[attr-defined]
# How many of the owner's newer artifacts delete_artifact reads when looking for ones made from the target.
MAX_CHILD_SCAN = 20_000


async def derived_from(app: App, record: ArtifactRecord) -> tuple[list[ArtifactRecord], bool]:
    """The owner's artifacts that name ``record`` as a parent, and whether the scan was cut short.

    Parents are stored on the child, and a child is always made after its parent, so only artifacts created
    since are read, newest first, at most ``MAX_CHILD_SCAN``. A signed manifest is the artifact's own content
    credential, not something made from it, so it does not count."""
    children: list[ArtifactRecord] = []
    cursor, seen = None, 0
    while True:
        page, cursor = await app.storage.artifacts.find(record.owner, None, limit=500, cursor=cursor)
        for rec in page:
            if rec.created_at < record.created_at:
                return children, False
            if record.id in rec.parents and rec.kind != "manifest":
                children.append(rec)
        seen += len(page)
        if not cursor:
            return children, False
        if seen >= MAX_CHILD_SCAN:
            return children, True


toolset = Toolset("artifacts", "Files the server produced or received: audio, stems, MIDI, pictures, JSON.")


@toolset.tool(title="List artifacts", read_only=True)
async def list_artifacts(
    kind: Annotated[KindFilter | None, Field(description="only artifacts of this kind")] = None,
    job_id: Annotated[str | None, Field(max_length=64, description="only artifacts made by this job")] = None,
    limit: Annotated[int, Field(ge=1, le=100, description="page size (1-100)")] = 20,
    cursor: Annotated[str | None, Field(max_length=512, description="next_cursor from a previous page")] = None,
) -> ArtifactList:
    """List this client's artifacts, newest first; filter by kind or by the job that made them."""
    app = current_app()
    with cursor_argument():
        recs, nxt = await app.artifacts.list(current_principal(), kind=kind, job_id=job_id, limit=limit,
                                             cursor=cursor)
    return ArtifactList(artifacts=[ArtifactView.of(r) for r in recs], next_cursor=nxt)


@toolset.tool(title="Get artifact", read_only=True, ui="player")
async def get_artifact(artifact: ArtifactRef) -> Annotated[CallToolResult, ArtifactView]:
    """Metadata of one artifact (kind, media type, size, sha256, parents, job) with a link to its bytes."""
    rec = await current_app().artifacts.resolve(current_principal(), artifact)
    view = ArtifactView.of(rec)
    return tool_result(view, links=[view.link()])


async def ask_delete(ctx: Context, artifact: str, confirm: bool) -> Elicit[Confirmation] | Decision:
    """Resolver: a leaf goes without a question; one that other artifacts were made from needs a yes."""
    app = current_app()

    async def preview() -> Preview | None:
        rec = await app.artifacts.resolve(current_principal(), artifact)
        children, cut = await derived_from(app, rec)
        if not children and not cut:
            return None
        lines = [f"{c.id} {c.name!r} ({c.kind})" for c in children]
        count = f"at least {len(children)}" if cut else str(len(children))
        return Preview(f"permanently delete artifact {rec.id} {rec.name!r} ({rec.kind}), which {count} other "
                       "artifact(s) were made from", lines,
                       "This cannot be undone. The derived artifacts keep their own bytes and still name it as a "
                       "parent; its rights (licence, attestation, origin) stay on record for them.")
    return await confirmation.ask(ctx, confirm, preview)


@toolset.tool(title="Delete artifact", read_only=False, destructive=True, idempotent=False)
async def delete_artifact(
    artifact: ArtifactRef, confirm: Confirm = False, *,
    answer: Annotated[ElicitationResult[Confirmation], Resolve(ask_delete)],
) -> ArtifactView:
    """Delete an artifact permanently (its record, and its bytes unless another artifact shares them).

    Artifacts derived from it keep their own bytes and still name it as a parent. A tombstone of
    its rights (licence, attestation, where it came from, its parents; not its bytes, prompt or
    parameters) is kept, so what was made from it stays bound by them in check_usage and set_license.
    An artifact nothing was made from is deleted at once. When others were made from it, the person
    is asked first (elicitation) unless confirm=true; a client that cannot be asked gets a
    'confirmation required' error listing the derived artifacts, and nothing is deleted.
    """
    confirmation.settle("delete_artifact", answer)
    app = current_app()
    rec = await app.artifacts.resolve(current_principal(), artifact)
    await app.artifacts.delete(rec.owner, rec.id)
    return ArtifactView.of(rec)


@toolset.tool(title="Import audio", read_only=False, destructive=False, idempotent=False, ui="player")
async def import_audio(
    data_base64: Annotated[str, Field(min_length=1, description=(
        "the file's bytes, base64; at most this server's ECHOTUNE_MAX_UPLOAD_BYTES decoded (50 MiB by default)"))],
    filename: Annotated[str, Field(min_length=1, max_length=200, description="original name, e.g. take1.wav")],
) -> Annotated[CallToolResult, ArtifactView]:
    """Upload an audio file (WAV, FLAC, OGG or MP3) as an artifact other tools can use.

    Prefer passing a local path inside the allowed roots or an existing artifact URI to tools
    directly; use this when the audio only exists on the client side. Rights in an upload are
    unknown until you attest them with set_license.
    """
    app = current_app()
    limit = app.settings.max_upload_bytes
    data = decoded_upload(data_base64, limit)
    try:
        audio = await app.cpu.run(
            lambda: decode_audio(data, max_seconds=app.settings.max_audio_seconds, what="data_base64"),
            start_within=app.settings.max_wait_seconds)
    except AudioError as exc:
        raise BadInput("data_base64", str(exc)) from None
    media = media_type_for({"WAV": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3"}[audio.format])
    rec = await app.artifacts.create(
        owner=current_principal(), data=data, kind="upload", media_type=media,
        name=os.path.basename(filename),
        meta={"duration_s": round(audio.duration_s, 3), "sample_rate": audio.sample_rate,
              "channels": audio.channels, "format": audio.format},
        provenance={"tool": "import_audio", "source": {"type": "upload", "filename": os.path.basename(filename)},
                    "rights": "unknown"},
    )
    view = ArtifactView.of(rec)
    return tool_result(view, links=[view.link()], summary=f"imported {rec.name} as {rec.id}")


async def _lookup(app: App, artifact_id: str) -> ArtifactRecord:
    try:
        return await app.artifacts.get(current_principal(), artifact_id)
    except NotFound as exc:
        raise ResourceNotFoundError(str(exc)) from None


@toolset.resource("echotune://artifacts/{artifact_id}", name="artifact", mime_type="application/json",
                  description="An artifact's metadata as JSON (kind, media type, size, sha256, parents, job).")
async def artifact_resource(artifact_id: str) -> str:
    rec = await _lookup(current_app(), artifact_id)
    return json.dumps(ArtifactView.of(rec).model_dump(mode="json"))


@toolset.resource("echotune://artifacts/{artifact_id}/content", name="artifact-content",
                  mime_type="application/octet-stream",
                  description="An artifact's bytes; the response carries its real mime type (audio/wav, audio/midi, ...).")
async def artifact_content(artifact_id: str) -> bytes:
    app = current_app()
    rec = await _lookup(app, artifact_id)
    return await app.artifacts.read(rec)


@toolset.resource("echotune://artifacts/{artifact_id}/waveform.png", name="artifact-waveform", mime_type="image/png",
                  description="Waveform and spectrogram picture of an audio artifact.")
async def artifact_waveform(artifact_id: str) -> bytes:
    app = current_app()
    rec = await _lookup(app, artifact_id)
    if not rec.media_type.startswith("audio/"):
        raise ResourceNotFoundError(f"artifact {artifact_id} is {rec.media_type}, not audio; no waveform")
    data = await app.artifacts.read(rec)

    def draw() -> bytes:
        from ..music.waveform import waveform_png

        audio = decode_audio(data, max_seconds=1e9, what=rec.name)
        return waveform_png(audio.samples, audio.sample_rate, title=rec.name)

    # Heavy: in the CPU pool, answered busy if no thread is free within the longest tool wait.
    try:
        return await app.cpu.run(draw, start_within=app.settings.max_wait_seconds)
    except Busy as exc:
        raise ResourceError(str(exc)) from None


@toolset.resource("echotune://artifacts/{artifact_id}/preview", name="artifact-preview", mime_type=PREVIEW_MEDIA_TYPE,
                  description="A compressed listening copy of an audio artifact (Ogg Opus, up to 96 kbit/s, sized to "
                                  "fit one MCP message: about 30 kbit/s for a 3-minute piece), for players such as the "
                                  "in-chat views; cached per owner. Use .../content for the original bytes.")
async def artifact_preview(artifact_id: str) -> bytes:
    app = current_app()
    return await preview_bytes(app, await _lookup(app, artifact_id))
