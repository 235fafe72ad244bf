"""Export toolset: take a piece out of the chat and into a DAW (DAWproject, REAPER, or a stems zip).

The source is resolved and its session collected before any job exists, so a wrong ``source`` or
``format`` is an error naming the argument and what is allowed, and leaves nothing behind. The archive is
written by a job into a private temp file and stored as one artifact only when complete.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from ..errors import BadInput
from ..export import FORMATS, collect, resolve_source, run_export
from ..export.session import SOURCE_HELP
from ..jobs import JobContext
from ..principal import current_principal
from ..views import JobView
from .base import Toolset, current_app
from .common import WaitSeconds, job_result

ExportFormat = Literal["dawproject", "reaper", "stems"]
assert set(ExportFormat.__args__) == set(FORMATS)  # type: ignore[attr-defined]


toolset = Toolset("export", "Export a piece, a separation or any audio to a DAW: DAWproject, REAPER, or a stems zip.")


@toolset.tool(title="Export to a DAW", read_only=False, destructive=False, idempotent=False)
async def export_to_daw(
    source: Annotated[str, Field(min_length=1, max_length=256, description=(
        "what to export: the mix of generate_music / regenerate_stem / add_stem (its stems and notes), the "
        "stem-set of separate_stems (its stems), any other audio artifact such as a MusicGen piece, a remix or "
        "an upload (one track), as an artifact id/URI; or the job id of one of those tools"))],
    format: Annotated[ExportFormat, Field(description=(
        "dawproject: a .dawproject file (DAWproject 1.0) for Bitwig Studio, Studio One, Cubase; reaper: a zip "
        "with a REAPER .rpp and its audio; stems: a zip of sample-aligned WAV stems, MIDI per part, a "
        "tempo/key/meter map and a README"))],
    ctx: Context,
    wait_seconds: WaitSeconds = 20,
) -> Annotated[CallToolResult, JobView]:
    """Export a piece as one archive a DAW opens, as a background job.

    Every track is a WAV at one sample rate (resampled with soxr if the sources differ), starting at time 0
    and padded to the same length, so they line up sample for sample. Composer pieces also carry each
    stem's notes (a muted MIDI/note track beside its audio in DAWproject and REAPER; midi/<stem>.mid in
    stems) and their form sections as markers; separations and audio-only pieces have audio only, and
    their tempo and key are estimated from the audio (the result says where each value came from).
    The archive is one artifact (kind daw_export) whose parents are the exported artifacts, so
    check_usage on it traces every part's licence; its README lists each file's provenance and licence,
    and its own licence is the most restrictive of its parts' chosen licences (none if a part has none).
    """
    app = current_app()
    owner = current_principal()
    if format not in FORMATS:  # the schema already refuses it; this guards direct calls
        raise BadInput("format", f"{format!r} is not an export format", sorted(FORMATS))
    record = await resolve_source(app, owner, source)
    session = await collect(app, owner, record)
    if not session.tracks:
        raise BadInput("source", f"{record.id} has no audio to export", SOURCE_HELP)
    params = {"source": source, "resolved_source": record.id, "format": format, "kind": session.kind,
              "tracks": [t.name for t in session.tracks]}

    async def work(job: JobContext) -> dict[str, Any]:
        return await run_export(app, job, session, format)

    job = await app.jobs.submit(owner=owner, tool="export_to_daw", params=params, work=work)
    return await job_result(app, owner, job.id, wait_seconds, ctx)
