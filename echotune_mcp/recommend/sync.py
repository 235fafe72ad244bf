"""Sync listening history from a connected provider into the owner's ``listening_events``, like a file import.

What the APIs still give (2026), and what each becomes:

- Spotify ``/me/player/recently-played``: plays with ``played_at`` (to the millisecond) and the track (id, URI,
  ISRC). Spotify keeps only about the last 50 plays there: paging back with the ``before`` cursor ends where
  that list ends, so a sync sees the last ~50 plays, never the years an export has. Stored as plays
  (``signal`` "play", format ``spotify_recent``); how long each play lasted is not given (``ms_played`` None),
  so they carry no listening time and no skip information.
- Spotify ``/me/top/tracks`` (short_term ~4 weeks, medium_term ~6 months, long_term ~1 year) and
  ``/me/tracks`` (saved tracks, with ``added_at``) are not plays: stored as taste signals (``signal`` "top"
  with its ``rank`` and ``term``, format ``spotify_top``; ``signal`` "saved" with ``added_at``, format
  ``spotify_saved``), ``played_at`` None and ``weight`` 1 (one entry), never counted as plays by the profile.
- YouTube Music ``get_history()``: plays, newest first, under section labels ("Today", "Yesterday", "This
  week", ...): the only time it gives. Stored as plays with ``played_at`` None and ``played_period`` the day,
  ISO week, month or year the label means in the timezone asked for (the label itself when it is none of
  those); no exact time is invented. Liked songs (``saved``) are stored as signals like Spotify's saved tracks.

Dedupe: an event's id is the owner's hash of (source, kind, time, track): a play by its exact ``played_at``
(Spotify) or its period (YouTube Music: "Today" synced today and "Yesterday" synced tomorrow are the same
day), a top entry by its term, a saved track by itself. Re-syncing the same history adds nothing. The
import id is the job's: a failed or cancelled sync removes what it stored, like a failed file import.
Synced Spotify plays and the same plays in a later export are not matched (the export keys plays by how
long they lasted, which the API does not say).
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import anyio
from pydantic import BaseModel, Field

from ..providers.base import NotConnected, ProviderError
from ..storage.stores import ListeningEventStore
from .history import Malformed, fold, name_key, parse_time
from .importer import TimeRange, _range

log = logging.getLogger(__name__)
Include = Literal["recently_played", "top", "saved"]
Term = Literal["short_term", "medium_term", "long_term"]
TERMS: tuple[str, ...] = ("short_term", "medium_term", "long_term")
SPOTIFY_SCOPE = {"recently_played": "user-read-recently-played", "top": "user-top-read", "saved": "user-library-read"}
RECENT_PAGES = 10  # pages of recently-played at most; Spotify ends after about one page of 50
BATCH = 500
Progress = Callable[[float, str], Awaitable[None]]
SIGNALS_NOTE = ("top and saved are taste signals, not plays: stored with signal 'top'/'saved' and never counted as "
                "plays (taste_profile reports them apart)")


class SourceReport(BaseModel):
    source: str = Field(description="e.g. spotify:recently_played, spotify:top:short_term, spotify:saved, "
                                    "ytmusic:history, ytmusic:saved")
    signal: Literal["play", "top", "saved"]
    status: Literal["ok", "unavailable"] = "ok"
    fetched: int = Field(0, description="items the API returned")
    imported: int = Field(0, description="new events stored")
    duplicates: int = Field(0, description="already stored (an earlier sync, or repeated in the answer)")
    skipped: int = Field(0, description="items that are no track (an episode, an empty entry)")
    skipped_reasons: dict[str, int] = Field(default_factory=dict)
    unavailable_reason: str | None = Field(None, description="why the API gave nothing (e.g. a missing scope, "
                                                             "named), when status is unavailable")
    limits: str | None = Field(None, description="what the API cannot give, whatever is asked")
    time_range: TimeRange | None = Field(None, description="of the plays fetched (exact times only)")
    periods: dict[str, int] = Field(default_factory=dict, description="YouTube Music: plays per history label")


class SyncReport(BaseModel):
    import_id: str = Field(description="every event this sync stored carries it (the job id)")
    provider: str
    sources: list[SourceReport]
    fetched: int
    imported: int
    duplicates: int
    skipped: int
    plays_imported: int = Field(description="of imported, the plays (the rest are top/saved signals)")
    events_stored: int = Field(description="this owner's listening events in storage after the sync")
    interrupted_imports_undone: int = 0
    notes: list[str] = Field(default_factory=list)
    seconds: float


# -- periods -----------------------------------------------------------------------------------------------
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})


def _week(d: date) -> str:
    y, w, _ = d.isocalendar()
    return f"{y}-W{w:02d}"


def period_of(label: str | None, today: date) -> str:
    """What a YouTube Music history label means, as a calendar period in the timezone of ``today``."""
    text = " ".join((label or "").split())
    low = text.casefold()
    if low == "today":
        return today.isoformat()
    if low == "yesterday":
        return (today - timedelta(days=1)).isoformat()
    if low == "this week":
        return _week(today)
    if low == "last week":
        return _week(today - timedelta(days=7))
    if low == "this month":
        return f"{today.year}-{today.month:02d}"
    if low == "last month":
        last = today.replace(day=1) - timedelta(days=1)
        return f"{last.year}-{last.month:02d}"
    if low == "this year":
        return str(today.year)
    if low == "last year":
        return str(today.year - 1)
    parts = low.split()
    if len(parts) == 2 and parts[0] in _MONTHS and parts[1].isdigit() and len(parts[1]) == 4:
        return f"{parts[1]}-{_MONTHS[parts[0]]:02d}"
    if len(parts) == 1 and parts[0].isdigit() and len(parts[0]) == 4:
        return parts[0]
    return f"label:{fold(text) or '(none)'}"


_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^\d{4}$")


def _day_of(period: str) -> date | None:
    """A representative day of a day or week period (a week by its Thursday, which fixes its month and year)."""
    try:
        if _DAY.match(period):
            return date.fromisoformat(period)
        m = _WEEK.match(period)
        if m:
            return date.fromisocalendar(int(m.group(1)), int(m.group(2)), 4)
    except ValueError:
        return None
    return None


def within(fine: str, coarse: str) -> bool:
    """Whether period ``fine`` (a day or week) lies inside the coarser ``coarse`` (week, month or year)."""
    day = _day_of(fine)
    if day is None or fine == coarse:
        return False
    if _WEEK.match(coarse):
        return _DAY.match(fine) is not None and _week(day) == coarse
    if _MONTH.match(coarse):
        return f"{day.year}-{day.month:02d}" == coarse
    if _YEAR.match(coarse):
        return str(day.year) == coarse
    return False


def coarse(period: str | None) -> bool:
    return bool(period) and (_WEEK.match(period) or _MONTH.match(period) or _YEAR.match(period)) is not None  # type: ignore[arg-type]


# -- events ------------------------------------------------------------------------------------------------
def sync_event_id(owner: str, key: str) -> str:
    """The stored id: the owner's hash of the sync's dedupe key (two owners' same play are two documents)."""
    digest = hashlib.sha256("\x1d".join((owner, "sync", key)).encode()).hexdigest()
    return f"lev_{digest[:40]}"


def _doc(owner: str, import_id: str, key: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"album": None, "recording_mbid": None, "isrc": None, "ms_played": None, "skipped": None,
                            "reason_end": None, "external_user": None, "weight": 1.0, "signal": "play", "rank": None,
                            "term": None, "added_at": None, "played_period": None, "ytmusic_video_id": None,
                            "spotify_uri": None, "played_at": None}
    return {"id": sync_event_id(owner, key), "owner": owner, "created_at": time.time(), "import_id": import_id,
            **base, **fields}


def _spotify_track(obj: Any) -> tuple[dict[str, Any], str] | str:
    """The track fields of a Spotify track object and its identity, or why it is skipped."""
    from ..providers.spotify import _ID

    if not isinstance(obj, dict):
        return "no track in the entry"
    if obj.get("type", "track") == "episode":
        return "podcast episode"
    title = obj.get("name") or None
    artists = [a.get("name") for a in obj.get("artists") or [] if isinstance(a, dict) and a.get("name")]
    sid = str(obj.get("id") or "")
    uri = f"spotify:track:{sid}" if _ID.fullmatch(sid) and not obj.get("is_local") else None
    if not title and uri is None:
        return "no title and no track id"
    artist = artists[0] if artists else None
    album = (obj.get("album") or {}).get("name") if isinstance(obj.get("album"), dict) else None
    isrc = (obj.get("external_ids") or {}).get("isrc") if isinstance(obj.get("external_ids"), dict) else None
    key = uri or name_key(artist, title)
    return ({"track": title, "artist": artist, "album": album, "spotify_uri": uri, "isrc": isrc or None,
             "item_key": key, "source": "spotify"}, key)


def spotify_play(owner: str, import_id: str, item: dict[str, Any]) -> dict[str, Any] | str:
    got = _spotify_track(item.get("track"))
    if isinstance(got, str):
        return got
    fields, key = got
    when = item.get("played_at")
    try:
        played = parse_time(when, "played_at") if isinstance(when, str) else None
    except Malformed:
        played = None
    if played is None:
        return "no readable played_at"
    ms = int(round(played * 1000))
    return _doc(owner, import_id, f"spotify\x1erecent\x1e{ms}\x1e{key}", format="spotify_recent",
                played_at=played, **fields)


def spotify_top(owner: str, import_id: str, obj: dict[str, Any], term: str, rank: int) -> dict[str, Any] | str:
    got = _spotify_track(obj)
    if isinstance(got, str):
        return got
    fields, key = got
    return _doc(owner, import_id, f"spotify\x1etop\x1e{term}\x1e{key}", format="spotify_top", signal="top",
                term=term, rank=rank, **fields)


def spotify_saved(owner: str, import_id: str, item: dict[str, Any]) -> dict[str, Any] | str:
    got = _spotify_track(item.get("track"))
    if isinstance(got, str):
        return got
    fields, key = got
    when = item.get("added_at")
    try:
        added = parse_time(when, "added_at") if isinstance(when, str) else None
    except Malformed:
        added = None
    return _doc(owner, import_id, f"spotify\x1esaved\x1e{key}", format="spotify_saved", signal="saved",
                added_at=added, **fields)


def _yt_fields(item: dict[str, Any]) -> tuple[dict[str, Any], str] | str:
    if item.get("videoType") == "MUSIC_VIDEO_TYPE_PODCAST_EPISODE":
        return "podcast episode"
    title = item.get("title") or None
    vid = item.get("videoId") or None
    if not title and not vid:
        return "no title and no videoId"
    artists = [a.get("name") for a in item.get("artists") or [] if isinstance(a, dict) and a.get("name")]
    artist = artists[0] if artists else None
    album = item.get("album")
    album = album.get("name") if isinstance(album, dict) else album if isinstance(album, str) else None
    return ({"track": title, "artist": artist, "album": album, "ytmusic_video_id": vid, "source": "ytmusic",
             "item_key": name_key(artist, title)}, vid or name_key(artist, title))


def ytmusic_play(owner: str, import_id: str, item: dict[str, Any], today: date) -> dict[str, Any] | str:
    got = _yt_fields(item)
    if isinstance(got, str):
        return got
    fields, key = got
    period = period_of(item.get("played"), today)
    return _doc(owner, import_id, f"ytmusic\x1ehistory\x1e{period}\x1e{key}", format="ytmusic_history",
                played_period=period, **fields)


def ytmusic_saved(owner: str, import_id: str, item: dict[str, Any]) -> dict[str, Any] | str:
    got = _yt_fields(item)
    if isinstance(got, str):
        return got
    fields, key = got
    return _doc(owner, import_id, f"ytmusic\x1esaved\x1e{key}", format="ytmusic_liked", signal="saved", **fields)


# -- the sync ----------------------------------------------------------------------------------------------
class _Unavailable(Exception):
    """The API will not give this source to this connection (a missing scope, a 403/404); reported, not fatal."""


def _scope_problem(granted: str | None, scope: str) -> str | None:
    if granted is None:
        return None
    if scope not in granted.split():
        return (f"the Spotify connection was granted without scope {scope} (granted: {granted or 'none'}); "
                "call connect_provider(provider='spotify') again to grant it")
    return None


def _refused(exc: ProviderError, what: str, scope: str | None) -> _Unavailable | None:
    status = getattr(exc, "http_status", None)
    if status == 403:
        need = f"; it needs scope {scope}, which this token may lack (reconnect with connect_provider to grant " \
               "it; in Development Mode the account must also be added to the app)" if scope else ""
        return _Unavailable(f"Spotify answered 403 for {what}{need}: {exc}")
    if status == 404:
        return _Unavailable(f"Spotify answered 404 for {what}: this account or app cannot use it ({exc})")
    return None


async def _spotify_fetch(kind: str, what: str, granted: str | None, fetch: Callable[[], Awaitable[Any]]) -> Any:
    scope = SPOTIFY_SCOPE[kind]
    problem = _scope_problem(granted, scope)
    if problem:
        raise _Unavailable(problem)
    try:
        return await fetch()
    except ProviderError as exc:
        refused = _refused(exc, what, scope)
        if refused is not None:
            raise refused from None
        raise


async def _spotify_recent(adapter: Any, check: Callable[[], Awaitable[None]]) -> list[dict[str, Any]]:
    """Page back with the ``before`` cursor until Spotify's list ends (or the cursor stops moving)."""
    out: list[dict[str, Any]] = []
    before: int | None = None
    for _ in range(RECENT_PAGES):
        page = await adapter.recently_played_page(before)
        items = [i for i in page.get("items") or [] if isinstance(i, dict)]
        out.extend(items)
        await check()
        cursor = (page.get("cursors") or {}).get("before")
        try:
            nxt = int(cursor) if cursor is not None else None
        except (TypeError, ValueError):
            nxt = None
        if not items or not page.get("next") or nxt is None or (before is not None and nxt >= before):
            break
        before = nxt
    return out


async def run_sync(store: ListeningEventStore, owner: str, provider: str, adapter: Any, import_id: str, *,
                   include: Iterable[str], terms: Iterable[str] = TERMS, max_items: int = 1000,
                   timezone: str = "UTC", granted_scope: str | None = None, progress: Progress | None = None,
                   today: date | None = None) -> SyncReport:
    """Fetch each source asked for, store its events (deduplicated), and report. A source the API refuses
    (403, a missing scope: named) is reported unavailable and the others go on; any other failure, or a
    cancel, removes everything this sync stored and is raised."""
    t0 = time.monotonic()
    include = list(dict.fromkeys(include))
    terms = list(dict.fromkeys(terms))
    today = today or datetime.now(ZoneInfo(timezone)).date()
    reports: list[SourceReport] = []
    steps: list[tuple[str, str, str | None]] = []  # (kind, source name, term)
    for kind in include:
        if kind == "top" and provider == "spotify":
            steps += [("top", f"spotify:top:{t}", t) for t in terms]
        else:
            name = "history" if provider == "ytmusic" and kind == "recently_played" else kind
            steps.append((kind, f"{provider}:{name}", None))
    done = 0

    async def tick(message: str) -> None:
        if progress is not None:
            await progress(min(0.99, done / max(1, len(steps))), message)

    try:
        for kind, name, term in steps:
            signal = {"recently_played": "play", "top": "top", "saved": "saved"}[kind]
            rep = SourceReport(source=name, signal=signal)  # type: ignore[arg-type]
            reports.append(rep)
            await tick(f"{name}: fetching")
            try:
                docs = await _fetch(provider, kind, term, adapter, owner, import_id, rep, max_items=max_items,
                                    granted=granted_scope, today=today, tick=lambda: tick(f"{name}: fetching"))
            except _Unavailable as exc:
                rep.status, rep.unavailable_reason = "unavailable", str(exc)
                done += 1
                continue
            if provider == "ytmusic" and kind == "recently_played":
                docs = await _drop_seen_finer(store, owner, docs, rep)
            played = [d["played_at"] for d in docs if d.get("played_at") is not None]
            rep.time_range = _range(min(played), max(played)) if played else None
            for start in range(0, len(docs), BATCH):
                batch = docs[start:start + BATCH]
                new = await store.insert_absent(batch)
                rep.imported += new
                rep.duplicates += len(batch) - new
                await tick(f"{name}: {rep.fetched} fetched, {rep.imported} new, {rep.duplicates} already stored")
            done += 1
    except BaseException:
        with anyio.CancelScope(shield=True):
            try:
                removed = await store.delete_import(owner, import_id)
                log.info("sync %s stopped; removed the %d events it had stored", import_id, removed)
            except Exception:
                log.warning("sync %s stopped and its events could not be removed", import_id, exc_info=True)
        raise
    notes = [SIGNALS_NOTE] if any(r.signal != "play" for r in reports) else []
    if provider == "spotify" and "recently_played" in include:
        notes.append("Spotify's recently-played list holds only about the last 50 plays, and says when each "
                     "was played but not how long: for your full history, import the account-data or extended "
                     "streaming history export (import_listening_history)")
    if provider == "ytmusic" and "recently_played" in include:
        notes.append("YouTube Music's history gives no times, only labels such as 'Today': plays are stored "
                     "with the period the label means (played_period), none with an exact time, and two plays "
                     "of one track under one label are one event")
    return SyncReport(import_id=import_id, provider=provider, sources=reports,
                      fetched=sum(r.fetched for r in reports), imported=sum(r.imported for r in reports),
                      duplicates=sum(r.duplicates for r in reports), skipped=sum(r.skipped for r in reports),
                      plays_imported=sum(r.imported for r in reports if r.signal == "play"),
                      events_stored=await store.count(owner), notes=notes,
                      seconds=round(time.monotonic() - t0, 3))


async def _drop_seen_finer(store: ListeningEventStore, owner: str, docs: list[dict[str, Any]],
                           rep: SourceReport) -> list[dict[str, Any]]:
    """YouTube Music lists an older play under a coarser label as days pass ('Yesterday', then 'Last week',
    then a month): a play under a week, month or year that an earlier sync stored with a day (or week)
    inside that period is the same play, counted as a duplicate."""
    kept = []
    for d in docs:
        if coarse(d.get("played_period")):
            seen, _ = await store.find(owner, {"item_key": d["item_key"], "source": "ytmusic"}, limit=500)
            if any(e.signal == "play" and e.ytmusic_video_id == d["ytmusic_video_id"] and e.played_period
                   and within(e.played_period, d["played_period"]) for e in seen):
                rep.duplicates += 1
                continue
        kept.append(d)
    return kept


async def _fetch(provider: str, kind: str, term: str | None, adapter: Any, owner: str, import_id: str,
                 rep: SourceReport, *, max_items: int, granted: str | None, today: date,
                 tick: Callable[[], Awaitable[None]]) -> list[dict[str, Any]]:
    """The source's items as event documents (skips counted in ``rep``); _Unavailable when refused."""
    made: list[dict[str, Any] | str]
    if provider == "spotify":
        if kind == "recently_played":
            rep.limits = ("Spotify gives only about the last 50 plays (50 per page, paged back by the 'before' "
                          "cursor until its list ends) and no play durations")
            items = await _spotify_fetch(kind, "recently played tracks", granted, lambda: _spotify_recent(adapter, tick))
            items = items[:max_items]
            made = [spotify_play(owner, import_id, i) for i in items]
        elif kind == "top":
            assert term is not None
            rep.limits = "Spotify's top list for this term: at most what it ranks (about 50-100 tracks); not plays"
            items = await _spotify_fetch(kind, f"top tracks ({term})", granted,
                                         lambda: adapter.top_tracks_raw(term, max_items))
            made = [spotify_top(owner, import_id, obj, term, n + 1) for n, obj in enumerate(items)]
        else:
            rep.limits = f"the newest {max_items} saved tracks at most (max_items); not plays"
            items = await _spotify_fetch(kind, "saved tracks", granted, lambda: adapter.saved_tracks_raw(max_items))
            made = [spotify_saved(owner, import_id, i) for i in items]
    else:
        if kind == "top":
            raise _Unavailable("YouTube Music has no top-tracks listing in its API")
        try:
            if kind == "recently_played":
                rep.limits = "YouTube Music's history page (its most recent plays, with day/period labels only)"
                items = await adapter.history_raw()
                items = [i for i in items if isinstance(i, dict)][:max_items]
                made = []
                for i in items:
                    made.append(ytmusic_play(owner, import_id, i, today))
                    if isinstance(made[-1], dict):
                        label = str(i.get("played") or "(no label)")
                        rep.periods[label] = rep.periods.get(label, 0) + 1
            else:
                rep.limits = f"the first {max_items} liked songs at most (max_items); not plays"
                items = await adapter.liked_raw(max_items)
                made = [ytmusic_saved(owner, import_id, i) for i in items]
        except NotConnected:
            raise
        except ProviderError as exc:
            if "refused" in str(exc) or "404" in str(exc):
                raise _Unavailable(str(exc)) from None
            raise
    rep.fetched = len(made)
    docs: list[dict[str, Any]] = []
    for d in made:
        if isinstance(d, str):
            rep.skipped += 1
            rep.skipped_reasons[d] = rep.skipped_reasons.get(d, 0) + 1
        else:
            docs.append(d)
    return docs

