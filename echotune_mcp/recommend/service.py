"""Recommendation as a service: seeds and the owner's own plays in, ranked corpus items with reasons out.

The catalogue is an operator-loaded corpus (recommend/corpus.py, public data shared read-only by every
principal) with a fitted model (recommend/fitted.py, a versioned artifact with provenance). The user's own
history never enters the fitted model: it is read (owner-scoped) at query time and folded in, so new plays
count at once without a refit, and one principal's plays can never move another's recommendations.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

import anyio
import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, Field

from ..providers.base import ProviderError, Track
from ..providers.spotify import parse_id as parse_spotify_id
from .corpus import Corpus, CorpusItem, corpora_dir, list_corpora, load_corpus
from .fitted import Fitted, fitted_corpora, models_root
from .fitted import load as load_fitted
from .history import fold
from .models import zscore


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
    """No fitted model to answer from: the message says what the operator or the caller can do."""


# -- the catalogue as the fitted model sees it -----------------------------------------------------------------------
@dataclass
class Catalog:
    """A fitted model's item space joined to the corpus's metadata, with the lookups seeds and plays go through."""

    fitted: Fitted
    corpus: Corpus
    items: list[CorpusItem | None]  # per fitted item; None when the corpus no longer has it
    by_id: dict[str, int]
    by_isrc: dict[str, int]
    by_artist: dict[str, list[int]]  # folded artist name -> items (the artist item, or their tracks)
    by_name: dict[str, int]  # folded "artist\x1ftitle" -> track
    by_title: dict[str, list[int]]
    by_tag: dict[str, list[tuple[int, int]]]  # tag -> (item, rank of the tag on it)
    listeners: np.ndarray  # users per item in the corpus
    knn_cols: sp.csc_matrix | None  # item-kNN similarities by column: who leads to item j (the reasons)
    popularity_rank: np.ndarray  # 1 = the item with the most listeners
    popularity_signal: np.ndarray  # z-scored listeners (+ the data's own 0-100 popularity where it has one)
    missing: np.ndarray  # items of the model the corpus no longer has (after a corpus replace): never returned

    @classmethod
    def build(cls, fitted: Fitted, corpus: Corpus) -> Catalog:
        index = corpus.item_index()
        items = [corpus.items[index[i]] if i in index else None for i in fitted.item_ids]
        by_id: dict[str, int] = {}
        by_isrc: dict[str, int] = {}
        by_artist: dict[str, list[int]] = defaultdict(list)
        by_name: dict[str, int] = {}
        by_title: dict[str, list[int]] = defaultdict(list)
        by_tag: dict[str, list[tuple[int, int]]] = defaultdict(list)
        listeners = np.expm1(fitted.popularity).round()
        order = np.argsort(-listeners, kind="stable")  # the most listened-to first wins a shared name
        for j in order:
            item = items[j]
            if item is None:
                continue
            j = int(j)
            by_id.setdefault(item.id, j)
            if item.spotify_id:
                by_id.setdefault(f"spotify:track:{item.spotify_id}", j)
            if item.isrc:
                by_isrc.setdefault(item.isrc.upper(), j)
            for a in item.artists:
                by_artist[fold(a)].append(j)
            if item.title:
                by_title[fold(item.title)].append(j)
                for a in item.artists:
                    by_name.setdefault(f"{fold(a)}\x1f{fold(item.title)}", j)
            for rank, tag in enumerate(item.tags):
                by_tag[tag].append((j, rank))
        return cls(fitted, corpus, items, by_id, by_isrc, dict(by_artist), by_name, dict(by_title), dict(by_tag),
                   listeners, fitted.knn.tocsc() if fitted.knn is not None else None,
                   np.argsort(order, kind="stable") + 1, _popularity_signal(fitted, items),
                   np.array([it is None for it in items], dtype=bool))

    @property
    def kind(self) -> str:
        return self.fitted.provenance.get("item_kind", "artist")

    def label(self, j: int) -> str:
        item = self.items[j]
        if item is None:
            return self.fitted.item_ids[j]
        artists = ", ".join(item.artists[:2])
        return f"{artists} - {item.title}" if item.title else artists

    def match_artist(self, name: str) -> list[int]:
        """The artist's item (artist corpus) or their most listened-to tracks (track corpus)."""
        return self.by_artist.get(fold(name), [])[:MAX_TRACKS_PER_ARTIST]

    def match_track(self, ref: str) -> list[int]:
        """A Spotify id / URI / link, or 'Artist - Title' (a track, or the artist's item in an artist corpus)."""
        ref = ref.strip()
        try:
            sid = parse_spotify_id(ref, "track")
        except ValueError:
            sid = None
        if sid is not None:
            j = self.by_id.get(f"spotify:track:{sid}")
            return [] if j is None else [j]
        if ref in self.by_id:
            return [self.by_id[ref]]
        artist, sep, title = ref.partition(" - ")
        if sep:
            if self.kind == "artist":
                return self.by_artist.get(fold(artist), [])[:1]
            j = self.by_name.get(f"{fold(artist)}\x1f{fold(title)}")
            if j is not None:
                return [j]
        return self.by_title.get(fold(ref), [])[:1] if self.kind != "artist" else []

    def match_play(self, play: _Play) -> int | None:
        """Where one of the owner's played tracks sits in this catalogue: Spotify URI, ISRC, then names."""
        if self.kind == "artist":
            found = self.by_artist.get(fold(play.artist or ""), [])
            return found[0] if found else None
        if play.spotify_uri and play.spotify_uri in self.by_id:
            return self.by_id[play.spotify_uri]
        if play.isrc and play.isrc.upper() in self.by_isrc:
            return self.by_isrc[play.isrc.upper()]
        if play.artist and play.track:
            return self.by_name.get(f"{fold(play.artist)}\x1f{fold(play.track)}")
        return None


MAX_TRACKS_PER_ARTIST = 20


def _popularity_signal(fitted: Fitted, items: list[CorpusItem | None]) -> np.ndarray:
    """How well known each item is: z-scored log listeners in the corpus, averaged with the z-scored popularity
    the data carries (Spotify's 0-100) where items have one, since a playlist corpus lists most tracks once."""
    signal = zscore(fitted.popularity[None, :].astype(np.float32))[0]
    own = np.array([np.nan if it is None or it.popularity is None else it.popularity for it in items], np.float64)
    have = ~np.isnan(own)
    if have.sum() > 1 and np.nanstd(own) > 0:
        z = np.zeros_like(own)
        z[have] = (own[have] - own[have].mean()) / own[have].std()
        signal = np.where(have, (signal + z) / 2, signal).astype(np.float32)
    return signal
HISTORY_PAGE = 1000
_CATALOGS: dict[tuple[str, int], Catalog] = {}
_CATALOGS_LOCK = threading.Lock()


def _catalog(settings, corpus_id: str | None, kind: str) -> tuple[Catalog, str | None]:
    """The catalogue to answer from and a staleness note (corpus changed since the fit), or NoModel."""
    models, corpora = models_root(settings), corpora_dir(settings)
    if corpus_id is None:
        fitted_list = fitted_corpora(models)
        if not fitted_list:
            raise NoModel("no recommendation model is fitted yet: an operator adds a corpus (`echotune-mcp recommend "
                          "corpus add FILE --format interactions|playlists --licence TEXT`) and fits it "
                          "(fit_recommender(corpus_id) or `echotune-mcp recommend fit --corpus ID`)")
        present = {c.id for c in list_corpora(corpora)}
        usable = [f for f in fitted_list if f[0] in present]
        same_kind = [f for f in usable if f[2].get("item_kind") == kind]
        if not same_kind:
            kinds = ", ".join(f"{f[0]} ({f[2].get('item_kind')})" for f in usable) or "none whose corpus is present"
            raise NoModel(f"no fitted corpus of {kind}s (fitted: {kinds}); pass one as corpus_id or fit a corpus "
                          f"of {kind}s")
        corpus_id = same_kind[0][0]
    try:
        corpus = load_corpus(corpora, corpus_id)
    except KeyError:
        raise NoModel(f"no corpus {corpus_id!r} (see `echotune-mcp recommend corpus list`)") from None
    try:
        fitted = load_fitted(models, corpus_id)
    except KeyError:
        raise NoModel(f"corpus {corpus_id} has no fitted model yet: fit_recommender(corpus_id='{corpus_id}')") from None
    fitted_kind = fitted.provenance.get("item_kind")
    if fitted_kind != kind:
        other = "recommend_artists" if fitted_kind == "artist" else "recommend_tracks"
        raise NoModel(f"corpus {corpus_id} holds {fitted_kind}s, not {kind}s: use {other} with it, or a corpus of "
                      f"{kind}s")
    key = (str(fitted.path), corpus.info.version)
    with _CATALOGS_LOCK:
        catalog = _CATALOGS.get(key)
    if catalog is None or catalog.fitted is not fitted or catalog.corpus is not corpus:
        catalog = Catalog.build(fitted, corpus)
        with _CATALOGS_LOCK:
            if len(_CATALOGS) >= 4:
                _CATALOGS.pop(next(iter(_CATALOGS)))
            _CATALOGS[key] = catalog
    stale = None
    fitted_on = fitted.provenance["corpus"]["version"]
    if fitted_on != corpus.info.version:
        stale = (f"corpus {corpus_id} changed since model v{fitted.version} was fitted (fitted on corpus version "
                 f"{fitted_on}, now {corpus.info.version}); this answer comes from v{fitted.version}; "
                 f"fit_recommender(corpus_id='{corpus_id}') fits the new data")
    return catalog, stale


# -- the owner's plays -----------------------------------------------------------------------------------------------
@dataclass
class _Play:
    artist: str | None
    track: str | None
    spotify_uri: str | None
    isrc: str | None
    plays: float = 0.0
    signals: set[str] = field(default_factory=set)  # play, and synced taste signals: top, saved


async def owner_plays(store, owner: str) -> dict[str, _Play]:
    """The owner's listening events (owner-scoped reads only), summed per track: item_key -> plays."""
    out: dict[str, _Play] = {}
    cursor = None
    while True:
        page, cursor = await store.find(owner, limit=HISTORY_PAGE, cursor=cursor)
        for ev in page:
            if ev.owner != owner:  # the store scopes reads already; never trust a neighbour's row anyway
                continue
            p = out.get(ev.item_key)
            if p is None:
                p = out[ev.item_key] = _Play(ev.artist, ev.track, ev.spotify_uri, ev.isrc)
            signal = getattr(ev, "signal", "play") or "play"
            p.signals.add(signal)
            if signal == "play":  # a top-list entry or a saved track is taste, not a play
                p.plays += float(ev.weight or 1.0)
        if cursor is None:
            return out


# -- ranking ---------------------------------------------------------------------------------------------------------
@dataclass
class _Query:
    history: dict[int, float] = field(default_factory=dict)  # item -> plays
    history_names: dict[int, str] = field(default_factory=dict)
    history_signals: dict[int, set[str]] = field(default_factory=dict)
    known: set[int] = field(default_factory=set)  # every item the owner played (exclude_known)
    seeds: dict[int, str] = field(default_factory=dict)  # item -> the seed text that matched it
    prompt_terms: list[str] = field(default_factory=list)
    prompt: np.ndarray | None = None
    prompt_tags: dict[int, list[str]] = field(default_factory=dict)
    prompt_near: dict[int, list[str]] = field(default_factory=dict)  # item -> tags CLAP put near the prompt
    seeds_used: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


_WORD = re.compile(r"[\w&'+-]+")


def prompt_terms(prompt: str) -> list[str]:
    words = [w for w in _WORD.findall(prompt.casefold()) if w not in _STOP]
    terms = [f"{a} {b}" for a, b in zip(words, words[1:])] + [f"{a}-{b}" for a, b in zip(words, words[1:])]
    return terms + words


_STOP = {"a", "an", "the", "and", "or", "of", "for", "to", "with", "some", "music", "songs", "song", "tracks",
         "track", "like", "me", "my", "i", "want", "play", "something", "more", "in", "on", "by"}


def _prompt_scores(catalog: Catalog, terms: list[str]) -> tuple[np.ndarray, dict[int, list[str]]]:
    score = np.zeros(catalog.fitted.n_items, dtype=np.float32)
    matched: dict[int, list[str]] = defaultdict(list)
    for term in terms:
        for j, rank in catalog.by_tag.get(term, ()):
            score[j] += 1.0 / (1.0 + 0.1 * rank)
            if term not in matched[j]:
                matched[j].append(term)
    return score, dict(matched)


CLAP_NEAR_TAGS = 5
CLAP_WEIGHT = 0.5


def _clap_tags(fitted: Fitted, vec: np.ndarray, literal: set[str]) -> list[tuple[str, float]]:
    """The corpus tags whose CLAP text embedding (made at fit time) is nearest the prompt's (``vec``, embedded
    by ``sound.clap_backend``: in-process or on the Ray cluster), with their weight; tags the prompt already
    names literally are left to the literal match."""
    sims = fitted.tag_clap @ vec
    order = np.argsort(-sims, kind="stable")
    top = float(sims[order[0]]) if sims.size else 0.0
    out = []
    for i in order:
        if sims[i] <= 0 or len(out) == CLAP_NEAR_TAGS:
            break
        if fitted.tag_vocab[i] not in literal:
            # relative to the nearest tag and at most half a literal match: CLAP text embeddings are all fairly
            # similar to each other, so the raw cosine says little on its own, and a tag the prompt names wins
            out.append((fitted.tag_vocab[i], round(CLAP_WEIGHT * float(sims[i]) / top, 4)))
    return out


def _mmr(candidates: np.ndarray, relevance: np.ndarray, vectors: np.ndarray | None, k: int,
         diversity: float) -> list[int]:
    """Maximal marginal relevance: each pick trades relevance (scaled 0..1 over the candidates) against its
    highest cosine to the picks so far, by ``diversity`` (0 = pure relevance)."""
    if diversity <= 0 or vectors is None or len(candidates) <= 1:
        return [int(c) for c in candidates[:k]]
    rel = relevance.astype(np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
    vec = vectors[candidates].astype(np.float64)
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)  # cosine, over the candidates only
    chosen: list[int] = []
    best_sim = np.full(len(candidates), -np.inf)
    left = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        penalty = np.where(np.isfinite(best_sim), best_sim, 0.0)
        value = (1 - diversity) * rel - diversity * penalty
        value[~left] = -np.inf
        pick = int(np.argmax(value))
        chosen.append(pick)
        left[pick] = False
        best_sim = np.maximum(best_sim, vec @ vec[pick])
    return [int(candidates[c]) for c in chosen]


def rank(catalog: Catalog, q: _Query, request: RecommendRequest) -> tuple[list[tuple[int, float]], str]:
    """The ranked (item, score) list and how it was built (for the message)."""
    fitted = catalog.fitted
    n = fitted.n_items
    parts: list[tuple[float, np.ndarray]] = []
    how = []
    if q.seeds:
        row = sp.csr_matrix((np.ones(len(q.seeds), np.float32), (np.zeros(len(q.seeds), int), list(q.seeds))),
                            shape=(1, n))
        parts.append((1.0, fitted.score(row)[0]))
        how.append(f"{len(q.seeds)} seed items")
    if q.history:
        idx = list(q.history)
        row = sp.csr_matrix((np.ones(len(idx), np.float32), (np.zeros(len(idx), int), idx)), shape=(1, n))
        parts.append((0.6 if q.seeds else 1.0, fitted.score(row)[0]))
        how.append(f"{len(idx)} items from your listening history")
    if q.prompt is not None:
        parts.append((1.0, zscore(q.prompt[None, :])[0]))
        how.append("tags matching your prompt")
    popularity = catalog.popularity_signal
    if not parts:
        total = popularity.copy()
        how.append("corpus popularity")
    else:
        total = sum(np.float32(w) * zscore(s[None, :])[0] for w, s in parts)
        if q.prompt is not None and not (q.seeds or q.history):
            total = total + np.float32(0.3) * popularity  # prompt only: among the matches, the better known first
    if request.novelty > 0:
        total = total - np.float32(1.5 * request.novelty) * popularity
    blocked = catalog.missing.copy()
    blocked[list(q.seeds)] = True
    if request.exclude_known and q.known:
        blocked[list(q.known)] = True
    total = np.where(blocked, -np.inf, total).astype(np.float32)
    pool = min(n, max(request.k * (5 if request.diversity > 0 else 1), request.k))
    open_items = int((~blocked).sum())
    pool = min(pool, open_items)
    if pool <= 0:
        return [], ", ".join(how)
    cand = np.argpartition(-total, pool - 1)[:pool] if pool < n else np.arange(n)
    cand = cand[np.lexsort((cand, -total[cand]))]
    cand = cand[np.isfinite(total[cand])]
    picked = _mmr(cand, total[cand], fitted.als_items, request.k, request.diversity)
    return [(j, float(total[j])) for j in picked], ", ".join(how)


def _reasons(catalog: Catalog, q: _Query, j: int, request: RecommendRequest) -> list[str]:
    out: list[str] = []
    if catalog.knn_cols is not None and (q.seeds or q.history):
        col = catalog.knn_cols[:, j]
        sims = np.zeros(catalog.fitted.n_items, dtype=np.float32)
        sims[col.indices] = col.data
        best_seed = max(q.seeds, key=lambda i: sims[i], default=None)
        if best_seed is not None and sims[best_seed] > 0:
            out.append(f"listeners of your seed {catalog.label(best_seed)} also play this")
        if q.history:
            hist = np.fromiter(q.history, dtype=np.int64)
            contrib = sims[hist] * np.log1p(1.0 + np.fromiter(q.history.values(), dtype=np.float64))
            b = int(np.argmax(contrib))
            if contrib[b] > 0:
                i = int(hist[b])
                name = q.history_names.get(i, catalog.label(i))
                plays = q.history[i]
                if plays > 0:
                    why = f"you played {name} {plays:g} time{'s' if plays != 1 else ''}"
                else:
                    kinds = sorted(q.history_signals.get(i, set()) - {"play"})
                    why = f"{name} is in your {' and '.join(k + ' tracks' for k in kinds) or 'library'}"
                out.append(f"{why}; listeners of {name} also play this")
    item = catalog.items[j]
    tags = list(item.tags) if item is not None else []
    if q.prompt_tags.get(j):
        out.append(f"tagged {', '.join(q.prompt_tags[j][:2])}, as your prompt asked")
    elif q.prompt_near.get(j):
        out.append(f"tagged {', '.join(q.prompt_near[j][:2])}, close to your prompt (CLAP text embeddings)")
    elif tags and q.seeds:
        for s in q.seeds:
            seed_item = catalog.items[s]
            shared = [t for t in tags[:8] if seed_item is not None and t in seed_item.tags[:8]]
            if shared:
                out.append(f"tagged {shared[0]} like your seed {catalog.label(s)}")
                break
    listeners = int(catalog.listeners[j])
    if not out:
        if q.history or q.seeds:
            out.append("fits the overall pattern of what you play (matrix factorisation over the corpus)")
        else:
            out.append(f"popular in the corpus ({listeners} listeners)")
    place = int(catalog.popularity_rank[j])
    if request.novelty > 0 and place > max(100, 0.02 * len(catalog.items)):
        out.append(f"a less-known pick (#{place} of {len(catalog.items)} by listeners, {listeners} of them)")
    return out


def _item(catalog: Catalog, j: int, score: float, reasons: list[str]) -> RecommendedItem:
    item = catalog.items[j]
    assert item is not None
    return RecommendedItem(item_id=item.id, kind=item.kind, title=item.title, artists=list(item.artists),
                           spotify_id=item.spotify_id, isrc=item.isrc, tags=list(item.tags[:8]),
                           features=dict(item.features), popularity=item.popularity, score=round(score, 4),
                           reasons=reasons, source=f"corpus:{catalog.fitted.corpus_id}")


async def _playlist_seeds(hub, owner: str, provider: str, playlist: str) -> list[Track]:
    from ..toolsets.curation import parse_playlist_id

    pid = parse_playlist_id(provider, playlist, "seed_playlist")
    adapter = await hub.provider(owner, provider)
    try:
        listing = await adapter.get_playlist(pid, MAX_PLAYLIST_SEEDS)
    finally:
        await adapter.aclose()
    return [t for t in listing.tracks if t.kind in ("track", "local")]  # a local file still names its artist


MAX_PLAYLIST_SEEDS = 500
ARTIFACT_SEEDS = 10  # the corpus tracks that sound most like an artifact become its seeds


async def _resolve(hub, owner: str, provider: str, items: list[RecommendedItem], ignored: list[str]) -> None:
    """Find each track on ``provider``: the Spotify id the corpus carries, else ISRC / title + artist search."""
    from ..providers.curate import find_on

    need = [it for it in items if not (provider == "spotify" and it.spotify_id)]
    for it in items:
        if provider == "spotify" and it.spotify_id:
            it.provider_track = Track(provider="spotify", id=it.spotify_id, uri=f"spotify:track:{it.spotify_id}",
                                      title=it.title or "", artists=it.artists, isrc=it.isrc,
                                      duration_ms=int(it.features["duration_ms"]) if "duration_ms" in it.features
                                      else None)
    if not need:
        return
    try:
        adapter = await hub.provider(owner, provider)
    except ProviderError as exc:  # the recommendations stand; only the lookup is missing, and why
        ignored.append(f"provider {provider}: {len(need)} tracks not looked up: {exc}")
        return
    try:
        gate = asyncio.Semaphore(4)

        async def one(it: RecommendedItem) -> None:
            source = Track(provider="corpus", id=it.item_id, title=it.title or "", artists=it.artists, isrc=it.isrc)
            label = f"{it.item_id} ({', '.join(it.artists)} - {it.title})"
            try:
                async with gate:
                    outcome = await find_on(adapter, source)
            except ProviderError as exc:
                ignored.append(f"{label}: lookup on {provider} failed: {exc}")
                return
            if outcome.matched and outcome.match is not None:
                it.provider_track = outcome.match.track
            else:
                ignored.append(f"{label}: not found on {provider}")

        await asyncio.gather(*(one(it) for it in need))
    finally:
        await adapter.aclose()


async def recommend(app, owner: str, request: RecommendRequest, *, hub=None) -> RecommendResult:
    """Rank corpus items for ``owner`` from the request's seeds, prompt and (if ``my_taste``) their own plays.

    Only ``owner``'s listening events are read; the fitted model holds corpus data only, so no other
    principal's plays can reach this answer."""
    settings = app.settings
    catalog, stale = await anyio.to_thread.run_sync(_catalog, settings, request.corpus_id, request.kind)
    q = _Query()
    plays = await owner_plays(app.storage.listening, owner)
    if plays:
        for play in plays.values():
            j = catalog.match_play(play)
            if j is None:
                continue
            q.known.add(j)
            if request.my_taste:
                q.history[j] = q.history.get(j, 0.0) + play.plays
                q.history_signals.setdefault(j, set()).update(play.signals)
                q.history_names.setdefault(j, play.artist if catalog.kind == "artist" else
                                           f"{play.artist} - {play.track}")
        if request.my_taste:
            if q.history:
                q.seeds_used.append(f"your listening history: {len(plays)} tracks played, matching {len(q.history)} "
                                    f"{catalog.kind}s of corpus {catalog.fitted.corpus_id}")
            else:
                q.ignored.append(f"your listening history: none of your {len(plays)} played tracks is in corpus "
                                 f"{catalog.fitted.corpus_id}")

    def add_seed(field_name: str, text: str, found: list[int]) -> None:
        if found:
            for j in found:
                q.seeds.setdefault(j, text)
            q.seeds_used.append(f"{field_name} {text!r}" + (f" ({len(found)} items)" if len(found) > 1 else ""))
        else:
            q.ignored.append(f"{field_name} {text!r}: not in corpus {catalog.fitted.corpus_id}")

    for i, ref in enumerate(request.seed_tracks):
        add_seed(f"seed_tracks[{i}]", ref, catalog.match_track(ref))
    for i, name in enumerate(request.seed_artists):
        add_seed(f"seed_artists[{i}]", name, catalog.match_artist(name))
    if request.seed_playlist:
        if hub is None:
            q.ignored.append("seed_playlist: no provider connection is available on this server")
        else:
            tracks = await _playlist_seeds(hub, owner, request.seed_playlist_provider, request.seed_playlist)
            found: list[int] = []
            for t in tracks:
                play = _Play(t.artists[0] if t.artists else None, t.title, t.uri if t.provider == "spotify" else None,
                             t.isrc)
                j = catalog.match_play(play)
                if j is not None and j not in found:
                    found.append(j)
            add_seed("seed_playlist", f"{request.seed_playlist} ({len(tracks)} tracks on "
                     f"{request.seed_playlist_provider})", found)
    if request.seed_artifact:
        from .sound import similar_to_artifact  # sound imports this module's models: imported here, not at the top

        similar = await similar_to_artifact(app, owner, request.seed_artifact, ARTIFACT_SEEDS,
                                            corpus_id=catalog.fitted.corpus_id, include_artifacts=False)
        add_seed("seed_artifact", request.seed_artifact,
                 [catalog.by_id[s.item_id] for s in similar if s.item_id in catalog.by_id])
    prompt_embeddings = catalog.fitted.provenance["params"].get("prompt_embeddings") or "none"
    if request.prompt:
        q.prompt_terms = prompt_terms(request.prompt)
        score, matched = _prompt_scores(catalog, q.prompt_terms)
        near: list[tuple[str, float]] = []
        if catalog.fitted.tag_clap is not None:
            from ..errors import EchoError
            from .sound import clap_backend

            backend, why = await clap_backend(app)
            if backend is None:
                prompt_embeddings = f"not used now: {why}"
            elif backend.dim != catalog.fitted.tag_clap.shape[1]:
                prompt_embeddings = (f"not used now: the CLAP that embeds prompts ({backend.model}, {backend.where}) "
                                     f"makes {backend.dim}-d vectors, the fitted tags are "
                                     f"{catalog.fitted.tag_clap.shape[1]}-d: refit with the same CLAP")
            else:
                try:
                    vec = (await backend.text(app, [request.prompt]))[0]
                except EchoError:  # the CPU pool is busy, etc.: the caller hears it as the other tools do
                    raise
                except Exception as exc:  # noqa: BLE001 - a model or replica that failed, or did not answer in time
                    prompt_embeddings = f"not used now: embedding the prompt failed ({type(exc).__name__}: {exc})"
                else:
                    near = _clap_tags(catalog.fitted, vec, set(q.prompt_terms))  # a few hundred dot products
                    prompt_embeddings += f"; prompt embedded {backend.where}"
        for tag, sim in near:
            for j, rank_ in catalog.by_tag.get(tag, ()):
                score[j] += sim / (1.0 + 0.1 * rank_)
                q.prompt_near.setdefault(j, []).append(tag)
        if matched or q.prompt_near:
            q.prompt, q.prompt_tags = score, matched
            said = sorted({t for ts in matched.values() for t in ts})[:5]
            parts = [f"{len(matched)} items tagged {', '.join(said)}"] if said else []
            parts += ["tags CLAP finds near it: " + ", ".join(t for t, _ in near)] if near else []
            q.seeds_used.append(f"prompt {request.prompt!r} ({'; '.join(parts)})")
        else:
            q.ignored.append(f"prompt {request.prompt!r}: no tag or genre in corpus {catalog.fitted.corpus_id} "
                             "matches its words")

    ranked, how = await app.cpu.run(rank, catalog, q, request, start_within=settings.max_wait_seconds)
    items = [_item(catalog, j, s, _reasons(catalog, q, j, request)) for j, s in ranked]
    if request.provider and items and catalog.kind == "track":
        if hub is None:
            q.ignored.append(f"provider {request.provider}: no provider connection is available on this server")
        else:
            await _resolve(hub, owner, request.provider, items, q.ignored)
    model = catalog.fitted.describe()
    info = catalog.corpus.info
    model["corpus_name"] = info.name
    cold = not (q.history or q.seeds or q.prompt is not None)
    if cold:
        why = ("you have no listening history" if not plays else
               "your listening history is not used (my_taste=false)" if not request.my_taste else
               "none of your plays is in this corpus")
        message = (f"{why} and no seed matched: these are the most popular {catalog.kind}s in corpus "
                   f"{info.name}. Import your history (import_listening_history) or give seeds or a prompt for "
                   "personal picks.")
    elif q.prompt is not None and not (q.history or q.seeds):
        message = f"{len(items)} {catalog.kind}s matching your prompt's tags (no history or seeds used)"
    else:
        message = f"{len(items)} {catalog.kind}s from {how}"
    message += (f". Drawn from corpus {info.name} (licence: {info.licence}"
                f"{'' if info.commercial_use else '; non-commercial use only'}); model v{catalog.fitted.version}.")
    if stale:
        message += " " + stale
    model["stale"] = stale
    model["prompt_embeddings"] = prompt_embeddings
    return RecommendResult(items=items, model=model, seeds_used=q.seeds_used, ignored=q.ignored, message=message)
