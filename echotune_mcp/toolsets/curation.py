"""Curation toolset: connect Spotify / YouTube Music, search, read and edit playlists, transfer, curate.

Every mutating tool takes an optional idempotency_key: a retry with the same key returns the first
call's result, or finishes a call that failed or was cut off from where it got, instead of starting
over. Playlist edits never rewrite a playlist: reorders are moves, removals name exact positions, and
the order before any destructive change is saved as a snapshot that restore_playlist puts back.
"""


from typing import Annotated, Any, Literal

import anyio
from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import BaseModel, Field

from .. import confirm as confirmation
from ..app import App
from ..confirm import Confirm, Confirmation, Decision, Preview
from ..errors import BadInput, NotFound
from ..principal import current_principal
from ..providers.base import MusicProvider, Playlist, ProviderError, Track
from ..providers.curate import CorpusFeatures, SearchAndLibrary, candidate_item, match_all
from ..providers.hub import ConnectResult, ProviderStatus
from ..providers.idempotency import Progress, once
from ..providers.matching import MIN_CONFIDENCE
from ..providers.ordering import (
    FEATURE_KEYS,
    OrderKey,
    TrackFeatures,
    arrange,
    dedupe,
    missing_features,
    movable,
    order_by,
    plan_moves,
)
from ..recommend.corpus import corpora_dir, list_corpora
from ..recommend.sequence import DEFAULT_DURATION_S, camelot_name, duration_of, energy_of, key_of, plan, tempo_of
from ..recommend.service import NoModel, RecommendedItem, RecommendRequest, recommend
from ..storage.records import PlaylistSnapshotRecord, now
from ..storage.stores import PlaylistSnapshotStore
from .base import Toolset, current_app

SNAPSHOT_TTL_S = 30 * 24 * 3600

Provider = Annotated[Literal["spotify", "ytmusic"], Field(description="spotify or ytmusic (YouTube Music)")]
PlaylistId = Annotated[str, Field(min_length=1, max_length=200,
                                  description="a playlist id (or Spotify URI/link) from list_playlists or create_playlist")]
TrackIds = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]],
                     Field(min_length=1, max_length=2000,
                           description="track ids from search_tracks / get_playlist (Spotify ids or URIs, YouTube videoIds)")]
IdemKey = Annotated[str | None, Field(min_length=8, max_length=128,
                                      description="unique per intended change; a retry with the same key does not "
                                                  "repeat it, and finishes it if the first call failed half way")]
SnapshotId = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^psnap_[A-Za-z0-9_-]+$",
                                  description="the snapshot id a reorder, dedupe or remove result returned")]


def parse_playlist_id(provider: str, value: str, field: str = "playlist_id") -> str:
    """The service's playlist id, or a BadInput naming the field: checked before any request is made."""
    return _parse(provider, value, "playlist", field)


def parse_track_ids(provider: str, values: list[str], field: str = "track_ids") -> list[str]:
    return [_parse(provider, v, "track", f"{field}[{i}]") for i, v in enumerate(values)]


def _parse(provider: str, value: str, kind: str, field: str) -> str:
    if provider == "spotify":
        from ..providers.spotify import parse_id
    else:
        from ..providers.ytmusic import parse_id
    try:
        return parse_id(value, kind)
    except ValueError as exc:
        raise BadInput(field, str(exc)) from None


def _key(t: Track) -> str:
    """What identifies an item across reads when its entry id is unknown: its URI or id (unavailable: none)."""
    return t.uri or t.id or "\x00unidentified"


def align(desired: list[Track], current: list[Track]) -> tuple[list[int | None], list[int]]:
    """Match wanted entries to the current listing: by entry id (YouTube setVideoId) first; then an item
    already where it is wanted stays matched there; then the k-th remaining occurrence of a URI/id to the
    k-th remaining one (copies of a track are interchangeable, so this keeps moves few). Returns each
    wanted entry's current index (None: not there) and the current indices nothing wanted (items added
    since), in playlist order."""
    used: set[int] = set()
    found: list[int | None] = [None] * len(desired)
    by_entry = {t.entry_id: i for i, t in enumerate(current) if t.entry_id}
    for k, d in enumerate(desired):
        i = by_entry.get(d.entry_id) if d.entry_id else None
        if i is not None and i not in used:
            found[k] = i
            used.add(i)
    for k, d in enumerate(desired):
        if found[k] is None and k < len(current) and k not in used and _key(current[k]) == _key(d):
            found[k] = k
            used.add(k)
    queues: dict[str, list[int]] = {}
    for i, t in enumerate(current):
        if i not in used:
            queues.setdefault(_key(t), []).append(i)
    for k, d in enumerate(desired):
        if found[k] is None and queues.get(_key(d)):
            found[k] = queues[_key(d)].pop(0)
            used.add(found[k])  # type: ignore[arg-type]
    return found, [i for i in range(len(current)) if i not in used]


def assign(wanted: list[str], have: list[str], slots: list[int]) -> list[int]:
    """Which entry (from ``slots``, whose ids are ``have``) goes to each place of ``wanted``: one already in
    place stays; other copies of an id are taken in order (so swapping two tracks is two moves, not a
    shift of every copy between them)."""
    out: list[int | None] = [slots[i] if wanted[i] == have[i] else None for i in range(len(wanted))]
    queues: dict[str, list[int]] = {}
    for i, h in enumerate(have):
        if out[i] is None:
            queues.setdefault(h, []).append(slots[i])
    return [o if o is not None else queues[w].pop(0) for o, w in zip(out, wanted, strict=True)]


def target_of(desired: list[Track], current: list[Track]) -> tuple[list[int], list[int]]:
    """(the current indices in the wanted order, extras last; the wanted positions not in the playlist)."""
    found, extra = align(desired, current)
    return [i for i in found if i is not None] + extra, [k for k, i in enumerate(found) if i is None]


def describe(t: Track, position: int | None = None) -> str:
    """One item as a person recognises it: title, artists, where it is."""
    who = ", ".join(t.artists) or "unknown artist"
    kind = "" if t.kind == "track" else f" [{t.kind}]"
    return f"{t.title} - {who}{kind}" + (f" (position {position})" if position is not None else "")


def playlist_label(provider: str, listing: Playlist) -> str:
    return f"{provider} playlist {listing.name!r} ({listing.id}, {len(listing.tracks or [])} item(s))"


UNDO_SNAPSHOT = ("The current order is saved first as a snapshot (kept 30 days): "
                 "restore_playlist(snapshot=...) with the id the result returns puts it back.")

Answer = ElicitationResult[Confirmation]


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
    changed: int = Field(description="tracks added or removed, or moves made")
    snapshot: str | None = Field(None, description=(
        "id of the order saved before this change (kept 30 days): restore_playlist(snapshot=...) puts it back"))
    resumed: bool = Field(False, description="true when this call finished an earlier, interrupted call with the same key")
    replayed: bool = Field(False, description="true when this is the stored result of an earlier call with the same key")
    message: str


class ReorderResult(EditResult):
    order: list[str] = Field(description="the movable tracks' ids in their new order")
    kept_in_place: int = Field(0, description="episodes, local files and unavailable items, left where they were")


class DedupeResult(EditResult):
    removed: list[Track]


class RemoveResult(EditResult):
    not_in_playlist: list[str] = Field(default_factory=list, description="given ids the playlist did not hold")


class RestoreResult(EditResult):
    readded: int = Field(description="items that were missing and were added back")
    moved: int = Field(description="moves made to put the items in the saved order")
    not_restored: list[Track] = Field(description="saved items that cannot be added back (episodes, local files, "
                                                  "unavailable tracks) and are missing now")
    kept_extra: int = Field(description="items added after the snapshot: kept, placed after the restored ones")


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
    into_existing: bool = Field(False, description="true: the matches were appended to an existing playlist "
                                                   "(into_playlist_id) instead of a new one")
    replayed: bool = False


class CuratedTrack(BaseModel):
    position: int = Field(description="1-based place in the playlist")
    track: Track
    why: str = Field(description="why it is here and here: the recommendation, the energy it brings at this point "
                                 "of the arc, and the tempo/key step from the track before")
    reasons: list[str] = Field(description="the recommender's reasons (or where a fallback search found it)")
    source: str = Field(description="corpus:<id>, history, or provider:<search|seed|related|library>")
    energy: float | None = Field(None, description="0..1, where known")
    target_energy: float | None = Field(None, description="what the arc asked for here (when energy is known)")
    tempo_bpm: float | None = None
    key: str | None = Field(None, description="Camelot key, e.g. 8A, where known")
    duration_s: float | None = None


class CurateResult(BaseModel):
    provider: str
    playlist: Playlist | None = Field(description="the created playlist (None when create=false)")
    tracks: list[CuratedTrack] = Field(description="in playlist order")
    target: str = Field(description="what was asked: a number of tracks or a duration, and the arc")
    total_duration_s: float = Field(description="the tracks' total duration (unknown durations estimated)")
    ignored: list[str] = Field(description="seeds, candidates and sources that were not used, with why")
    notes: list[str] = Field(description="what the sequencing relaxed or could not know")
    model: dict | None = Field(description="the recommender model that ranked the candidates (corpus, versions, "
                                           "licence); None when it was not used")
    licences: list[str] = Field(description="licences of the corpora whose data chose or placed tracks")
    replayed: bool = False
    message: str


toolset = Toolset("curation", "Playlists on Spotify and YouTube Music: connect, search, edit, transfer, curate.")


def _idem_coll(app: App):
    return app.storage.collection("idempotency")


async def _adapter(app: App, provider: str) -> MusicProvider:
    """This client's adapter for ``provider`` from the App's one provider hub (the caller closes it)."""
    return await app.providers.provider(current_principal(), provider)


# -- connection -----------------------------------------------------------------------------
@toolset.tool(title="Connect provider", read_only=False, idempotent=True, open_world=True)
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
    hub = current_app().providers
    owner = current_principal()
    waiting = hub.has_pending(owner, provider)
    return await hub.connect(owner, provider, wait_s=wait_seconds if waiting else 0)


@toolset.tool(title="Provider status", read_only=True, open_world=False)
async def providers_status() -> ProvidersStatus:
    """Which music services are connected for this client, how (OAuth, env token, auth file), and whether
    the server renews the token itself. Pending authorizations show their URL."""
    return ProvidersStatus(providers=await current_app().providers.status(current_principal()))


@toolset.tool(title="Disconnect provider", read_only=False, destructive=True, idempotent=True, open_world=True)
async def disconnect_provider(provider: Provider) -> DisconnectResult:
    """Forget this client's grant for a service: revoke it at the provider where it offers revocation,
    and delete the stored (encrypted) token. Playlists on the service are not touched."""
    revoked, deleted = await current_app().providers.disconnect(current_principal(), provider)
    msg = "disconnected" if deleted else "nothing was stored for this provider"
    if deleted and not revoked and provider == "spotify":
        msg += "; Spotify has no revocation endpoint: remove the app at https://www.spotify.com/account/apps/ too"
    return DisconnectResult(provider=provider, removed_stored_token=deleted, revoked_at_provider=revoked, message=msg)


# -- reads ----------------------------------------------------------------------------------
@toolset.tool(title="Search tracks", read_only=True, open_world=True)
async def search_tracks(
    provider: Provider,
    query: Annotated[str, Field(min_length=1, max_length=300,
                                description="free text; Spotify also takes filters like artist:, year:, isrc:")],
    limit: Annotated[int, Field(ge=1, le=50, description="how many tracks (1-50)")] = 10,
) -> TrackList:
    """Search a service's catalogue for tracks; returns ids to pass to add_tracks and friends."""
    app = current_app()
    p = await _adapter(app, provider)
    try:
        return TrackList(provider=provider, tracks=await p.search_tracks(query, limit))
    finally:
        await p.aclose()


@toolset.tool(title="List playlists", read_only=True, open_world=True)
async def list_playlists(
    provider: Provider,
    limit: Annotated[int, Field(ge=1, le=50, description="page size (1-50)")] = 20,
    offset: Annotated[int, Field(ge=0, le=10000, description="next_offset from a previous page")] = 0,
) -> PlaylistList:
    """The connected user's playlists (owned and followed), paginated."""
    app = current_app()
    p = await _adapter(app, provider)
    try:
        items = await p.list_playlists(limit, offset)
    finally:
        await p.aclose()
    return PlaylistList(provider=provider, playlists=items,
                        next_offset=offset + len(items) if len(items) == limit else None)


@toolset.tool(title="Get playlist", read_only=True, open_world=True, ui="playlist")
async def get_playlist(
    provider: Provider, playlist_id: PlaylistId,
    max_tracks: Annotated[int, Field(ge=1, le=2000, description="read at most this many items")] = 200,
) -> Playlist:
    """A playlist's details and items in order (ids, titles, artists, album, duration, ISRC when known).
    Every kind of item is listed (`kind`: track, episode, local, unavailable), up to max_tracks;
    track_count is the playlist's total, so a larger total means more items exist past max_tracks."""
    app = current_app()
    pid = parse_playlist_id(provider, playlist_id)
    p = await _adapter(app, provider)
    try:
        return await p.get_playlist(pid, max_tracks)
    finally:
        await p.aclose()


# -- writes ---------------------------------------------------------------------------------
def _snapshots(app: App) -> PlaylistSnapshotStore:
    return PlaylistSnapshotStore(app.storage.collection("playlist_snapshots"))


async def _mutate(app: App, tool: str, key: str | None, args: dict[str, Any], run) -> tuple[dict[str, Any], bool]:
    return await once(_idem_coll(app), current_principal(), tool, key, args, run)


async def _save_snapshot(app: App, progress: Progress, tool: str, provider: str, listing: Playlist) -> str:
    """Save the order before the first change (once per keyed call: a resumed call keeps the first one)."""
    if progress.state.get("snapshot"):
        return str(progress.state["snapshot"])
    rec = await _snapshots(app).insert(PlaylistSnapshotRecord(
        owner=current_principal(), provider=provider, playlist_id=listing.id, tool=tool,
        items=[t.model_dump(mode="json", exclude={"provider"}) for t in listing.tracks or []],
        provider_snapshot_id=listing.snapshot_id, expires_at=now() + SNAPSHOT_TTL_S))
    await progress.save(snapshot=rec.id)
    return rec.id


async def _original(app: App, progress: Progress, listing: Playlist) -> list[Track]:
    """The items as they were before this call's first change: the saved snapshot when resuming."""
    snap = progress.state.get("snapshot")
    rec = await _snapshots(app).get(current_principal(), snap) if snap else None
    return [Track(provider=listing.provider, **i) for i in rec.items] if rec else list(listing.tracks or [])


def _counter(progress: Progress, field: str):
    async def step(n: int) -> None:
        await progress.save(**{field: int(progress.state.get(field) or 0) + n})
    return step


# -- what a destructive call would do (shared by the confirmation preview and the call itself) ----
def _reordered(original: list[Track], wanted: list[str] | None, by: str | None, descending: bool,
               features: dict[str, TrackFeatures] | None) -> list[Track]:
    """The playlist's items in the wanted order (episodes, local files, unavailable items in place)."""
    slots = [i for i, t in enumerate(original) if movable(t)]
    tracks = [original[i] for i in slots]
    if wanted is not None:
        if sorted(wanted) != sorted(t.id for t in tracks):
            raise BadInput("order", "must list exactly the playlist's track ids, each as often as it "
                                    f"occurs ({len(tracks)} of them; episodes, local files and unavailable "
                                    "items are left in place and not listed; get_playlist shows them)")
        new = assign(wanted, [original[i].id for i in slots], slots)
    else:
        assert by is not None
        if by in FEATURE_KEYS:
            missing = missing_features(tracks, by, features or {})
            if missing:
                raise BadInput("features", f"ordering by {by} needs it for every track; missing for "
                                           f"{len(missing)}: {', '.join(missing[:10])}")
        index = {id(t): i for i, t in zip(slots, tracks, strict=True)}
        new = [index[id(t)] for t in order_by(tracks, by, descending=descending, features=features)]
    return [original[i] for i in arrange(original, new)]


def _repeat_positions(items: list[Track], fuzzy: bool) -> list[int]:
    """Positions of the repeats dedupe removes (the first occurrence stays)."""
    slots = [i for i, t in enumerate(items) if movable(t)]
    _, removed = dedupe([items[i] for i in slots], fuzzy_threshold=0.95 if fuzzy else None)
    gone = {id(t) for t in removed}
    return [i for i in slots if id(items[i]) in gone]


async def _current(app: App, provider: str, pid: str) -> Playlist:
    p = await _adapter(app, provider)
    try:
        return await p.get_playlist(pid)
    finally:
        await p.aclose()


# Resolvers (mcp.server.mcpserver.resolve): they run before the tool body, take its arguments by name,
# read the playlist and decide whether the person must be asked (confirm.py).
async def _ask_remove(ctx: Context, provider: str, playlist_id: str, track_ids: list[str],
                      confirm: bool) -> Elicit[Confirmation] | Decision:
    app = current_app()

    async def preview() -> Preview | None:
        pid = parse_playlist_id(provider, playlist_id)
        wanted = set(parse_track_ids(provider, track_ids))
        listing = await _current(app, provider, pid)
        hit = [describe(t, i + 1) for i, t in enumerate(listing.tracks or []) if t.id in wanted]
        return Preview(f"remove {len(hit)} item(s) from {playlist_label(provider, listing)}", hit,
                       UNDO_SNAPSHOT) if hit else None
    return await confirmation.ask(ctx, confirm, preview)


async def _ask_reorder(ctx: Context, provider: str, playlist_id: str, order: list[str] | None, by: str | None,
                       descending: bool, features: dict[str, TrackFeatures] | None,
                       confirm: bool) -> Elicit[Confirmation] | Decision:
    app = current_app()
    if (order is None) == (by is None):
        raise BadInput("order/by", "give exactly one of order or by")

    async def preview() -> Preview | None:
        pid = parse_playlist_id(provider, playlist_id)
        wanted = parse_track_ids(provider, order, "order") if order is not None else None
        listing = await _current(app, provider, pid)
        items = listing.tracks or []
        desired = _reordered(items, wanted, by, descending, features)
        target, _ = target_of(desired, items)
        moves = plan_moves(items, target)
        if not moves:
            return None
        lines = [f"{describe(items[i])}: position {i + 1} -> {k + 1}" for k, i in enumerate(target) if i != k]
        return Preview(f"reorder {playlist_label(provider, listing)} with {len(moves)} move(s); "
                       f"{len(lines)} item(s) change position", lines, UNDO_SNAPSHOT)
    return await confirmation.ask(ctx, confirm, preview)


async def _ask_dedupe(ctx: Context, provider: str, playlist_id: str, fuzzy: bool,
                      confirm: bool) -> Elicit[Confirmation] | Decision:
    app = current_app()

    async def preview() -> Preview | None:
        pid = parse_playlist_id(provider, playlist_id)
        listing = await _current(app, provider, pid)
        items = listing.tracks or []
        gone = [describe(items[i], i + 1) for i in _repeat_positions(items, fuzzy)]
        return Preview(f"remove {len(gone)} repeated item(s) from {playlist_label(provider, listing)} "
                       "(the first occurrence of each stays)", gone, UNDO_SNAPSHOT) if gone else None
    return await confirmation.ask(ctx, confirm, preview)


@toolset.tool(title="Create playlist", read_only=False, idempotent=False, open_world=True)
async def create_playlist(
    provider: Provider,
    name: Annotated[str, Field(min_length=1, max_length=100, description="playlist title")],
    description: Annotated[str, Field(max_length=300)] = "",
    public: Annotated[bool, Field(description="visible on the user's profile")] = False,
    collaborative: Annotated[bool, Field(description="others may edit (Spotify; forces public=false)")] = False,
    idempotency_key: IdemKey = None,
) -> Playlist:
    """Create an empty playlist for the connected user; add tracks with add_tracks."""
    app = current_app()
    args = {"provider": provider, "name": name, "description": description, "public": public, "collaborative": collaborative}

    async def run(progress: Progress) -> dict[str, Any]:
        if progress.state.get("playlist"):
            return progress.state["playlist"]
        p = await _adapter(app, provider)
        try:
            created = (await p.create_playlist(name, description, public, collaborative)).model_dump(mode="json")
        finally:
            await p.aclose()
        await progress.save(playlist=created)
        return created

    result, _ = await _mutate(app, "create_playlist", idempotency_key, args, run)
    return Playlist.model_validate(result)


@toolset.tool(title="Add tracks", read_only=False, idempotent=False, open_world=True)
async def add_tracks(provider: Provider, playlist_id: PlaylistId, track_ids: TrackIds,
                     idempotency_key: IdemKey = None) -> EditResult:
    """Append tracks to a playlist in the given order (duplicates are added again). Any number of
    tracks: requests are batched to the service's limit (100 per request). Pass an idempotency_key so a
    retried call cannot add them twice: each accepted batch is recorded, and a retry after a failure
    adds only the rest."""
    app = current_app()
    pid, ids = parse_playlist_id(provider, playlist_id), parse_track_ids(provider, track_ids)
    args = {"provider": provider, "playlist_id": pid, "track_ids": ids}

    async def run(progress: Progress) -> dict[str, Any]:
        done = int(progress.state.get("added") or 0)
        p = await _adapter(app, provider)
        try:
            if done < len(ids):
                await p.add_tracks(pid, ids[done:], _counter(progress, "added"))
        finally:
            await p.aclose()
        msg = f"added {len(ids)} track(s)" + (f" ({done} by the earlier, interrupted call)" if done else "")
        return EditResult(provider=provider, playlist_id=pid, changed=len(ids), resumed=progress.resumed,
                          message=msg).model_dump(mode="json")

    result, replayed = await _mutate(app, "add_tracks", idempotency_key, args, run)
    return EditResult.model_validate({**result, "replayed": replayed})


@toolset.tool(title="Remove tracks", read_only=False, destructive=True, idempotent=True, open_world=True)
async def remove_tracks(provider: Provider, playlist_id: PlaylistId, track_ids: TrackIds,
                        idempotency_key: IdemKey = None, confirm: Confirm = False, *,
                        answer: Annotated[Answer, Resolve(_ask_remove)]) -> RemoveResult:
    """Remove every occurrence of the given tracks from a playlist (exactly those entries: nothing else
    is rewritten). The order before is saved first; restore_playlist(snapshot=...) adds them back.
    Destructive, so the person is asked first (elicitation) unless confirm=true; a client that cannot
    be asked gets a 'confirmation required' error listing what would be removed, and nothing changes."""
    app = current_app()
    decision = confirmation.settle("remove_tracks", answer)
    pid, ids = parse_playlist_id(provider, playlist_id), parse_track_ids(provider, track_ids)
    args = {"provider": provider, "playlist_id": pid, "track_ids": ids}
    wanted = set(ids)

    async def run(progress: Progress) -> dict[str, Any]:
        p = await _adapter(app, provider)
        try:
            listing = await p.get_playlist(pid)
            original = await _original(app, progress, listing)
            positions = [i for i, t in enumerate(listing.tracks or []) if t.id in wanted]
            snap = progress.state.get("snapshot")
            if positions:
                snap = await _save_snapshot(app, progress, "remove_tracks", provider, listing)
                await p.remove_entries(listing, positions, _counter(progress, "removed"))
        finally:
            await p.aclose()
        gone = sum(1 for t in original if t.id in wanted)
        absent = sorted(wanted - {t.id for t in original})
        return RemoveResult(provider=provider, playlist_id=pid, changed=gone, snapshot=snap, resumed=progress.resumed,
                            not_in_playlist=absent, message=f"removed {gone} item(s)" + confirmation.note(decision) +
                            (f"; {len(absent)} id(s) were not in the playlist" if absent else "")).model_dump(mode="json")

    result, replayed = await _mutate(app, "remove_tracks", idempotency_key, args, run)
    return RemoveResult.model_validate({**result, "replayed": replayed})


async def _move_into(app: App, p: MusicProvider, progress: Progress, tool: str, provider: str, listing: Playlist,
                     desired: list[Track]) -> tuple[int, list[int], str | None]:
    """Move the listing's items into the ``desired`` order (extras last); returns (moves, missing, snapshot)."""
    current = listing.tracks or []
    target, missing = target_of(desired, current)
    moves = plan_moves(current, target)
    snap = progress.state.get("snapshot")
    if moves:
        snap = await _save_snapshot(app, progress, tool, provider, listing)
        await p.move(listing, moves, _counter(progress, "moved"))
    return len(moves), missing, snap


@toolset.tool(title="Reorder playlist", read_only=False, destructive=True, idempotent=True, open_world=True)
async def reorder_playlist(
    provider: Provider, playlist_id: PlaylistId,
    order: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]] | None, Field(
        max_length=10000, description="the playlist's track ids in the wanted order")] = None,
    by: Annotated[OrderKey | None, Field(description="or order by a key; tempo, energy and key_flow need features")] = None,
    descending: bool = False,
    features: Annotated[dict[str, TrackFeatures] | None,
                        Field(description="track id -> {tempo_bpm, energy, key} from analysis")] = None,
    idempotency_key: IdemKey = None,
    confirm: Confirm = False,
    *,
    answer: Annotated[Answer, Resolve(_ask_reorder)],
) -> ReorderResult:
    """Reorder a playlist: give `order` (exactly its track ids, each as often as it occurs), or `by` one
    of release_date, artist_spread (no artist twice in a row), tempo, energy, key_flow (smooth
    Camelot-wheel moves). Items are moved, never rewritten (added-at dates stay), with the fewest
    single-item moves; episodes, local files and unavailable items keep their positions. The order
    before is saved first: restore_playlist(snapshot=...) puts it back. The person is asked first
    (elicitation) unless confirm=true; a client that cannot be asked gets a 'confirmation required'
    error listing the moves, and nothing changes."""
    app = current_app()
    decision = confirmation.settle("reorder_playlist", answer)
    pid = parse_playlist_id(provider, playlist_id)
    wanted = parse_track_ids(provider, order, "order") if order is not None else None
    args = {"provider": provider, "playlist_id": pid, "order": wanted, "by": by, "descending": descending,
            "features": {k: v.model_dump() for k, v in (features or {}).items()}}

    async def run(progress: Progress) -> dict[str, Any]:
        p = await _adapter(app, provider)
        try:
            listing = await p.get_playlist(pid)
            original = await _original(app, progress, listing)
            desired = _reordered(original, wanted, by, descending, features)
            moved, _, snap = await _move_into(app, p, progress, "reorder_playlist", provider, listing, desired)
        finally:
            await p.aclose()
        kept = sum(1 for t in original if not movable(t))
        return ReorderResult(provider=provider, playlist_id=pid, changed=moved, snapshot=snap,
                             resumed=progress.resumed, order=[t.id for t in desired if movable(t)],
                             kept_in_place=kept,
                             message=f"reordered with {moved} move(s){confirmation.note(decision)}; "
                                     f"{len(desired)} item(s) before and after" +
                             (f", {kept} left in place (episodes, local files, unavailable)" if kept else "")
                             ).model_dump(mode="json")

    result, replayed = await _mutate(app, "reorder_playlist", idempotency_key, args, run)
    return ReorderResult.model_validate({**result, "replayed": replayed})


@toolset.tool(title="Dedupe playlist", read_only=False, destructive=True, idempotent=True, open_world=True)
async def dedupe_playlist(
    provider: Provider, playlist_id: PlaylistId,
    fuzzy: Annotated[bool, Field(description="also drop near-certain title/artist/duration matches")] = False,
    idempotency_key: IdemKey = None,
    confirm: Confirm = False,
    *,
    answer: Annotated[Answer, Resolve(_ask_dedupe)],
) -> DedupeResult:
    """Remove repeated tracks (same id or same ISRC; optionally near-identical versions), keeping the
    first occurrence: only the repeats are removed, by position, and nothing else is touched
    (episodes, local files and unavailable items are never removed). The order before is saved
    first: restore_playlist(snapshot=...) puts the removed copies back. The person is asked first
    (elicitation) unless confirm=true; a client that cannot be asked gets a 'confirmation required'
    error listing the copies that would go, and nothing changes."""
    app = current_app()
    decision = confirmation.settle("dedupe_playlist", answer)
    pid = parse_playlist_id(provider, playlist_id)
    args = {"provider": provider, "playlist_id": pid, "fuzzy": fuzzy}

    def repeats(items: list[Track]) -> list[int]:
        return _repeat_positions(items, fuzzy)

    async def run(progress: Progress) -> dict[str, Any]:
        p = await _adapter(app, provider)
        try:
            listing = await p.get_playlist(pid)
            original = await _original(app, progress, listing)
            positions = repeats(listing.tracks or [])
            snap = progress.state.get("snapshot")
            if positions:
                snap = await _save_snapshot(app, progress, "dedupe_playlist", provider, listing)
                await p.remove_entries(listing, positions, _counter(progress, "removed"))
        finally:
            await p.aclose()
        removed = [original[i] for i in repeats(original)]
        return DedupeResult(provider=provider, playlist_id=pid, changed=len(removed), removed=removed, snapshot=snap,
                            resumed=progress.resumed,
                            message=f"removed {len(removed)} duplicate(s){confirmation.note(decision)}"
                            ).model_dump(mode="json")

    result, replayed = await _mutate(app, "dedupe_playlist", idempotency_key, args, run)
    return DedupeResult.model_validate({**result, "replayed": replayed})


@toolset.tool(title="Restore playlist", read_only=False, destructive=True, idempotent=True, open_world=True)
async def restore_playlist(provider: Provider, playlist_id: PlaylistId, snapshot: SnapshotId,
                           idempotency_key: IdemKey = None) -> RestoreResult:
    """Put a playlist back the way a snapshot saved it (the `snapshot` a reorder_playlist,
    dedupe_playlist, remove_tracks or restore_playlist result returned): tracks missing now are added
    back, then items are moved into the saved order. Nothing is removed: items added since the
    snapshot are kept, after the restored ones. Episodes, local files and unavailable tracks that are
    gone cannot be added back and are listed. The order it replaces is itself saved (see `snapshot`
    in the result). Safe to call again: it only does what is still missing."""
    app = current_app()
    pid = parse_playlist_id(provider, playlist_id)
    rec = await _snapshots(app).get(current_principal(), snapshot)
    if rec is None:
        raise NotFound("playlist snapshot", snapshot, "use the snapshot id a reorder_playlist, dedupe_playlist or "
                                                      "remove_tracks result returned (kept for 30 days)")
    if rec.provider != provider or rec.playlist_id != pid:
        raise BadInput("snapshot", f"was taken of {rec.provider} playlist {rec.playlist_id}, not this one",
                       f"provider={rec.provider}, playlist_id={rec.playlist_id}")
    args = {"provider": provider, "playlist_id": pid, "snapshot": snapshot}

    async def run(progress: Progress) -> dict[str, Any]:
        saved = [Track(provider=provider, **i) for i in rec.items]
        p = await _adapter(app, provider)
        try:
            listing = await p.get_playlist(pid)
            _, missing = target_of(saved, listing.tracks or [])
            addable = [saved[k].id for k in missing if movable(saved[k])]
            lost = [saved[k] for k in missing if not movable(saved[k])]
            if addable:
                await _save_snapshot(app, progress, "restore_playlist", provider, listing)
                await p.add_tracks(pid, addable, _counter(progress, "readded"))
                listing = await p.get_playlist(pid)
            moved, _, _ = await _move_into(app, p, progress, "restore_playlist", provider, listing, saved)
        finally:
            await p.aclose()
        extra = len(listing.tracks or []) - (len(saved) - len(lost))
        readded = int(progress.state.get("readded") or 0)
        msg = (f"restored {snapshot}: added back {readded}, made {moved} move(s)" +
               (f"; {len(lost)} item(s) could not be added back" if lost else "") +
               (f"; {extra} item(s) added since were kept at the end" if extra else ""))
        return RestoreResult(provider=provider, playlist_id=pid, changed=readded + moved, readded=readded,
                             moved=moved, not_restored=lost, kept_extra=max(extra, 0),
                             snapshot=progress.state.get("snapshot"), resumed=progress.resumed,
                             message=msg).model_dump(mode="json")

    result, replayed = await _mutate(app, "restore_playlist", idempotency_key, args, run)
    return RestoreResult.model_validate({**result, "replayed": replayed})


async def _ask_transfer(ctx: Context, from_provider: str, playlist_id: str, to_provider: str,
                        into_playlist_id: str | None, name: str | None, max_tracks: int,
                        confirm: bool) -> Elicit[Confirmation] | Decision:
    """A new playlist harms nothing; appending to an existing one changes the person's playlist: ask."""
    app = current_app()
    if into_playlist_id is None:
        return Decision(True, "nothing-to-confirm")
    if name is not None:
        raise BadInput("name/into_playlist_id", "name is for a new playlist; into_playlist_id appends to an "
                                                "existing one", "one of them")

    async def preview() -> Preview | None:
        src_id = parse_playlist_id(from_provider, playlist_id)
        dst_id = parse_playlist_id(to_provider, into_playlist_id, "into_playlist_id")
        src, dst = await _adapter(app, from_provider), await _adapter(app, to_provider)
        try:
            source = await src.get_playlist(src_id, max_tracks)
            target = await dst.get_playlist(dst_id)
        finally:
            await src.aclose()
            await dst.aclose()
        items = [describe(t) for t in source.tracks or [] if movable(t)]
        if not items:
            return None
        return Preview(
            f"add up to {len(items)} track(s) of {from_provider} playlist {source.name!r} (those found on "
            f"{to_provider}) to the end of your existing {playlist_label(to_provider, target)}", items,
            "Nothing already in it is removed or moved. To undo, remove_tracks with the added ids (the result's "
            "matched list); it removes every occurrence of a track, copies that were there before included.")
    return await confirmation.ask(ctx, confirm, preview)


@toolset.tool(title="Transfer playlist", read_only=False, idempotent=False, open_world=True)
async def transfer_playlist(
    from_provider: Provider, playlist_id: PlaylistId, to_provider: Provider,
    name: Annotated[str | None, Field(max_length=100, description="new playlist's name (default: same)")] = None,
    min_confidence: Annotated[float, Field(ge=0.5, le=1.0, description="accept fuzzy matches at or above")] = MIN_CONFIDENCE,
    max_tracks: Annotated[int, Field(ge=1, le=500)] = 200,
    idempotency_key: IdemKey = None,
    into_playlist_id: Annotated[str | None, Field(min_length=1, max_length=200, description=(
        "append the matches to this existing playlist on to_provider instead of creating a new one "
        "(the person is asked first unless confirm=true)"))] = None,
    confirm: Confirm = False,
    *,
    answer: Annotated[Answer, Resolve(_ask_transfer)],
) -> TransferResult:
    """Copy a playlist to another service: each track is matched by ISRC where possible, else by
    title/artist/duration with a confidence; a new playlist is created with the matches (or, with
    into_playlist_id, they are appended to an existing playlist), and what did not match is reported
    with the best candidate seen. Appending changes a playlist the person already has, so they are
    asked first (elicitation) unless confirm=true; a client that cannot be asked gets a
    'confirmation required' error listing the tracks, and nothing changes."""
    app = current_app()
    confirmation.settle("transfer_playlist", answer)
    args = {"from_provider": from_provider, "playlist_id": playlist_id, "to_provider": to_provider, "name": name,
                "min_confidence": min_confidence, "max_tracks": max_tracks}
    if into_playlist_id is not None:  # kept out of the fingerprint when absent, so older keys still replay
        args["into_playlist_id"] = into_playlist_id
    into = parse_playlist_id(to_provider, into_playlist_id, "into_playlist_id") if into_playlist_id else None

    pid = parse_playlist_id(from_provider, playlist_id)

    async def run(progress: Progress) -> dict[str, Any]:
        src, dst = await _adapter(app, from_provider), await _adapter(app, to_provider)
        try:
            original = await src.get_playlist(pid, max_tracks)
            items = original.tracks or []
            outcomes = await match_all(dst, [t for t in items if movable(t)], min_confidence)
            if progress.state.get("playlist"):  # resuming: the playlist was created by the interrupted call
                created = Playlist.model_validate(progress.state["playlist"])
            elif into is not None:
                existing = await dst.get_playlist(into)
                created = existing.model_copy(update={"tracks": None,
                                                      "track_count": len(existing.tracks or [])})
                await progress.save(playlist=created.model_dump(mode="json"))
            else:
                created = await dst.create_playlist(name or original.name or "Transferred playlist",
                                                    f"Transferred from {from_provider} by EchoTune")
                await progress.save(playlist=created.model_dump(mode="json"))
            ids = [o.match.track.id for o in outcomes if o.matched and o.match]
            done = int(progress.state.get("added") or 0)
            if done < len(ids):
                await dst.add_tracks(created.id, ids[done:], _counter(progress, "added"))
        finally:
            await src.aclose()
            await dst.aclose()
        views = [MatchView(source=o.source, match=o.match.track if o.match else None,
                           confidence=o.match.confidence if o.match else 0.0,
                           method=o.match.method if o.match else None) for o in outcomes]
        # episodes, local files and unavailable items cannot be matched: reported, not dropped silently
        skipped = [MatchView(source=t, match=None, confidence=0.0, method=None) for t in items if not movable(t)]
        before = (created.track_count or 0) if into is not None else 0
        return TransferResult(
            from_provider=from_provider, to_provider=to_provider, into_existing=into is not None,
            playlist=created.model_copy(update={"track_count": before + len(ids)}),
            matched=[v for v, o in zip(views, outcomes, strict=True) if o.matched],
            unmatched=[v for v, o in zip(views, outcomes, strict=True) if not o.matched] + skipped,
        ).model_dump(mode="json")

    result, replayed = await _mutate(app, "transfer_playlist", idempotency_key, args, run)
    return TransferResult.model_validate({**result, "replayed": replayed})


@toolset.tool(title="Curate playlist", read_only=False, idempotent=False, open_world=True, ui="playlist")
async def curate_playlist(
    provider: Provider,
    prompt: Annotated[str | None, Field(min_length=1, max_length=300, description=(
        "what it should sound like, e.g. 'rainy day jazz' (matched to corpus tags and searched)"))] = None,
    seeds: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(
        max_length=5, description="seed tracks: ids on this provider, or 'Artist - Title' text")] = [],  # noqa: B006
    seed_artists: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(
        max_length=5, description="seed artist names")] = [],  # noqa: B006
    use_history: Annotated[bool, Field(description=(
        "build on your taste: your imported listening history, and your library on the provider when search "
        "fills in"))] = True,
    length: Annotated[int | None, Field(ge=1, le=100, description=(
        "number of tracks (default 25); give this or duration_minutes"))] = None,
    duration_minutes: Annotated[float | None, Field(ge=5, le=600, description=(
        "total length in minutes, met within one track; give this or length"))] = None,
    arc: Annotated[Literal["flat", "rise", "fall", "peak", "valley"], Field(description=(
        "energy over the playlist: flat, rise, fall, peak (build up then down) or valley"))] = "flat",
    max_per_artist: Annotated[int, Field(ge=1, le=10, description="at most this many tracks per artist")] = 2,
    only_new: Annotated[bool, Field(description="leave out tracks you have already played")] = False,
    corpus_id: Annotated[str | None, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                                           description="corpus to recommend from (default: newest fitted)")] = None,
    name: Annotated[str | None, Field(max_length=100)] = None,
    public: bool = False,
    create: Annotated[bool, Field(description="false: only propose the tracks, change nothing")] = True,
    idempotency_key: IdemKey = None,
) -> CurateResult:
    """Build a playlist: the recommender ranks candidates from your prompt, seeds and listening history
    (found on the provider), then a sequencer picks and orders them for the length or duration asked,
    an energy arc, smooth tempo and key steps (from audio features where known) and artist spread.
    When the recommender has too few, catalogue search, your library and related tracks fill in.
    Each track says why it is there; the result says what was ignored, which model and corpus
    licence were used. With create=false nothing is written: review, then call again to create."""
    app = current_app()
    if not prompt and not seeds and not seed_artists and not use_history:
        raise BadInput("prompt/seeds", "give a prompt, seeds, seed_artists, or use_history=true")
    if length is not None and duration_minutes is not None:
        raise BadInput("length/duration_minutes", "give one of them, not both",
                       "length (tracks) or duration_minutes")
    if length is None and duration_minutes is None:
        length = 25
    args = {"provider": provider, "prompt": prompt, "seeds": seeds, "seed_artists": seed_artists,
            "use_history": use_history, "length": length, "duration_minutes": duration_minutes, "arc": arc,
            "max_per_artist": max_per_artist, "only_new": only_new, "corpus_id": corpus_id, "name": name,
            "public": public, "create": create}
    owner = current_principal()

    async def propose(p: MusicProvider) -> dict[str, Any]:
        """Rank, fill in, sequence: the proposal (saved before anything is written)."""
        want = length or max(1, round((duration_minutes or 0) * 60 / DEFAULT_DURATION_S))
        ignored: list[str] = []
        notes: list[str] = []
        model: dict | None = None
        pool: list[RecommendedItem] = []
        try:
            rec = await recommend(app, owner, RecommendRequest(
                kind="track", k=min(200, max(40, 3 * want)), seed_tracks=list(seeds),
                seed_artists=list(seed_artists), prompt=prompt, my_taste=use_history, exclude_known=only_new,
                provider=provider, corpus_id=corpus_id), hub=app.providers)
        except NoModel as exc:
            if corpus_id:  # the caller named a corpus: say it cannot be used rather than quietly not using it
                raise BadInput("corpus_id", str(exc)) from None
            ignored.append(f"recommender: {exc}; used catalogue search, your library and related tracks")
        else:
            model = rec.model
            ignored += rec.ignored
            if rec.message:
                notes.append(f"recommender: {rec.message}")
            # the recommender lists each track it could not find on the provider in rec.ignored
            pool = [i for i in rec.items if i.kind == "track" and i.provider_track is not None]
        if len(pool) < want:
            try:
                # more than wanted, so the sequencer has a choice; the library only when the taste may be used
                extra = await SearchAndLibrary().candidates(p, prompt, [*seeds, *seed_artists], min(50, 3 * want),
                                                            library=use_history)
            except ProviderError as exc:
                ignored.append(f"search/library fallback failed: {exc}")
                extra = []
            pool += [candidate_item(c, prompt) for c in extra]
            if extra:
                notes.append(f"the recommender gave {len(pool) - len(extra)} track(s) on {provider} for {want} "
                             f"wanted: {len(extra)} candidate(s) added from search" +
                             (", your library" if use_history else "") + " and related tracks")
        root = corpora_dir(app.settings)
        used: set[str] = set()
        if any(not i.features for i in pool):
            features = await anyio.to_thread.run_sync(CorpusFeatures.load, root)
            pool, used = features.fill(pool)
        planned = await anyio.to_thread.run_sync(lambda: plan(
            pool, length=length, duration_s=duration_minutes * 60 if duration_minutes else None, arc=arc,
            max_per_artist=max_per_artist))
        licences = {str(model["licence"])} if model and model.get("licence") else set()
        if used:
            licences |= {c.licence for c in await anyio.to_thread.run_sync(list_corpora, root) if c.id in used}
        tracks = []
        for pos, (it, why, tgt) in enumerate(zip(planned.items, planned.why, planned.target_energy,
                                                 strict=True), start=1):
            tracks.append(CuratedTrack(
                position=pos, track=it.provider_track, why=why, reasons=it.reasons, source=it.source,
                energy=energy_of(it), target_energy=tgt, tempo_bpm=tempo_of(it), key=camelot_name(key_of(it)),
                duration_s=duration_of(it)).model_dump(mode="json"))
        target = (f"{length} track(s)" if length else f"{duration_minutes:g} minutes") + f", {arc} energy arc"
        return {"tracks": tracks, "target": target, "total_duration_s": planned.total_s, "ignored": ignored,
                "notes": notes + planned.notes, "model": model, "licences": sorted(licences)}

    async def run(progress: Progress) -> dict[str, Any]:
        p = await _adapter(app, provider)
        try:
            if progress.state.get("proposal"):  # resuming: keep the first call's choice
                proposal = progress.state["proposal"]
            else:
                proposal = await propose(p)
            ids = [t["track"]["id"] for t in proposal["tracks"]]
            playlist = None
            if create and ids:
                if not progress.state.get("proposal"):
                    await progress.save(proposal=proposal)
                if progress.state.get("playlist"):
                    playlist = Playlist.model_validate(progress.state["playlist"])
                else:
                    about = prompt or ", ".join([*seeds, *seed_artists]) or "your listening"
                    playlist = await p.create_playlist(name or (prompt or "EchoTune mix")[:100],
                                                       f"Curated by EchoTune: {about}"[:300], public)
                    await progress.save(playlist=playlist.model_dump(mode="json"))
                done = int(progress.state.get("added") or 0)
                if done < len(ids):
                    await p.add_tracks(playlist.id, ids[done:], _counter(progress, "added"))
                playlist = playlist.model_copy(update={"track_count": len(ids)})
        finally:
            await p.aclose()
        msg = (f"chose {len(ids)} track(s) ({proposal['total_duration_s'] / 60:.1f} min) for "
               f"{proposal['target']}" + (f"; created playlist {playlist.id}" if playlist else
                                          "; nothing was written"))
        return CurateResult(provider=provider, playlist=playlist, message=msg, **proposal).model_dump(mode="json")

    # a proposal changes nothing, so only writes are guarded by the key
    result, replayed = await _mutate(app, "curate_playlist", idempotency_key if create else None, args, run)
    return CurateResult.model_validate({**result, "replayed": replayed})
