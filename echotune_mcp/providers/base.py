"""The provider seam: one normalised track/playlist model and one async interface for every service.

Curation tools only ever see ``Track`` and ``Playlist``; each adapter maps its service's shapes
onto them, so transferring between services and matching tracks is written once. Adapters are
async to the server; the blocking client libraries run in worker threads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

from pydantic import BaseModel, Field

from ..errors import Busy, EchoError

ProviderName = Literal["spotify", "ytmusic"]
PROVIDERS: tuple[str, ...] = ("spotify", "ytmusic")
DISPLAY = {"spotify": "Spotify", "ytmusic": "YouTube Music"}


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
    tracks: list[Track] | None = Field(None, description="present when the playlist was fetched with its items")


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


class QuotaExceeded(ProviderError):
    def __init__(self, provider: str, detail: str = ""):
        super().__init__(f"{DISPLAY.get(provider, provider)} says this app's quota is exhausted (QUOTA_EXCEEDED)"
                         f"{': ' + detail if detail else ''}; retrying soon will not help, try again later "
                         "or ask the app owner to raise the quota")


# -- the interface ------------------------------------------------------------------------------
class MusicProvider(ABC):
    """Everything curation needs from a streaming service. All methods are async and never block the loop."""

    name: str
    #: most items one add/remove request accepts; larger calls are paged by the adapter
    batch_limit: int = 100

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
    async def get_playlist(self, playlist_id: str, max_tracks: int = 500) -> Playlist:
        """The playlist with up to ``max_tracks`` of its items, in playlist order."""

    @abstractmethod
    async def create_playlist(self, name: str, description: str = "", public: bool = False,
                              collaborative: bool = False) -> Playlist: ...

    @abstractmethod
    async def add_tracks(self, playlist_id: str, track_ids: list[str]) -> int:
        """Append tracks in order, paging by ``batch_limit``; returns how many were added."""

    @abstractmethod
    async def remove_tracks(self, playlist_id: str, track_ids: list[str]) -> int:
        """Remove every occurrence of each track; returns how many ids were sent."""

    @abstractmethod
    async def replace_tracks(self, playlist_id: str, track_ids: list[str]) -> None:
        """Make the playlist hold exactly ``track_ids`` in that order (reorder, dedupe)."""

    async def related_tracks(self, track_id: str, limit: int) -> list[Track]:
        """Tracks related to one track, where the service offers it (YouTube radio); else empty."""
        return []

    async def aclose(self) -> None:
        """Release sessions; adapters are cheap and made per call."""
