"""Collaborative and content recommenders over a user × item matrix, and the blend we ship.

Every model is fitted on one CSR matrix of raw weights (play counts, playlist memberships) whose rows include
the users we will recommend for (their known items are the input, "fold-in" by construction), and answers
``score(rows)``: a dense (len(rows) × n_items) float32 block, higher = better. Scores are not comparable across
models; :class:`Blend` z-scores each component per user before weighting. Candidates are filtered (known items
removed) and cut to K by :func:`top_k`, never by the models.

Chosen by measurement on Last.fm-2k and the TidyTuesday playlists (docs/RECOMMENDATION.md): popularity,
item-kNN (cosine, pruned neighbours), EASE (Steck 2019, closed form on the most-played items), implicit ALS
(the ``implicit`` package, Hu/Koren/Volinsky confidence weighting), a content model on item features, and a
weighted blend of them tuned on validation users.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


def transform(x: sp.csr_matrix, how: str) -> sp.csr_matrix:
    """``binary`` (1 per known item), ``log`` (log1p of the weight; play counts are heavy-tailed) or ``raw``."""
    x = sp.csr_matrix(x, dtype=np.float32, copy=True)
    if how == "binary":
        x.data[:] = 1.0
    elif how == "log":
        x.data = np.log1p(x.data).astype(np.float32)
    elif how != "raw":
        raise ValueError(f"unknown weighting {how!r} (allowed: binary, log, raw)")
    x.eliminate_zeros()
    return x


class Model:
    """Base: ``fit`` keeps the matrix; ``score`` returns dense scores for row indices of that matrix."""

    name = "model"

    def fit(self, x: sp.csr_matrix) -> Model:
        self.x = sp.csr_matrix(x, dtype=np.float32)
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Popularity(Model):
    """How many users have each item (log-scaled); the same list for everyone, and the cold-user answer."""

    name = "popularity"

    def fit(self, x: sp.csr_matrix) -> Popularity:
        super().fit(x)
        counts = np.bincount(self.x.indices, minlength=self.x.shape[1]).astype(np.float32)
        self.item_score = np.log1p(counts)
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_score, (len(rows), self.item_score.size)).copy()


class RandomModel(Model):
    """Uniform random scores: the chance baseline the evaluation must beat."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def score(self, rows: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed + int(rows[0]) if len(rows) else self.seed)
        return rng.random((len(rows), self.x.shape[1]), dtype=np.float32)


class ItemKNN(Model):
    """Item-item cosine similarity on (weighted) co-occurrence, each item keeping its ``neighbours`` nearest;
    a user's score for j is the sum of similarities between j and the user's items."""

    name = "itemknn"

    def __init__(self, neighbours: int = 400, weighting: str = "binary", shrink: float = 0.0):
        self.neighbours, self.weighting, self.shrink = neighbours, weighting, shrink

    def fit(self, x: sp.csr_matrix) -> ItemKNN:
        super().fit(x)
        self.xw = transform(self.x, self.weighting)
        xc = self.xw.tocsc()
        norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0)).ravel())
        co = (xc.T @ xc).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        co = co.tocoo()
        denom = norms[co.row] * norms[co.col] + self.shrink
        sim = sp.csr_matrix((co.data / np.where(denom > 0, denom, 1.0), (co.row, co.col)), shape=co.shape,
                            dtype=np.float32)
        self.sim = _keep_top_per_row(sim, self.neighbours)
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray((self.xw[rows] @ self.sim).todense(), dtype=np.float32)


class EASE(Model):
    """Embarrassingly Shallow Autoencoder (Steck 2019): B = I - P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, on the
    ``max_items`` items with the most users (the dense inverse is O(n³); the long tail of items a single
    listener played adds little). Items outside that set score 0."""

    name = "ease"

    def __init__(self, l2: float = 50.0, max_items: int = 4000, weighting: str = "binary"):
        self.l2, self.max_items, self.weighting = l2, max_items, weighting

    def fit(self, x: sp.csr_matrix) -> EASE:
        super().fit(x)
        self.xw = transform(self.x, self.weighting)
        counts = np.bincount(self.xw.indices, minlength=self.xw.shape[1])
        order = np.argsort(-counts, kind="stable")
        keep = order[: self.max_items]
        keep = np.sort(keep[counts[keep] > 0])
        self.items = keep
        xs = self.xw[:, keep]
        g = (xs.T @ xs).toarray().astype(np.float64)
        g[np.diag_indices_from(g)] += self.l2
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.b = b.astype(np.float32)
        self.xs = sp.csr_matrix(xs)
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), self.x.shape[1]), dtype=np.float32)
        out[:, self.items] = self.xs[rows] @ self.b
        return out


class ALS(Model):
    """Implicit-feedback matrix factorisation (Hu, Koren, Volinsky 2008) from the ``implicit`` package. Binary
    preferences with confidence 1 + alpha beat BM25- and log-weighted play counts on Last.fm validation users."""

    name = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, iterations: int = 15, alpha: float = 20.0,
                 weighting: str = "binary", seed: int = 0):
        self.factors, self.regularization, self.iterations = factors, regularization, iterations
        self.alpha, self.weighting, self.seed = alpha, weighting, seed

    def fit(self, x: sp.csr_matrix) -> ALS:
        from implicit.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import bm25_weight
        from threadpoolctl import threadpool_limits

        super().fit(x)
        xw = (bm25_weight(self.x, K1=100, B=0.8).tocsr().astype(np.float32) if self.weighting == "bm25"
              else transform(self.x, self.weighting))
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads only thrash
            model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                            iterations=self.iterations, alpha=self.alpha, random_state=self.seed,
                                            calculate_training_loss=False)
            model.fit(xw, show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors[rows] @ self.item_factors.T


class Content(Model):
    """Content similarity: a user's score for j is Σ over their items i of cos(features_i, features_j), i.e.
    (X·F)·Fᵀ with L2-normalised feature rows F (see interactions.read_item_features). The only component that
    can rank items nobody has interacted with yet (cold items)."""

    name = "content"

    def __init__(self, features: sp.csr_matrix):
        self.features = sp.csr_matrix(features, dtype=np.float32)

    def fit(self, x: sp.csr_matrix) -> Content:
        super().fit(x)
        if self.features.shape[0] != x.shape[1]:
            raise ValueError("feature rows must be aligned to the matrix's items")
        self.xw = transform(self.x, "binary")
        self.ft = self.features.T.tocsr()
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        profile = self.xw[rows] @ self.features  # users × feature dims
        return np.asarray((profile @ self.ft).todense(), dtype=np.float32)


@dataclass
class Blend(Model):
    """Weighted sum of per-user z-scored component scores; weights are fitted on validation users
    (evaluate.tune_blend). A component with weight 0 is not fitted."""

    components: dict[str, Model]
    weights: dict[str, float]
    name: str = "blend"
    fitted: dict[str, Model] = field(default_factory=dict)

    def fit(self, x: sp.csr_matrix) -> Blend:
        super().fit(x)
        self.fitted = {k: m.fit(x) for k, m in self.components.items() if self.weights.get(k, 0.0) != 0.0}
        self.cold = np.flatnonzero(np.bincount(self.x.indices, minlength=self.x.shape[1]) == 0)
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Weighted z-scores. Items nobody has interacted with (cold) get the content score alone at the blend's
        full weight: collaborative components know nothing about them, and their flat 0 would bury them."""
        total = np.zeros((len(rows), self.x.shape[1]), dtype=np.float32)
        content = None
        for key, model in self.fitted.items():
            z = zscore(model.score(rows))
            if isinstance(model, Content):
                content = z
            total += np.float32(self.weights[key]) * z
        if content is not None and self.cold.size:
            total[:, self.cold] = np.float32(sum(abs(w) for w in self.weights.values())) * content[:, self.cold]
        return total


def zscore(scores: np.ndarray) -> np.ndarray:
    """Per-row standardisation, so components on different scales can be summed."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


def top_k(scores: np.ndarray, known: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` items per row, never one in that row of ``known``; ties broken by lower item index.
    Returns (items, scores) of shape (rows, min(k, n_items)); a slot with no unseen item left holds -1."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    n_rows, n_items = scores.shape
    known = sp.csr_matrix(known)
    for r in range(n_rows):
        scores[r, known.indices[known.indptr[r]:known.indptr[r + 1]]] = -np.inf
    k_eff = min(k, n_items)
    if k_eff < n_items:
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    else:
        part = np.tile(np.arange(n_items), (n_rows, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    items = np.take_along_axis(part, order, axis=1)
    best = np.take_along_axis(part_scores, order, axis=1)
    items[~np.isfinite(best)] = -1
    return items, best


def _keep_top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    m = sp.csr_matrix(m)
    rows, cols, vals = [], [], []
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        if hi == lo:
            continue
        data = m.data[lo:hi]
        idx = m.indices[lo:hi]
        if hi - lo > k:
            sel = np.argpartition(-data, k - 1)[:k]
            data, idx = data[sel], idx[sel]
        rows.append(np.full(idx.size, r, dtype=np.int64))
        cols.append(idx)
        vals.append(data)
    if not rows:
        return sp.csr_matrix(m.shape, dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=m.shape,
                         dtype=np.float32)


def batched(n: int, n_items: int, max_cells: int = 8_000_000):
    """Row-index batches whose dense score blocks hold at most ``max_cells`` floats (32 MB each; a blend holds
    a few at once), at least one row and at most 512 rows per batch, whatever the catalogue size."""
    size = max(1, min(512, max_cells // max(1, n_items)))
    for lo in range(0, n, size):
        yield np.arange(lo, min(n, lo + size))

