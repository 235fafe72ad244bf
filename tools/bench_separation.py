"""Benchmark: the batched Demucs runner against stock ``demucs.apply.apply_model``, same process, same model.

The model has the released htdemucs shape (4 sources, 48 channels, depth 4, 5 cross-transformer
layers, 512 bottom channels, 7.8 s segments, 44.1 kHz) with random weights: speed does not depend
on the weights, and no download is needed. Tracks are stereo noise at 44.1 kHz.

For N concurrent requests the stock baseline is the better of (a) N ``apply_model`` calls one after
another and (b) N ``apply_model`` calls in N threads at once (what a naive server does); ours is N
requests submitted together to one ``DemucsRunner``. Both use shifts=0, overlap=0.25. Reported:
seconds of audio separated per wall-clock second.

    python tools/bench_separation.py            # 30 s tracks, concurrency 1 and 4
    python tools/bench_separation.py --quick    # 10 s tracks, sequential stock only
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_threads import in_thread  # noqa: E402 - tools/ is on sys.path when run as a script


def htdemucs_shaped():
    import torch
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    return HTDemucs(sources=["drums", "bass", "other", "vocals"], channels=48, depth=4, nfft=4096, t_layers=5,
                    bottom_channels=512, dconv_mode=3, segment=Fraction(39, 5), samplerate=44100).eval()


def stock(model, mixes, threaded: bool) -> float:
    from demucs.apply import apply_model

    t0 = time.perf_counter()
    if threaded and len(mixes) > 1:
        threads = [threading.Thread(target=apply_model, args=(model, m), kwargs={"shifts": 0}) for m in mixes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for m in mixes:
            apply_model(model, m, shifts=0)
    return time.perf_counter() - t0


def ours(make_runner, mixes, warm) -> float:
    """A fresh runner per measurement, closed afterwards, so its worker threads (and their OpenMP teams) are
    gone before stock runs again (see in_thread)."""
    runner = make_runner()
    try:
        runner.submit(warm).result()
        t0 = time.perf_counter()
        tickets = [runner.submit(m) for m in mixes]
        for t in tickets:
            t.result()
        return time.perf_counter() - t0
    finally:
        runner.close()


def main() -> None:
    import torch

    from echotune_mcp.engine.demucs_runner import DemucsRunner
    from echotune_mcp.engine.separation_backend import default_batch, default_workers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 s tracks, sequential stock baseline only")
    ap.add_argument("--seconds", type=float, default=None, help="track length (default 30, quick 10)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--max-batch", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None, help="runner worker threads (default: the device's)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    device = args.device
    model = in_thread(lambda: htdemucs_shaped().to(device))
    batch = args.max_batch or default_batch(device)
    workers = args.workers or default_workers(device)

    def make_runner():
        return DemucsRunner(model, device=device, max_batch=batch, workers=workers)

    g = torch.Generator().manual_seed(0)

    def noise(count: int, samples: int) -> list:
        return [(0.1 * torch.randn(1, 2, samples, generator=g)).to(device) for _ in range(count)]

    (warm,) = in_thread(noise, 1, 8 * 44100)
    in_thread(stock, model, [warm], False)
    rows = []
    for n in args.concurrency:
        mixes = in_thread(noise, n, int(seconds * 44100))
        t_stock = in_thread(stock, model, mixes, threaded=False)
        how = "sequential"
        if not args.quick and n > 1:
            t_thr = in_thread(stock, model, mixes, threaded=True)
            if t_thr < t_stock:
                t_stock, how = t_thr, "threaded"
        t_ours = ours(make_runner, mixes, warm)
        audio = n * seconds
        rows.append({"bench": "separation", "concurrency": n, "audio_s_per_s": round(audio / t_ours, 3),
                     "stock_audio_s_per_s": round(audio / t_stock, 3), "ratio": round(t_stock / t_ours, 3),
                     "device": device, "track_s": seconds, "max_batch": batch, "workers": workers,
                     "stock_mode": how})
    print(f"\nseparation benchmark: htdemucs-shaped random weights, {seconds:g} s stereo tracks, {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"{'concurrency':>11} {'ours audio-s/s':>15} {'stock audio-s/s':>16} {'ratio':>6}  stock mode")
    for r in rows:
        print(f"{r['concurrency']:>11} {r['audio_s_per_s']:>15.3f} {r['stock_audio_s_per_s']:>16.3f} "
              f"{r['ratio']:>6.2f}  {r['stock_mode']}")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
