"""Choosing tracks: the candidate-source seam for curate_playlist, and cross-service transfer matching.

``CandidateSource`` is the small interface a real recommender will implement later. The one here
uses what the services still offer: catalogue search for the prompt and seeds, the user's own
library (top/saved/recent) filtered by the prompt, and YouTube Music's radio for seed tracks.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Protocol

from .base import MusicProvider, ProviderError, Track
from .matching import MIN_CONFIDENCE, Match, best_match, same_recording
from .ordering import artist_spread

MAX_PER_ARTIST = 3


@dataclass(frozen=True)
class Candidate:
    track: Track
    source: str  # "search", "seed", "related", "library"


class CandidateSource(Protocol):
    async def candidates(self, provider: MusicProvider, prompt: str | None, seeds: list[str],
                         limit: int) -> list[Candidate]: ...


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 2}


class SearchAndLibrary:
    """Search + library + radio, interleaved so no single source dominates."""

    async def candidates(self, provider: MusicProvider, prompt: str | None, seeds: list[str],
                         limit: int) -> list[Candidate]:
        pools: list[list[Candidate]] = []
        want = min(50, max(10, limit))
        if prompt:
            pools.append([Candidate(t, "search") for t in await provider.search_tracks(prompt, want)])
        for seed in seeds:
            pools.append(await self._from_seed(provider, seed, want))
        library = await self._library(provider, want)
        if prompt and library:
            words = _words(prompt)
            library = [c for c in library
                       if words & _words(" ".join([c.track.title, c.track.album or "", *c.track.artists]))]
        pools.append(library)
        merged: list[Candidate] = []
        for i in range(max((len(p) for p in pools), default=0)):
            merged.extend(p[i] for p in pools if i < len(p))
        return merged

    async def _from_seed(self, provider: MusicProvider, seed: str, want: int) -> list[Candidate]:
        """A seed is a track id on this provider, or free text such as 'Artist - Title'."""
        try:
            track = await provider.get_track(seed) if " " not in seed.strip() else None
        except ProviderError:
            track = None
        if track is None:
            return [Candidate(t, "search") for t in await provider.search_tracks(seed, min(want, 20))]
        out = [Candidate(track, "seed")]
        related = await provider.related_tracks(track.id, want)
        out += [Candidate(t, "related") for t in related]
        if not related and track.artists:
            out += [Candidate(t, "search") for t in await provider.search_tracks(track.artists[0], min(want, 20))]
        return out

    async def _library(self, provider: MusicProvider, want: int) -> list[Candidate]:
        out: list[Candidate] = []
        for fetch in (provider.top_tracks, provider.saved_tracks, provider.recent_tracks):
            try:
                out += [Candidate(t, "library") for t in await fetch(want)]
            except ProviderError:  # not offered by this service or not permitted: use the others
                continue
        return out


def select(candidates: list[Candidate], length: int) -> list[Candidate]:
    """Unique recordings, at most MAX_PER_ARTIST per lead artist (relaxed if that leaves too few), spread out."""
    unique: list[Candidate] = []
    for c in candidates:
        if c.track.id and not any(same_recording(c.track, u.track, 2.0) for u in unique):
            unique.append(c)
    chosen: list[Candidate] = []
    per_artist: dict[str, int] = {}
    for c in unique:
        lead = (c.track.artists[0] if c.track.artists else "").lower()
        if per_artist.get(lead, 0) < MAX_PER_ARTIST:
            chosen.append(c)
            per_artist[lead] = per_artist.get(lead, 0) + 1
        if len(chosen) == length:
            break
    if len(chosen) < length:
        chosen += [c for c in unique if c not in chosen][: length - len(chosen)]
    by_id = {c.track.id: c for c in chosen}
    return [by_id[t.id] for t in artist_spread([c.track for c in chosen])]


# -- transfer -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransferOutcome:
    source: Track
    match: Match | None
    matched: bool


async def find_on(target: MusicProvider, source: Track, min_confidence: float = MIN_CONFIDENCE) -> TransferOutcome:
    """ISRC search first (Spotify supports ``isrc:``), then title + artist search with fuzzy scoring."""
    best: Match | None = None
    if source.isrc and target.name == "spotify":
        best = best_match(source, await target.search_tracks(f"isrc:{source.isrc}", 3))
        if best and best.method == "isrc":
            return TransferOutcome(source, best, True)
    query = " ".join([source.title, *(source.artists[:1])]).strip()
    fuzzy = best_match(source, await target.search_tracks(query, 5)) if query else None
    if fuzzy and (best is None or fuzzy.confidence > best.confidence):
        best = fuzzy
    return TransferOutcome(source, best, bool(best and best.confidence >= min_confidence))


async def match_all(target: MusicProvider, tracks: list[Track], min_confidence: float,
                    concurrency: int = 4) -> list[TransferOutcome]:
    gate = asyncio.Semaphore(concurrency)

    async def one(t: Track) -> TransferOutcome:
        async with gate:
            return await find_on(target, t, min_confidence)

    return list(await asyncio.gather(*(one(t) for t in tracks)))
