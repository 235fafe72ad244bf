"""The batched MusicGen engine against transformers' own ``generate``, on tiny random models."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

pytest.importorskip("transformers")

from echotune_mcp.engine.engine import Engine, GenerationRequest, RequestCancelled
from echotune_mcp.engine.musicgen_sequence import SamplingParams
from echotune_mcp.engine.musicgen_shapes import build_random_musicgen
from echotune_mcp.engine.scheduler import EngineBusy


@pytest.fixture(scope="module")
def tiny():
    return build_random_musicgen("tiny", seed=1)


def stock_codes(model, text_ids, new_tokens, seed=None, prompt_codes=None, chroma=None, **gen):
    """Run transformers' generate and capture the codes it hands to EnCodec."""
    captured = {}
    original = model.audio_encoder.decode

    def capture(codes, **kw):
        captured["codes"] = codes.clone()
        return original(codes, **kw)

    model.audio_encoder.decode = capture
    try:
        ids = torch.tensor([text_ids])
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, **gen)
        if prompt_codes is not None:
            kwargs["decoder_input_ids"] = prompt_codes.reshape(-1, prompt_codes.shape[-1])
        if chroma is not None:  # MusicGen-Melody's melody features
            kwargs["input_features"] = chroma[None]
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            model.generate(**kwargs)
    finally:
        model.audio_encoder.decode = original
    return captured["codes"][0, 0]


async def run_all(engine, requests):
    handles = [await engine.submit(r) for r in requests]
    return [await h.result() for h in handles], handles


PROMPTS = [[5, 6, 7, 8, 9], [11, 12], [3, 40, 41, 42, 43, 44, 45, 46], [17], [20, 21, 22], [9, 8, 7, 6],
           [30, 31, 32, 33, 34], [50, 51]]
LENGTHS = [20, 9, 33, 14, 27, 11, 40, 18]


def test_greedy_tokens_equal_generate_alone_and_batched(tiny):
    greedy = SamplingParams(do_sample=False, guidance_scale=3.0)
    expected = [stock_codes(tiny, p, n, do_sample=False, guidance_scale=3.0) for p, n in zip(PROMPTS, LENGTHS)]
    engine = Engine(max_slots=8)
    engine.add_model("tiny", tiny)
    try:
        alone, _ = asyncio.run(run_all(engine, [GenerationRequest("tiny", LENGTHS[0], PROMPTS[0], greedy)]))
        assert torch.equal(alone[0].codes, expected[0])
        runner = engine._workers["tiny"].runner
        assert runner.slots == 1 and runner.k[0].shape[0] == 2  # the cache grows with use, not to max_slots
        batch = [GenerationRequest("tiny", n, p, greedy) for p, n in zip(PROMPTS, LENGTHS)]
        results, _ = asyncio.run(run_all(engine, batch))
        assert runner.slots == 8 and runner.capacity >= max(LENGTHS) + 1
        for got, want in zip(results, expected):
            assert got.codes.shape == want.shape
            assert torch.equal(got.codes, want)
            assert got.audio is not None and got.audio.shape[-1] == want.shape[-1] * 32  # EnCodec hop of the tiny codec
    finally:
        engine.close()


def test_seeded_sampling_is_the_same_alone_batched_and_in_generate(tiny):
    params = [SamplingParams(do_sample=True, guidance_scale=3.0, top_k=10, seed=100 + i) for i in range(8)]
    expected = [stock_codes(tiny, p, n, seed=sp.seed, do_sample=True, guidance_scale=3.0, top_k=10)
                for p, n, sp in zip(PROMPTS, LENGTHS, params)]
    engine = Engine(max_slots=8)
    engine.add_model("tiny", tiny)
    try:
        results, _ = asyncio.run(run_all(engine, [GenerationRequest("tiny", n, p, sp)
                                                  for p, n, sp in zip(PROMPTS, LENGTHS, params)]))
        for got, want in zip(results, expected):
            assert torch.equal(got.codes, want)
        # top-p, temperature and no guidance follow generate too
        sp = SamplingParams(do_sample=True, guidance_scale=1.0, top_k=0, top_p=0.9, temperature=0.7, seed=5)
        want = stock_codes(tiny, PROMPTS[1], 15, seed=5, do_sample=True, guidance_scale=1.0, top_k=0, top_p=0.9,
                           temperature=0.7)
        got, _ = asyncio.run(run_all(engine, [GenerationRequest("tiny", 15, PROMPTS[1], sp)]))
        assert torch.equal(got[0].codes, want)
    finally:
        engine.close()


def test_continuation_extends_the_given_codes_like_generate(tiny):
    greedy = SamplingParams(do_sample=False, guidance_scale=3.0)
    prompt = torch.randint(0, 64, (4, 6), generator=torch.Generator().manual_seed(3))
    want = stock_codes(tiny, PROMPTS[0], 12, prompt_codes=prompt, do_sample=False, guidance_scale=3.0)
    engine = Engine(max_slots=4)
    engine.add_model("tiny", tiny)
    try:
        got, _ = asyncio.run(run_all(engine, [GenerationRequest("tiny", 12, PROMPTS[0], greedy, prompt_codes=prompt),
                                              GenerationRequest("tiny", 30, PROMPTS[2], greedy)]))
        assert torch.equal(got[0].codes[:, :6], prompt)
        assert torch.equal(got[0].codes, want)
    finally:
        engine.close()


def test_cancel_frees_the_slot_within_one_step_and_others_finish(tiny):
    engine = Engine(max_slots=2)
    worker = engine.add_model("tiny", tiny)
    greedy = SamplingParams(do_sample=False)

    # expectations first: stock_codes patches the model's EnCodec decode, which the engine also calls
    expected_short = stock_codes(tiny, PROMPTS[1], 30, do_sample=False, guidance_scale=3.0)
    expected_queued = stock_codes(tiny, PROMPTS[3], 25, do_sample=False, guidance_scale=3.0)

    async def scenario():
        long = await engine.submit(GenerationRequest("tiny", 1500, PROMPTS[0], greedy))
        short = await engine.submit(GenerationRequest("tiny", 30, PROMPTS[1], greedy))
        queued = await engine.submit(GenerationRequest("tiny", 25, PROMPTS[3], greedy))  # waits for a slot
        deadline = time.monotonic() + 60  # admission happens on the worker thread: wait for it, bounded
        while not worker.scheduler.running and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        entry = worker.scheduler.running[0]
        while entry.payload.steps_taken < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        long.cancel()
        at_cancel = worker.step_count
        with pytest.raises(RequestCancelled):
            await long.result()
        assert entry.payload.last_step <= at_cancel + 1
        assert entry.slot is None
        assert torch.equal((await short.result()).codes, expected_short)
        assert torch.equal((await queued.result()).codes, expected_queued)  # ran in the freed slot

    try:
        asyncio.run(scenario())
    finally:
        engine.close()


def test_full_queue_says_busy_and_when_to_retry(tiny):
    engine = Engine(max_slots=1, max_queue=1)
    engine.add_model("tiny", tiny)

    async def scenario():
        running = await engine.submit(GenerationRequest("tiny", 1500, [1], SamplingParams(do_sample=False)))
        while not engine._workers["tiny"].scheduler.running:
            await asyncio.sleep(0.005)
        queued = await engine.submit(GenerationRequest("tiny", 10, [2]))
        with pytest.raises(EngineBusy, match=r"busy: 1 requests running and 1 queued .* retry after ~\d+ s") as err:
            await engine.submit(GenerationRequest("tiny", 10, [3]))
        assert err.value.retry_after_s >= 1
        for h in (running, queued):
            h.cancel()
            with pytest.raises(RequestCancelled):
                await h.result()

    try:
        asyncio.run(scenario())
    finally:
        engine.close()


def test_priorities_and_previews(tiny):
    engine = Engine(max_slots=1)
    engine.add_model("tiny", tiny)

    async def scenario():
        blocker = await engine.submit(GenerationRequest("tiny", 60, [1], SamplingParams(do_sample=False)))
        deadline = time.monotonic() + 30  # admission happens on the worker thread: the blocker must hold the slot
        while not engine._workers["tiny"].scheduler.running and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        low = await engine.submit(GenerationRequest("tiny", 10, [2], priority=0))
        high = await engine.submit(GenerationRequest("tiny", 10, [3], priority=5))
        finished = []

        async def wait(name, h):
            await h.result()
            finished.append(name)

        await asyncio.gather(wait("blocker", blocker), wait("low", low), wait("high", high))
        assert finished == ["blocker", "high", "low"]
        # previews: decoded audio of the frames so far, every 0.02 s of audio (10 frames of the 500 Hz codec)
        h = await engine.submit(GenerationRequest("tiny", 80, [4], preview_every_s=0.02))
        kinds = [(e.kind, None if e.audio is None else e.audio.shape[-1]) async for e in h.events()]
        previews = [n for k, n in kinds if k == "preview"]
        assert len(previews) >= 3 and previews == sorted(previews)
        assert kinds[-1][0] == "result" and kinds[-1][1] > previews[-1]

    try:
        t0 = time.monotonic()
        asyncio.run(scenario())
        assert time.monotonic() - t0 < 60
    finally:
        engine.close()


def test_melody_model_follows_generate_with_chroma_and_without():
    from echotune_mcp.engine.melody_chroma import chroma_onehot

    melody = build_random_musicgen("tiny", seed=4, melody=True)
    t = torch.arange(32000) / 32000
    tune = torch.sin(2 * torch.pi * 440 * t) * (t < 0.5) + torch.sin(2 * torch.pi * 330 * t) * (t >= 0.5)
    chroma = torch.as_tensor(chroma_onehot(tune.numpy(), 32000))
    greedy = SamplingParams(do_sample=False, guidance_scale=3.0)
    want_melody = stock_codes(melody, PROMPTS[0], 20, chroma=chroma, do_sample=False, guidance_scale=3.0)
    want_text = stock_codes(melody, PROMPTS[2], 16, do_sample=False, guidance_scale=3.0)
    engine = Engine(max_slots=4)
    engine.add_model("melody", melody)
    try:
        got, _ = asyncio.run(run_all(engine, [
            GenerationRequest("melody", 20, PROMPTS[0], greedy, melody_chroma=chroma),
            GenerationRequest("melody", 16, PROMPTS[2], greedy)]))
        assert torch.equal(got[0].codes, want_melody)
        assert torch.equal(got[1].codes, want_text)
        runner = engine._workers["melody"].runner
        cond, uncond = runner.melody_prefix(PROMPTS[0], chroma)
        assert cond.shape[0] == melody.config.chroma_length + len(PROMPTS[0])
        assert not torch.equal(cond, runner.melody_prefix(PROMPTS[0], torch.roll(chroma, 3, dims=1))[0])
        assert torch.equal(uncond[melody.config.chroma_length:], torch.zeros_like(uncond[melody.config.chroma_length:]))
    finally:
        engine.close()


def test_memory_budget_evicts_the_least_recently_used_idle_model(tiny):
    loads = []

    def loader(model_id):
        def load():
            loads.append(model_id)
            return build_random_musicgen("tiny", seed=len(loads))
        return load, {"memory_mb": 100}

    engine = Engine(loader, max_slots=2, budget_mb=250)
    greedy = SamplingParams(do_sample=False)

    async def scenario():
        for m in ("a", "b"):
            await (await engine.submit(GenerationRequest(m, 8, [1], greedy))).result()
        assert engine.loaded() == ["a", "b"]
        await (await engine.submit(GenerationRequest("a", 8, [1], greedy))).result()  # a is now the most recent
        long_a = await engine.submit(GenerationRequest("a", 5000, [1], greedy))
        await (await engine.submit(GenerationRequest("c", 8, [1], greedy))).result()
        assert engine.loaded() == ["a", "c"]  # b, idle and least recently used, made room
        with pytest.raises(EngineBusy, match="memory budget even after unloading idle models; busy: a;"):
            engine._make_room("d", 200)  # a is busy, c idle: evicting c is not enough
        assert engine.loaded() == ["a", "c"]  # so nothing was evicted in vain
        long_a.cancel()

    try:
        asyncio.run(scenario())
        assert loads == ["a", "b", "c"]
    finally:
        engine.close()
