"""DAW export (issue #17 item 4): a piece, a separation or any audio as one archive a DAW opens.

* ``session`` — the common model (tracks, audio, notes, tempo, meter, key, markers) collected from artifacts.
* ``archive`` — the shared audio step (sample-aligned WAVs) and the temp-file zip around every format.
* ``dawproject`` / ``reaper`` / ``stems`` — one module per format, each a ``write(zf, session, files, licences)``.
* ``licences`` — the licence facts of each exported file and of the whole export.

``run_export`` is what the ``export_to_daw`` job does; the toolset stays thin.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import anyio

from . import dawproject, reaper, stems
from .archive import build_archive
from .licences import licence_report
from .session import Session, collect, file_slug, resolve_source

if TYPE_CHECKING:
    from ..app import App
    from ..jobs import JobContext

FORMATS: dict[str, ModuleType] = {"dawproject": dawproject, "reaper": reaper, "stems": stems}
KIND = "daw_export"

__all__ = ["FORMATS", "KIND", "Session", "collect", "resolve_source", "run_export"]


async def run_export(app: App, job: JobContext, session: Session, fmt: str) -> dict[str, Any]:
    """Write the archive and store it as one artifact (kind ``daw_export``) whose parents are every artifact it
    was made from; the result describes the tracks, timing, markers and licences."""
    module = FORMATS[fmt]
    owner = job.owner
    await job.progress(0.01, "reading the licences of the parts")
    licences = await licence_report(app, owner, session)
    path, files, report = await build_archive(app, job, session, module.AUDIO_DIR, module.write, licences)
    try:
        data = await anyio.to_thread.run_sync(path.read_bytes)
    finally:
        path.unlink(missing_ok=True)
    job.check_cancelled()
    await job.progress(0.95, "storing the archive")
    num, den = session.time_signature
    file_name = file_slug(session.title) + module.SUFFIX
    timing = {"bpm": session.bpm, "bpm_source": session.bpm_source, "time_signature": f"{num}/{den}",
              "meter_source": session.meter_source, "key": session.key, "key_source": session.key_source}
    markers = [{"name": m.name, "time_s": round(m.time_s, 6), "beat": round(session.beats(m.time_s), 6)}
               for m in session.markers]
    tracks = [f.describe() for f in files]
    provenance = {
        "tool": "export_to_daw",
        "parameters": {"format": fmt, "source": session.source.id, "kind": session.kind, **timing},
        "processing": "decoded, resampled with soxr where rates differ, padded with silence to the longest track, "
                      "written as 24-bit PCM WAV; project files written by EchoTune",
        "files": [{"path": t["file"], "artifact_id": t["source_artifact_id"], "sha256": t["sha256"]} for t in tracks],
        "export_license": {"license": licences["export_license"], "reason": licences["export_license_reason"]},
    }
    art = await job.add_artifact(
        data=data, kind=KIND, media_type=module.MIME, name=file_name, parents=session.parents,
        meta={"format": fmt, "source": session.source.id, "kind": session.kind, "tracks": [t["track"] for t in tracks],
              "sample_rate": files[0].sample_rate, "length_frames": files[0].frames, **timing},
        provenance=provenance, license=licences["export_license"])
    return {
        "artifact_id": art.id, "uri": f"echotune://artifacts/{art.id}/content", "file_name": file_name,
        "format": fmt, "size": art.size, "source": session.source.id, "kind": session.kind, "title": session.title,
        "project_file": report.get("project_file"), "tracks": tracks, "daw_tracks": report.get("tracks"),
        "sample_rate": files[0].sample_rate, "length_frames": files[0].frames,
        "duration_s": round(files[0].duration_s, 6), **timing, "markers": markers,
        "license": licences["export_license"], "license_reason": licences["export_license_reason"],
        "permitted_licenses": licences["permitted_licenses"], "uses": licences["uses"],
        "notes": session.notes, "seconds": report.get("seconds"),
    }
