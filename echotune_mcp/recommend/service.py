"""Recommendation as a service: seeds and the owner's own plays in, ranked corpus items with reasons out.

The catalogue is an operator-loaded corpus (recommend/corpus.py, public data shared read-only by every
principal) with a fitted model (recommend/fitted.py, a versioned artifact with provenance). The user's own
history never enters the fitted model: it is read (owner-scoped) at query time and folded in, so new plays
count at once without a refit, and one principal's plays can never move another's recommendations.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..providers.base import Track


class RecommendedItem(BaseModel):
    item_id: str = Field(description="the item's id in the corpus (spotify:track:<id> or artist:<name>)")
    kind: Literal["track", "artist"]
    title: str | None = Field(description="track title; None for an artist")
    artists: list[str]
    spotify_id: str | None = None
    isrc: str | None = None
    tags: list[str] = Field(default_factory=list)
    features: dict[str, float] = Field(default_factory=dict)
    popularity: float | None = None
    score: float = Field(description="the blended score it was ranked by (higher is better; relative only)")
    reasons: list[str] = Field(description="why it is here, in short sentences")
    source: str = Field(description="corpus:<id>, history or provider")
    provider_track: Track | None = Field(default=None, description="the same track on the provider asked for")


class RecommendRequest(BaseModel):
    kind: Literal["track", "artist"] = "track"
    k: int = Field(default=20, ge=1, le=200)
    seed_tracks: list[str] = Field(default_factory=list)
    seed_artists: list[str] = Field(default_factory=list)
    seed_playlist: str | None = None
    seed_playlist_provider: Literal["spotify", "ytmusic"] = "spotify"
    seed_artifact: str | None = None
    prompt: str | None = None
    my_taste: bool = True
    exclude_known: bool = True
    diversity: float = Field(default=0.0, ge=0.0, le=1.0)
    novelty: float = Field(default=0.0, ge=0.0, le=1.0)
    provider: Literal["spotify", "ytmusic"] | None = None
    corpus_id: str | None = None


class RecommendResult(BaseModel):
    items: list[RecommendedItem]
    model: dict = Field(description="which fitted model answered: corpus id, corpus version, model version, "
                                    "licence, fitted_at")
    seeds_used: list[str] = Field(description="the seeds (and history) the ranking was built from")
    ignored: list[str] = Field(description="seeds that matched nothing, and items left unresolved, with why")
    message: str


class NoModel(Exception):
    """No fitted model to answer from: the operator has to add a corpus and fit it first."""


async def recommend(app, owner: str, request: RecommendRequest, *, hub=None) -> RecommendResult:
    """Rank corpus items for ``owner`` from the request's seeds and (if ``my_taste``) their own plays."""
    raise NoModel("no fitted recommendation model yet: an operator adds a corpus (echotune-mcp recommend corpus "
                  "add) and fits it (fit_recommender)")
