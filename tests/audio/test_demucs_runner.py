"""The batched runner must give what demucs' own apply_model gives (shifts=0), alone and batched."""

from __future__ import annotations

import threading

import pytest

th = pytest.importorskip("torch")
pytest.importorskip("demucs")

from demucs.apply import BagOfModels, apply_model
from demucs.hdemucs import HDemucs
from demucs.htdemucs import HTDemucs

from echotune_mcp.engine.demucs_runner import DemucsRunner, RequestCancelled

SOURCES = ["drums", "bass", "other", "vocals"]
SR = 8000  # a small rate keeps the tiny models fast while segments still overlap several times


def tiny_htdemucs(seed: int = 0, sources: list[str] = SOURCES) -> HTDemucs:
    th.manual_seed(seed)
    return HTDemucs(sources=sources, channels=8, depth=2, nfft=512, t_layers=1, t_heads=2, samplerate=SR,
                    segment=1.5, dconv_comp=4).eval()


def unittest_shaped(seed: int = 0) -> HDemucs:
    """demucs.pretrained.demucs_unittest (HDemucs(channels=4)), at a small rate and segment."""
    th.manual_seed(seed)
    return HDemucs(channels=4, sources=SOURCES, samplerate=SR, segment=2).eval()


def _mixes(lengths: list[int], channels: int = 2) -> list[th.Tensor]:
    g = th.Generator().manual_seed(1)
    return [0.3 * th.randn(1, channels, n, generator=g) for n in lengths]


@pytest.mark.parametrize("make", [tiny_htdemucs, unittest_shaped], ids=["htdemucs", "demucs_unittest"])
def test_alone_equals_apply_model(make):
    model = make()
    (mix,) = _mixes([int(4.3 * SR)])
    ref = apply_model(model, mix, shifts=0, overlap=0.25)
    runner = DemucsRunner(model, max_batch=4)
    try:
        seen = []
        out = runner.separate(mix, on_segment=lambda d, t: seen.append((d, t)))
    finally:
        runner.close()
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < 1e-4
    assert seen[-1][0] == seen[-1][1] == len(seen) == len(runner.plan(mix.shape[-1]))


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
@pytest.mark.parametrize("make", [tiny_htdemucs, unittest_shaped], ids=["htdemucs", "demucs_unittest"])
def test_batched_with_three_others_equals_apply_model(make, workers):
    model = make()
    mixes = _mixes([int(4.3 * SR), int(1.1 * SR), int(6.7 * SR), 977])
    refs = [apply_model(model, m, shifts=0, overlap=0.25) for m in mixes]
    runner = DemucsRunner(model, max_batch=4 if workers == 1 else 1, workers=workers)
    gate = threading.Event()
    sizes: list[int] = []
    original = runner._forward

    def forward(batch):  # hold the first pass until all four are queued, and record batch sizes
        gate.wait(10)
        sizes.append(len(batch))
        return original(batch)

    runner._forward = forward
    try:
        tickets = [runner.submit(m) for m in mixes]
        gate.set()
        outs = [t.result(120) for t in tickets]
    finally:
        runner.close()
    for out, ref in zip(outs, refs):
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() < 1e-4
    if workers == 1:
        assert max(sizes) > 1  # segments of different requests really shared forward passes
    else:
        assert max(sizes) == 1 and len(sizes) == sum(len(runner.plan(m.shape[-1])) for m in mixes)


def test_bag_of_models_weights_match():
    bag = BagOfModels([tiny_htdemucs(0), tiny_htdemucs(1)], weights=[[1, 0, 0.5, 1], [0, 1, 0.5, 1]])
    (mix,) = _mixes([int(3.2 * SR)])
    ref = apply_model(bag, mix, shifts=0, overlap=0.25)
    runner = DemucsRunner(bag, max_batch=3)
    try:
        out = runner.separate(mix)
    finally:
        runner.close()
    assert (out - ref).abs().max().item() < 1e-4


def test_cancel_from_callback_stops_only_that_request():
    model = tiny_htdemucs()
    a, b = _mixes([int(5 * SR), int(2 * SR)])
    runner = DemucsRunner(model, max_batch=1)

    def stop(done, total):
        if done >= 2:
            raise RequestCancelled("stop")

    try:
        ta = runner.submit(a, on_segment=stop)
        tb = runner.submit(b)
        with pytest.raises(RequestCancelled):
            ta.result(60)
        assert (tb.result(60) - apply_model(model, b, shifts=0)).abs().max().item() < 1e-4
    finally:
        runner.close()
