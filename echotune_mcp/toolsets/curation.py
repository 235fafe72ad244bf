"""Curation toolset: connect Spotify / YouTube Music, search, read and edit playlists, transfer, curate.

Every mutating tool takes an optional idempotency_key: a retry with the same key returns the first
call's result instead of changing the playlist again.
"""


from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from ..app import App
from ..errors import BadInput
from ..principal import current_principal
from ..providers.base import Playlist, Track
from ..providers.curate import CandidateSource, SearchAndLibrary, match_all, select
from ..providers.hub import ConnectResult, ProviderHub, ProviderStatus
from ..providers.idempotency import once
from ..providers.matching import MIN_CONFIDENCE
from ..providers.ordering import (
    FEATURE_KEYS,
    OrderKey,
    TrackFeatures,
    dedupe,
    missing_features,
    order_by,
)
from .base import Toolset

Provider = Annotated[Literal["spotify", "ytmusic"], Field(description="spotify or ytmusic (YouTube Music)")]
PlaylistId = Annotated[str, Field(min_length=1, max_length=200,
                                  description="a playlist id (or Spotify URI/link) from list_playlists or create_playlist")]
TrackIds = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]],
                     Field(min_length=1, max_length=2000,
                           description="track ids from search_tracks / get_playlist (Spotify ids or URIs, YouTube videoIds)")]
IdemKey = Annotated[str | None, Field(min_length=8, max_length=128,
                                      description="unique per intended change; a retry with the same key does not repeat it")]


class TrackList(BaseModel):
    provider: str
    tracks: list[Track]


class PlaylistList(BaseModel):
    provider: str
    playlists: list[Playlist]
    next_offset: int | None


class ProvidersStatus(BaseModel):
    providers: list[ProviderStatus]


class DisconnectResult(BaseModel):
    provider: str
    removed_stored_token: bool
    revoked_at_provider: bool
    message: str


class EditResult(BaseModel):
    provider: str
    playlist_id: str
    changed: int = Field(description="tracks added, removed or moved")
    replayed: bool = Field(False, description="true when this is the stored result of an earlier call with the same key")
    message: str


class ReorderResult(EditResult):
    order: list[str]


class DedupeResult(EditResult):
    removed: list[Track]


class MatchView(BaseModel):
    source: Track
    match: Track | None
    confidence: float
    method: str | None


class TransferResult(BaseModel):
    from_provider: str
    to_provider: str
    playlist: Playlist
    matched: list[MatchView]
    unmatched: list[MatchView] = Field(description="below min_confidence: the best candidate found, if any")
    replayed: bool = False


class CurateResult(BaseModel):
    provider: str
    playlist: Playlist | None = Field(description="the created playlist (None when create=false)")
    tracks: list[Track]
    sources: list[str] = Field(description="where each track came from: search, seed, related or library")
    replayed: bool = False
    message: str


def build(app: App, *, recommender: CandidateSource | None = None, hub: ProviderHub | None = None) -> Toolset:
    ts = Toolset("curation", "Playlists on Spotify and YouTube Music: connect, search, edit, transfer, curate.")
    hub = hub or ProviderHub(app)
    source: CandidateSource = recommender or SearchAndLibrary()

    def idem_coll():
        return app.storage.collection("idempotency")

    async def adapter(provider: str):
        return await hub.provider(current_principal(), provider)

    # -- connection -----------------------------------------------------------------------------
    @ts.tool(title="Connect provider", read_only=False, idempotent=True, open_world=True)
    async def connect_provider(
        provider: Provider,
        wait_seconds: Annotated[float, Field(ge=0, le=25, description=(
            "when an authorization is already pending, wait this long for the person to approve"))] = 20,
    ) -> ConnectResult:
        """Connect a music service account with OAuth (authorization code + PKCE).

        The first call returns at once with status 'pending' and an authorization_url: show it to the
        person, who opens it and approves. Then call again: it waits up to wait_seconds for the
        approval and returns 'connected' (or 'pending' again with the same URL; 'failed' says why).
        'not_configured' means the server's operator must set client credentials; a person at a
        terminal can also run `echotune-mcp auth spotify`.
        """
        owner = current_principal()
        waiting = hub.has_pending(owner, provider)
        return await hub.connect(owner, provider, wait_s=wait_seconds if waiting else 0)

    @ts.tool(title="Provider status", read_only=True, open_world=False)
    async def providers_status() -> ProvidersStatus:
        """Which music services are connected for this client, how (OAuth, env token, auth file), and whether
        the server renews the token itself. Pending authorizations show their URL."""
        return ProvidersStatus(providers=await hub.status(current_principal()))

    @ts.tool(title="Disconnect provider", read_only=False, destructive=True, idempotent=True, open_world=True)
    async def disconnect_provider(provider: Provider) -> DisconnectResult:
        """Forget this client's grant for a service: revoke it at the provider where it offers revocation,
        and delete the stored (encrypted) token. Playlists on the service are not touched."""
        revoked, deleted = await hub.disconnect(current_principal(), provider)
        msg = "disconnected" if deleted else "nothing was stored for this provider"
        if deleted and not revoked and provider == "spotify":
            msg += "; Spotify has no revocation endpoint: remove the app at https://www.spotify.com/account/apps/ too"
        return DisconnectResult(provider=provider, removed_stored_token=deleted, revoked_at_provider=revoked, message=msg)

    # -- reads ----------------------------------------------------------------------------------
    @ts.tool(title="Search tracks", read_only=True, open_world=True)
    async def search_tracks(
        provider: Provider,
        query: Annotated[str, Field(min_length=1, max_length=300,
                                    description="free text; Spotify also takes filters like artist:, year:, isrc:")],
        limit: Annotated[int, Field(ge=1, le=50, description="how many tracks (1-50)")] = 10,
    ) -> TrackList:
        """Search a service's catalogue for tracks; returns ids to pass to add_tracks and friends."""
        p = await adapter(provider)
        try:
            return TrackList(provider=provider, tracks=await p.search_tracks(query, limit))
        finally:
            await p.aclose()

    @ts.tool(title="List playlists", read_only=True, open_world=True)
    async def list_playlists(
        provider: Provider,
        limit: Annotated[int, Field(ge=1, le=50, description="page size (1-50)")] = 20,
        offset: Annotated[int, Field(ge=0, le=10000, description="next_offset from a previous page")] = 0,
    ) -> PlaylistList:
        """The connected user's playlists (owned and followed), paginated."""
        p = await adapter(provider)
        try:
            items = await p.list_playlists(limit, offset)
        finally:
            await p.aclose()
        return PlaylistList(provider=provider, playlists=items,
                            next_offset=offset + len(items) if len(items) == limit else None)

    @ts.tool(title="Get playlist", read_only=True, open_world=True)
    async def get_playlist(
        provider: Provider, playlist_id: PlaylistId,
        max_tracks: Annotated[int, Field(ge=1, le=2000, description="read at most this many items")] = 200,
    ) -> Playlist:
        """A playlist's details and tracks in order (ids, titles, artists, album, duration, ISRC when known)."""
        p = await adapter(provider)
        try:
            return await p.get_playlist(playlist_id, max_tracks)
        finally:
            await p.aclose()

    # -- writes ---------------------------------------------------------------------------------
    async def _mutate(tool: str, key: str | None, args: dict[str, Any], run) -> tuple[dict[str, Any], bool]:
        return await once(idem_coll(), current_principal(), tool, key, args, run)

    @ts.tool(title="Create playlist", read_only=False, idempotent=False, open_world=True)
    async def create_playlist(
        provider: Provider,
        name: Annotated[str, Field(min_length=1, max_length=100, description="playlist title")],
        description: Annotated[str, Field(max_length=300)] = "",
        public: Annotated[bool, Field(description="visible on the user's profile")] = False,
        collaborative: Annotated[bool, Field(description="others may edit (Spotify; forces public=false)")] = False,
        idempotency_key: IdemKey = None,
    ) -> Playlist:
        """Create an empty playlist for the connected user; add tracks with add_tracks."""
        args = {"provider": provider, "name": name, "description": description, "public": public, "collaborative": collaborative}

        async def run() -> dict[str, Any]:
            p = await adapter(provider)
            try:
                return (await p.create_playlist(name, description, public, collaborative)).model_dump(mode="json")
            finally:
                await p.aclose()

        result, _ = await _mutate("create_playlist", idempotency_key, args, run)
        return Playlist.model_validate(result)

    async def _edit_tracks(tool: str, verb: str, provider: str, playlist_id: str, track_ids: list[str],
                           idempotency_key: str | None) -> EditResult:
        """add_tracks / remove_tracks: one adapter call, replayed (not repeated) for a reused idempotency key."""
        args = {"provider": provider, "playlist_id": playlist_id, "track_ids": track_ids}

        async def run() -> dict[str, Any]:
            p = await adapter(provider)
            try:
                n = await getattr(p, tool)(playlist_id, track_ids)
            finally:
                await p.aclose()
            return EditResult(provider=provider, playlist_id=playlist_id, changed=n,
                              message=f"{verb} {n} track(s)").model_dump(mode="json")

        result, replayed = await _mutate(tool, idempotency_key, args, run)
        return EditResult.model_validate({**result, "replayed": replayed})

    @ts.tool(title="Add tracks", read_only=False, idempotent=False, open_world=True)
    async def add_tracks(provider: Provider, playlist_id: PlaylistId, track_ids: TrackIds,
                         idempotency_key: IdemKey = None) -> EditResult:
        """Append tracks to a playlist in the given order (duplicates are added again). Any number of
        tracks: requests are batched to the service's limit (100 per request). Pass an idempotency_key so a
        retried call cannot add them twice."""
        return await _edit_tracks("add_tracks", "added", provider, playlist_id, track_ids, idempotency_key)

    @ts.tool(title="Remove tracks", read_only=False, destructive=True, idempotent=True, open_world=True)
    async def remove_tracks(provider: Provider, playlist_id: PlaylistId, track_ids: TrackIds,
                            idempotency_key: IdemKey = None) -> EditResult:
        """Remove every occurrence of the given tracks from a playlist. This cannot be undone here
        (re-add with add_tracks; the original added-at dates are lost)."""
        return await _edit_tracks("remove_tracks", "removed", provider, playlist_id, track_ids, idempotency_key)

    @ts.tool(title="Reorder playlist", read_only=False, destructive=True, idempotent=True, open_world=True)
    async def reorder_playlist(
        provider: Provider, playlist_id: PlaylistId,
        order: Annotated[list[str] | None, Field(max_length=2000,
                                                 description="the playlist's track ids in the wanted order")] = None,
        by: Annotated[OrderKey | None, Field(description="or order by a key; tempo, energy and key_flow need features")] = None,
        descending: bool = False,
        features: Annotated[dict[str, TrackFeatures] | None,
                            Field(description="track id -> {tempo_bpm, energy, key} from analysis")] = None,
        idempotency_key: IdemKey = None,
    ) -> ReorderResult:
        """Reorder a playlist: give `order` (exactly its track ids), or `by` one of release_date,
        artist_spread (no artist twice in a row), tempo, energy, key_flow (smooth Camelot-wheel moves).
        The playlist's items are rewritten in the new order (added-at dates reset)."""
        if (order is None) == (by is None):
            raise BadInput("order/by", "give exactly one of order or by")
        args = {"provider": provider, "playlist_id": playlist_id, "order": order, "by": by, "descending": descending,
                    "features": {k: v.model_dump() for k, v in (features or {}).items()}}

        async def run() -> dict[str, Any]:
            p = await adapter(provider)
            try:
                current = (await p.get_playlist(playlist_id, 5000)).tracks or []
                if order is not None:
                    if sorted(order) != sorted(t.id for t in current):
                        raise BadInput("order", "must list exactly the playlist's current track ids, each as often "
                                                "as it occurs (get_playlist shows them)")
                    new = order
                else:
                    assert by is not None
                    if by in FEATURE_KEYS:
                        missing = missing_features(current, by, features or {})
                        if missing:
                            raise BadInput("features", f"ordering by {by} needs it for every track; missing for "
                                                       f"{len(missing)}: {', '.join(missing[:10])}")
                    new = [t.id for t in order_by(current, by, descending=descending, features=features)]
                await p.replace_tracks(playlist_id, new)
            finally:
                await p.aclose()
            moved = sum(1 for a, b in zip(new, [t.id for t in current], strict=True) if a != b)
            return ReorderResult(provider=provider, playlist_id=playlist_id, changed=moved, order=new,
                                 message=f"reordered: {moved} position(s) changed").model_dump(mode="json")

        result, replayed = await _mutate("reorder_playlist", idempotency_key, args, run)
        return ReorderResult.model_validate({**result, "replayed": replayed})

    @ts.tool(title="Dedupe playlist", read_only=False, destructive=True, idempotent=True, open_world=True)
    async def dedupe_playlist(
        provider: Provider, playlist_id: PlaylistId,
        fuzzy: Annotated[bool, Field(description="also drop near-certain title/artist/duration matches")] = False,
        idempotency_key: IdemKey = None,
    ) -> DedupeResult:
        """Remove repeated tracks (same id or same ISRC; optionally near-identical versions), keeping the
        first occurrence and the order of the rest."""
        args = {"provider": provider, "playlist_id": playlist_id, "fuzzy": fuzzy}

        async def run() -> dict[str, Any]:
            p = await adapter(provider)
            try:
                current = (await p.get_playlist(playlist_id, 5000)).tracks or []
                kept, removed = dedupe(current, fuzzy_threshold=0.95 if fuzzy else None)
                if removed:
                    await p.replace_tracks(playlist_id, [t.id for t in kept])
            finally:
                await p.aclose()
            return DedupeResult(provider=provider, playlist_id=playlist_id, changed=len(removed), removed=removed,
                                message=f"removed {len(removed)} duplicate(s)").model_dump(mode="json")

        result, replayed = await _mutate("dedupe_playlist", idempotency_key, args, run)
        return DedupeResult.model_validate({**result, "replayed": replayed})

    @ts.tool(title="Transfer playlist", read_only=False, idempotent=False, open_world=True)
    async def transfer_playlist(
        from_provider: Provider, playlist_id: PlaylistId, to_provider: Provider,
        name: Annotated[str | None, Field(max_length=100, description="new playlist's name (default: same)")] = None,
        min_confidence: Annotated[float, Field(ge=0.5, le=1.0, description="accept fuzzy matches at or above")] = MIN_CONFIDENCE,
        max_tracks: Annotated[int, Field(ge=1, le=500)] = 200,
        idempotency_key: IdemKey = None,
    ) -> TransferResult:
        """Copy a playlist to another service: each track is matched by ISRC where possible, else by
        title/artist/duration with a confidence; a new playlist is created with the matches, and what
        did not match is reported with the best candidate seen."""
        args = {"from_provider": from_provider, "playlist_id": playlist_id, "to_provider": to_provider, "name": name,
                    "min_confidence": min_confidence, "max_tracks": max_tracks}

        async def run() -> dict[str, Any]:
            src, dst = await adapter(from_provider), await adapter(to_provider)
            try:
                original = await src.get_playlist(playlist_id, max_tracks)
                outcomes = await match_all(dst, original.tracks or [], min_confidence)
                created = await dst.create_playlist(name or original.name or "Transferred playlist",
                                                    f"Transferred from {from_provider} by EchoTune")
                ids = [o.match.track.id for o in outcomes if o.matched and o.match]
                if ids:
                    await dst.add_tracks(created.id, ids)
            finally:
                await src.aclose()
                await dst.aclose()
            views = [MatchView(source=o.source, match=o.match.track if o.match else None,
                               confidence=o.match.confidence if o.match else 0.0,
                               method=o.match.method if o.match else None) for o in outcomes]
            return TransferResult(
                from_provider=from_provider, to_provider=to_provider,
                playlist=created.model_copy(update={"track_count": len(ids)}),
                matched=[v for v, o in zip(views, outcomes, strict=True) if o.matched],
                unmatched=[v for v, o in zip(views, outcomes, strict=True) if not o.matched],
            ).model_dump(mode="json")

        result, replayed = await _mutate("transfer_playlist", idempotency_key, args, run)
        return TransferResult.model_validate({**result, "replayed": replayed})

    @ts.tool(title="Curate playlist", read_only=False, idempotent=False, open_world=True)
    async def curate_playlist(
        provider: Provider,
        prompt: Annotated[str | None, Field(max_length=300, description="what it should sound like, e.g. 'rainy day jazz'")] = None,
        seeds: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(
            max_length=5, description="track ids on this provider, or 'Artist - Title' text")] = [],  # noqa: B006
        length: Annotated[int, Field(ge=1, le=100, description="number of tracks")] = 25,
        name: Annotated[str | None, Field(max_length=100)] = None,
        public: bool = False,
        create: Annotated[bool, Field(description="false: only propose the tracks, change nothing")] = True,
        idempotency_key: IdemKey = None,
    ) -> CurateResult:
        """Build a playlist from a prompt and/or seed tracks using catalogue search, the user's own library
        (top, saved, recent) and related tracks (YouTube Music radio), with unique recordings and no artist
        crowding. With create=false nothing is written: review the tracks, then call again."""
        if not prompt and not seeds:
            raise BadInput("prompt/seeds", "give a prompt, seeds, or both")
        args = {"provider": provider, "prompt": prompt, "seeds": seeds, "length": length, "name": name, "public": public,
                    "create": create}

        async def run() -> dict[str, Any]:
            p = await adapter(provider)
            try:
                picked = select(await source.candidates(p, prompt, list(seeds), length), length)
                playlist = None
                if create and picked:
                    playlist = await p.create_playlist(name or (prompt or "EchoTune mix")[:100],
                                                       f"Curated by EchoTune: {prompt or ', '.join(seeds)}"[:300], public)
                    await p.add_tracks(playlist.id, [c.track.id for c in picked])
                    playlist = playlist.model_copy(update={"track_count": len(picked)})
            finally:
                await p.aclose()
            msg = (f"found {len(picked)} of {length} track(s)" +
                   (f"; created playlist {playlist.id}" if playlist else "; nothing was written"))
            return CurateResult(provider=provider, playlist=playlist, tracks=[c.track for c in picked],
                                sources=[c.source for c in picked], message=msg).model_dump(mode="json")

        # a proposal changes nothing, so only writes are guarded by the key
        result, replayed = await _mutate("curate_playlist", idempotency_key if create else None, args, run)
        return CurateResult.model_validate({**result, "replayed": replayed})

    return ts
