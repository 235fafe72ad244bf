"""Top-k retrieval over dense item vectors (ALS item factors, content embeddings): exact or from an ANN index.

Scores are inner products ``query · item`` (what ALS's ``score`` computes); normalise the vectors first for
cosine. Two paths answer the same question:

* **exact**: chunked ``items @ query`` (BLAS) and a partial sort. It is the reference, needs no build, and on
  one core takes about 1.5 ms per query at 100k × 64, growing linearly (27 ms at 1M; docs/BENCHMARKS.md).
* **ann**: an HNSW graph from ``usearch`` (inner-product metric, float32), built once: about 0.4 ms per query
  at 100k and at 1M items, recall@20 against exact 0.97 and 0.95. Building costs about 14 s per 100k items
  on one thread (315 s at 1M), so it only pays for large catalogues.

``backend="auto"`` builds the index when the catalogue has at least ``ANN_THRESHOLD`` items (250k: where the
exact path passes ~4 ms per query on one core; below it exact is fast enough and needs no build) and the
exact path otherwise. ANN candidates are rescored exactly, so the returned scores are true inner products,
ordered like the exact path (ties by lower item index).

Known items are excluded by over-fetching ``k + len(exclude)`` candidates and filtering; the over-fetch is
bounded by ``MAX_OVERFETCH``. When a user knows more items than that bound, or filtering leaves fewer than
``k`` (the graph returned too few), the query falls back to the exact path, so exclusion is never traded
for speed. Each answer says which path produced it.

The build is deterministic: usearch assigns HNSW levels from a fixed internal seed, and we insert in item
order on one thread (``build_threads=1``, the default), so the same vectors give a byte-identical index.
More build threads are faster but the graph then depends on scheduling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANN_THRESHOLD = 250_000
MAX_OVERFETCH = 4_096
_CHUNK_CELLS = 4_000_000  # items × queries per exact block: 16 MB of float32 scores


@dataclass
class Result:
    """Best items for one query: ``items`` (indices into the catalogue, best first) and their inner-product
    ``scores``; ``path`` is ``exact`` or ``ann`` (the one that answered)."""

    items: np.ndarray
    scores: np.ndarray
    path: str


class ItemIndex:
    """Top-k inner-product search over ``vectors`` (n_items × dim). ``backend``: ``auto``, ``exact``, ``ann``."""

    def __init__(self, vectors: np.ndarray, *, backend: str = "auto", threshold: int = ANN_THRESHOLD,
                 connectivity: int = 16, expansion_add: int = 128, expansion_search: int = 64,
                 build_threads: int = 1, search_threads: int = 1):
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
            raise ValueError(f"vectors must be a non-empty 2-D array (items × dim), got shape {vectors.shape}")
        if not np.issubdtype(vectors.dtype, np.number):
            raise ValueError(f"vectors must be numeric, got dtype {vectors.dtype}")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not np.isfinite(self.vectors).all():
            raise ValueError("vectors must be finite (no NaN or inf)")
        if backend not in ("auto", "exact", "ann"):
            raise ValueError(f"backend must be one of auto, exact, ann; got {backend!r}")
        if build_threads < 1 or search_threads < 1:
            raise ValueError("build_threads and search_threads must be at least 1")
        self.n_items, self.dim = self.vectors.shape
        self.search_threads = search_threads
        self.index = None
        if backend == "ann" or (backend == "auto" and self.n_items >= threshold):
            from usearch.index import Index

            self.index = Index(ndim=self.dim, metric="ip", dtype="f32", connectivity=connectivity,
                               expansion_add=expansion_add, expansion_search=expansion_search)
            self.index.add(np.arange(self.n_items, dtype=np.uint64), self.vectors, threads=build_threads)
        self.backend = "ann" if self.index is not None else "exact"

    def save(self, path) -> None:
        """Write the HNSW graph (ann backend only) so a later process can ``load`` it instead of rebuilding."""
        if self.index is None:
            raise ValueError("only an ann-backed index has a graph to save")
        self.index.save(str(path))

    @classmethod
    def load(cls, vectors: np.ndarray, path, *, search_threads: int = 1) -> ItemIndex:
        """An ann-backed index over ``vectors`` from a graph ``save`` wrote for the same vectors."""
        from usearch.index import Index

        out = cls(vectors, backend="exact", search_threads=search_threads)
        index = Index.restore(str(path))
        if index is None or len(index) != out.n_items or index.ndim != out.dim:
            raise ValueError(f"{path} is not an index of these {out.n_items} x {out.dim} vectors")
        out.index, out.backend = index, "ann"
        return out

    def search(self, query: np.ndarray, k: int, exclude=None, *, exact: bool = False) -> Result:
        """The ``k`` best items for one query vector, none of them in ``exclude`` (item indices); fewer than
        ``k`` only when the catalogue minus ``exclude`` has fewer. ``exact=True`` forces the exact path."""
        q = self._query(query)
        k = self._k(k)
        excl = self._exclude(exclude)
        k_eff = min(k, self.n_items - excl.size)
        if k_eff <= 0:
            return Result(np.empty(0, np.int64), np.empty(0, np.float32), "exact")
        if self.index is not None and not exact and k_eff + excl.size <= MAX_OVERFETCH:
            res = self._ann(q, k_eff, excl)
            if res is not None:
                return res
        items, scores = exact_top_k(self.vectors, q[None, :], k_eff, [excl])
        return Result(items[0], scores[0], "exact")

    def _ann(self, q: np.ndarray, k: int, excl: np.ndarray) -> Result | None:
        fetch = min(self.n_items, k + excl.size)
        found = self.index.search(q, fetch, threads=self.search_threads)
        cand = np.asarray(found.keys, dtype=np.int64)
        if excl.size:
            cand = cand[~np.isin(cand, excl)]
        if cand.size < k:
            return None
        scores = self.vectors[cand] @ q
        order = np.lexsort((cand, -scores))[:k]
        return Result(cand[order], scores[order], "ann")

    def _query(self, query) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32)
        if q.ndim != 1:
            raise ValueError(f"query must be one vector (1-D), got shape {q.shape}")
        if q.size != self.dim:
            raise ValueError(f"query dim {q.size} does not match the index dim {self.dim}")
        if not np.isfinite(q).all():
            raise ValueError("query must be finite (no NaN or inf)")
        return np.ascontiguousarray(q)

    @staticmethod
    def _k(k) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        return int(k)

    def _exclude(self, exclude) -> np.ndarray:
        if exclude is None:
            return np.empty(0, np.int64)
        e = np.unique(np.asarray(exclude, dtype=np.int64).ravel())
        if e.size and (e[0] < 0 or e[-1] >= self.n_items):
            raise ValueError(f"exclude holds item indices outside 0..{self.n_items - 1}")
        return e


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force reference: the ``k`` best items by inner product for each row of ``queries``, scoring the
    catalogue in chunks (at most ``_CHUNK_CELLS`` scores in memory) and keeping a running top-k. ``exclude``:
    one array of item indices per query, or None. Ties go to the lower item index. Returns (items, scores),
    each (n_queries × min(k, n_items)); a slot with no item left holds -1 / -inf."""
    vectors = np.asarray(vectors, dtype=np.float32)
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    if vectors.ndim != 2 or queries.ndim != 2:
        raise ValueError(f"vectors must be 2-D (items × dim) and queries 1-D or 2-D, got shapes {vectors.shape} "
                         f"and {queries.shape}")
    if queries.shape[1] != vectors.shape[1]:
        raise ValueError(f"query dim {queries.shape[1]} does not match the item dim {vectors.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    n_items, n_q = vectors.shape[0], queries.shape[0]
    k_eff = min(int(k), n_items)
    best_i = np.full((n_q, k_eff), -1, dtype=np.int64)
    best_s = np.full((n_q, k_eff), -np.inf, dtype=np.float32)
    chunk = max(k_eff, _CHUNK_CELLS // max(1, n_q))
    for lo in range(0, n_items, chunk):
        hi = min(n_items, lo + chunk)
        s = queries @ vectors[lo:hi].T
        if exclude is not None:
            for r, e in enumerate(exclude):
                e = np.asarray(e, dtype=np.int64)
                e = e[(e >= lo) & (e < hi)]
                s[r, e - lo] = -np.inf
        idx = np.broadcast_to(np.arange(lo, hi, dtype=np.int64), s.shape)
        all_s = np.concatenate([best_s, s], axis=1)
        all_i = np.concatenate([best_i, idx], axis=1)
        if all_s.shape[1] > k_eff:
            part = np.argpartition(-all_s, k_eff - 1, axis=1)[:, :k_eff]
            # argpartition may split a tie at the boundary arbitrarily; exact ties are rare in float scores and
            # the order among the kept ones is fixed below
            all_s = np.take_along_axis(all_s, part, axis=1)
            all_i = np.take_along_axis(all_i, part, axis=1)
        order = np.lexsort((np.where(all_i < 0, np.iinfo(np.int64).max, all_i), -all_s), axis=1)
        best_s = np.take_along_axis(all_s, order, axis=1)
        best_i = np.take_along_axis(all_i, order, axis=1)
    best_i[~np.isfinite(best_s)] = -1
    return best_i, best_s
