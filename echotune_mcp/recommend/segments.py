"""Listener segments: clusters of taste vectors, described only by aggregates above a k-anonymity floor.

A population is members × artists (a corpus's users, or the principals of this server who opted in). Each
member's row is weighted tf-idf style (log(1 + plays) × idf of the artist, rows L2-normalised) so a segment is
defined by what its members share rather than by what everyone plays; rows are reduced by truncated SVD and
clustered by k-means on the unit sphere (cosine), both with a fixed seed, so the same population and seed give
the same segments.

Privacy (issue #14, "Bad input and privacy"): the floor ``f`` (ECHOTUNE_SEGMENT_MIN_SIZE, default 5) applies to
everything reported. A population smaller than ``f`` is refused. A cluster smaller than ``f`` is merged (each
member joins its nearest remaining segment) or, when asked, withheld and only counted. An artist or tag is named
for a segment only if at least ``f`` of its members have it. Nothing per member (ids, rows) leaves this module:
``segment`` returns the member labels to its caller for measurement, and the report carries none of them.

Defining artists and tags are those over-represented in the segment: lift = share of the segment's members
having it / share of the population having it, ranked by share × log(lift) (how much of the segment it
explains, times how distinctive it is). A member "has" a tag when it is among the 10 heaviest tags of the
artists they play (each artist's tags weighted by the member's plays of it).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, Field

from .corpus import Corpus
from .history import fold

TOP_TAGS_PER_MEMBER = 10
TERMS_PER_SEGMENT = 5
SVD_COMPONENTS = 48


class PopulationTooSmall(ValueError):
    """Fewer members than the floor: no segment could be reported without exposing individuals."""


@dataclass
class Population:
    """Members × artists play weights, the artists' display names, and each artist's tags (most frequent first)."""

    matrix: sp.csr_matrix
    artists: list[str]
    tags: list[tuple[str, ...]]
    source: str  # "corpus:<id>" or "principals"


def artist_key(name: str) -> str:
    return f"artist:{fold(name)}"


def population_from_corpus(corpus: Corpus) -> Population:
    """A corpus's users as members; track items are folded into their (first) artist, so a playlist corpus
    clusters on artists too (tracks are too sparse to share: most appear in one playlist)."""
    columns: dict[str, int] = {}
    names: list[str] = []
    tag_counts: list[dict[str, int]] = []
    col_of = np.empty(len(corpus.items), dtype=np.int64)
    for j, item in enumerate(corpus.items):
        name = item.artists[0] if item.artists else None
        key = artist_key(name) if name else item.id
        c = columns.get(key)
        if c is None:
            c = columns[key] = len(names)
            names.append(name or item.id)
            tag_counts.append({})
        col_of[j] = c
        for rank, tag in enumerate(item.tags):
            tag_counts[c][tag] = tag_counts[c].get(tag, 0) + (len(item.tags) - rank)
    m = corpus.matrix.tocoo()
    matrix = sp.csr_matrix((m.data, (m.row, col_of[m.col])), shape=(m.shape[0], len(names)), dtype=np.float32)
    matrix.sum_duplicates()
    tags = [_ordered_tags(tc, names[c]) for c, tc in enumerate(tag_counts)]
    return Population(matrix, names, tags, f"corpus:{corpus.info.id}")


def artist_tags_of(corpus: Corpus) -> dict[str, tuple[str, ...]]:
    """Artist key -> tags, from a corpus (to describe principals' segments with the corpus's tags)."""
    pop = population_from_corpus(corpus)
    return {artist_key(name): tags for name, tags in zip(pop.artists, pop.tags, strict=True) if tags}


def population_from_vectors(vectors: Iterable[dict[str, float]], names: dict[str, str],
                            tags: dict[str, tuple[str, ...]] | None = None, source: str = "principals") -> Population:
    """Members given as {artist key: weight} (e.g. each opted-in principal's plays per artist)."""
    columns: dict[str, int] = {}
    rows, cols, data = [], [], []
    n = 0
    for r, vec in enumerate(vectors):
        n = r + 1
        for key, w in vec.items():
            if w > 0:
                rows.append(r)
                cols.append(columns.setdefault(key, len(columns)))
                data.append(w)
    matrix = sp.csr_matrix((np.asarray(data, dtype=np.float32), (rows, cols)), shape=(n, len(columns)))
    matrix.sum_duplicates()
    keys = list(columns)
    tags = tags or {}
    return Population(matrix, [names.get(k, k) for k in keys],
                      [_ordered_tags({t: len(tags.get(k, ())) - i for i, t in enumerate(tags.get(k, ()))},
                                     names.get(k, k)) for k in keys], source)


def _ordered_tags(counts: dict[str, int], artist: str) -> tuple[str, ...]:
    own = fold(artist)  # Last.fm users tag an artist with its own name: not a description of taste
    return tuple(t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if t != own)


# -- report ----------------------------------------------------------------------------------------------------
class SegmentTerm(BaseModel):
    name: str
    members: int = Field(description="members of the segment who have it (never below the floor)")
    share: float = Field(description="fraction of the segment's members who have it")
    lift: float = Field(description="share in the segment / share in the whole population")


class Segment(BaseModel):
    name: str = Field(description="generated from the most defining tag and artist")
    size: int
    share: float = Field(description="fraction of the reported population")
    defining_artists: list[SegmentTerm]
    defining_tags: list[SegmentTerm]
    cohesion: float = Field(description="mean cosine similarity of the members' taste vectors to the segment's "
                                        "centre (1 = identical tastes)")


class SegmentReport(BaseModel):
    population: str = Field(description="corpus:<id> or principals")
    members: int = Field(description="members clustered (corpus users, or opted-in principals with plays)")
    artists: int
    floor: int = Field(description="k-anonymity floor applied to every segment and every named artist/tag")
    requested_segments: int
    segments: list[Segment]
    suppressed_segments: int = Field(0, description="clusters below the floor, withheld (small_segments=suppress)")
    suppressed_members: int = Field(0, description="members in withheld clusters, counted only")
    merged_segments: int = Field(0, description="clusters below the floor whose members joined their nearest "
                                                "segment (small_segments=merge)")
    seed: int
    method: str
    notes: list[str] = []


def segment(pop: Population, k: int, floor: int, *, seed: int = 0,
            small: Literal["merge", "suppress"] = "merge") -> tuple[SegmentReport, np.ndarray]:
    """Cluster ``pop`` into at most ``k`` segments (see the module docstring); the report and each member's
    label (-1: withheld). The labels are for the caller's measurement only, never for output."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD

    n, n_art = pop.matrix.shape
    if n < floor:
        raise PopulationTooSmall(f"the population has {n} members, fewer than the floor of {floor}: segments of "
                                 f"it would describe individuals, so none are reported")
    notes: list[str] = []
    x = weighted(pop.matrix)
    dims = min(SVD_COMPONENTS, n - 1, n_art - 1)
    if dims >= 2:
        svd = TruncatedSVD(n_components=dims, algorithm="randomized", n_iter=7, random_state=seed)
        z = svd.fit_transform(x)
        method = f"tf-idf artist vectors, truncated SVD ({dims} dims), k-means (cosine), seed {seed}"
    else:
        z = x.toarray()
        method = f"tf-idf artist vectors, k-means (cosine), seed {seed}"
    z = _unit(z.astype(np.float64))
    k_eff = min(k, n)
    if k_eff * floor > n:
        notes.append(f"{n} members cannot fill {k} segments of at least {floor}; expect fewer")
    km = KMeans(n_clusters=k_eff, n_init=4, random_state=seed)
    labels = km.fit_predict(z).astype(np.int64)
    labels, merged, suppressed = _enforce_floor(z, labels, floor, small)
    if merged:
        notes.append(f"{merged} cluster(s) under {floor} members were merged into their nearest segments")
    if suppressed:
        notes.append(f"{suppressed} cluster(s) under {floor} members were withheld and only counted")

    presence = (pop.matrix > 0).astype(np.float32).tocsr()
    tag_names, member_tags = _member_tags(pop)
    pop_art = np.asarray(presence.sum(axis=0)).ravel() / n
    pop_tag = np.asarray(member_tags.sum(axis=0)).ravel() / n
    segments = []
    for s in sorted(set(labels[labels >= 0].tolist())):
        rows = np.flatnonzero(labels == s)
        centre = _unit(z[rows].mean(axis=0, keepdims=True))[0]
        arts = _terms(presence[rows], pop_art, pop.artists, floor)
        tags = _terms(member_tags[rows], pop_tag, tag_names, floor)
        segments.append(Segment(name="", size=len(rows), share=round(len(rows) / n, 4), defining_artists=arts,
                                defining_tags=tags, cohesion=round(float((z[rows] @ centre).mean()), 4)))
    segments.sort(key=lambda sg: (-sg.size, sg.name))
    _name(segments)
    report = SegmentReport(population=pop.source, members=n, artists=n_art, floor=floor, requested_segments=k,
                           segments=segments, suppressed_segments=suppressed,
                           suppressed_members=int((labels < 0).sum()), merged_segments=merged, seed=seed,
                           method=method, notes=notes)
    return report, labels


def weighted(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """log(1 + weight) × idf(artist), rows L2-normalised."""
    x = matrix.astype(np.float64).tocsr(copy=True)
    x.data = np.log1p(np.maximum(x.data, 0))
    df = np.bincount(x.indices, minlength=x.shape[1])
    idf = np.log((1 + x.shape[0]) / (1 + df)) + 1.0
    x = x @ sp.diags(idf)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x


def _unit(z: np.ndarray) -> np.ndarray:
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def _enforce_floor(z: np.ndarray, labels: np.ndarray, floor: int, small: str) -> tuple[np.ndarray, int, int]:
    labels = labels.copy()
    merged = suppressed = 0
    while True:
        sizes = {int(s): int(c) for s, c in zip(*np.unique(labels[labels >= 0], return_counts=True), strict=True)}
        tiny = sorted((c, s) for s, c in sizes.items() if c < floor)
        if not tiny:
            return labels, merged, suppressed
        _, s = tiny[0]
        rows = np.flatnonzero(labels == s)
        others = [t for t in sizes if t != s]
        if small == "suppress" or not others:
            labels[rows] = -1
            suppressed += 1
            continue
        centres = _unit(np.stack([z[labels == t].mean(axis=0) for t in others]))
        labels[rows] = np.asarray(others)[np.argmax(z[rows] @ centres.T, axis=1)]
        merged += 1


def _member_tags(pop: Population) -> tuple[list[str], sp.csr_matrix]:
    """Members × tags presence: a member has the TOP_TAGS_PER_MEMBER heaviest tags of the artists they play."""
    index: dict[str, int] = {}
    r, c, v = [], [], []
    for a, tags in enumerate(pop.tags):
        for rank, t in enumerate(tags):
            r.append(a)
            c.append(index.setdefault(t, len(index)))
            v.append(1.0 / math.sqrt(rank + 1))
    names = list(index)
    if not names:
        return names, sp.csr_matrix((pop.matrix.shape[0], 0), dtype=np.float32)
    art_tag = sp.csr_matrix((v, (r, c)), shape=(len(pop.artists), len(names)))
    share = pop.matrix.astype(np.float64)
    sums = np.asarray(share.sum(axis=1)).ravel()
    mass = (sp.diags(1.0 / np.maximum(sums, 1e-12)) @ share @ art_tag).tocsr()
    rows, cols = [], []
    for i in range(mass.shape[0]):
        lo, hi = mass.indptr[i], mass.indptr[i + 1]
        if hi == lo:
            continue
        data, idx = mass.data[lo:hi], mass.indices[lo:hi]
        order = np.lexsort((idx, -data))[:TOP_TAGS_PER_MEMBER]
        rows.extend([i] * len(order))
        cols.extend(idx[order].tolist())
    out = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(mass.shape[0], len(names)))
    return names, out


def _terms(seg_presence: sp.csr_matrix, population_share: np.ndarray, names: list[str],
           floor: int) -> list[SegmentTerm]:
    if seg_presence.shape[1] == 0:
        return []
    size = seg_presence.shape[0]
    counts = np.asarray(seg_presence.sum(axis=0)).ravel()
    share = counts / size
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(population_share > 0, share / population_share, 0.0)
    ok = (counts >= floor) & (lift > 1.0)
    score = np.where(ok, share * np.log(np.where(ok, lift, 1.0)), -np.inf)
    best = [int(j) for j in np.lexsort((np.arange(len(score)), -score))[:TERMS_PER_SEGMENT] if ok[j]]
    return [SegmentTerm(name=names[j], members=int(counts[j]), share=round(float(share[j]), 4),
                        lift=round(float(lift[j]), 3)) for j in best]


def _name(segments: list[Segment]) -> None:
    """"<top tag> / <top artist> fans", made unique by adding the next defining artist or tag."""
    used: defaultdict[str, int] = defaultdict(int)
    for i, sg in enumerate(segments):
        tag = sg.defining_tags[0].name if sg.defining_tags else None
        art = sg.defining_artists[0].name if sg.defining_artists else None
        if tag and art:
            name = f"{tag} / {art} fans"
        elif tag or art:
            name = f"{tag} listeners" if tag else f"{art} fans"
        else:
            name = f"segment {i + 1} (no artist or tag shared by {sg.size} members above the floor)"
        if used[name]:
            extra = [t.name for t in sg.defining_artists[1:2] + sg.defining_tags[1:2]]
            name = f"{name} ({extra[0]})" if extra else f"{name} #{used[name] + 1}"
        used[name] += 1
        sg.name = name
