"""Issue #13 item 1: the MusicGen engine never wedges.

Long pieces are generated window by window (audiocraft's ``extend_stride``) and equal a windowed reference
built from transformers' own ``generate``; a failure inside a decode step fails only the requests it touched
and the worker keeps serving; a worker that dies (or stops) leaves no request waiting; the KV cache counts
against the model memory budget and is released when the engine is idle.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

pytest.importorskip("transformers")

from echotune_mcp.engine.engine import Engine, GenerationRequest, RequestCancelled
from echotune_mcp.engine.musicgen_sequence import SamplingParams
from echotune_mcp.engine.musicgen_shapes import build_random_musicgen
from tests.engine.test_musicgen_engine import stock_codes

GREEDY = SamplingParams(do_sample=False, guidance_scale=3.0)
K = 4  # the tiny model's codebooks
BOUND_S = 20.0  # no engine event may take longer than this on a tiny model


@pytest.fixture(scope="module")
def tiny():
    return build_random_musicgen("tiny", seed=1)


def windowed_reference(model, text_ids, total_frames, window, stride, prompt=None):
    """audiocraft's ``MusicGen._generate_tokens`` extend loop, each window run by transformers' ``generate``.

    Windows hold at most ``window`` frames; the last ``window - stride`` frames of one window are the next
    one's prompt (``decoder_input_ids``); each window's new frames are appended.
    """
    pieces, offset = [], 0
    prompt_len = 0 if prompt is None else prompt.shape[1]
    if prompt is not None:
        pieces.append(prompt)
    while offset + prompt_len < total_frames:
        chunk = min(total_frames - offset, window)
        codes = stock_codes(model, text_ids, chunk - prompt_len + K - 1, prompt_codes=prompt,
                            do_sample=False, guidance_scale=3.0)
        assert codes.shape[1] == chunk
        pieces.append(codes[:, prompt_len:])
        prompt = codes[:, stride:]
        prompt_len = prompt.shape[1]
        offset += stride
    return torch.cat(pieces, dim=1)


async def final(handle):
    return await asyncio.wait_for(handle.result(), BOUND_S)


# -- long pieces -----------------------------------------------------------------------------------------
def test_long_piece_is_generated_window_by_window_like_generate(tiny):
    window, stride = 24, 16
    frames = 57  # four windows: 0-24, 16-40, 32-56, 48-57
    want = windowed_reference(tiny, [5, 6, 7], frames, window, stride)
    want_short = stock_codes(tiny, [11, 12], 10, do_sample=False, guidance_scale=3.0)  # one window: unchanged
    prompt = torch.randint(0, 64, (K, 6), generator=torch.Generator().manual_seed(3))
    want_cont = windowed_reference(tiny, [9, 8], 6 + 30, window, stride, prompt=prompt)
    engine = Engine(max_slots=4)
    worker = engine.add_model("tiny", tiny)
    worker.runner.set_window(window, stride)

    async def scenario():
        long = await engine.submit(GenerationRequest("tiny", frames + K - 1, [5, 6, 7], GREEDY, preview_every_s=0.02))
        short = await engine.submit(GenerationRequest("tiny", 10, [11, 12], GREEDY))
        cont = await engine.submit(GenerationRequest("tiny", 30 + K - 1, [9, 8], GREEDY, prompt_codes=prompt))
        events = [e async for e in long.events()]
        previews = [e.audio.shape[-1] for e in events if e.kind == "preview"]
        progress = [e.fraction for e in events if e.kind == "progress"]
        return events[-1], previews, progress, await final(short), await final(cont)

    try:
        result, previews, progress, short, cont = asyncio.run(scenario())
    finally:
        engine.close()
    assert result.kind == "result" and result.codes.shape == (K, frames)
    assert torch.equal(result.codes, want)
    assert torch.equal(short.codes, want_short)
    assert torch.equal(cont.codes, want_cont) and torch.equal(cont.codes[:, :6], prompt)
    # previews run across windows (the audio so far keeps growing past the first window's 24 frames)
    assert previews == sorted(previews) and previews[-1] > 24 * 32
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_melody_windows_follow_the_melody_from_each_window_start():
    from echotune_mcp.engine.engine import CHROMA_RATE
    from echotune_mcp.engine.melody_chroma import chroma_onehot

    melody = build_random_musicgen("tiny", seed=4, melody=True)
    t = torch.arange(32000) / 32000
    tune = torch.sin(2 * torch.pi * 440 * t) * (t < 0.5) + torch.sin(2 * torch.pi * 330 * t) * (t >= 0.5)
    chroma = torch.as_tensor(chroma_onehot(tune.numpy(), 32000))
    window, stride, frames, fps = 300, 200, 450, 500  # two windows; the second starts 0.4 s in
    first = stock_codes(melody, [5, 6], window + K - 1, chroma=chroma, do_sample=False, guidance_scale=3.0)
    shift = round(stride / fps * CHROMA_RATE)
    assert shift % chroma.shape[0]  # the second window really hears the melody from a later point
    second = stock_codes(melody, [5, 6], frames - window + K - 1, prompt_codes=first[:, stride:],
                         chroma=torch.roll(chroma, -shift, dims=0), do_sample=False, guidance_scale=3.0)
    want = torch.cat([first, second[:, window - stride:]], dim=1)
    engine = Engine(max_slots=2)
    engine.add_model("melody", melody).runner.set_window(window, stride)
    try:
        got = asyncio.run(_one(engine, GenerationRequest("melody", frames + K - 1, [5, 6], GREEDY,
                                                         melody_chroma=chroma)))
    finally:
        engine.close()
    assert got.codes.shape == (K, frames) and torch.equal(got.codes, want)


async def _one(engine, request):
    return await final(await engine.submit(request))


def test_default_window_is_30_s_with_a_10_s_overlap_and_positions_grow(tiny):
    engine = Engine(max_slots=2)
    runner = engine.add_model("tiny", tiny).runner
    try:
        fps = runner.frame_rate
        assert (runner.window_frames, runner.stride_frames) == (30 * fps, 20 * fps)
        with pytest.raises(ValueError, match="stride"):
            runner.set_window(10, 10)
        runner.ensure_capacity(5000)  # longer than the 4,096 rows the position table started with
        assert runner.positions.shape[0] >= 5000
    finally:
        engine.close()


# -- failures inside a step ------------------------------------------------------------------------------
def test_a_failing_step_fails_its_requests_and_the_worker_keeps_serving(tiny):
    want = stock_codes(tiny, [5, 6, 7], 20, do_sample=False, guidance_scale=3.0)
    engine = Engine(max_slots=4)
    worker = engine.add_model("tiny", tiny)
    real = worker.runner.decode_step
    calls = {"n": 0, "failed": False}

    def flaky(tokens, positions):
        # Fail the first step that carries both requests: b may be admitted a few steps after a has started, and a
        # failure injected before then would (rightly) leave b untouched.
        calls["n"] += 1
        if not calls["failed"] and len(worker.scheduler.running) >= 2:
            calls["failed"] = True
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(tokens, positions)

    worker.runner.decode_step = flaky

    async def scenario():
        a = await engine.submit(GenerationRequest("tiny", 40, [1, 2], GREEDY))
        b = await engine.submit(GenerationRequest("tiny", 40, [3], GREEDY))
        for h in (a, b):
            with pytest.raises(RuntimeError, match=r"decode step failed: OutOfMemoryError: CUDA out of memory"):
                await final(h)
        assert not worker.scheduler.running and worker.is_alive()
        return await final(await engine.submit(GenerationRequest("tiny", 20, [5, 6, 7], GREEDY)))

    try:
        after = asyncio.run(scenario())
    finally:
        engine.close()
    assert torch.equal(after.codes, want)


def test_a_bad_sampling_value_fails_only_that_request(tiny):
    want = stock_codes(tiny, [5, 6, 7], 20, do_sample=False, guidance_scale=3.0)
    engine = Engine(max_slots=4)
    engine.add_model("tiny", tiny)
    bad = SamplingParams(do_sample=True, temperature=float("nan"), top_k=0, seed=1)

    async def scenario():
        good = await engine.submit(GenerationRequest("tiny", 20, [5, 6, 7], GREEDY))
        broken = await engine.submit(GenerationRequest("tiny", 20, [1], bad))
        with pytest.raises(RuntimeError, match=r"sampling failed \(temperature=nan"):
            await final(broken)
        return await final(good)

    try:
        got = asyncio.run(scenario())
    finally:
        engine.close()
    assert torch.equal(got.codes, want)


def test_non_finite_scores_fail_the_request_instead_of_producing_noise(tiny):
    engine = Engine(max_slots=2)
    worker = engine.add_model("tiny", tiny)
    real = worker.runner.decode_step
    worker.runner.decode_step = lambda tokens, positions: real(tokens, positions) * float("nan")

    async def scenario():
        h = await engine.submit(GenerationRequest("tiny", 20, [5], GREEDY))
        with pytest.raises(RuntimeError, match="non-finite"):
            await final(h)

    try:
        asyncio.run(scenario())
    finally:
        engine.close()


class _Fatal(BaseException):
    """Something that ends a thread outright (not an Exception)."""


def test_a_dead_worker_leaves_nobody_waiting_and_is_replaced(tiny):
    want = stock_codes(tiny, [5, 6, 7], 20, do_sample=False, guidance_scale=3.0)
    engine = Engine(max_slots=1)
    worker = engine.add_model("tiny", tiny)

    def fatal(tokens, positions):
        raise _Fatal("the thread is gone")

    worker.runner.decode_step = fatal

    async def scenario():
        running = await engine.submit(GenerationRequest("tiny", 20, [1], GREEDY))
        queued = await engine.submit(GenerationRequest("tiny", 20, [2], GREEDY))  # waits: one slot
        for h in (running, queued):
            with pytest.raises(RuntimeError, match="engine worker .* stopped"):
                await final(h)
        worker.join(5)
        assert not worker.is_alive()
        with pytest.raises(RuntimeError, match="stopped"):
            worker.submit(GenerationRequest("tiny", 20, [3], GREEDY), running)
        # the engine replaces a dead worker with a fresh one on the same model
        return await final(await engine.submit(GenerationRequest("tiny", 20, [5, 6, 7], GREEDY)))

    try:
        got = asyncio.run(scenario())
    finally:
        engine.close()
    assert torch.equal(got.codes, want)


def test_stopping_the_engine_ends_running_and_queued_requests(tiny):
    engine = Engine(max_slots=1)
    engine.add_model("tiny", tiny)

    async def scenario():
        running = await engine.submit(GenerationRequest("tiny", 50_000, [1], GREEDY))
        queued = await engine.submit(GenerationRequest("tiny", 20, [2], GREEDY))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(engine.close)
        for h in (running, queued):
            with pytest.raises(RequestCancelled, match="engine stopped"):
                await final(h)

    asyncio.run(scenario())


# -- the KV cache and the memory budget ------------------------------------------------------------------
def test_kv_cache_counts_against_the_budget(tiny):
    # tiny: 1 kB of self-attention cache per position per slot, 256 positions at least: ~264 kB per slot
    want_a = stock_codes(tiny, [5, 6], 60, do_sample=False, guidance_scale=3.0)
    want_b = stock_codes(tiny, [7], 30, do_sample=False, guidance_scale=3.0)
    engine = Engine(max_slots=4, budget_mb=0.4)  # room for one slot's cache, not two
    worker = engine.add_model("tiny", tiny, info={"memory_mb": 0})

    async def scenario():
        a = await engine.submit(GenerationRequest("tiny", 60, [5, 6], GREEDY))
        b = await engine.submit(GenerationRequest("tiny", 30, [7], GREEDY))  # waits until a's slot frees
        got_a, got_b = await final(a), await final(b)
        assert worker.runner.slots == 1  # never grew past the budget
        too_long = await engine.submit(GenerationRequest("tiny", 400, [1], GREEDY))  # 512 positions: ~520 kB
        with pytest.raises(RuntimeError, match=r"KV cache .* ECHOTUNE_MODEL_MEMORY_MB"):
            await final(too_long)
        return got_a, got_b, await final(await engine.submit(GenerationRequest("tiny", 30, [7], GREEDY)))

    try:
        got_a, got_b, again = asyncio.run(scenario())
        assert engine.memory_mb()["tiny"]["kv_cache"] > 0
    finally:
        engine.close()
    assert torch.equal(got_a.codes, want_a) and torch.equal(got_b.codes, want_b) and torch.equal(again.codes, want_b)


def test_make_room_counts_kv_caches(tiny):
    engine = Engine(max_slots=4, budget_mb=10)
    worker = engine.add_model("tiny", tiny, info={"memory_mb": 9})
    try:
        worker.runner.ensure_slots(4)
        worker.runner.ensure_capacity(1024)  # ~4 MB of cache on top of 9 MB of weights
        used = engine.memory_mb()["tiny"]
        assert used["weights"] == 9 and used["kv_cache"] > 3
        engine._make_room("other", 0)  # 9 + 4 > 10: the idle model (and its cache) is unloaded
        assert engine.loaded() == []
    finally:
        engine.close()


def test_kv_cache_is_released_when_the_engine_is_idle(tiny):
    want = stock_codes(tiny, [5, 6, 7], 20, do_sample=False, guidance_scale=3.0)
    engine = Engine(max_slots=4, idle_release_s=0.3)
    worker = engine.add_model("tiny", tiny)
    small = worker.runner.cache_bytes()

    async def scenario():
        handles = [await engine.submit(GenerationRequest("tiny", 700, [i + 1], GREEDY)) for i in range(4)]
        # Watch the cache grow while the four run (after they end it may already be released: the idle
        # delay is short, and collecting the results can take longer on a loaded machine).
        deadline = time.monotonic() + BOUND_S
        while worker.runner.slots < 4:
            assert time.monotonic() < deadline, "the four requests were never decoded together"
            await asyncio.sleep(0.005)
        grown = worker.runner.cache_bytes()
        assert grown > small
        for h in handles:
            await final(h)
        deadline = time.monotonic() + BOUND_S
        while worker.runner.cache_bytes() >= grown:
            assert time.monotonic() < deadline, "the idle engine kept its grown KV cache"
            await asyncio.sleep(0.05)
        assert worker.runner.cache_bytes() == small and worker.runner.slots == 1
        return await final(await engine.submit(GenerationRequest("tiny", 20, [5, 6, 7], GREEDY)))

    try:
        got = asyncio.run(scenario())
    finally:
        engine.close()
    assert torch.equal(got.codes, want)


# -- the engine's settings come through config.py --------------------------------------------------------
ENGINE_VARS = ("ENGINE_SLOTS", "ENGINE_DTYPE", "PREVIEW_EVERY_S", "MUSICGEN_LATENCY_S", "MODEL_MEMORY_MB")


def test_engine_settings_come_from_the_config_file(tmp_path, monkeypatch):
    from echotune_mcp.config import Settings
    from echotune_mcp.engine import musicgen_backend
    from echotune_mcp.engine.model_manager import ModelManager

    for name in ENGINE_VARS:
        monkeypatch.delenv(f"ECHOTUNE_{name}", raising=False)
    defaults = Settings.from_env(data_dir=tmp_path / "d0")
    assert (defaults.engine_slots, defaults.engine_dtype, defaults.preview_every_s, defaults.musicgen_latency_s,
            defaults.model_memory_mb) == (None, None, 5.0, 90.0, 16000)
    config = tmp_path / "config.toml"
    config.write_text('engine_slots = 3\nengine_dtype = "float32"\npreview_every_s = 0.5\n'
                      "musicgen_latency_s = 12\nmodel_memory_mb = 1234\n")
    monkeypatch.setenv("ECHOTUNE_CONFIG", str(config))
    settings = Settings.from_env(data_dir=tmp_path / "d1", device="cpu")
    settings.validate()
    assert (settings.engine_slots, settings.engine_dtype, settings.preview_every_s, settings.musicgen_latency_s,
            settings.model_memory_mb) == (3, "float32", 0.5, 12.0, 1234)
    assert ModelManager(settings).budget_mb == 1234
    engine = musicgen_backend.get_engine(settings)
    try:
        assert (engine.max_slots, engine.dtype, engine.budget_mb) == (3, torch.float32, 1234)
    finally:
        musicgen_backend.close_engines()
    monkeypatch.setenv("ECHOTUNE_ENGINE_SLOTS", "many")  # the environment wins, and a typo stops startup
    with pytest.raises(ValueError, match="ECHOTUNE_ENGINE_SLOTS must be a number"):
        Settings.from_env()
    monkeypatch.setenv("ECHOTUNE_ENGINE_SLOTS", "0")
    with pytest.raises(ValueError, match="ECHOTUNE_ENGINE_SLOTS is 0"):
        Settings.from_env().validate()
    monkeypatch.setenv("ECHOTUNE_ENGINE_SLOTS", "2")
    monkeypatch.setenv("ECHOTUNE_ENGINE_DTYPE", "int8")
    with pytest.raises(ValueError, match="ECHOTUNE_ENGINE_DTYPE is 'int8'"):
        Settings.from_env().validate()
