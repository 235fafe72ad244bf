"""A faster copy of a Demucs model for the engine: same function, different execution.

``fast_copy(model)`` returns a copy of the model's module tree that shares the original's parameters
and buffers (all but the 2-D convolution weights on CPU, see below; the caller's model is not
changed, so stock ``apply_model`` keeps running exactly what it ran) with three rewrites, each
measured on the htdemucs shape on CPU (docs/BENCHMARKS.md, Separation):

* **Attention through SDPA.** HTDemucs' cross-domain transformer uses ``nn.MultiheadAttention``. For
  its self-attention layers in inference torch takes the MHA "fast path"
  (``_native_multi_head_attention``), which on CPU materialises the (heads, T, T) score matrix with
  ``bmm`` + softmax: 8 x 2688 x 2688 floats per layer for a 7.8 s segment, ~0.6 s of a 2.5 s pass.
  ``SdpaMultiheadAttention`` computes the same function with one packed projection, the flash SDPA
  kernel and the output projection. Masks are not used by Demucs; a call with one falls back.
* **DConv branches in row chunks** (CPU). In the frequency branch a DConv runs on (batch x freq, C, T)
  rows (512 x 96 x 336 floats after the first layer's expansion: 66 MB per intermediate). Every row is
  independent (Conv1d, GroupNorm(1, C) per sample, GELU/GLU, LayerScale, per-row LSTM/attention), so
  ``ChunkedDConv`` runs it a few MB of rows at a time: the intermediates stay in cache and below
  glibc's mmap threshold, instead of being fresh pages faulted in and zeroed on every call.
* **Channels-last 2-D convolutions** (CPU). The frequency branch's Conv2d/ConvTranspose2d weights are
  stored channels-last (their own copy: 13 % of htdemucs' weights, 22 MB), so oneDNN runs them on NHWC
  without reordering every activation to a blocked layout and back.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class SdpaMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention``'s inference forward (no masks, no attention weights) on SDPA."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        self.mha = mha

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask=None,
                need_weights: bool = True, attn_mask=None, average_attn_weights: bool = True,
                is_causal: bool = False):
        m = self.mha
        if (key_padding_mask is not None or attn_mask is not None or is_causal or m.training
                or not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn):
            return m(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                     attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)
        if not m.batch_first:  # (T, B, C) -> (B, T, C)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        E = m.embed_dim
        w, b = m.in_proj_weight, m.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else b.split(E)
        if key is query and value is query:
            q, k, v = F.linear(query, w, b).split(E, dim=-1)
        elif key is value:
            q = F.linear(query, w[:E], bq)
            k, v = F.linear(key, w[E:], None if b is None else b[E:]).split(E, dim=-1)
        else:
            q, k, v = F.linear(query, w[:E], bq), F.linear(key, w[E:2 * E], bk), F.linear(value, w[2 * E:], bv)
        B, T, S, H = query.shape[0], query.shape[1], key.shape[1], m.num_heads
        q, k, v = (t.reshape(B, n, H, E // H).transpose(1, 2) for t, n in ((q, T), (k, S), (v, S)))
        out = F.scaled_dot_product_attention(q, k, v)
        out = m.out_proj(out.transpose(1, 2).reshape(B, T, E))
        return (out if m.batch_first else out.transpose(0, 1)), None


class ChunkedDConv(nn.Module):
    """Run a ``demucs.demucs.DConv`` over its batch rows a bounded number of bytes at a time."""

    def __init__(self, dconv: nn.Module, chunk_bytes: int = 8 << 20):
        super().__init__()
        self.dconv = dconv
        # the widest intermediate a row makes: this many channels by the row's length
        self.widest = max((m.out_channels for m in dconv.modules() if isinstance(m, nn.Conv1d)), default=1)
        self.chunk_bytes = chunk_bytes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = max(1, self.chunk_bytes // (self.widest * x.shape[-1] * x.element_size()))
        if x.shape[0] <= rows:
            return self.dconv(x)
        out = torch.empty_like(x)
        for i in range(0, x.shape[0], rows):
            out[i:i + rows] = self.dconv(x[i:i + rows])
        return out


def fast_copy(model: nn.Module) -> nn.Module:
    """A structural copy of ``model`` with the rewrites above; the tensors are the model's own except the
    CPU channels-last convolution weights.

    Attention goes through SDPA on every device; the row chunks and channels-last layout are for
    CPU (where they were measured), so a model on an accelerator keeps its layout and batch shape.
    """
    from demucs.demucs import DConv

    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    fast = copy.deepcopy(model, memo=shared)  # new modules, the same tensors
    cpu = next(model.parameters()).device.type == "cpu"
    for parent in list(fast.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.MultiheadAttention:
                setattr(parent, name, SdpaMultiheadAttention(child))
            elif cpu and isinstance(child, DConv):
                setattr(parent, name, ChunkedDConv(child))
            elif cpu and isinstance(child, (nn.Conv2d, nn.ConvTranspose2d)):
                # the copied module gets its own channels-last weight; the original keeps its own
                child.weight = nn.Parameter(child.weight.detach().contiguous(memory_format=torch.channels_last),
                                            requires_grad=False)
    return fast
