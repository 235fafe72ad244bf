"""YouTube Music adapter over ytmusicapi (browser-header auth file, or an OAuth token file + client).

ytmusicapi is blocking and talks to ``https://music.youtube.com``; we hand it a requests session
that adds timeouts and, when ``ECHOTUNE_YTMUSIC_API_BASE`` is set, sends the same requests to
another host (a proxy, or the test server replaying recorded responses). Search and radio work
without auth; the library (playlists, history, likes) needs the auth file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests
from ytmusicapi import YTMusic
from ytmusicapi.auth.oauth import OAuthCredentials
from ytmusicapi.exceptions import YTMusicError, YTMusicServerError, YTMusicUserError

from ..telemetry import span
from .backoff import RateLimitHit, call_with_backoff, parse_retry_after
from .base import MAX_PLAYLIST_ITEMS, Move, MusicProvider, NotConnected, Playlist, ProviderError, Step, TooLarge, Track

YTM_ORIGIN = "https://music.youtube.com"
TIMEOUT = (5, 30)
BATCH = 100
T = TypeVar("T")
_VIDEO = re.compile(r"^[A-Za-z0-9_-]{11}$")
_PLAYLIST = re.compile(r"^[A-Za-z0-9_-]{2,64}$")
_URL = re.compile(r"^https?://(?:music|www)\.youtube\.com/(?:watch|playlist)\?(?:[^#]*&)?(v|list)=([A-Za-z0-9_-]+)")


def parse_id(ref: str, kind: str) -> str:
    """A videoId (11 of A-Z a-z 0-9 _ -) or playlist id (2-64 of them), bare or from a music.youtube.com link.

    Anything else is refused (``ValueError``) before a request is made."""
    ref = ref.strip()
    m = _URL.match(ref)
    if m and m.group(1) == ("v" if kind == "track" else "list"):
        ref = m.group(2)
    if (_VIDEO if kind == "track" else _PLAYLIST).match(ref):
        return ref
    what = "videoId (11 characters: letters, digits, _ or -)" if kind == "track" else \
        "playlist id (2-64 characters: letters, digits, _ or -)"
    raise ValueError(f"{ref[:80]!r} is not a YouTube Music {what} or music.youtube.com link")


def _checked(ref: str, kind: str) -> str:
    try:
        return parse_id(ref, kind)
    except ValueError as exc:
        raise ProviderError(str(exc)) from None


class RebasedSession(requests.Session):
    """A session that gives every request a timeout and may point YouTube Music at another host."""

    def __init__(self, base: str | None = None):
        super().__init__()
        self.base = base.rstrip("/") if base else None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        url = url.decode() if isinstance(url, bytes) else url
        if self.base and url.startswith(YTM_ORIGIN):
            url = self.base + url[len(YTM_ORIGIN):]
        kwargs.setdefault("timeout", TIMEOUT)
        resp = super().request(method, url, *args, **kwargs)
        if resp.status_code == 429:
            raise RateLimitHit(parse_retry_after(resp.headers.get("Retry-After")))
        return resp


def _seconds(text: str | None) -> int | None:
    """'3:45' or '1:02:03' -> seconds."""
    if not text:
        return None
    try:
        total = 0
        for part in text.split(":"):
            total = total * 60 + int(part)
        return total
    except ValueError:
        return None


def to_track(item: dict[str, Any]) -> Track:
    """A search result or playlist item; in a playlist, ``kind`` marks episodes and greyed-out items."""
    secs = item.get("duration_seconds") or _seconds(item.get("duration") or item.get("length"))
    album = item.get("album")
    vid = item.get("videoId") or ""
    return Track(
        provider="ytmusic", id=vid, uri=vid or None, title=item.get("title") or "",
        artists=[a.get("name", "") for a in item.get("artists") or [] if a.get("name")],
        album=album.get("name") if isinstance(album, dict) else album, duration_ms=secs * 1000 if secs else None,
        explicit=item.get("isExplicit"), release_date=str(item["year"]) if item.get("year") else None,
        url=f"{YTM_ORIGIN}/watch?v={vid}" if vid else None, entry_id=item.get("setVideoId"),
        kind="episode" if item.get("videoType") == "MUSIC_VIDEO_TYPE_PODCAST_EPISODE" else
             "unavailable" if item.get("isAvailable") is False or not _VIDEO.match(vid) else "track",
    )


class YTMusicProvider(MusicProvider):
    name = "ytmusic"
    batch_limit = BATCH

    def __init__(self, *, auth_file: Path | None = None, client_id: str | None = None,
                 client_secret: str | None = None, api_base: str | None = None, cap_s: float = 30.0,
                 session: requests.Session | None = None):
        self._session = session or RebasedSession(api_base)
        self._cap = cap_s
        self._authed = auth_file is not None
        self._factory: Callable[[], YTMusic] = lambda: self._make(auth_file, client_id, client_secret)
        self._yt: YTMusic | None = None

    def _make(self, auth_file: Path | None, client_id: str | None, client_secret: str | None) -> YTMusic:
        if auth_file is None:
            return YTMusic(requests_session=self._session)
        try:
            auth = json.loads(Path(auth_file).read_text())
        except (OSError, ValueError) as exc:
            raise ProviderError(f"the YouTube Music auth file {auth_file} cannot be read ({exc}); "
                                "make it again with `ytmusicapi browser` or `ytmusicapi oauth`") from None
        creds = OAuthCredentials(client_id, client_secret) if client_id and client_secret else None
        return YTMusic(auth, requests_session=self._session, oauth_credentials=creds)

    async def _run(self, op: str, fn: Callable[[YTMusic], T], *, needs_auth: bool = False) -> T:
        if needs_auth and not self._authed:
            raise NotConnected("ytmusic")

        def call() -> T:
            if self._yt is None:
                self._yt = self._factory()
            try:
                return fn(self._yt)
            except YTMusicUserError as exc:
                raise ProviderError(f"YouTube Music refused the request: {exc}") from None
            except YTMusicServerError as exc:
                text = str(exc)
                if "404" in text or "not found" in text.lower():
                    raise ProviderError("YouTube Music answered 404: that playlist or track does not exist or "
                                        "this account cannot see it; check the id") from None
                raise ProviderError(f"YouTube Music failed: {text.splitlines()[0]}") from None
            except (YTMusicError, KeyError, IndexError, TypeError) as exc:
                raise ProviderError(f"YouTube Music returned a response this version cannot read ({exc!r})") from None
            except requests.RequestException as exc:
                raise ProviderError(f"could not reach YouTube Music ({exc.__class__.__name__})") from None

        with span(f"provider.ytmusic.{op}"):
            return await call_with_backoff(call, provider="ytmusic", cap_s=self._cap,
                                           deadline_s=self.deadline_s)

    # -- reads ----------------------------------------------------------------------------------
    async def search_tracks(self, query: str, limit: int) -> list[Track]:
        items = await self._run("search", lambda yt: yt.search(query, filter="songs", limit=limit))
        return [to_track(i) for i in items if i.get("videoId")][:limit]

    async def get_track(self, track_id: str) -> Track:
        track_id = _checked(track_id, "track")
        song = await self._run("get_song", lambda yt: yt.get_song(track_id))
        details = song.get("videoDetails") or {}
        if not details.get("videoId"):
            raise ProviderError(f"YouTube Music has no track {track_id!r}; check the id")
        secs = int(details.get("lengthSeconds") or 0)
        return Track(provider="ytmusic", id=details["videoId"], uri=details["videoId"], title=details.get("title", ""),
                     artists=[details["author"]] if details.get("author") else [], duration_ms=secs * 1000 or None,
                     url=f"{YTM_ORIGIN}/watch?v={details['videoId']}")

    async def top_tracks(self, limit: int) -> list[Track]:
        raise ProviderError("YouTube Music has no top-tracks listing; use the history (recent) or liked songs")

    async def recent_tracks(self, limit: int) -> list[Track]:
        items = await self._run("get_history", lambda yt: yt.get_history(), needs_auth=True)
        return [to_track(i) for i in items if i.get("videoId")][:limit]

    async def history_raw(self) -> list[dict[str, Any]]:
        """ytmusicapi's get_history(): playlist items, newest first, each with ``played``: the label of the
        section it is listed under ("Today", "Yesterday", ...), the only time the history gives."""
        return await self._run("get_history", lambda yt: yt.get_history(), needs_auth=True)

    async def liked_raw(self, limit: int) -> list[dict[str, Any]]:
        body = await self._run("get_liked_songs", lambda yt: yt.get_liked_songs(limit=limit), needs_auth=True)
        return [i for i in body.get("tracks") or [] if isinstance(i, dict)][:limit]

    async def saved_tracks(self, limit: int) -> list[Track]:
        body = await self._run("get_liked_songs", lambda yt: yt.get_liked_songs(limit=limit), needs_auth=True)
        return [to_track(i) for i in body.get("tracks") or [] if i.get("videoId")][:limit]

    async def list_playlists(self, limit: int, offset: int = 0) -> list[Playlist]:
        items = await self._run("get_library_playlists", lambda yt: yt.get_library_playlists(limit=limit + offset),
                                needs_auth=True)
        return [Playlist(provider="ytmusic", id=p["playlistId"], name=p.get("title") or "",
                         description=p.get("description"), track_count=_count(p.get("count")),
                         url=f"{YTM_ORIGIN}/playlist?list={p['playlistId']}")
                for p in items[offset:offset + limit] if p.get("playlistId")]

    async def get_playlist(self, playlist_id: str, max_tracks: int | None = None) -> Playlist:
        """ytmusicapi follows the continuations to the end when ``limit`` is None (a full read)."""
        pid = _checked(playlist_id, "playlist")
        body = await self._run("get_playlist", lambda yt: yt.get_playlist(pid, limit=max_tracks))
        if max_tracks is None and len(body.get("tracks") or []) > MAX_PLAYLIST_ITEMS:
            raise TooLarge(len(body["tracks"]))
        return playlist_of(body, pid, max_tracks)

    async def related_tracks(self, track_id: str, limit: int) -> list[Track]:
        track_id = _checked(track_id, "track")
        body = await self._run("get_watch_playlist",
                               lambda yt: yt.get_watch_playlist(videoId=track_id, radio=True, limit=limit))
        return [to_track(t) for t in body.get("tracks") or [] if t.get("videoId") and t["videoId"] != track_id][:limit]

    # -- writes ---------------------------------------------------------------------------------
    async def create_playlist(self, name: str, description: str = "", public: bool = False,
                              collaborative: bool = False) -> Playlist:
        if collaborative:
            raise ProviderError("YouTube Music playlists cannot be made collaborative through this API")
        privacy = "PUBLIC" if public else "PRIVATE"
        pid = await self._run("create_playlist", lambda yt: yt.create_playlist(name, description, privacy),
                              needs_auth=True)
        if not isinstance(pid, str) or not _PLAYLIST.match(pid):
            raise ProviderError(f"YouTube Music did not create the playlist: {str(pid)[:200]}")
        return Playlist(provider="ytmusic", id=pid, name=name, description=description, public=public,
                        collaborative=False, track_count=0, url=f"{YTM_ORIGIN}/playlist?list={pid}")

    async def add_tracks(self, playlist_id: str, track_ids: list[str], on_step: Step | None = None) -> int:
        pid, ids = _checked(playlist_id, "playlist"), [_checked(t, "track") for t in track_ids]
        for start in range(0, len(ids), BATCH):
            batch = ids[start:start + BATCH]
            res = await self._run("add_playlist_items",
                                  lambda yt, b=batch: yt.add_playlist_items(pid, b, duplicates=True),
                                  needs_auth=True)
            _succeeded(res, "add the tracks")
            if on_step:
                await on_step(len(batch))
        return len(ids)

    async def remove_entries(self, listing: Playlist, positions: list[int], on_step: Step | None = None) -> int:
        """remove_playlist_items with exactly those entries' setVideoIds: other copies of a track stay."""
        pid, items = _checked(listing.id, "playlist"), listing.tracks or []
        entries = [items[p] for p in sorted(set(positions))]
        if any(not e.entry_id or not e.id for e in entries):
            raise ProviderError("YouTube Music gave no entry id (setVideoId) for some of those items, so they cannot "
                                "be removed one by one (is the playlist yours?); nothing was changed")
        for start in range(0, len(entries), BATCH):
            batch = [{"videoId": e.id, "setVideoId": e.entry_id} for e in entries[start:start + BATCH]]
            res = await self._run("remove_playlist_items", lambda yt, b=batch: yt.remove_playlist_items(pid, b),
                                  needs_auth=True)
            _succeeded(res, "remove the items")
            if on_step:
                await on_step(len(batch))
        return len(entries)

    async def move(self, listing: Playlist, moves: list[Move], on_step: Step | None = None) -> int:
        """edit_playlist(moveItem=(setVideoId, successor's setVideoId)); no successor moves it to the end."""
        pid = _checked(listing.id, "playlist")
        if any(not t.entry_id for t in listing.tracks or []):
            raise ProviderError("YouTube Music gave no entry id (setVideoId) for some items, so they cannot be moved "
                                "(is the playlist yours?); nothing was changed")
        for m in moves:
            item: str | tuple[str, str] = (m.item.entry_id, m.successor.entry_id) if m.successor else m.item.entry_id  # type: ignore[assignment]
            res = await self._run("edit_playlist", lambda yt, i=item: yt.edit_playlist(pid, moveItem=i),
                                  needs_auth=True)
            _succeeded(res, "move the item")
            if on_step:
                await on_step(1)
        return len(moves)

    async def aclose(self) -> None:
        self._session.close()


def _succeeded(res: Any, what: str) -> None:
    status = res.get("status") if isinstance(res, dict) else res
    if status not in (None, "STATUS_SUCCEEDED"):
        raise ProviderError(f"YouTube Music did not {what}: {str(status)[:200]}")


def _count(value: Any) -> int | None:
    try:
        return int(str(value).replace(",", "").split()[0])
    except (ValueError, IndexError):
        return None


def playlist_of(body: dict[str, Any], playlist_id: str, max_tracks: int | None) -> Playlist:
    privacy = body.get("privacy")
    tracks = [to_track(t) for t in body.get("tracks") or []][:max_tracks]
    return Playlist(
        provider="ytmusic", id=body.get("id") or playlist_id, name=body.get("title") or "",
        description=body.get("description"), public=(privacy == "PUBLIC") if privacy else None,
        collaborative=bool(body.get("collaborators")) if "collaborators" in body else None,
        owner=(body.get("author") or {}).get("name") if isinstance(body.get("author"), dict) else None,
        track_count=len(tracks) if max_tracks is None else body.get("trackCount"),
        url=f"{YTM_ORIGIN}/playlist?list={body.get('id') or playlist_id}", tracks=tracks,
    )
