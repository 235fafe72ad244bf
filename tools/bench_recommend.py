"""Recommendation serving speed: top-k for one user over N synthetic items, on ONE core.

    .venv/bin/python tools/bench_recommend.py [--items 100000 1000000] [--dim 64] [--k 20]

Item and user vectors are synthetic ALS-like factors (64-dim by default): clustered around a few hundred taste
centres plus noise, so neighbourhoods exist as they do in real factors (pure Gaussian noise is a harder, less
realistic case for any ANN). Each user has ``--known`` items already played, excluded from the answer.

For each N it measures both paths of echotune_mcp/recommend/ann.py:
  * exact: chunked BLAS scores + partial sort (no build);
  * ann:   usearch HNSW, built on one thread (``fit_s`` = index build time from given factors);
and reports per-query latency p50/p99 over ``--queries`` users, recall@k of ANN against exact, and peak RSS.
Threads are pinned to one (OpenBLAS/OMP/MKL env before numpy loads, threadpoolctl, and usearch's ``threads``).

Prints a table, then one JSON line per (N, path):
    {"bench": "recommend", "items": N, "p50_ms": ..., "p99_ms": ..., "fit_s": ..., "backend": ..., ...}
Numbers are recorded in docs/BENCHMARKS.md ("Recommendation").
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads: a benchmark's process setting, not a server setting

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from echotune_mcp.recommend.ann import ItemIndex, exact_top_k  # noqa: E402


def synthetic(n_items: int, n_users: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((256, dim)).astype(np.float32)
    items = np.empty((n_items, dim), dtype=np.float32)
    for lo in range(0, n_items, 100_000):  # bounded temporaries at 1M
        hi = min(n_items, lo + 100_000)
        items[lo:hi] = centres[rng.integers(0, 256, hi - lo)]
        items[lo:hi] += 0.5 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
    users = centres[rng.integers(0, 256, n_users)] + 0.5 * rng.standard_normal((n_users, dim), dtype=np.float32)
    return items, users.astype(np.float32)


def timed(index: ItemIndex, users: np.ndarray, known: list[np.ndarray], k: int, exact: bool):
    lat, results = [], []
    for u, kn in zip(users, known):
        t = time.perf_counter()
        res = index.search(u, k, exclude=kn, exact=exact)
        lat.append(time.perf_counter() - t)
        results.append(res)
    ms = np.asarray(lat) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), results


def recall_at(results, ref: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(r.items.tolist()) & set(f.tolist())) / k for r, f in zip(results, ref)]))


def run(n_items: int, args) -> list[dict]:
    items, users = synthetic(n_items, args.queries, args.dim, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    known = [rng.choice(n_items, args.known, replace=False) for _ in range(args.queries)]
    ref, _ = exact_top_k(items, users, args.k, known)  # reference answers, batched
    rows = []

    index = ItemIndex(items, backend="exact")
    timed(index, users[:20], known[:20], args.k, exact=True)  # warm-up
    p50, p99, res = timed(index, users, known, args.k, exact=True)
    # one query (gemv) and the batched reference (gemm) round differently in the last bit, so near-ties may swap
    exact_recall = recall_at(res, ref, args.k)
    assert exact_recall >= 0.99, f"exact path disagrees with the batched reference (recall {exact_recall})"
    rows.append({"bench": "recommend", "items": n_items, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                 "fit_s": 0.0, "backend": "exact", "recall_at_%d" % args.k: round(exact_recall, 4)})

    t = time.perf_counter()
    index = ItemIndex(items, backend="ann", build_threads=1, search_threads=1,
                      expansion_search=args.expansion_search)
    fit_s = time.perf_counter() - t
    timed(index, users[:20], known[:20], args.k, exact=False)
    p50, p99, res = timed(index, users, known, args.k, exact=False)
    recall = recall_at(res, ref, args.k)
    leaked = sum(bool(set(r.items.tolist()) & set(kn.tolist())) for r, kn in zip(res, known))
    assert leaked == 0, f"{leaked} answers contain known items"
    rows.append({"bench": "recommend", "items": n_items, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                 "fit_s": round(fit_s, 2), "backend": "ann-usearch-hnsw", "recall_at_%d" % args.k: round(recall, 4),
                 "exact_fallbacks": sum(r.path == "exact" for r in res)})
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    for r in rows:
        r.update(dim=args.dim, k=args.k, queries=args.queries, known_per_user=args.known,
                 peak_rss_gib=round(peak_gib, 2))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--queries", type=int, default=1000, help="users timed per N (one query each)")
    ap.add_argument("--known", type=int, default=50, help="known items per user, excluded from answers")
    ap.add_argument("--expansion-search", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    all_rows = []
    with threadpool_limits(1):
        for n in args.items:
            all_rows += run(n, args)
    rk = "recall_at_%d" % args.k
    print(f"{'items':>9} {'backend':>17} {'fit_s':>8} {'p50_ms':>8} {'p99_ms':>8} {rk:>12} {'peak_GiB':>9}")
    for r in all_rows:
        print(f"{r['items']:>9} {r['backend']:>17} {r['fit_s']:>8.2f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
              f"{r[rk]:>12.4f} {r['peak_rss_gib']:>9.2f}")
    for r in all_rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
