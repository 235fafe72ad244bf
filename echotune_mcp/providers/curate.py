"""Choosing tracks: candidates for curate_playlist beyond the recommender, and cross-service transfer matching.

curate_playlist ranks with the recommender (recommend/service.py) and orders with recommend/sequence.py. When
the recommender has too few tracks (no fitted corpus, or few found on the provider), ``SearchAndLibrary`` adds
what the services still offer: catalogue search for the prompt and seeds, the user's own library
(top/saved/recent) filtered by the prompt, and YouTube Music's radio for seed tracks. Those tracks get the audio
features of the same recording in a loaded corpus where one has it (``CorpusFeatures``: Spotify id or ISRC).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .base import MusicProvider, ProviderError, Track
from .matching import MIN_CONFIDENCE, Match, best_match

if TYPE_CHECKING:
    from ..recommend.service import RecommendedItem


@dataclass(frozen=True)
class Candidate:
    track: Track
    source: str  # "search", "seed", "related", "library"


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 2}


class SearchAndLibrary:
    """Search + library + radio, interleaved so no single source dominates."""

    async def candidates(self, provider: MusicProvider, prompt: str | None, seeds: list[str],
                         limit: int, *, library: bool = True) -> list[Candidate]:
        """Up to about ``limit`` per source; ``library=False`` leaves the user's own library out."""
        pools: list[list[Candidate]] = []
        want = min(50, max(10, limit))
        if prompt:
            pools.append([Candidate(t, "search") for t in await provider.search_tracks(prompt, want)])
        for seed in seeds:
            pools.append(await self._from_seed(provider, seed, want))
        library_pool = await self._library(provider, want) if library else []
        pools.append(self._about(library_pool, prompt))
        merged: list[Candidate] = []
        for i in range(max((len(p) for p in pools), default=0)):
            merged.extend(p[i] for p in pools if i < len(p))
        return merged

    @staticmethod
    def _about(library: list[Candidate], prompt: str | None) -> list[Candidate]:
        """With a prompt, only the library tracks that share a word with it."""
        if not prompt:
            return library
        words = _words(prompt)
        return [c for c in library if words & _words(" ".join([c.track.title, c.track.album or "", *c.track.artists]))]

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


def candidate_item(c: Candidate, prompt: str | None) -> RecommendedItem:
    """A provider track as a (lowest-ranked) recommendation, with the reason it was found."""
    from ..recommend.service import RecommendedItem

    reason = {"search": f"matches the search {prompt!r}" if prompt else "found by searching for your seed",
              "seed": "one of your seed tracks",
              "related": "related to your seed track (the service's radio)",
              "library": "from your library (top, saved or recently played)"}.get(c.source, c.source)
    t = c.track
    return RecommendedItem(item_id=f"{t.provider}:track:{t.id}", kind="track", title=t.title, artists=list(t.artists),
                           spotify_id=t.id if t.provider == "spotify" else None, isrc=t.isrc, score=0.0,
                           reasons=[reason], source=f"provider:{c.source}", provider_track=t)


@dataclass
class CorpusFeatures:
    """Audio features of the loaded corpora's tracks, by Spotify id and by ISRC, with each corpus's licence."""

    by_spotify: dict[str, tuple[dict[str, float], str]] = field(default_factory=dict)
    by_isrc: dict[str, tuple[dict[str, float], str]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> CorpusFeatures:
        """Read every corpus under ``root`` (blocking: call it in a worker thread)."""
        from ..recommend.corpus import list_corpora, load_corpus

        out = cls()
        for info in list_corpora(root):
            try:
                corpus = load_corpus(root, info.id)
            except KeyError:  # removed while we looked
                continue
            for it in corpus.items:
                if it.kind != "track" or not it.features:
                    continue
                if it.spotify_id:
                    out.by_spotify.setdefault(it.spotify_id, (it.features, info.id))
                if it.isrc:
                    out.by_isrc.setdefault(it.isrc.upper(), (it.features, info.id))
        return out

    def fill(self, items: list[RecommendedItem]) -> tuple[list[RecommendedItem], set[str]]:
        """Items without features get those of the same recording in a corpus (Spotify id, then ISRC); the
        corpora used."""
        used: set[str] = set()
        out = []
        for it in items:
            hit = None
            if not it.features:
                track = it.provider_track
                sp_id = it.spotify_id or (track.id if track is not None and track.provider == "spotify" else None)
                isrc = it.isrc or (track.isrc if track is not None else None)
                hit = (self.by_spotify.get(sp_id) if sp_id else None) or \
                    (self.by_isrc.get(isrc.upper()) if isrc else None)
            if hit:
                used.add(hit[1])
                it = it.model_copy(update={"features": dict(hit[0])})
            out.append(it)
        return out, used


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
