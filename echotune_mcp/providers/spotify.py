"""Spotify adapter: spotipy as the HTTP client, Spotify's Feb-2026 Development Mode API as the contract.

spotipy supplies auth headers, JSON handling and error parsing; the paths are ours because several
of its helpers still call endpoints Spotify removed (``/playlists/{id}/tracks``,
``/users/{id}/playlists``). Limits of that API shape the code: search returns at most 10 per page
(we page to reach larger counts), playlist item writes take at most 100 per request (we batch),
and there are no recommendations or audio features. spotipy's own retries are off (it would sleep
for a whole ``Retry-After`` on the event loop's worker); ``call_with_backoff`` waits instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import requests
import spotipy
from spotipy.exceptions import SpotifyException

from ..telemetry import span
from .backoff import RateLimitHit, call_with_backoff, parse_retry_after
from .base import MAX_PLAYLIST_ITEMS, Move, MusicProvider, Playlist, ProviderError, Step, TooLarge, Track

SEARCH_PAGE = 10  # Feb-2026: /search limit is 1..10
LIBRARY_PAGE = 50  # /me/*, /playlists/{id}/items: limit 1..50
BATCH = 100  # items per add/remove/replace request
TIMEOUT = (5, 20)

_ID = re.compile(r"^[0-9A-Za-z]{22}$")  # Spotify ids are 22 base62 characters
_URI = re.compile(r"^spotify:(track|playlist):([0-9A-Za-z]{22})$")
_URL = re.compile(r"^https?://open\.spotify\.com/(?:intl-[a-zA-Z-]{2,8}/)?(track|playlist)/([0-9A-Za-z]{22})/?(?:\?[^#/]*)?$")


def parse_id(ref: str, kind: str) -> str:
    """A bare id from a 22-character id, a ``spotify:<kind>:`` URI or an open.spotify.com link.

    Anything else is refused (``ValueError``), so no caller-supplied text ever reaches a request path."""
    ref = ref.strip()
    if _ID.match(ref):
        return ref
    m = _URI.match(ref) or _URL.match(ref)
    if m and m.group(1) == kind:
        return m.group(2)
    raise ValueError(f"{ref[:80]!r} is not a Spotify {kind} id (22 letters and digits), "
                     f"spotify:{kind}: URI or open.spotify.com/{kind}/ link")


def track_id_of(ref: str) -> str:
    try:
        return parse_id(ref, "track")
    except ValueError as exc:
        raise ProviderError(str(exc)) from None


def playlist_id_of(ref: str) -> str:
    try:
        return parse_id(ref, "playlist")
    except ValueError as exc:
        raise ProviderError(str(exc)) from None


def to_track(obj: dict[str, Any]) -> Track:
    album = obj.get("album") or {}
    return Track(
        provider="spotify", id=str(obj.get("id") or ""), uri=obj.get("uri"), title=obj.get("name") or "",
        artists=[a.get("name", "") for a in obj.get("artists") or [] if a.get("name")],
        album=album.get("name"), duration_ms=obj.get("duration_ms"),
        isrc=(obj.get("external_ids") or {}).get("isrc"), explicit=obj.get("explicit"),
        release_date=album.get("release_date"), url=(obj.get("external_urls") or {}).get("spotify"),
    )


def to_entry(entry: dict[str, Any]) -> Track:
    """One playlist item as a Track whose ``kind`` says whether the tools can place it by id."""
    item = entry.get("item") or entry.get("track")  # `track` is the pre-2026 name of `item`
    if not isinstance(item, dict):
        return Track(provider="spotify", id="", title="", kind="unavailable")
    if entry.get("is_local") or str(item.get("uri") or "").startswith("spotify:local:"):
        return Track(provider="spotify", id="", uri=item.get("uri"), title=item.get("name") or "",
                     artists=[a.get("name", "") for a in item.get("artists") or [] if a.get("name")], kind="local")
    if item.get("type", "track") == "episode":
        return Track(provider="spotify", id=str(item.get("id") or ""), uri=item.get("uri"),
                     title=item.get("name") or "", duration_ms=item.get("duration_ms"), kind="episode")
    track = to_track(item)
    if not _ID.match(track.id) or item.get("is_playable") is False:
        return track.model_copy(update={"kind": "unavailable"})
    return track


def to_playlist(obj: dict[str, Any]) -> Playlist:
    items = obj.get("items") or obj.get("tracks") or {}
    return Playlist(
        provider="spotify", id=str(obj.get("id") or ""), name=obj.get("name") or "",
        description=obj.get("description"), public=obj.get("public"), collaborative=obj.get("collaborative"),
        owner=(obj.get("owner") or {}).get("display_name") or (obj.get("owner") or {}).get("id"),
        track_count=items.get("total") if isinstance(items, dict) else None,
        url=(obj.get("external_urls") or {}).get("spotify"), snapshot_id=obj.get("snapshot_id"),
    )


class SpotifyProvider(MusicProvider):
    name = "spotify"
    batch_limit = BATCH

    def __init__(self, access_token: str, *, api_base: str = "https://api.spotify.com/v1", cap_s: float = 30.0,
                 session: requests.Session | None = None, on_unauthorized: str | None = None):
        # A plain session: no urllib3 Retry adapter, so a 429 reaches us with its headers.
        self._session = session or requests.Session()
        self._sp = spotipy.Spotify(auth=access_token, requests_session=self._session, requests_timeout=TIMEOUT,
                                   retries=0, status_retries=0)
        self._sp.prefix = api_base.rstrip("/") + "/"
        self._cap = cap_s
        self._unauthorized_hint = on_unauthorized or "call connect_provider(provider='spotify') again"

    # -- transport ------------------------------------------------------------------------------
    async def _call(self, method: str, path: str, *, what: str = "resource", payload: Any = None,
                    **params: Any) -> Any:
        sender: Callable[..., Any] = getattr(self._sp, f"_{method.lower()}")

        def send() -> Any:
            try:
                return sender(path, payload=payload, **params)
            except SpotifyException as exc:
                raise self._translate(exc, what) from None
            except requests.RequestException as exc:
                raise ProviderError(f"could not reach Spotify ({exc.__class__.__name__}); try again shortly") from None

        with span("provider.spotify.request", **{"http.request.method": method.upper(), "url.template": path,
                                                  "server.address": self._sp.prefix}):
            return await call_with_backoff(send, provider="spotify", cap_s=self._cap,
                                           deadline_s=self.deadline_s)

    def _translate(self, exc: SpotifyException, what: str) -> Exception:
        err = self._translated(exc, what)
        err.http_status = exc.http_status  # type: ignore[attr-defined]  # callers that must tell a 403 apart
        return err

    def _translated(self, exc: SpotifyException, what: str) -> Exception:
        text = f"{exc.reason or ''} {exc.msg or ''}"
        if "QUOTA_EXCEEDED" in text:
            return RateLimitHit(None, quota=True, detail=(exc.reason or "").strip())
        if exc.http_status == 429:
            return RateLimitHit(parse_retry_after((exc.headers or {}).get("Retry-After")))
        message = (exc.msg or "").split(":\n", 1)[-1].strip()
        if exc.http_status == 404:
            return ProviderError(f"Spotify answered 404: that {what} does not exist or this account cannot see it; "
                                 "check the id (list_playlists / search_tracks give valid ones)")
        if exc.http_status == 401:
            return ProviderError(f"Spotify rejected the access token ({message or 'unauthorized'}); "
                                 f"{self._unauthorized_hint}")
        if exc.http_status == 403:
            return ProviderError(f"Spotify refused this for the connected account ({message or 'forbidden'}); in "
                                 "Development Mode only users added to the app may use it, and only their own "
                                 "playlists can be read or changed")
        return ProviderError(f"Spotify answered {exc.http_status} ({message or 'error'})")

    async def _paged(self, path: str, count: int, page: int, *, what: str, unwrap: Callable[[dict], Any] | None = None,
                     **params: Any) -> list[dict[str, Any]]:
        """Offset paging up to ``count`` items (Prism and Spotify both bound it by ``total``)."""
        out: list[dict[str, Any]] = []
        offset = 0
        while len(out) < count:
            size = min(page, count - len(out))
            body = await self._call("GET", path, what=what, limit=size, offset=offset, **params)
            block = unwrap(body) if unwrap else body
            items = [i for i in (block or {}).get("items") or [] if i]
            out.extend(items)
            offset += size
            total = (block or {}).get("total")
            if len(items) < size or not (block or {}).get("next") or (total is not None and offset >= total):
                break
        return out[:count]

    # -- reads ----------------------------------------------------------------------------------
    async def search_tracks(self, query: str, limit: int) -> list[Track]:
        items = await self._paged("search", limit, SEARCH_PAGE, what="search", unwrap=lambda b: b.get("tracks"),
                                  q=query, type="track")
        return [to_track(i) for i in items if i.get("id")]

    async def get_track(self, track_id: str) -> Track:
        return to_track(await self._call("GET", f"tracks/{track_id_of(track_id)}", what="track"))

    async def top_tracks(self, limit: int) -> list[Track]:
        items = await self._paged("me/top/tracks", limit, LIBRARY_PAGE, what="top tracks", time_range="medium_term")
        return [to_track(i) for i in items if i.get("id")]

    async def recent_tracks(self, limit: int) -> list[Track]:
        body = await self._call("GET", "me/player/recently-played", what="recent tracks", limit=min(limit, 50))
        return [to_track(i["track"]) for i in (body or {}).get("items") or [] if (i.get("track") or {}).get("id")]

    async def saved_tracks(self, limit: int) -> list[Track]:
        items = await self._paged("me/tracks", limit, LIBRARY_PAGE, what="saved tracks")
        return [to_track(i["track"]) for i in items if (i.get("track") or {}).get("id")]

    # -- listening history (raw objects, for recommend/sync.py) --------------------------------------
    async def recently_played_page(self, before_ms: int | None = None) -> dict[str, Any]:
        """One page (up to 50) of play-history objects (track, played_at, context) before ``before_ms``.

        Spotify keeps only about the last 50 plays here, whatever the paging; ``cursors.before`` pages back."""
        params: dict[str, Any] = {"limit": LIBRARY_PAGE}
        if before_ms is not None:
            params["before"] = before_ms
        return await self._call("GET", "me/player/recently-played", what="recently played tracks", **params) or {}

    async def top_tracks_raw(self, term: str, limit: int) -> list[dict[str, Any]]:
        """Track objects of one top list (``term``: short_term, medium_term or long_term), best first."""
        return await self._paged("me/top/tracks", limit, LIBRARY_PAGE, what="top tracks", time_range=term)

    async def saved_tracks_raw(self, limit: int) -> list[dict[str, Any]]:
        """Saved-track objects (added_at, track), newest first."""
        return await self._paged("me/tracks", limit, LIBRARY_PAGE, what="saved tracks")

    async def list_playlists(self, limit: int, offset: int = 0) -> list[Playlist]:
        body = await self._call("GET", "me/playlists", what="playlists", limit=min(limit, 50), offset=offset)
        return [to_playlist(p) for p in (body or {}).get("items") or [] if p and p.get("id")]

    async def get_playlist(self, playlist_id: str, max_tracks: int | None = None) -> Playlist:
        """Every item (or the first ``max_tracks``), with the snapshot_id the positions belong to.

        A full read checks the snapshot before and after paging: if the playlist changed meanwhile the
        positions would be stale, so it reads again (twice at most) rather than act on a mixed listing."""
        pid = playlist_id_of(playlist_id)
        for _ in range(3):
            meta = to_playlist(await self._call("GET", f"playlists/{pid}", what="playlist"))
            entries = await self._entries(pid, max_tracks)
            if max_tracks is not None:
                break
            after = to_playlist(await self._call("GET", f"playlists/{pid}", what="playlist"))
            if after.snapshot_id == meta.snapshot_id:
                break
        else:
            raise ProviderError("this Spotify playlist kept changing while it was read; nothing was changed, "
                                "try again when it is not being edited")
        tracks = [to_entry(e) for e in entries]
        return meta.model_copy(update={"tracks": tracks, "id": meta.id or pid,
                                       "track_count": meta.track_count if max_tracks else len(tracks)})

    async def _entries(self, pid: str, max_tracks: int | None) -> list[dict[str, Any]]:
        """Page /items to the end (offset advances by what each page returned, so a short page loses
        nothing); a full read refuses playlists above MAX_PLAYLIST_ITEMS before reading them."""
        want = max_tracks if max_tracks is not None else MAX_PLAYLIST_ITEMS
        out: list[dict[str, Any]] = []
        total: int | None = None
        while len(out) < want:
            body = await self._call("GET", f"playlists/{pid}/items", what="playlist",
                                    limit=min(LIBRARY_PAGE, want - len(out)), offset=len(out)) or {}
            total = body.get("total") if isinstance(body.get("total"), int) else total
            if max_tracks is None and total is not None and total > MAX_PLAYLIST_ITEMS:
                raise TooLarge(total)
            page = [e if isinstance(e, dict) else {} for e in body.get("items") or []]
            out.extend(page)
            if not page or not body.get("next") or (total is not None and len(out) >= total):
                break
        if max_tracks is None and total is not None and len(out) != total:
            raise ProviderError(f"Spotify listed {len(out)} of this playlist's {total} items; nothing was changed, "
                                "try again")
        return out[:want]

    # -- writes ---------------------------------------------------------------------------------
    async def create_playlist(self, name: str, description: str = "", public: bool = False,
                              collaborative: bool = False) -> Playlist:
        body = {"name": name, "description": description, "public": public and not collaborative,
                "collaborative": collaborative}
        return to_playlist(await self._call("POST", "me/playlists", what="playlist", payload=body))

    @staticmethod
    def _uris(track_ids: list[str]) -> list[str]:
        return [f"spotify:track:{track_id_of(t)}" for t in track_ids]

    async def add_tracks(self, playlist_id: str, track_ids: list[str], on_step: Step | None = None) -> int:
        pid, uris = playlist_id_of(playlist_id), self._uris(track_ids)
        for start in range(0, len(uris), BATCH):
            batch = uris[start:start + BATCH]
            await self._call("POST", f"playlists/{pid}/items", what="playlist", payload={"uris": batch})
            if on_step:
                await on_step(len(batch))
        return len(uris)

    async def remove_entries(self, listing: Playlist, positions: list[int], on_step: Step | None = None) -> int:
        """DELETE by URI *and* position against the snapshot, highest positions first, so each request leaves
        the positions still to remove where they were and no other occurrence of the URI is touched."""
        pid, items = playlist_id_of(listing.id), listing.tracks or []
        todo = sorted(set(positions), reverse=True)
        if any(not items[p].uri for p in todo):
            raise ProviderError("some of those items have no Spotify URI (unavailable), so they cannot be removed; "
                                "nothing was changed")
        snapshot = listing.snapshot_id
        for start in range(0, len(todo), BATCH):
            batch = todo[start:start + BATCH]
            by_uri: dict[str, list[int]] = {}
            for p in batch:
                by_uri.setdefault(items[p].uri or "", []).append(p)
            payload: dict[str, Any] = {"items": [{"uri": u, "positions": ps} for u, ps in by_uri.items()]}
            if snapshot:
                payload["snapshot_id"] = snapshot
            body = await self._call("DELETE", f"playlists/{pid}/items", what="playlist", payload=payload)
            snapshot = (body or {}).get("snapshot_id") or snapshot
            if on_step:
                await on_step(len(batch))
        return len(todo)

    async def move(self, listing: Playlist, moves: list[Move], on_step: Step | None = None) -> int:
        """One reorder request per move (range_start, insert_before, range_length 1), each against the
        snapshot the previous one returned; items are never rewritten, so added-at dates survive."""
        pid, size = playlist_id_of(listing.id), len(listing.tracks or [])
        snapshot = listing.snapshot_id
        for m in moves:
            payload: dict[str, Any] = {"range_start": m.index, "insert_before": size if m.before is None else m.before,
                                       "range_length": 1}
            if snapshot:
                payload["snapshot_id"] = snapshot
            body = await self._call("PUT", f"playlists/{pid}/items", what="playlist", payload=payload)
            snapshot = (body or {}).get("snapshot_id") or snapshot
            if on_step:
                await on_step(1)
        return len(moves)

    async def aclose(self) -> None:
        self._session.close()
