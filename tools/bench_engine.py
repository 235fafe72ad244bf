"""Benchmark: the batched MusicGen engine against transformers' ``generate``, one request at a time.

A musicgen-small-shaped model with random weights (24 layers, width 1024, 4 codebooks, T5-base
text encoder), classifier-free guidance on, 50 decode steps per request, sampling with top-k 250
(MusicGen's defaults). EnCodec decoding is left out of both sides: it is the same code either way.

Prints a table and one JSON line per concurrency:
  {"bench": "engine", "concurrency": N, "steps_per_s": x, "stock_steps_per_s": y, "ratio": x/y, "device": "cpu"}
plus the memory-bandwidth bound (weight bytes read per step / measured copy bandwidth).

    python tools/bench_engine.py [--device cpu|cuda] [--concurrency 1,4,8,16] [--steps 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from bench_threads import in_thread  # noqa: E402 - tools/ is on sys.path when run as a script

from echotune_mcp.engine import cpu_gemm
from echotune_mcp.engine.device import generation_dtype, pick_device
from echotune_mcp.engine.engine import Engine, GenerationRequest
from echotune_mcp.engine.musicgen_sequence import SamplingParams
from echotune_mcp.engine.musicgen_shapes import build_random_musicgen

PROMPTS = [[37, 2150, 9, 3, 5, 1692, 8, 5, 15, 9, 1], [3, 58, 1013, 7, 120, 1], [86, 1033, 19, 200, 45, 3, 7, 1]]


def copy_bandwidth(device: str) -> float:
    """Bytes moved per second (read + write) copying a 512 MB buffer."""
    a = torch.empty(128 * 1024 * 1024, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        t = time.perf_counter()
        b.copy_(a)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * a.numel() * a.element_size() / best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def weight_bytes_per_step(model, dtype: torch.dtype) -> int:
    """Decoder weights a decode step must read: self-attn, cross-attn q/out, FFN, LM heads."""
    dec = model.decoder.model.decoder
    elem = torch.finfo(dtype).bits // 8
    n = 0
    for layer in dec.layers:
        for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.out_proj,
                    layer.encoder_attn.q_proj, layer.encoder_attn.out_proj, layer.fc1, layer.fc2):
            n += lin.weight.numel()
    n += sum(h.weight.numel() for h in model.decoder.lm_heads)
    return n * elem


def stock_rate(model, steps: int, device: str, repeats: int) -> float:
    model.audio_encoder.decode = lambda codes, **kw: type("Out", (), {"audio_values": codes})()
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            ids = torch.tensor([PROMPTS[i % len(PROMPTS)]], device=device)
            _sync(device)
            t = time.perf_counter()
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps, do_sample=True,
                           top_k=250, guidance_scale=3.0)
            _sync(device)
            if i:  # the first run warms up
                times.append(time.perf_counter() - t)
    return steps / statistics.median(times)


async def engine_rate(engine: Engine, concurrency: int, steps: int) -> float:
    reqs = [GenerationRequest("bench", steps, PROMPTS[i % len(PROMPTS)],
                              SamplingParams(do_sample=True, top_k=250, guidance_scale=3.0, seed=i), decode_audio=False)
            for i in range(concurrency)]
    t = time.perf_counter()
    handles = [await engine.submit(r) for r in reqs]
    for h in handles:
        await h.result()
    return concurrency * steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cpu, cuda or mps (default: picked at run time)")
    ap.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: what the engine picks for the device)")
    ap.add_argument("--concurrency", default="1,4,8,16")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    def prepare():
        choice = pick_device(args.device)
        device, dtype = choice.device, getattr(torch, generation_dtype(choice, args.dtype))
        t = time.perf_counter()
        model = build_random_musicgen("small", seed=0).to(device)
        build_s = time.perf_counter() - t
        bw = copy_bandwidth(device)
        wbytes = weight_bytes_per_step(model, dtype)
        stock = stock_rate(model.to(dtype), args.steps, device, args.repeats)
        return device, dtype, model, build_s, bw, wbytes, stock

    device, dtype, model, build_s, bw, wbytes, stock = in_thread(prepare)
    bound = bw / wbytes
    engine = Engine(max_slots=max(int(c) for c in args.concurrency.split(",")), device=device, dtype=dtype)
    engine.add_model("bench", model)
    asyncio.run(engine_rate(engine, 1, 8))  # warm-up
    rows = []
    for c in (int(x) for x in args.concurrency.split(",")):
        rate = max(asyncio.run(engine_rate(engine, c, args.steps)) for _ in range(args.repeats))
        rows.append({"bench": "engine", "concurrency": c, "steps_per_s": round(rate, 2),
                     "stock_steps_per_s": round(stock, 2), "ratio": round(rate / stock, 2), "device": device,
                     "dtype": str(dtype).split(".")[-1]})
    engine.close()
    kernel = cpu_gemm.runs(device.split(":")[0], dtype)
    matmuls = ("engine's AVX-512 kernel, float32 arithmetic" if kernel else
               f"oneDNN ({cpu_gemm.unavailable_reason()})" if device == "cpu" else "torch")
    for r in rows:
        r["matmuls"] = "cpu_gemm" if kernel else "onednn" if device == "cpu" else "torch"
    print(f"# musicgen-small shape, random weights (built in {build_s:.0f} s), {device} {str(dtype).split('.')[-1]}, "
          f"{torch.get_num_threads()} threads, CFG 3.0, top-k 250, {args.steps} decode steps per request; "
          f"engine matmuls: {matmuls}")
    print(f"# weights read per decode step: {wbytes / 1e9:.2f} GB; copy bandwidth {bw / 1e9:.1f} GB/s "
          f"-> bandwidth bound {bound:.1f} steps/s for one batch step (stock reaches {stock / bound:.0%} of it)")
    print(f"{'concurrency':>11} {'steps/s':>9} {'stock':>7} {'ratio':>6} {'per request':>12} {'of bound':>9}")
    for r in rows:
        per_step = r["steps_per_s"] / r["concurrency"]
        print(f"{r['concurrency']:>11} {r['steps_per_s']:>9.1f} {r['stock_steps_per_s']:>7.1f} {r['ratio']:>5.2f}x "
              f"{per_step:>12.1f} {per_step / bound:>8.0%}")
    for r in rows:
        print(json.dumps(r))
    print(json.dumps({"bench": "engine_bound", "weight_bytes_per_step": wbytes, "copy_bandwidth_gbs": round(bw / 1e9, 2),
                      "bound_steps_per_s": round(bound, 2), "device": device, "dtype": str(dtype).split(".")[-1]}))


if __name__ == "__main__":
    main()
