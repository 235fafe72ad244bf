"""Benchmark the offline composer: a 60 s, 4-stem piece through compose, render and mix, on one core.

Prints a small table, then exactly one JSON line for machines:
{"bench": "composer", "seconds": 60, "stems": 4, "rtf_compose": a, "rtf_render": b, "rtf_mix": c, "rtf_total": d}
RTF = seconds of audio per second of wall time (higher is faster). Best of --repeat runs.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported, so BLAS stays on the pinned core

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from echotune_mcp.music.composer import compose
from echotune_mcp.music.master import mix_and_master
from echotune_mcp.music.params import resolve_params
from echotune_mcp.music.render import render_stems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sample-rate", type=int, default=44100)
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        pinned = "1 core"
    except (AttributeError, OSError):
        pinned = "not pinned"
    # funk has no texture stem by default: drums, bass, chords, lead = 4 stems
    params = resolve_params("funk groove in E minor", duration_s=args.seconds, bpm=104, seed=1)
    best = {"compose": float("inf"), "render": float("inf"), "mix": float("inf"), "total": float("inf")}
    n_stems = 0
    render_stems(compose(resolve_params("funk", duration_s=2, seed=1)), args.sample_rate)  # load libraries once
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        arr = compose(params)
        t1 = time.perf_counter()
        stems = render_stems(arr, args.sample_rate)
        t2 = time.perf_counter()
        mix_and_master(stems, args.sample_rate)
        t3 = time.perf_counter()
        n_stems = len(stems)
        for k, v in (("compose", t1 - t0), ("render", t2 - t1), ("mix", t3 - t2), ("total", t3 - t0)):
            best[k] = min(best[k], v)
    secs = args.seconds
    rtf = {k: round(secs / v, 1) for k, v in best.items()}
    print(f"composer benchmark: {secs:g} s of music, {n_stems} stems, {args.sample_rate} Hz, {pinned}, "
          f"best of {args.repeat}")
    print(f"{'stage':<10}{'wall s':>10}{'x real time':>14}")
    for k in ("compose", "render", "mix", "total"):
        print(f"{k:<10}{best[k]:>10.3f}{rtf[k]:>14.1f}")
    print(json.dumps({"bench": "composer", "seconds": int(secs) if float(secs).is_integer() else secs,
                      "stems": n_stems, "rtf_compose": rtf["compose"], "rtf_render": rtf["render"],
                      "rtf_mix": rtf["mix"], "rtf_total": rtf["total"]}))


if __name__ == "__main__":
    main()
