"""Batch recommendation from files: TRAIN.tsv + USERS.txt (+ FEATURES.csv) -> RECS.tsv.

What the command does, in order:
1. Reads and validates every input before fitting anything (interactions.InputError names file, line, problem).
2. Fits the blend (item-kNN, EASE, ALS, popularity, and a content model when FEATURES is given). When TRAIN has
   at least ``MIN_TUNE_USERS`` users with 2+ items, the blend weights are fitted on a validation split carved
   from TRAIN's own users (10 %, 20 % of each one's items hidden, fixed seed), then the blend is refitted on all
   of TRAIN; smaller TRAIN files use ``DEFAULT_WEIGHTS``.
3. Writes K rows per requested user, best first, never an item that user has in TRAIN:
   * a user absent from TRAIN (cold) gets the most popular items (by number of TRAIN users), score = log(1+n);
   * the catalogue is TRAIN's items plus FEATURES' items (items with features but no interactions can be
     recommended through the content model); a user who already has all but r < K of them gets those r rows.
   The summary (stderr, one JSON line) counts cold users and users with fewer than K rows.
The output is written to a temporary file next to RECS and renamed into place, so RECS is never half-written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .evaluate import split_users, tune_blend
from .interactions import InputError, Interactions, read_item_features, read_train_tsv, read_users
from .models import ALS, EASE, Blend, Content, ItemKNN, Model, Popularity, batched, top_k

K_MAX = 1000
MIN_TUNE_USERS = 50
# Used when TRAIN is too small to carve a validation split; close to what validation picked on Last.fm-2k over three
# seeds (item-kNN 0.25-0.5, EASE 0.5-1, ALS 1; docs/RECOMMENDATION.md).
DEFAULT_WEIGHTS = {"popularity": 0.0, "itemknn": 0.5, "ease": 1.0, "als": 1.0, "content": 1.0}


@dataclass
class BatchReport:
    users: int = 0
    known_users: int = 0
    cold_users: int = 0
    short_users: int = 0
    items: int = 0
    feature_items: int = 0
    train_items_with_features: int = 0
    rows_written: int = 0
    weights: dict[str, float] = field(default_factory=dict)
    weights_from: str = ""
    fit_s: float = 0.0
    total_s: float = 0.0


def _components(features, seed: int) -> dict[str, Callable[..., Model]]:
    out: dict[str, Callable[..., Model]] = {"popularity": lambda _s=None: Popularity(),
                                            "itemknn": lambda _s=None: ItemKNN(), "ease": lambda _s=None: EASE(),
                                            "als": lambda _s=None: ALS(seed=seed)}
    if features is not None:
        out["content"] = lambda _s=None: Content(features)
    return out


def run_batch(train: str | Path, users: str | Path, k: int, out: str | Path,
              item_features: str | Path | None = None, seed: int = 0) -> BatchReport:
    """The ``recommend batch`` command as a function (see the module docstring for the contract)."""
    t0 = time.perf_counter()
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= K_MAX:
        raise InputError(f"--k {k!r} is out of range (allowed: an integer from 1 to {K_MAX})")
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"{out}: the folder for RECS does not exist")
    u, i, w = read_train_tsv(train)
    wanted = read_users(users)
    feats = read_item_features(item_features) if item_features is not None else None
    data = Interactions.from_triples(u, i, w, extra_items=feats.item_ids if feats is not None else None)
    features = feats.aligned(data.item_ids) if feats is not None else None
    report = BatchReport(users=len(wanted), items=data.n_items,
                         feature_items=len(feats.item_ids) if feats is not None else 0)
    if feats is not None:
        train_items = set(i)
        report.train_items_with_features = sum(1 for it in feats.item_ids if it in train_items)
        if not report.train_items_with_features:
            raise InputError(f"{item_features}: no item id in FEATURES matches an item in TRAIN (first column must "
                             "hold the same item ids as TRAIN's item column)")

    components = _components(features, seed)
    eligible = int((np.diff(data.matrix.indptr) >= 2).sum())
    if eligible >= MIN_TUNE_USERS:
        split = split_users(data, val_frac=0.1, test_frac=0.0, holdout=0.2, seed=seed)
        weights = tune_blend(components, [split.phase("validation")], k=min(max(k, 10), 50))
        report.weights_from = f"tuned on {len(split.val)} validation users carved from TRAIN"
    else:
        weights = {key: DEFAULT_WEIGHTS[key] for key in components}
        report.weights_from = f"defaults (TRAIN has {eligible} users with 2+ items, fewer than {MIN_TUNE_USERS})"
    if not any(weights.values()):
        weights = {key: DEFAULT_WEIGHTS[key] for key in weights}
    report.weights = weights
    t_fit = time.perf_counter()
    blend = Blend({key: make() for key, make in components.items()}, weights).fit(data.matrix)
    popular = Popularity().fit(data.matrix)
    report.fit_s = round(time.perf_counter() - t_fit, 2)

    known_rows = np.array([data.user_index[x] for x in wanted if x in data.user_index], dtype=np.int64)
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for b in batched(len(known_rows), data.n_items):
        rows = known_rows[b]
        items, scores = top_k(blend.score(rows), data.matrix[rows], k)
        for r, it, sc in zip(rows, items, scores):
            results[data.user_ids[r]] = (it, sc)
    nothing_known = sp.csr_matrix((1, data.n_items), dtype=np.float32)
    cold_items, cold_scores = top_k(popular.score(np.arange(1)), nothing_known, k)

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write("user\titem\trank\tscore\n")
            for user in wanted:
                if user in results:
                    items, scores = results[user]
                    report.known_users += 1
                else:
                    items, scores = cold_items[0], cold_scores[0]
                    report.cold_users += 1
                valid = items >= 0
                if valid.sum() < k:
                    report.short_users += 1
                for rank, (it, sc) in enumerate(zip(items[valid], scores[valid]), start=1):
                    fh.write(f"{user}\t{data.item_ids[it]}\t{rank}\t{sc:.6g}\n")
                    report.rows_written += 1
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    report.total_s = round(time.perf_counter() - t0, 2)
    return report
