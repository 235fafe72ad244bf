"""The engine's fast Demucs copy computes what the model computes, and leaves the model alone."""

from __future__ import annotations

import pytest

th = pytest.importorskip("torch")
pytest.importorskip("demucs")

from torch import nn

from echotune_mcp.engine.demucs_fast import (
    ChunkedDConv,
    SdpaMultiheadAttention,
    fast_copy,
)
from tests.audio.test_demucs_runner import tiny_htdemucs


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kind", ["self", "cross", "separate"])
def test_matches_multihead_attention(batch_first, kind):
    th.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    x, y, z = (th.randn(3, 17, 32) if batch_first else th.randn(17, 3, 32) for _ in range(3))
    q, k, v = {"self": (x, x, x), "cross": (x, y, y), "separate": (x, y, z)}[kind]
    with th.inference_mode():
        ref = mha(q, k, v, need_weights=False)[0]
        out, weights = SdpaMultiheadAttention(mha)(q, k, v, need_weights=False)
    assert weights is None
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < 1e-5


def test_masked_call_falls_back_to_the_stock_module():
    th.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = th.randn(2, 5, 16)
    mask = th.triu(th.ones(5, 5, dtype=th.bool), diagonal=1)
    with th.inference_mode():
        ref = mha(x, x, x, attn_mask=mask)
        out = SdpaMultiheadAttention(mha)(x, x, x, attn_mask=mask)
    assert (out[0] - ref[0]).abs().max().item() == 0
    assert out[1] is not None  # attention weights, as the stock module returns them


def test_fast_copy_computes_the_same_and_leaves_the_model_unchanged():
    model = tiny_htdemucs()
    before = {n: p.clone() for n, p in model.state_dict().items()}
    fast = fast_copy(model)
    assert not any(isinstance(m, (SdpaMultiheadAttention, ChunkedDConv)) for m in model.modules())
    assert any(isinstance(m, SdpaMultiheadAttention) for m in fast.modules()), "tiny HTDemucs has attention"
    assert any(isinstance(m, ChunkedDConv) for m in fast.modules()), "tiny HTDemucs has DConv branches"
    ours = list(fast.parameters())
    for name, p in model.named_parameters():
        if p.dim() == 4:  # 2-D convolution weights: a channels-last copy of their own
            continue
        assert any(q is p for q in ours), f"{name} was copied instead of shared"
    for name, t in model.state_dict().items():
        assert t.is_contiguous() and th.equal(t, before[name]), f"{name} changed"
    x = 0.3 * th.randn(1, 2, int(model.segment * model.samplerate), generator=th.Generator().manual_seed(3))
    with th.inference_mode():
        assert (fast(x) - model(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize("chunk_bytes", [1, 20000, 1 << 30], ids=["row-by-row", "a-few-rows", "one-chunk"])
def test_chunked_dconv_equals_dconv(chunk_bytes):
    from demucs.demucs import DConv

    th.manual_seed(0)
    dconv = DConv(16, depth=2, compress=4, attn=True, lstm=True).eval()  # every kind of DConv layer
    x = th.randn(37, 16, 25)
    with th.inference_mode():
        ref = dconv(x)
        out = ChunkedDConv(dconv, chunk_bytes=chunk_bytes)(x)
    assert (out - ref).abs().max().item() < 1e-5
