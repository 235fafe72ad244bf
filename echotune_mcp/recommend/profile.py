"""A taste profile from the owner's own listening events: tops, listening times, skips, discoveries.

One pass over the owner's ``listening_events``, a page at a time (owner-scoped reads only), so memory grows
with the number of distinct artists and tracks, never with the number of plays. Every figure says what it
rests on: which events had a duration, which had skip information and by which definition, and whether
the history reaches back far enough for "first heard" to mean anything. Nothing is guessed: the formats
we import carry no tags or genres, so none are reported.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
from pydantic import BaseModel, Field

from ..errors import BadInput, EchoError
from .history import FORMAT_NAMES, describe, fold, name_key

if TYPE_CHECKING:
    from ..storage.records import ListeningEventRecord
    from ..storage.stores import ListeningEventStore

Period = Literal["last_4_weeks", "last_6_months", "last_year", "all_time"]
PERIOD_DAYS = {"last_4_weeks": 28, "last_6_months": 182, "last_year": 365}
PAGE = 1000  # events read per storage page
SHORT_PLAY_MS = 30_000  # a play shorter than this counts as a skip when nothing better is known
SKIP_REASONS = {"fwdbtn", "backbtn", "clickrow"}  # Spotify reason_end values that mean "moved on by hand"
DONE_REASONS = {"trackdone"}
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
SKIP_DEFINITION = (
    "per play, the first of these that is known: Spotify extended history's skipped flag; else its reason_end "
    "(fwdbtn, backbtn or clickrow = skipped, trackdone = not skipped; other reasons such as endplay or logout "
    f"give no information); else the milliseconds played (under {SHORT_PLAY_MS // 1000} s = skipped). "
    "Plays with none of these (ListenBrainz, Last.fm, TSV) are left out of the rate")
TIME_BASIS = ("times as each source records them, shown in the timezone asked for: Spotify records when a play "
              "ended, ListenBrainz and Last.fm when it was listened to/scrobbled")


class NoHistory(EchoError):
    """The owner has no listening events: there is nothing to profile yet."""


def no_history_message() -> str:
    return ("you have no listening history yet: import_listening_history first. It accepts "
            + "; ".join(describe(f) for f in FORMAT_NAMES)
            + " (local paths inside the allowed roots or one file as data_base64, also the ZIP archive the "
              "service sent)")


# -- output ------------------------------------------------------------------------------------------------
class Window(BaseModel):
    period: str = Field(description="last_4_weeks | last_6_months | last_year | all_time | custom (since/until)")
    since: str | None = Field(None, description="start (inclusive), ISO 8601 in the timezone asked for; "
                                                "null = from the first play")
    until: str | None = Field(None, description="end (exclusive), ISO 8601 in the timezone asked for; null = now")
    timezone: str


class HistoryRange(BaseModel):
    events_stored: int = Field(description="all your listening events, in any period")
    first_play: str | None = Field(None, description="earliest dated play, ISO 8601 UTC")
    last_play: str | None = Field(None, description="latest dated play, ISO 8601 UTC")
    undated_events: int = Field(0, description="events without a time (TSV rows without a timestamp)")
    by_source: dict[str, int] = Field(default_factory=dict, description="plays per source")
    non_play_signals: dict[str, int] = Field(default_factory=dict, description=(
        "stored taste signals that are not plays (top: in a Spotify top list; saved: a saved or liked track, "
        "from sync_listening_history): counted here only, never as plays or in any figure below"))


class Totals(BaseModel):
    events: int = Field(description="events in the window")
    plays: float = Field(description="plays in the window (a TSV row counts as its weight)")
    listening_minutes: float = Field(description="sum of the milliseconds played, in minutes, of the events that "
                                                 "record it")
    events_with_duration: int = Field(description="events in the window that record how long they played")
    artists: int
    tracks: int
    undated_events_included: int = Field(0, description="undated events counted (only in all_time)")


class TopArtist(BaseModel):
    artist: str
    plays: float
    listening_minutes: float
    share_of_plays: float = Field(description="of all plays in the window")


class TopTrack(BaseModel):
    track: str = Field(description="track title, or the item id of a TSV interaction")
    artist: str | None = None
    plays: float
    listening_minutes: float
    spotify_uri: str | None = Field(None, description="when an import knew it (usable with add_tracks)")


class ListeningTimes(BaseModel):
    timezone: str
    weekdays: list[str] = Field(default_factory=lambda: list(WEEKDAYS))
    hour_by_weekday: list[list[float]] = Field(description="plays per [weekday][hour], 7 x 24, Monday first")
    by_hour: list[float] = Field(description="plays per hour of day (0-23)")
    by_weekday: list[float] = Field(description="plays per weekday, Monday first")
    basis: str = TIME_BASIS


class SkipRate(BaseModel):
    rate: float | None = Field(description="skipped / events with information; null when no event had any")
    skipped: int
    events_with_information: int
    events_without_information: int
    by_basis: dict[str, int] = Field(description="events decided by spotify_skipped_flag, reason_end, short_play")
    definition: str = SKIP_DEFINITION


class Discovery(BaseModel):
    artist_share: float | None = Field(description="share of the window's artists first heard in the window")
    new_artists: int
    artists: int
    play_share: float | None = Field(description="share of the window's plays that are of artists first heard in it")
    plays_of_new_artists: float
    track_share: float | None = Field(description="share of the window's tracks first heard in the window")
    new_tracks: int
    tracks: int
    history_starts_inside_window: bool = Field(description="your imported history begins inside the window, so "
                                                           "'first heard' is only first in what you imported")


class TasteProfile(BaseModel):
    window: Window
    history: HistoryRange
    totals: Totals
    top_artists_by_plays: list[TopArtist]
    top_artists_by_time: list[TopArtist]
    top_tracks_by_plays: list[TopTrack]
    top_tracks_by_time: list[TopTrack]
    listening_times: ListeningTimes
    skip_rate: SkipRate
    discovery: Discovery | None = Field(description="null for all_time (everything is first heard in it)")
    tags: list[str] = Field(default_factory=list, description="always empty unless the events carry tags")
    tags_note: str
    notes: list[str] = Field(default_factory=list)
    chart_uri: str | None = Field(None, description="PNG chart of this profile (top artists, hour x weekday)")


# -- the window --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    label: str
    since: float | None
    until: float | None
    tz: ZoneInfo


def zone(name: str, field: str = "timezone") -> ZoneInfo:
    if not name or len(name) > 64 or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", name) or ".." in name:
        raise BadInput(field, f"{name[:64]!r} is not an IANA timezone name",
                       "names like UTC, Europe/Berlin, America/New_York")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadInput(field, f"{name!r} is not an IANA timezone name this server knows",
                       "names like UTC, Europe/Berlin, America/New_York") from None


def _day(text: str, field: str) -> date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise BadInput(field, f"{text[:40]!r} is not a date", "YYYY-MM-DD, e.g. 2024-01-31") from None


def window(period: str | None, since: str | None, until: str | None, timezone: str = "UTC",
           now: float | None = None) -> Span:
    """The time span asked for; ``since``/``until`` are whole days in ``timezone`` (until inclusive)."""
    tz = zone(timezone)
    now = time.time() if now is None else now
    if since is not None or until is not None:
        if period is not None:
            raise BadInput("period", "give either period or since/until, not both",
                           "period=last_4_weeks|last_6_months|last_year|all_time, or since/until dates")
        start = None if since is None else datetime.combine(_day(since, "since"), datetime.min.time(), tz).timestamp()
        end = None if until is None else datetime.combine(_day(until, "until") + timedelta(days=1),
                                                          datetime.min.time(), tz).timestamp()
        if start is not None and end is not None and end <= start:
            raise BadInput("until", f"{until} is before since {since}", "a date on or after since")
        return Span("custom", start, end, tz)
    period = period or "all_time"
    if period == "all_time":
        return Span(period, None, None, tz)
    if period not in PERIOD_DAYS:
        raise BadInput("period", f"{period!r} is not a period", "last_4_weeks, last_6_months, last_year, all_time")
    return Span(period, now - PERIOD_DAYS[period] * 86400, now, tz)


# -- the pass over the events ------------------------------------------------------------------------------
@dataclass
class _Item:
    name: str
    artist: str | None = None
    uri: str | None = None
    first: float | None = None  # earliest dated play in the whole history
    plays: float = 0.0  # in the window
    ms: int = 0


def _iso(ts: float, tz: tzinfo = UTC) -> str:
    out = datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")
    return out.replace("+00:00", "Z") if tz is UTC else out


def _skip(ev: ListeningEventRecord) -> tuple[bool, str] | None:
    if ev.skipped is not None:
        return ev.skipped, "spotify_skipped_flag"
    reason = (ev.reason_end or "").strip().lower()
    if reason in SKIP_REASONS:
        return True, "reason_end"
    if reason in DONE_REASONS:
        return False, "reason_end"
    if ev.ms_played is not None:
        return ev.ms_played < SHORT_PLAY_MS, "short_play"
    return None


class _Pass:
    def __init__(self, span: Span):
        self.span = span
        self.artists: dict[str, _Item] = {}
        self.tracks: dict[str, _Item] = {}
        self.stored = 0
        self.first: float | None = None
        self.last: float | None = None
        self.undated = 0
        self.by_source: dict[str, int] = {}
        self.signals: dict[str, int] = {}
        self.external_users: set[str] = set()
        self.events = 0
        self.plays = 0.0
        self.ms = 0
        self.with_ms = 0
        self.undated_in = 0
        self.grid = [[0.0] * 24 for _ in range(7)]
        self.skipped = 0
        self.skip_known = 0
        self.skip_unknown = 0
        self.skip_basis = {"spotify_skipped_flag": 0, "reason_end": 0, "short_play": 0}

    def _inside(self, t: float | None) -> bool:
        s = self.span
        if s.since is None and s.until is None:
            return True
        if t is None:
            return False
        return (s.since is None or t >= s.since) and (s.until is None or t < s.until)

    def add_page(self, page: Sequence[ListeningEventRecord]) -> None:
        for ev in page:
            self.add(ev)

    def add(self, ev: ListeningEventRecord) -> None:
        self.stored += 1
        if ev.signal != "play":  # a top-list entry or a saved track: taste, not listening
            self.signals[ev.signal] = self.signals.get(ev.signal, 0) + 1
            return
        t = ev.played_at
        self.by_source[ev.source] = self.by_source.get(ev.source, 0) + 1
        if t is None:
            self.undated += 1
        else:
            self.first = t if self.first is None else min(self.first, t)
            self.last = t if self.last is None else max(self.last, t)
        if ev.external_user and len(self.external_users) < 2:
            self.external_users.add(ev.external_user)
        artist = self._item(self.artists, fold(ev.artist), ev.artist) if ev.artist else None
        if ev.track:
            track = self._item(self.tracks, name_key(ev.artist, ev.track), ev.track, ev.artist)
        else:  # a TSV interaction: the item id is all there is
            track = self._item(self.tracks, ev.item_key, ev.item_key.removeprefix("item:"))
        if ev.spotify_uri and track.uri is None:
            track.uri = ev.spotify_uri
        for item in (artist, track):
            if item is not None and t is not None:
                item.first = t if item.first is None else min(item.first, t)
        if not self._inside(t):
            return
        self.events += 1
        self.plays += ev.weight
        ms = ev.ms_played
        if ms is not None:
            self.ms += ms
            self.with_ms += 1
        for item in (artist, track):
            if item is not None:
                item.plays += ev.weight
                item.ms += ms or 0
        if t is None:
            self.undated_in += 1
        else:
            local = datetime.fromtimestamp(t, self.span.tz)
            self.grid[local.weekday()][local.hour] += ev.weight
        skip = _skip(ev)
        if skip is None:
            self.skip_unknown += 1
        else:
            self.skip_known += 1
            self.skipped += skip[0]
            self.skip_basis[skip[1]] += 1

    @staticmethod
    def _item(table: dict[str, _Item], key: str, name: str, artist: str | None = None) -> _Item:
        item = table.get(key)
        if item is None:
            item = table[key] = _Item(name=name, artist=artist)
        return item


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _minutes(ms: int) -> float:
    return round(ms / 60_000, 2)


def _top(table: dict[str, _Item], by: str, n: int) -> list[_Item]:
    heard = [i for i in table.values() if i.plays > 0]
    if by == "plays":
        heard.sort(key=lambda i: (-i.plays, -i.ms, fold(i.name), fold(i.artist or "")))
    else:
        heard = [i for i in heard if i.ms > 0]
        heard.sort(key=lambda i: (-i.ms, -i.plays, fold(i.name), fold(i.artist or "")))
    return heard[:n]


async def build_profile(store: ListeningEventStore, owner: str, span: Span, *, top: int = 10) -> TasteProfile:
    """The owner's profile over ``span``; ``NoHistory`` when the owner has no events at all."""
    acc = _Pass(span)
    cursor = None
    while True:
        page, cursor = await store.find(owner, limit=PAGE, cursor=cursor)
        await anyio.to_thread.run_sync(acc.add_page, page)  # off the event loop; pages are added one at a time
        if cursor is None:
            break
    if acc.stored == 0:
        raise NoHistory(no_history_message())
    tz_name = span.tz.key
    win = Window(period=span.label, timezone=tz_name,
                 since=None if span.since is None else _iso(span.since, span.tz),
                 until=None if span.until is None else _iso(span.until, span.tz))
    history = HistoryRange(events_stored=acc.stored, undated_events=acc.undated, by_source=acc.by_source,
                           non_play_signals=acc.signals,
                           first_play=None if acc.first is None else _iso(acc.first),
                           last_play=None if acc.last is None else _iso(acc.last))
    artists_in = [a for a in acc.artists.values() if a.plays > 0]
    tracks_in = [t for t in acc.tracks.values() if t.plays > 0]
    totals = Totals(events=acc.events, plays=round(acc.plays, 3), listening_minutes=_minutes(acc.ms),
                    events_with_duration=acc.with_ms, artists=len(artists_in), tracks=len(tracks_in),
                    undated_events_included=acc.undated_in)

    def artist_view(a: _Item) -> TopArtist:
        return TopArtist(artist=a.name, plays=round(a.plays, 3), listening_minutes=_minutes(a.ms),
                         share_of_plays=_share(a.plays, acc.plays) or 0.0)

    def track_view(t: _Item) -> TopTrack:
        return TopTrack(track=t.name, artist=t.artist, plays=round(t.plays, 3), listening_minutes=_minutes(t.ms),
                        spotify_uri=t.uri)

    grid = [[round(v, 3) for v in row] for row in acc.grid]
    times = ListeningTimes(timezone=tz_name, hour_by_weekday=grid,
                           by_hour=[round(sum(acc.grid[d][h] for d in range(7)), 3) for h in range(24)],
                           by_weekday=[round(sum(row), 3) for row in acc.grid])
    skip = SkipRate(rate=_share(acc.skipped, acc.skip_known), skipped=acc.skipped,
                    events_with_information=acc.skip_known, events_without_information=acc.skip_unknown,
                    by_basis=acc.skip_basis)
    notes: list[str] = []
    discovery = None
    if span.since is not None or span.until is not None:
        start = span.since

        def new(i: _Item) -> bool:  # first heard inside the window (the window's own plays are dated)
            return i.first is not None and (start is None or i.first >= start)

        new_artists = [a for a in artists_in if new(a)]
        starts_inside = acc.first is not None and start is not None and acc.first >= start
        discovery = Discovery(
            artist_share=_share(len(new_artists), len(artists_in)), new_artists=len(new_artists),
            artists=len(artists_in), play_share=_share(sum(a.plays for a in new_artists), acc.plays),
            plays_of_new_artists=round(sum(a.plays for a in new_artists), 3),
            track_share=_share(sum(1 for t in tracks_in if new(t)), len(tracks_in)),
            new_tracks=sum(1 for t in tracks_in if new(t)), tracks=len(tracks_in),
            history_starts_inside_window=starts_inside or start is None)
        if discovery.history_starts_inside_window:
            notes.append("your imported history begins inside this window, so every artist counts as newly "
                         "discovered; import older history (or pick a later window) for a real discovery rate")
        if acc.events == 0:
            notes.append(f"no plays in this window; your history covers {history.first_play} to "
                         f"{history.last_play} (UTC): try period=all_time or since/until inside it")
    else:
        notes.append("discovery is left out for all_time: every play is first heard in it; ask for a period")
    if acc.signals:
        notes.append(f"{sum(acc.signals.values())} stored top-list and saved-track signals are not plays: they "
                     "are left out of every count here (history.non_play_signals)")
    if acc.undated:
        notes.append(f"{acc.undated} plays have no time (TSV rows without a timestamp; YouTube Music history, "
                     "which gives only a day or period): "
                     + ("counted in totals and tops, not in listening times" if span.label == "all_time"
                        else "left out of any bounded window"))
    if acc.events and acc.with_ms < acc.events:
        notes.append(f"{acc.events - acc.with_ms} of {acc.events} events record no duration (ListenBrainz, "
                     "Last.fm, TSV): listening-time figures cover only the others")
    if len(acc.external_users) > 1:
        notes.append("your history includes a TSV with several users' interactions; they are all counted as yours")
    return TasteProfile(
        window=win, history=history, totals=totals,
        top_artists_by_plays=[artist_view(a) for a in _top(acc.artists, "plays", top)],
        top_artists_by_time=[artist_view(a) for a in _top(acc.artists, "time", top)],
        top_tracks_by_plays=[track_view(t) for t in _top(acc.tracks, "plays", top)],
        top_tracks_by_time=[track_view(t) for t in _top(acc.tracks, "time", top)],
        listening_times=times, skip_rate=skip, discovery=discovery, notes=notes,
        tags_note="none of the formats imported carries tags or genres, so none are reported (nothing is guessed)")


# -- the picture -------------------------------------------------------------------------------------------
def profile_png(profile: TasteProfile) -> bytes:
    """Top artists by plays and the hour x weekday pattern, as a PNG (matplotlib's object API, thread-safe)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax_top, ax_grid = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1, 1]})
    w = profile.window
    span = w.period if w.period != "custom" else (
        f"{(w.since or 'first play')[:10]} to {(w.until or 'now')[:10]}, exclusive")
    tops = profile.top_artists_by_plays[:10][::-1]
    if tops:
        ax_top.barh([a.artist[:40] for a in tops], [a.plays for a in tops], color="#2b6cb0")
        ax_top.set_xlabel("plays")
    else:
        ax_top.text(0.5, 0.5, "no plays in this window", ha="center", va="center", transform=ax_top.transAxes)
        ax_top.set_yticks([])
    ax_top.set_title(f"Top artists ({span}; {profile.totals.plays:g} plays)")
    im = ax_grid.imshow(profile.listening_times.hour_by_weekday, aspect="auto", cmap="viridis",
                        interpolation="nearest")
    ax_grid.set_yticks(range(7), WEEKDAYS)
    ax_grid.set_xticks(range(0, 24, 2))
    ax_grid.set_xlabel(f"hour of day ({w.timezone})")
    ax_grid.set_title("When you listen (plays)")
    fig.colorbar(im, ax=ax_grid, fraction=0.03)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
