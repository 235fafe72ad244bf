"""Offline evaluation: user-level random splits, recall@K / NDCG@K, validation tuning, the two public data sets.

Protocol (docs/RECOMMENDATION.md): users are split at random with a fixed seed into train / validation / test.
For a validation or test user a random ``holdout`` fraction of their items is hidden; the rest stays in the
matrix as what we know about them. Tuning (hyper-parameters, blend weights) sees only train users plus the
visible part of validation users — test users are absent from the matrix until the single final run, which
refits on train + validation users and the visible part of test users and scores the test users' hidden items.

recall@K = hits in the top K / min(K, hidden items) (so 1.0 is reachable); NDCG@K with binary relevance and
the ideal DCG of min(K, hidden) hits. Known (visible) items are never recommended.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .interactions import Interactions, ItemFeatures, features_from_columns, unit_rows_sparse
from .models import ALS, EASE, Blend, Content, ItemKNN, Model, Popularity, RandomModel, batched, top_k, zscore


@dataclass
class Split:
    """One phase's view: ``matrix`` to fit on, ``rows`` to evaluate, ``hidden[r]`` their hidden item indices;
    ``full_users``: the data set's indices of the users whose rows are wholly visible (whose side data, such as
    the tags they assigned, may be used without revealing a hidden item)."""

    matrix: sp.csr_matrix
    rows: np.ndarray
    hidden: list[np.ndarray]
    full_users: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


@dataclass
class UserSplit:
    data: Interactions
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    hidden: dict[int, np.ndarray]  # user index -> hidden item indices (val and test users only)

    def phase(self, which: str) -> Split:
        """``validation``: train users + visible part of validation users (no test user at all).
        ``test``: train + validation users in full + visible part of test users."""
        if which == "validation":
            full, partial = self.train, self.val
        elif which == "test":
            full, partial = np.concatenate([self.train, self.val]), self.test
        else:
            raise ValueError(which)
        users = np.concatenate([full, partial])
        m = self.data.matrix[users].tolil(copy=True)
        base = len(full)
        for r, u in enumerate(partial):
            m[base + r, self.hidden[int(u)]] = 0
        matrix = m.tocsr()
        matrix.eliminate_zeros()
        return Split(matrix, np.arange(base, len(users)), [self.hidden[int(u)] for u in partial], np.sort(full))


def split_users(data: Interactions, *, val_frac: float = 0.1, test_frac: float = 0.2, holdout: float = 0.2,
                seed: int = 0) -> UserSplit:
    """Random user-level split with a fixed seed; users with fewer than 2 items always train."""
    rng = np.random.default_rng(seed)
    counts = np.diff(data.matrix.indptr)
    eligible = np.flatnonzero(counts >= 2)
    perm = rng.permutation(eligible)
    n_test = int(round(test_frac * data.n_users))
    n_val = int(round(val_frac * data.n_users))
    test, val = np.sort(perm[:n_test]), np.sort(perm[n_test:n_test + n_val])
    train = np.setdiff1d(np.arange(data.n_users), np.concatenate([test, val]))
    hidden = _hide(data, np.concatenate([val, test]), holdout, rng)
    return UserSplit(data, train, val, test, hidden)


def validation_folds(split: UserSplit, folds: int, *, holdout: float, seed: int = 0) -> list[Split]:
    """``folds`` validation phases over disjoint sets of non-test users (fold 0 is ``split``'s own validation
    users), each the size of ``split.val``: averaging the tuning objective over them steadies blend weights
    fitted on few users. Test users stay out of every matrix."""
    out = [split.phase("validation")]
    rng = np.random.default_rng(seed + 1)
    counts = np.diff(split.data.matrix.indptr)
    others = rng.permutation(split.train[counts[split.train] >= 2])
    size = len(split.val)
    for f in range(folds - 1):
        val = np.sort(others[f * size:(f + 1) * size])
        if len(val) < size:
            break
        train = np.setdiff1d(np.concatenate([split.train, split.val]), val)
        hidden = _hide(split.data, val, holdout, rng)
        out.append(UserSplit(split.data, train, val, split.test, hidden).phase("validation"))
    return out


def _hide(data: Interactions, users: np.ndarray, holdout: float, rng: np.random.Generator) -> dict[int, np.ndarray]:
    hidden: dict[int, np.ndarray] = {}
    for u in users:
        items = data.matrix.indices[data.matrix.indptr[u]:data.matrix.indptr[u + 1]]
        n_hide = min(len(items) - 1, max(1, int(round(holdout * len(items)))))
        hidden[int(u)] = np.sort(rng.choice(items, size=n_hide, replace=False))
    return hidden


def metrics(ranked: np.ndarray, hidden: list[np.ndarray], ks: tuple[int, ...]) -> dict[str, float]:
    """Mean recall@K and NDCG@K over users; ``ranked`` is (users × max K) item indices, best first."""
    out: dict[str, float] = {}
    discounts = 1.0 / np.log2(np.arange(2, max(ks) + 2))
    for k in ks:
        rec, ndcg = [], []
        for items, truth in zip(ranked[:, :k], hidden):
            hit = np.isin(items, truth)
            ideal = min(k, len(truth))
            rec.append(hit.sum() / ideal)
            ndcg.append(float(discounts[:k][hit].sum() / discounts[:ideal].sum()))
        out[f"recall@{k}"] = float(np.mean(rec))
        out[f"ndcg@{k}"] = float(np.mean(ndcg))
    return out


def rank(model: Model, split: Split, k: int) -> np.ndarray:
    out = np.empty((len(split.rows), k), dtype=np.int64)
    for b in batched(len(split.rows), split.matrix.shape[1]):
        rows = split.rows[b]
        out[b] = top_k(model.score(rows), split.matrix[rows], k)[0]
    return out


def evaluate(model: Model, split: Split, ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
    t0 = time.perf_counter()
    model.fit(split.matrix)
    fit_s = time.perf_counter() - t0
    res = metrics(rank(model, split, max(ks)), split.hidden, ks)
    res["fit_s"] = round(fit_s, 2)
    res["total_s"] = round(time.perf_counter() - t0, 2)
    return res


def tune_blend(components: dict[str, Callable[[Split], Model]], splits: list[Split], k: int = 20, metric: str = "ndcg",
               grid: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0), rounds: int = 3) -> dict[str, float]:
    """Blend weights maximising mean NDCG@k (or recall) over the validation ``splits``: start from the better
    of "all components equal" and "best single component", then coordinate ascent over ``grid``. Component
    scores for the validation rows are computed once per split and z-scored, so each trial is a sum + top-k."""
    z: list[dict[str, np.ndarray]] = []
    for split in splits:
        z.append({key: zscore(make(split).fit(split.matrix).score(split.rows)) for key, make in components.items()})
    known = [split.matrix[split.rows] for split in splits]

    def value(weights: dict[str, float]) -> float:
        if not any(weights.values()):
            return -1.0
        found = []
        for split, zs, kn in zip(splits, z, known):
            total = sum(np.float32(w) * zs[key] for key, w in weights.items() if w)
            ranked = top_k(total, kn, k)[0]
            found.append(metrics(ranked, split.hidden, (k,))[f"{metric}@{k}"])
        return float(np.mean(found))

    keys = list(components)
    starts = [{key: 1.0 for key in keys}] + [{key: float(key == one) for key in keys} for one in keys]
    best, weights = max(((value(w), w) for w in starts), key=lambda vw: vw[0])
    for _ in range(rounds):
        improved = False
        for key in keys:
            for w in grid:
                trial = dict(weights, **{key: w})
                v = value(trial)
                if v > best + 1e-9:
                    best, weights, improved = v, trial, True
        if not improved:
            break
    return weights


# -- data sets -------------------------------------------------------------------------------------------------
def load_lastfm(folder: Path) -> Interactions:
    """HetRec 2011 Last.fm-2k ``user_artists.dat`` (userID, artistID, weight = play count)."""
    users, items, weights = [], [], []
    with (folder / "user_artists.dat").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) == 3:
                users.append(parts[0])
                items.append(parts[1])
                weights.append(float(parts[2]))
    return Interactions.from_triples(users, items, weights)


def lastfm_tag_features(folder: Path, data: Interactions) -> Callable[[Split], sp.csr_matrix]:
    """Artist × tag features from ``user_taggedartists*.dat`` (both halves), built per split from the tags that
    split's fully visible users assigned: a validation or test user's tags would reveal their hidden artists.
    Weights: log(1 + times assigned) × idf, rows L2-normalised."""
    users, items, tags = [], [], []
    tag_index: dict[str, int] = {}
    for name in ("user_taggedartists.dat", "user_taggedartists_2.dat"):
        with (folder / name).open(encoding="utf-8") as fh:
            next(fh, None)
            for line in fh:
                parts = line.rstrip("\r\n").split("\t")
                if len(parts) < 3 or parts[0] not in data.user_index or parts[1] not in data.item_index:
                    continue
                users.append(data.user_index[parts[0]])
                items.append(data.item_index[parts[1]])
                tags.append(tag_index.setdefault(parts[2], len(tag_index)))
    u, i, t = np.array(users), np.array(items), np.array(tags)

    def build(split: Split) -> sp.csr_matrix:
        keep = np.isin(u, split.full_users)
        m = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (i[keep], t[keep])),
                          shape=(data.n_items, len(tag_index)))
        m.sum_duplicates()
        m.data = np.log1p(m.data)
        df = np.bincount(m.indices, minlength=len(tag_index))
        m = m @ sp.diags(np.log(data.n_items / np.maximum(df, 1)).astype(np.float32))
        return unit_rows_sparse(m)

    return build


SPOTIFY_NUMERIC = ("danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
                   "instrumentalness", "liveness", "valence", "tempo", "duration_ms")


def load_playlists(folder: Path) -> tuple[Interactions, ItemFeatures]:
    """TidyTuesday 2020 Spotify songs (3 CSV parts concatenated): playlists as users, tracks as items (weight 1).
    Track features: the audio features, release year, artist and album. The playlist's genre labels are NOT
    used as track features: they describe the playlist being predicted and would leak the answer."""
    users, items = [], []
    names = [*SPOTIFY_NUMERIC, "release_year", "track_artist", "track_album_id"]
    feats: dict[str, list[str]] = {}
    for part in sorted(folder.glob("spotify_songs_part*.csv")):
        with part.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                users.append(row["playlist_id"])
                items.append(row["track_id"])
                if row["track_id"] not in feats:
                    year = (row["track_album_release_date"] or "")[:4]
                    feats[row["track_id"]] = [*(row[c] for c in SPOTIFY_NUMERIC), year if year.isdigit() else "",
                                              row["track_artist"], row["track_album_id"]]
    data = Interactions.from_triples(users, items, [1.0] * len(users))
    data.matrix.data[:] = 1.0  # a track listed twice in one playlist is still one membership
    columns = {name: [feats[i][c] for i in data.item_ids] for c, name in enumerate(names)}
    features = features_from_columns(data.item_ids, columns, text_separator="\x00")  # names are single tokens
    return data, features


Features = sp.csr_matrix | Callable[[Split], sp.csr_matrix]


def candidate_models(features: Features | None = None, seed: int = 0) -> dict[str, Callable[[Split], Model]]:
    """The baselines and the components of our blend (defaults chosen on validation users), each made for a
    split; ``features`` is a fixed item-feature matrix or one built per split (from its full users' data)."""
    out: dict[str, Callable[[Split], Model]] = {
        "random": lambda _s: RandomModel(seed),
        "popularity": lambda _s: Popularity(),
        "itemknn": lambda _s: ItemKNN(),
        "ease": lambda _s: EASE(),
        "als": lambda _s: ALS(seed=seed),
    }
    if callable(features):
        out["content"] = lambda s: Content(features(s))
    elif features is not None:
        out["content"] = lambda _s: Content(features)
    return out


def run(data: Interactions, *, features: Features | None = None, holdout: float = 0.2, seed: int = 0,
        ks: tuple[int, ...] = (10, 20), folds: int = 3,
        log: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    """The whole protocol on one data set: tune the blend on ``folds`` validation folds of non-test users, then
    report every model once on test users. Returns {model: metrics} for the test phase plus ``_protocol``."""
    split = split_users(data, holdout=holdout, seed=seed)
    makers = candidate_models(features, seed)
    vals = validation_folds(split, folds, holdout=holdout, seed=seed)
    blend_keys = [k for k in makers if k != "random"]
    log(f"tuning blend weights on {len(vals)} folds of {len(split.val)} validation users (test users excluded)")
    weights = tune_blend({k: makers[k] for k in blend_keys}, vals, k=max(ks))
    log(f"blend weights: {weights}")
    test = split.phase("test")
    results: dict[str, dict[str, float]] = {}
    for name, make in makers.items():
        results[name] = evaluate(make(test), test, ks)
        log(f"{name}: {results[name]}")
    blend = Blend({k: makers[k](test) for k in blend_keys}, weights)
    results["blend"] = evaluate(blend, test, ks)
    log(f"blend: {results['blend']}")
    results["_protocol"] = {"users": data.n_users, "items": data.n_items, "interactions": int(data.matrix.nnz),
                            "train_users": len(split.train), "val_users": len(split.val),
                            "test_users": len(split.test), "holdout": holdout, "seed": seed,
                            "validation_folds": len(vals),
                            "blend_weights": weights}
    return results
