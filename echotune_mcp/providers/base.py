"""The provider seam: one normalised track/playlist model and one async interface for every service.

Curation tools only ever see ``Track`` and ``Playlist``; each adapter maps its service's shapes
onto them, so transferring between services and matching tracks is written once. Adapters are
async to the server; the blocking client libraries run in worker threads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from ..errors import Busy, EchoError

ProviderName = Literal["spotify", "ytmusic"]
PROVIDERS: tuple[str, ...] = ("spotify", "ytmusic")
DISPLAY = {"spotify": "Spotify", "ytmusic": "YouTube Music"}
#: the most items a playlist read collects; Spotify's own playlist limit is 10,000 items
MAX_PLAYLIST_ITEMS = 10_000
ItemKind = Literal["track", "episode", "local", "unavailable"]


class Track(BaseModel):
    """A track as every provider can describe it; fields a service does not know stay None."""

    provider: str
    id: str = Field(description="the provider's track id (Spotify id, YouTube videoId)")
    uri: str | None = Field(None, description="the provider's URI, e.g. spotify:track:...")
    title: str
    artists: list[str] = Field(default_factory=list)
    album: str | None = None
    duration_ms: int | None = None
    isrc: str | None = None
    explicit: bool | None = None
    release_date: str | None = None
    url: str | None = None
    # A playlist entry's own id where the service needs it to remove one occurrence (YouTube setVideoId).
    entry_id: str | None = None
    kind: ItemKind = Field("track", description=(
        "track; or, inside a playlist, episode, local (a local file) or unavailable: items the curation "
        "tools keep in place but cannot match, order or re-add"))


class Playlist(BaseModel):
    provider: str
    id: str
    name: str
    description: str | None = None
    public: bool | None = None
    collaborative: bool | None = None
    owner: str | None = None
    track_count: int | None = None
    url: str | None = None
    snapshot_id: str | None = None
    tracks: list[Track] | None = Field(None, description="present when the playlist was fetched with its items: "
                                                         "every item in order, episodes and local files included")


# -- errors the agent reads ---------------------------------------------------------------------
class ProviderError(EchoError):
    """The provider refused or failed a call; the message says what to do next."""


class NotConnected(ProviderError):
    def __init__(self, provider: str):
        super().__init__(f"{DISPLAY.get(provider, provider)} is not connected for this client; "
                         f"call connect_provider(provider='{provider}') first")
        self.provider = provider


class ReconnectNeeded(ProviderError):
    """The stored grant no longer works (refresh token expired or revoked); it has been removed."""

    def __init__(self, provider: str, why: str):
        super().__init__(f"{DISPLAY.get(provider, provider)} authorization is no longer valid ({why}); "
                         f"the stored token was removed, call connect_provider(provider='{provider}') to reconnect")
        self.provider = provider


class RateLimited(Busy):
    def __init__(self, provider: str, retry_after_s: float):
        super().__init__(f"rate limited by {DISPLAY.get(provider, provider)}, retry after {int(retry_after_s + 0.999)} s",
                         retry_after_s=retry_after_s)


class ProviderDeadlineExceeded(ProviderError):
    """One provider call (its retries and waits included) ran past ``ECHOTUNE_PROVIDER_DEADLINE_S``."""

    def __init__(self, provider: str, deadline_s: float):
        super().__init__(f"{DISPLAY.get(provider, provider)} did not finish this call within its {deadline_s:g} s "
                         "deadline (ECHOTUNE_PROVIDER_DEADLINE_S); we stopped waiting. A change the call was making "
                         "may still reach the service: check the playlist before retrying, or retry with the same "
                         "idempotency key")
        self.provider = provider
        self.deadline_s = deadline_s


class QuotaExceeded(ProviderError):
    def __init__(self, provider: str, detail: str = ""):
        super().__init__(f"{DISPLAY.get(provider, provider)} says this app's quota is exhausted (QUOTA_EXCEEDED)"
                         f"{': ' + detail if detail else ''}; retrying soon will not help, try again later "
                         "or ask the app owner to raise the quota")


class TooLarge(ProviderError):
    def __init__(self, total: int):
        super().__init__(f"this playlist has {total} items, more than the {MAX_PLAYLIST_ITEMS} this server reads; "
                         "nothing was changed")


@dataclass(frozen=True)
class Move:
    """Move the item now at ``index`` so it lands right before the item now at ``before`` (None: to the end).

    ``item`` and ``successor`` are the entries themselves, for services that address entries by id."""

    index: int
    before: int | None
    item: Track
    successor: Track | None


#: called after each request that changed the playlist, with how many changes it made
Step = Callable[[int], Awaitable[None]]


# -- the interface ------------------------------------------------------------------------------
class MusicProvider(ABC):
    """Everything curation needs from a streaming service. All methods are async and never block the loop."""

    name: str
    #: most items one add/remove request accepts; larger calls are paged by the adapter
    batch_limit: int = 100
    #: one call's overall limit, retries and rate-limit waits included; the hub sets it from
    #: ``Settings.provider_deadline_s`` (``ECHOTUNE_PROVIDER_DEADLINE_S``)
    deadline_s: float = 60.0

    @abstractmethod
    async def search_tracks(self, query: str, limit: int) -> list[Track]: ...

    @abstractmethod
    async def get_track(self, track_id: str) -> Track: ...

    @abstractmethod
    async def top_tracks(self, limit: int) -> list[Track]: ...

    @abstractmethod
    async def recent_tracks(self, limit: int) -> list[Track]: ...

    @abstractmethod
    async def saved_tracks(self, limit: int) -> list[Track]: ...

    @abstractmethod
    async def list_playlists(self, limit: int, offset: int = 0) -> list[Playlist]: ...

    @abstractmethod
    async def get_playlist(self, playlist_id: str, max_tracks: int | None = None) -> Playlist:
        """The playlist with its items in playlist order: all of them (paging to the end) when ``max_tracks``
        is None, refusing with ``TooLarge`` above ``MAX_PLAYLIST_ITEMS``; else the first ``max_tracks``."""

    @abstractmethod
    async def create_playlist(self, name: str, description: str = "", public: bool = False,
                              collaborative: bool = False) -> Playlist: ...

    @abstractmethod
    async def add_tracks(self, playlist_id: str, track_ids: list[str], on_step: Step | None = None) -> int:
        """Append tracks in order, paging by ``batch_limit``; returns how many were added.

        ``on_step`` runs after each accepted batch, so a caller can record how far it got."""

    @abstractmethod
    async def remove_entries(self, listing: Playlist, positions: list[int],
                             on_step: Step | None = None) -> int:
        """Remove exactly the items at ``positions`` of ``listing`` (a full read), nothing else; returns how many.

        Spotify: by URI and position against the listing's snapshot_id; YouTube Music: by setVideoId."""

    @abstractmethod
    async def move(self, listing: Playlist, moves: list[Move], on_step: Step | None = None) -> int:
        """Apply single-item moves (planned by ``ordering.plan_moves`` on ``listing``); returns how many."""

    async def related_tracks(self, track_id: str, limit: int) -> list[Track]:
        """Tracks related to one track, where the service offers it (YouTube radio); else empty."""
        return []

    async def aclose(self) -> None:
        """Release sessions; adapters are cheap and made per call."""
