"""Listening toolset: bring the user's own listening history in, the ground recommendation stands on.

Spotify no longer gives new apps recommendations, related artists or audio features, so what the user
really listened to comes from the exports they can download (Spotify, ListenBrainz, Last.fm) or a plain
interactions TSV. Files are checked (readable, inside the allowed roots, of a format we read) before a
job exists; the import itself is a job that streams the files, so its size is no problem. ``taste_profile``
reads those plays back (this user's only) as tops, listening times, skip and discovery rates, and a chart.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlencode

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import CallToolResult, ResourceLink
from pydantic import Field

from ..artifacts import PathPolicy
from ..errors import BadInput, Busy
from ..principal import current_principal
from ..providers.base import NotConnected
from ..recommend.history import FORMAT_NAMES, HistoryFileError
from ..recommend.importer import (
    HistorySource,
    ImportReport,
    SkippedFile,
    SYNC_TOOL,
    open_sources,
    submit_exclusive,
    submit_import,
)
from ..recommend.profile import NoHistory, Period, TasteProfile, build_profile, profile_png, window, zone
from ..recommend.sync import TERMS, Include, SyncReport, Term, run_sync
from ..views import JobView
from .base import Toolset, current_app, tool_result
from .common import WaitSeconds, decoded_upload, job_result

HistoryFormatChoice = Literal["auto", "spotify_account", "spotify_extended", "listenbrainz", "lastfm_csv", "tsv"]
assert set(HistoryFormatChoice.__args__) == {"auto", *FORMAT_NAMES}  # type: ignore[attr-defined]
MAX_FILES = 50
T = TypeVar("T")
PROFILE_PNG = "echotune://listening/profile.png{?period,since,until,timezone}"
Day = Annotated[str, Field(min_length=10, max_length=10, pattern=r"^\d{4}-\d{2}-\d{2}$")]
HistoryPath = Annotated[str, Field(min_length=1, max_length=1024, description="absolute path of a history file "
                                                                              "inside the allowed roots")]


class ListeningImportJobView(JobView):
    """The import job; once it succeeded, ``result`` is the import report."""

    result: ImportReport | None = Field(default=None, description="the import report once the job succeeded")  # type: ignore[assignment]


class ListeningSyncJobView(JobView):
    """The sync job; once it succeeded, ``result`` is the sync report."""

    result: SyncReport | None = Field(default=None, description="the sync report once the job succeeded")  # type: ignore[assignment]


toolset = Toolset("listening", "The user's listening history: import plays from Spotify, ListenBrainz and "
                               "Last.fm exports or an interactions TSV, sync what Spotify and YouTube Music still "
                               "give, and read them back as a taste profile.")


@toolset.tool(title="Import listening history", read_only=False, destructive=False, idempotent=True)
async def import_listening_history(
    ctx: Context,
    paths: Annotated[list[HistoryPath] | None, Field(min_length=1, max_length=MAX_FILES, description=(
        f"history files on this machine (1-{MAX_FILES}), absolute paths inside the allowed roots; any size "
        "(they are streamed)"))] = None,
    data_base64: Annotated[str | None, Field(min_length=1, description=(
        "instead of paths: one file's bytes, base64 (at most this server's ECHOTUNE_MAX_UPLOAD_BYTES decoded "
        "(50 MiB by default); a bigger upload is refused naming the limit)"))] = None,
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
    app = current_app()
    owner = current_principal()
    if (paths is None) == (data_base64 is None):
        raise BadInput("paths", "give exactly one of paths or data_base64",
                       "paths=[absolute paths inside the allowed roots] or data_base64 with filename")
    wanted = None if format == "auto" else format
    sources: list[HistorySource] = []
    skipped: list[SkippedFile] = []
    if paths is not None:
        seen: set[str] = set()
        policy = await app.path_policy(owner)
        for i, raw in enumerate(paths):
            field = f"paths[{i}]"
            path = _checked_path(policy, raw, field)
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
        data = decoded_upload(data_base64 or "", app.settings.max_upload_bytes, "; for bigger files pass paths")
        name = os.path.basename(filename)
        sources, skipped = await _resolved(lambda: open_sources(data, name, wanted), "data_base64", name)
    params = {"files": [{"file": s.name, "format": s.format, "bytes": s.size} for s in sources[:MAX_FILES]],
              "file_count": len(sources), "format": format, "upload": data_base64 is not None}
    job = await submit_import(app, owner, sources, params, skipped)
    return await job_result(app, owner, job.id, wait_seconds, ctx)


@toolset.tool(title="Sync listening history from a provider", read_only=False, destructive=False, idempotent=True,
              open_world=True)
async def sync_listening_history(
    ctx: Context,
    provider: Annotated[Literal["spotify", "ytmusic"], Field(description=(
        "spotify or ytmusic (YouTube Music); connect it first (connect_provider)"))],
    include: Annotated[list[Include] | None, Field(min_length=1, max_length=3, description=(
        "what to fetch: recently_played (plays: Spotify's last ~50, YouTube Music's history), top (Spotify's "
        "top tracks; not plays) and saved (saved / liked tracks; not plays). Default: all three for "
        "spotify, recently_played for ytmusic"))] = None,
    top_terms: Annotated[list[Term] | None, Field(min_length=1, max_length=3, description=(
        "Spotify top lists to fetch with include 'top': short_term (~4 weeks), medium_term (~6 months), "
        "long_term (~1 year); default all three"))] = None,
    max_items: Annotated[int, Field(ge=1, le=10_000, description=(
        "the most items taken from each source (1-10000)"))] = 1000,
    timezone: Annotated[str, Field(min_length=1, max_length=64, description=(
        "IANA timezone of the YouTube Music account, for what its history labels ('Today', 'Yesterday') "
        "mean as dates"))] = "UTC",
    wait_seconds: WaitSeconds = 20,
) -> Annotated[CallToolResult, ListeningSyncJobView]:
    """Bring what a connected provider still tells about your listening into your history, as a job.

    Spotify: recently played (real plays with their times, but Spotify keeps only about the last 50
    and not how long each lasted: for years of history import the account-data export with
    import_listening_history), top tracks per term and saved tracks. Top and saved tracks are
    stored as taste signals, not plays, so taste_profile's play counts stay true. YouTube Music: the
    history (plays labelled only 'Today', 'Yesterday', 'This week'...: stored with that day or
    period, no invented times) and liked songs (saved). Safe to repeat: what is already stored
    (same source, time or period, and track) is counted as a duplicate, so re-syncing adds only
    what is new. A source the API refuses is reported as unavailable with why (a 403 names the
    Spotify scope it needs) while the others are synced. If the job fails or is cancelled,
    everything it stored is removed again; one import or sync runs at a time. The report gives,
    per source: fetched, imported, duplicates, skipped (with reasons), and what the API could not give.
    """
    app = current_app()
    owner = current_principal()
    kinds: list[str] = list(dict.fromkeys(include or (["recently_played", "top", "saved"]
                                                      if provider == "spotify" else ["recently_played"])))
    if provider == "ytmusic" and "top" in kinds:
        raise BadInput("include", "YouTube Music has no top-tracks listing", "recently_played, saved")
    if top_terms is not None and ("top" not in kinds or provider != "spotify"):
        raise BadInput("top_terms", "only applies to provider spotify with 'top' in include",
                       "leave it out, or include 'top'")
    terms = list(dict.fromkeys(top_terms or TERMS))
    zone(timezone)
    if provider == "ytmusic" and not app.settings.ytmusic_auth_file:
        raise NotConnected("ytmusic")
    adapter = await app.providers.provider(owner, provider)
    granted: str | None = None
    if provider == "spotify" and not app.settings.spotify_token:
        meta = await app.providers.keeper.store.metadata(owner, "spotify")
        granted = (meta or {}).get("scope")
    params = {"provider": provider, "include": kinds, "top_terms": terms if "top" in kinds else [],
              "max_items": max_items, "timezone": timezone}

    async def work(job: Any, undone: int) -> dict[str, Any]:
        try:
            report = await run_sync(app.storage.listening, owner, provider, adapter, job.job.id, include=kinds,
                                    terms=terms, max_items=max_items, timezone=timezone,
                                    granted_scope=granted, progress=job.progress)
        finally:
            await adapter.aclose()
        report.interrupted_imports_undone = undone
        return report.model_dump(mode="json")

    try:
        job = await submit_exclusive(app, owner, SYNC_TOOL, params, work)
    except BaseException:
        await adapter.aclose()
        raise
    return await job_result(app, owner, job.id, wait_seconds, ctx)


@toolset.tool(title="Taste profile", read_only=True)
async def taste_profile(
    period: Annotated[Period | None, Field(description=(
        "last_4_weeks, last_6_months, last_year (each ending now) or all_time (the default); or leave it "
        "out and give since/until"))] = None,
    since: Annotated[Day | None, Field(description="first day (YYYY-MM-DD, in timezone), instead of "
                                                   "period")] = None,
    until: Annotated[Day | None, Field(description="last day, inclusive (YYYY-MM-DD, in timezone), instead of "
                                                   "period")] = None,
    timezone: Annotated[str, Field(min_length=1, max_length=64, description=(
        "IANA timezone name for the listening-time pattern and the dates, e.g. Europe/Berlin"))] = "UTC",
    top: Annotated[int, Field(ge=1, le=100, description="how many top artists and tracks (1-100)")] = 10,
) -> Annotated[CallToolResult, TasteProfile]:
    """What this user listens to, from their own imported listening history (read-only).

    For a period (or explicit dates): top artists and tracks by plays and by listening time,
    when they listen (plays per hour of day x weekday in the timezone given), skip rate (with
    the definition used and how many plays had the information), discovery rate (share of the
    period's artists, plays and tracks first heard in it), totals and the time range the history
    covers. Tags and genres are reported only if the plays carry them (the imported formats do
    not). Links a PNG chart of top artists and the hour x weekday pattern. A user with no history
    is told to run import_listening_history first.
    """
    span = window(period, since, until, timezone)
    profile = await build_profile(current_app().storage.listening, current_principal(), span, top=top)
    query = {k: v for k, v in (("period", period), ("since", since), ("until", until),
                               ("timezone", timezone if timezone != "UTC" else None)) if v is not None}
    profile.chart_uri = "echotune://listening/profile.png" + (f"?{urlencode(query)}" if query else "")
    link = ResourceLink(type="resource_link", uri=profile.chart_uri, name="taste-profile.png",
                        mime_type="image/png", description="top artists and hour x weekday listening pattern")
    t, w = profile.totals, profile.window
    summary = (f"{t.plays:g} plays of {t.artists} artists ({w.period}"
               + (f", {w.since} to {w.until}" if w.since or w.until else "") + ")")
    return tool_result(profile, links=[link], summary=summary)


@toolset.resource(PROFILE_PNG, name="listening-profile", mime_type="image/png",
                  description="Chart of your taste profile: top artists by plays and the hour x weekday listening "
                              "pattern; same period/since/until/timezone as taste_profile.")
async def listening_profile_png(period: str | None = None, since: str | None = None, until: str | None = None,
                                timezone: str = "UTC") -> bytes:
    app = current_app()
    try:
        span = window(period or None, since or None, until or None, timezone or "UTC")
        profile = await build_profile(app.storage.listening, current_principal(), span, top=10)
        # Drawing is heavy: in the CPU pool, answered busy if no thread is free within the longest tool wait.
        return await app.cpu.run(profile_png, profile, start_within=app.settings.max_wait_seconds)
    except (BadInput, NoHistory, Busy) as exc:
        raise ResourceError(str(exc)) from None


def _checked_path(policy: PathPolicy, raw: str, field: str) -> Path:
    """The real path of ``raw`` if it is a file inside the caller's allowed roots; else an error about ``field``."""
    allowed = (f"absolute paths of files under {', '.join(str(r) for r in policy.roots) or '(no root configured)'}"
               f"; {policy.how_to_widen.replace('import_audio', 'pass the file bytes as data_base64')}")
    if "\x00" in raw:
        raise BadInput(field, "contains a NUL character", allowed)
    try:
        return policy.check(raw)
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
