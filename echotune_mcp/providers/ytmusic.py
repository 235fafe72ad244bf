"""YouTube Music adapter over ytmusicapi (browser-header auth file, or an OAuth token file + client).

ytmusicapi is blocking and talks to ``https://music.youtube.com``; we hand it a requests session
that adds timeouts and, when ``ECHOTUNE_YTMUSIC_API_BASE`` is set, sends the same requests to
another host (a proxy, or the test server replaying recorded responses). Search and radio work
without auth; the library (playlists, history, likes) needs the auth file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests
from ytmusicapi import YTMusic
from ytmusicapi.auth.oauth import OAuthCredentials
from ytmusicapi.exceptions import YTMusicError, YTMusicServerError, YTMusicUserError

from ..telemetry import span
from .backoff import RateLimitHit, call_with_backoff, parse_retry_after
from .base import MusicProvider, NotConnected, Playlist, ProviderError, Track

YTM_ORIGIN = "https://music.youtube.com"
TIMEOUT = (5, 30)
BATCH = 100
T = TypeVar("T")


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
    secs = item.get("duration_seconds") or _seconds(item.get("duration") or item.get("length"))
    album = item.get("album")
    vid = item.get("videoId") or ""
    return Track(
        provider="ytmusic", id=vid, uri=vid or None, title=item.get("title") or "",
        artists=[a.get("name", "") for a in item.get("artists") or [] if a.get("name")],
        album=album.get("name") if isinstance(album, dict) else album, duration_ms=secs * 1000 if secs else None,
        explicit=item.get("isExplicit"), release_date=str(item["year"]) if item.get("year") else None,
        url=f"{YTM_ORIGIN}/watch?v={vid}" if vid else None, entry_id=item.get("setVideoId"),
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
            return await call_with_backoff(call, provider="ytmusic", cap_s=self._cap)

    # -- reads ----------------------------------------------------------------------------------
    async def search_tracks(self, query: str, limit: int) -> list[Track]:
        items = await self._run("search", lambda yt: yt.search(query, filter="songs", limit=limit))
        return [to_track(i) for i in items if i.get("videoId")][:limit]

    async def get_track(self, track_id: str) -> Track:
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

    async def get_playlist(self, playlist_id: str, max_tracks: int = 500) -> Playlist:
        body = await self._run("get_playlist", lambda yt: yt.get_playlist(playlist_id, limit=max_tracks))
        return playlist_of(body, playlist_id, max_tracks)

    async def related_tracks(self, track_id: str, limit: int) -> list[Track]:
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
        if not isinstance(pid, str):
            raise ProviderError(f"YouTube Music did not create the playlist: {str(pid)[:200]}")
        return Playlist(provider="ytmusic", id=pid, name=name, description=description, public=public,
                        collaborative=False, track_count=0, url=f"{YTM_ORIGIN}/playlist?list={pid}")

    async def add_tracks(self, playlist_id: str, track_ids: list[str]) -> int:
        for start in range(0, len(track_ids), BATCH):
            batch = track_ids[start:start + BATCH]
            res = await self._run("add_playlist_items",
                                  lambda yt, b=batch: yt.add_playlist_items(playlist_id, b, duplicates=True),
                                  needs_auth=True)
            if isinstance(res, dict) and res.get("status") not in (None, "STATUS_SUCCEEDED"):
                raise ProviderError(f"YouTube Music did not add the tracks: {res.get('status')}")
        return len(track_ids)

    async def remove_tracks(self, playlist_id: str, track_ids: list[str]) -> int:
        wanted = set(track_ids)
        current = await self.get_playlist(playlist_id, max_tracks=5000)
        entries = [{"videoId": t.id, "setVideoId": t.entry_id} for t in current.tracks or []
                   if t.id in wanted and t.entry_id]
        for start in range(0, len(entries), BATCH):
            batch = entries[start:start + BATCH]
            await self._run("remove_playlist_items", lambda yt, b=batch: yt.remove_playlist_items(playlist_id, b),
                            needs_auth=True)
        return len(entries)

    async def replace_tracks(self, playlist_id: str, track_ids: list[str]) -> None:
        """No bulk replace exists: remove every entry, then add in the new order."""
        current = await self.get_playlist(playlist_id, max_tracks=5000)
        await self.remove_tracks(playlist_id, [t.id for t in current.tracks or []])
        await self.add_tracks(playlist_id, track_ids)

    async def aclose(self) -> None:
        self._session.close()


def _count(value: Any) -> int | None:
    try:
        return int(str(value).replace(",", "").split()[0])
    except (ValueError, IndexError):
        return None


def playlist_of(body: dict[str, Any], playlist_id: str, max_tracks: int) -> Playlist:
    privacy = body.get("privacy")
    return Playlist(
        provider="ytmusic", id=body.get("id") or playlist_id, name=body.get("title") or "",
        description=body.get("description"), public=(privacy == "PUBLIC") if privacy else None,
        collaborative=bool(body.get("collaborators")) if "collaborators" in body else None,
        owner=(body.get("author") or {}).get("name") if isinstance(body.get("author"), dict) else None,
        track_count=body.get("trackCount"), url=f"{YTM_ORIGIN}/playlist?list={body.get('id') or playlist_id}",
        tracks=[to_track(t) for t in body.get("tracks") or [] if t.get("videoId")][:max_tracks],
    )
