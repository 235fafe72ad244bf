"""Artifacts toolset: list, inspect, import and delete the files the server holds for this client."""


import json
import os
from typing import Annotated, Literal

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import CallToolResult
from pydantic import Field

from ..app import App
from ..artifacts import KINDS
from ..errors import BadInput, Busy, NotFound
from ..music.audio_io import AudioError, decode_audio, media_type_for
from ..previews import MEDIA_TYPE as PREVIEW_MEDIA_TYPE
from ..previews import preview_bytes
from ..principal import current_principal
from ..views import ArtifactList, ArtifactView
from .base import Toolset, tool_result
from .common import cursor_argument, decoded_upload

ArtifactRef = Annotated[str, Field(min_length=1, max_length=256,
                                   description="an artifact id or its echotune://artifacts/{id} URI")]
KindFilter = Literal["audio", "stem", "preview", "midi", "image", "json", "arrangement", "upload", "manifest",
                     "export", "daw_export"]
assert set(KindFilter.__args__) == set(KINDS)  # type: ignore[attr-defined]


def build(app: App) -> Toolset:
    ts = Toolset("artifacts", "Files the server produced or received: audio, stems, MIDI, pictures, JSON.")

    @ts.tool(title="List artifacts", read_only=True)
    async def list_artifacts(
        kind: Annotated[KindFilter | None, Field(description="only artifacts of this kind")] = None,
        job_id: Annotated[str | None, Field(max_length=64, description="only artifacts made by this job")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="page size (1-100)")] = 20,
        cursor: Annotated[str | None, Field(max_length=512, description="next_cursor from a previous page")] = None,
    ) -> ArtifactList:
        """List this client's artifacts, newest first; filter by kind or by the job that made them."""
        with cursor_argument():
            recs, nxt = await app.artifacts.list(current_principal(), kind=kind, job_id=job_id, limit=limit,
                                                 cursor=cursor)
        return ArtifactList(artifacts=[ArtifactView.of(r) for r in recs], next_cursor=nxt)

    @ts.tool(title="Get artifact", read_only=True, ui="player")
    async def get_artifact(artifact: ArtifactRef) -> Annotated[CallToolResult, ArtifactView]:
        """Metadata of one artifact (kind, media type, size, sha256, parents, job) with a link to its bytes."""
        rec = await app.artifacts.resolve(current_principal(), artifact)
        view = ArtifactView.of(rec)
        return tool_result(view, links=[view.link()])

    @ts.tool(title="Delete artifact", read_only=False, destructive=True, idempotent=False)
    async def delete_artifact(artifact: ArtifactRef) -> ArtifactView:
        """Delete an artifact permanently (its record, and its bytes unless another artifact shares them).

        Artifacts derived from it keep their own bytes and still name it as a parent. A tombstone of
        its rights (licence, attestation, where it came from, its parents; not its bytes, prompt or
        parameters) is kept, so what was made from it stays bound by them in check_usage and set_license.
        """
        rec = await app.artifacts.resolve(current_principal(), artifact)
        await app.artifacts.delete(rec.owner, rec.id)
        return ArtifactView.of(rec)

    max_mb = app.settings.max_upload_bytes / (1024 * 1024)

    @ts.tool(title="Import audio", read_only=False, destructive=False, idempotent=False, ui="player")
    async def import_audio(
        data_base64: Annotated[str, Field(min_length=1, description=f"the file's bytes, base64 (max {max_mb:.0f} MiB decoded)")],
        filename: Annotated[str, Field(min_length=1, max_length=200, description="original name, e.g. take1.wav")],
    ) -> Annotated[CallToolResult, ArtifactView]:
        """Upload an audio file (WAV, FLAC, OGG or MP3) as an artifact other tools can use.

        Prefer passing a local path inside the allowed roots or an existing artifact URI to tools
        directly; use this when the audio only exists on the client side. Rights in an upload are
        unknown until you attest them with set_license.
        """
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

    async def _lookup(artifact_id: str):
        try:
            return await app.artifacts.get(current_principal(), artifact_id)
        except NotFound as exc:
            raise ResourceNotFoundError(str(exc)) from None

    @ts.resource("echotune://artifacts/{artifact_id}", name="artifact", mime_type="application/json",
                 description="An artifact's metadata as JSON (kind, media type, size, sha256, parents, job).")
    async def artifact_resource(artifact_id: str) -> str:
        rec = await _lookup(artifact_id)
        return json.dumps(ArtifactView.of(rec).model_dump(mode="json"))

    @ts.resource("echotune://artifacts/{artifact_id}/content", name="artifact-content",
                 mime_type="application/octet-stream",
                 description="An artifact's bytes; the response carries its real mime type (audio/wav, audio/midi, ...).")
    async def artifact_content(artifact_id: str) -> bytes:
        rec = await _lookup(artifact_id)
        return await app.artifacts.read(rec)

    @ts.resource("echotune://artifacts/{artifact_id}/waveform.png", name="artifact-waveform", mime_type="image/png",
                 description="Waveform and spectrogram picture of an audio artifact.")
    async def artifact_waveform(artifact_id: str) -> bytes:
        rec = await _lookup(artifact_id)
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

    @ts.resource("echotune://artifacts/{artifact_id}/preview", name="artifact-preview", mime_type=PREVIEW_MEDIA_TYPE,
                 description="A compressed listening copy of an audio artifact (Ogg Opus, up to 96 kbit/s, sized to "
                             "fit one MCP message: about 30 kbit/s for a 3-minute piece), for players such as the "
                             "in-chat views; cached per owner. Use .../content for the original bytes.")
    async def artifact_preview(artifact_id: str) -> bytes:
        return await preview_bytes(app, await _lookup(artifact_id))

    return ts
