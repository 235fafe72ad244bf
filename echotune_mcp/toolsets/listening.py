"""Listening toolset: bring the user's own listening history in, the ground recommendation stands on.

Spotify no longer gives new apps recommendations, related artists or audio features, so what the user
really listened to comes from the exports they can download (Spotify, ListenBrainz, Last.fm) or a plain
interactions TSV. Files are checked (readable, inside the allowed roots, of a format we read) before a
job exists; the import itself is a job that streams the files, so its size is no problem.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import anyio
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from ..app import App
from ..errors import BadInput
from ..principal import current_principal
from ..recommend.history import FORMAT_NAMES, HistoryFileError
from ..recommend.importer import (
    HistorySource,
    ImportReport,
    SkippedFile,
    open_sources,
    submit_import,
)
from ..views import JobView
from .base import Toolset
from .common import WaitSeconds, decoded_upload, job_result

HistoryFormatChoice = Literal["auto", "spotify_account", "spotify_extended", "listenbrainz", "lastfm_csv", "tsv"]
assert set(HistoryFormatChoice.__args__) == {"auto", *FORMAT_NAMES}  # type: ignore[attr-defined]
MAX_FILES = 50
T = TypeVar("T")
HistoryPath = Annotated[str, Field(min_length=1, max_length=1024, description="absolute path of a history file "
                                                                              "inside the allowed roots")]


class ListeningImportJobView(JobView):
    """The import job; once it succeeded, ``result`` is the import report."""

    result: ImportReport | None = Field(default=None, description="the import report once the job succeeded")  # type: ignore[assignment]


def build(app: App) -> Toolset:
    ts = Toolset("listening", "The user's listening history: import plays from Spotify, ListenBrainz and Last.fm "
                              "exports or an interactions TSV.")
    limit = app.settings.max_upload_bytes

    @ts.tool(title="Import listening history", read_only=False, destructive=False, idempotent=True)
    async def import_listening_history(
        ctx: Context,
        paths: Annotated[list[HistoryPath] | None, Field(min_length=1, max_length=MAX_FILES, description=(
            f"history files on this machine (1-{MAX_FILES}), absolute paths inside the allowed roots; any size "
            "(they are streamed)"))] = None,
        data_base64: Annotated[str | None, Field(min_length=1, max_length=(limit + 2) // 3 * 4 + 4, description=(
            f"instead of paths: one file's bytes, base64 (at most {limit} bytes decoded)"))] = None,
        filename: Annotated[str | None, Field(min_length=1, max_length=200, description=(
            "the original file name, with data_base64 (shown in the report; helps tell the Spotify "
            "exports apart)"))] = None,
        format: Annotated[HistoryFormatChoice, Field(description=(
            "auto: detected from each file's content; or name the format and a file that is not one "
            "is refused, naming the format expected"))] = "auto",
        wait_seconds: WaitSeconds = 20,
    ) -> Annotated[CallToolResult, ListeningImportJobView]:
        """Import listening history files into this user's plays, as a background job with progress.

        Reads: Spotify's account-data export (StreamingHistory_music_*.json), Spotify's extended
        streaming history (Streaming_History_Audio_*.json; podcast episodes, audiobooks and
        private-session plays in it are counted as ignored), a ListenBrainz listen export (JSON lines), a Last.fm scrobble CSV
        (artist,album,track,date) and a tab-separated user, item, weight[, timestamp] file. Give local
        paths (several files of one export at once, e.g. every Streaming_History_Audio_*.json), or one
        file's bytes as data_base64 with its filename. A ZIP archive as the service sent it
        (my_spotify_data.zip, a ListenBrainz export) works too: its history files are imported and
        the others listed as skipped, with why.

        Safe to repeat: a play already stored (same source, time and track) is counted as a duplicate
        and not stored again, so re-importing a file, or an export that overlaps an earlier one, adds
        only what is new (Spotify's account-data and extended exports of one play count once). A row that cannot be read is counted as malformed, with the first few
        examples (line or element, and why), and nothing of it is stored. If the job fails or is
        cancelled, everything it stored is removed again (an import cut off by a server stop is
        undone by the next import, before it stores anything); one import runs at a time (a second
        is refused, naming the running job). The result reports, per file and in total:
        rows read, imported, duplicates, ignored (with reasons), malformed, counts by format, and the
        time range of the plays. A file whose format is not one of these (or not the format you named)
        is refused before anything starts, with the format expected.
        """
        owner = current_principal()
        if (paths is None) == (data_base64 is None):
            raise BadInput("paths", "give exactly one of paths or data_base64",
                           "paths=[absolute paths inside the allowed roots] or data_base64 with filename")
        wanted = None if format == "auto" else format
        sources: list[HistorySource] = []
        skipped: list[SkippedFile] = []
        if paths is not None:
            seen: set[str] = set()
            for i, raw in enumerate(paths):
                field = f"paths[{i}]"
                path = _checked_path(app, raw, field)
                if str(path) in seen:
                    raise BadInput(field, f"{raw!r} is already in the list", "each file once")
                seen.add(str(path))
                found, skips = await _resolved(lambda p=path, r=raw: open_sources(p, r, wanted), field, raw)
                sources += found
                skipped += skips
        else:
            if filename is None:
                raise BadInput("filename", "is required with data_base64", "the original file name, e.g. "
                               "StreamingHistory_music_0.json")
            data = decoded_upload(data_base64 or "", limit, "; for bigger files pass paths")
            name = os.path.basename(filename)
            sources, skipped = await _resolved(lambda: open_sources(data, name, wanted), "data_base64", name)
        params = {"files": [{"file": s.name, "format": s.format, "bytes": s.size} for s in sources[:MAX_FILES]],
                  "file_count": len(sources), "format": format, "upload": data_base64 is not None}
        job = await submit_import(app, owner, sources, params, skipped)
        return await job_result(app, owner, job.id, wait_seconds, ctx)

    return ts


def _checked_path(app: App, raw: str, field: str) -> Path:
    """The real path of ``raw`` if it is a file inside the allowed roots; else an error about ``field``."""
    allowed = (f"absolute paths of files under {', '.join(str(r) for r in app.paths.roots) or '(no root configured)'}"
               "; set ECHOTUNE_ALLOWED_ROOTS to widen, or pass the file's bytes as data_base64")
    if "\x00" in raw:
        raise BadInput(field, "contains a NUL character", allowed)
    try:
        return app.paths.check(raw)
    except BadInput as exc:
        problem = str(exc).removeprefix("invalid audio: ").split(" (allowed: ")[0]
        raise BadInput(field, problem, allowed) from None


async def _resolved(make: Callable[[], T], field: str, shown: str) -> T:
    """Read the file's head off the event loop and resolve its format; a mismatch is the caller's error."""
    try:
        return await anyio.to_thread.run_sync(make)
    except HistoryFileError as exc:
        raise BadInput(field, f"{shown} {exc}") from None
    except OSError as exc:
        raise BadInput(field, f"{shown} cannot be read: {exc.strerror or exc}") from None
