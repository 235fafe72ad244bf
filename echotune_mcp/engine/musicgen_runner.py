"""The MusicGen model runner: one forward pass over a batch of slots with a preallocated KV cache.

transformers' ``generate`` runs one request at a time through ``DynamicCache`` (the cache grows by
concatenation every step) and Python-level logits processors. The runner executes the same
modules' weights (taken from a loaded ``MusicgenForConditionalGeneration`` or
``MusicgenMelodyForConditionalGeneration``) in a different shape:

* every request owns a *slot*: two cache rows (conditional and unconditional, for classifier-free
  guidance) filled from position 0 up, so a key is visible exactly when it is not ahead of the query; requests at different positions share one
  decode step and leave without disturbing the others (continuous batching);
* the KV cache is one preallocated tensor per layer, ``(2 * slots, heads, capacity, head_dim)``;
  live slots are kept compact at the front, so a step reads views, never gathered copies;
* cross-attention keys/values of the text are computed once at admission, and only for the
  conditional row (the unconditional row attends to an all-zero text, whose output is exactly 0);
* pieces longer than the model's window (30 s) are generated window by window as audiocraft does
  (``window_frames``, ``stride_frames``: the engine worker carries each window's last 10 s into the
  next as its prompt), so a slot's cache never holds more than one window plus its conditioning;
* the q/k/v projections and the four LM heads are fused into one matrix each, and on CPU the
  weights are packed once: for the engine's own prefetching float32 kernel (``cpu_gemm``, AVX-512)
  or else for oneDNN, which keeps small-batch matmuls at memory bandwidth.

The numerics are those of the stock modules (same LayerNorms, GELU, SDPA scaling, embedding sum
order); tests check greedy tokens equal ``generate``'s. bfloat16 on the CPU kernel is the exception by
design: bf16-stored weights with float32 arithmetic, more precise than a bf16 ``generate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from echotune_mcp.engine import cpu_gemm


def _sinusoids(n: int, dim: int) -> torch.Tensor:
    """transformers' MusicgenSinusoidalPositionalEmbedding.get_embedding (cos first, then sin)."""
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.int64).float() * -step)
    angles = torch.arange(n, dtype=torch.int64).float().unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).view(n, -1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros(n, 1)], dim=1)
    return emb


class Linear:
    """A bias-optional linear map with its weight packed for the CPU (plain matmul elsewhere).

    On an AVX-512 CPU the engine's own kernel (``cpu_gemm``) runs it with float32 inputs and the
    weight stored as given (float32, or bfloat16 for half the bytes); otherwise oneDNN on CPU.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, gelu: bool = False):
        self.weight: torch.Tensor | None = weight.contiguous()
        self.bias = bias
        self.gelu = gelu  # exact (erf) GELU on the output, fused into the matmul where oneDNN runs it
        self.packed = None
        self.kernel: cpu_gemm.PackedLinear | None = None
        if cpu_gemm.runs(weight.device.type, weight.dtype):
            self.kernel = cpu_gemm.PackedLinear(self.weight, storage=weight.dtype)
            self.weight = None
            self.bias = None if bias is None else bias.float()
        elif weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16):
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, None)
                self.weight = None  # the packed copy is the one used; do not hold the weights twice
            except (RuntimeError, AttributeError):  # a torch built without oneDNN
                self.packed = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None:
            shape = x.shape
            out = self.kernel(x.reshape(-1, shape[-1]))
            if self.bias is not None:
                out += self.bias
            if self.gelu:
                out = F.gelu(out)
            return out.view(*shape[:-1], out.shape[-1])
        if self.packed is None:
            out = F.linear(x, self.weight, self.bias)
            return F.gelu(out) if self.gelu else out
        shape = x.shape
        out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]).contiguous(), self.packed, self.bias,
                                                 *(("gelu", [], "none") if self.gelu else ("none", [], "")))
        return out.view(*shape[:-1], out.shape[-1])


@dataclass
class _Layer:
    ln1: tuple[torch.Tensor, torch.Tensor]
    qkv: Linear
    out: Linear
    ln2: tuple[torch.Tensor, torch.Tensor] | None  # None: no cross-attention (MusicGen-Melody)
    cross_q: Linear | None
    cross_k: Linear | None
    cross_v: Linear | None
    cross_out: Linear | None
    ln3: tuple[torch.Tensor, torch.Tensor]
    fc1: Linear
    fc2: Linear


def _ln(mod: torch.nn.LayerNorm, device, stored, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A LayerNorm's parameters rounded to ``stored`` (the weights' dtype), computed in ``dtype``."""
    return mod.weight.detach().to(stored).to(device, dtype), mod.bias.detach().to(stored).to(device, dtype)


class CacheBudgetExceeded(RuntimeError):
    """Growing the KV cache as asked would take more bytes than the caller allows."""

    def __init__(self, need_bytes: int, allowed_bytes: int):
        super().__init__(f"the KV cache would need {need_bytes / 2**20:.1f} MB; {max(0, allowed_bytes) / 2**20:.1f} MB "
                         "are left in the model memory budget")
        self.need_bytes, self.allowed_bytes = need_bytes, allowed_bytes


WINDOW_S = 30  # audiocraft's max_duration: the length MusicGen was trained on
OVERLAP_S = 10  # seconds of one window carried into the next as its prompt (extend_stride = 30 - 10 s)
MIN_CAPACITY, MIN_TEXT = 256, 16  # the cache's size when idle (and at start)


class MusicgenRunner:
    """Owns a MusicGen decoder's weights and KV cache; runs prefills and batched decode steps.

    Not thread-safe: one engine worker thread drives it.
    """

    def __init__(self, model: torch.nn.Module, *, max_slots: int = 16, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, capacity: int = MIN_CAPACITY,
                 window_frames: int | None = None, stride_frames: int | None = None):
        self.model = model
        self.device = torch.device(device)
        # Where the CPU kernel runs, bfloat16 means bf16-stored weights (half the bytes to stream, the
        # same values as the bf16 model) with float32 activations, caches and sums.
        self.weight_dtype = dtype
        self.dtype = torch.float32 if cpu_gemm.runs(self.device.type, dtype) else dtype
        cfg = model.decoder.config
        if cfg.activation_function != "gelu" or cfg.audio_channels != 1:
            raise ValueError(f"the engine runs mono MusicGen decoders with GELU; this checkpoint has "
                             f"{cfg.audio_channels} channel(s) and {cfg.activation_function}")
        self.num_codebooks = cfg.num_codebooks
        self.vocab = cfg.vocab_size
        # transformers fills the delay pattern with the decoder start token (the pad id in every checkpoint)
        pad = model.generation_config.pad_token_id if model.generation_config.pad_token_id is not None \
            else cfg.pad_token_id
        start = model.generation_config.decoder_start_token_id
        self.pad = pad if start is None else start
        self.heads = cfg.num_attention_heads
        self.width = cfg.hidden_size
        self.head_dim = self.width // self.heads
        self.scale = self.head_dim ** -0.5
        self.max_slots = max_slots
        self.frame_rate = int(model.config.audio_encoder.frame_rate)
        self.sample_rate = int(model.config.audio_encoder.sampling_rate)
        self._load_weights(model)
        self.window_frames = self.stride_frames = 0
        self.set_window(window_frames or WINDOW_S * self.frame_rate,
                        stride_frames or (window_frames or WINDOW_S * self.frame_rate) - OVERLAP_S * self.frame_rate)
        self.slots = self.capacity = self.text_capacity = 0
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.xk: list[torch.Tensor] = []
        self.xv: list[torch.Tensor] = []
        self.xlen: list[int] = []
        self._allocate(1, capacity, MIN_TEXT)
        self._grow_positions(capacity)

    def set_window(self, window_frames: int, stride_frames: int) -> None:
        """Longest window (frames) one pass of the model generates, and how far each next window starts on."""
        if not 0 < stride_frames < window_frames:
            raise ValueError(f"the window stride ({stride_frames} frames) must be at least 1 and less than the "
                             f"window ({window_frames} frames)")
        self.window_frames, self.stride_frames = int(window_frames), int(stride_frames)

    # -- weights --------------------------------------------------------------------------------------
    def _load_weights(self, model: torch.nn.Module) -> None:
        dev, dt, wdt = self.device, self.dtype, self.weight_dtype
        dec = model.decoder.model.decoder

        def w(lin: torch.nn.Linear) -> torch.Tensor:
            return lin.weight.detach().to(dev, wdt)

        # parameters are rounded to the weight dtype first (as a model loaded in that dtype holds them)
        self.embed = [e.weight.detach().to(wdt).to(dev, dt) for e in dec.embed_tokens]
        self.layers = []
        for layer in dec.layers:
            sa = layer.self_attn
            cross = getattr(layer, "encoder_attn", None)
            self.layers.append(_Layer(
                ln1=_ln(layer.self_attn_layer_norm, dev, wdt, dt),
                qkv=Linear(torch.cat([w(sa.q_proj), w(sa.k_proj), w(sa.v_proj)])), out=Linear(w(sa.out_proj)),
                ln2=_ln(layer.encoder_attn_layer_norm, dev, wdt, dt) if cross is not None else None,
                cross_q=Linear(w(cross.q_proj)) if cross is not None else None,
                cross_k=Linear(w(cross.k_proj)) if cross is not None else None,
                cross_v=Linear(w(cross.v_proj)) if cross is not None else None,
                cross_out=Linear(w(cross.out_proj)) if cross is not None else None,
                ln3=_ln(layer.final_layer_norm, dev, wdt, dt), fc1=Linear(w(layer.fc1), gelu=True), fc2=Linear(w(layer.fc2))))
        self.final_ln = _ln(dec.layer_norm, dev, wdt, dt)
        self.heads_proj = Linear(torch.cat([w(h) for h in model.decoder.lm_heads]))
        self.positions = _sinusoids(4096, self.width).to(dev, dt)  # grown by ensure_capacity when a window is longer
        self.has_cross = self.layers[0].cross_q is not None

    # -- cache ----------------------------------------------------------------------------------------
    def _allocate(self, slots: int, capacity: int, text_capacity: int) -> None:
        """(Re)allocate the caches for ``slots`` slots of ``capacity`` positions, keeping what they hold.

        Caches grow on demand (slots as requests join, positions as longer ones arrive), so one 30 s
        request does not pay for sixteen: musicgen-small holds 96 kB per position per slot in float32.
        All new tensors are made before any is swapped in, so a failed allocation (out of memory) leaves
        the old caches whole.
        """
        L, kw = len(self.layers), dict(device=self.device, dtype=self.dtype)
        n_rows, n_cap, n_text = 2 * min(slots, self.slots), min(capacity, self.capacity), min(text_capacity,
                                                                                                 self.text_capacity)
        k = [torch.zeros(2 * slots, self.heads, capacity, self.head_dim, **kw) for _ in range(L)]
        v = [torch.zeros(2 * slots, self.heads, capacity, self.head_dim, **kw) for _ in range(L)]
        xk: list[torch.Tensor] = []
        xv: list[torch.Tensor] = []
        if self.has_cross:
            xk = [torch.zeros(slots, self.heads, text_capacity, self.head_dim, **kw) for _ in range(L)]
            xv = [torch.zeros(slots, self.heads, text_capacity, self.head_dim, **kw) for _ in range(L)]
        if self.slots:
            for i in range(L):
                k[i][:n_rows, :, :n_cap] = self.k[i][:n_rows, :, :n_cap]
                v[i][:n_rows, :, :n_cap] = self.v[i][:n_rows, :, :n_cap]
                if self.has_cross:
                    xk[i][:n_rows // 2, :, :n_text] = self.xk[i][:n_rows // 2, :, :n_text]
                    xv[i][:n_rows // 2, :, :n_text] = self.xv[i][:n_rows // 2, :, :n_text]
        self.k, self.v, self.xk, self.xv = k, v, xk, xv
        self.slots, self.capacity, self.text_capacity = slots, capacity, text_capacity
        self.xlen = (self.xlen + [0] * slots)[:slots]

    def bytes_for(self, slots: int, capacity: int, text_capacity: int) -> int:
        """Bytes the caches take at that size (self-attention rows for both guidance rows, text for one)."""
        per = len(self.layers) * self.heads * self.head_dim * self.dtype.itemsize * 2  # keys and values
        return per * (2 * slots * capacity + (slots * text_capacity if self.has_cross else 0))

    def cache_bytes(self) -> int:
        return self.bytes_for(self.slots, self.capacity, self.text_capacity)

    @torch.inference_mode()
    def reserve(self, slots: int, capacity: int, text_capacity: int, limit_bytes: int | None = None) -> None:
        """Room for ``slots`` live slots of ``capacity`` positions and ``text_capacity`` text tokens.

        Grows with headroom (slots doubling up to ``max_slots``, positions rounded up to 256) so growth is
        rare; where the headroom would pass ``limit_bytes`` only what is asked for is allocated, and where
        even that would, CacheBudgetExceeded is raised and nothing changes.
        """
        if slots > self.max_slots:
            raise ValueError(f"{slots} slots asked for; this runner holds at most {self.max_slots}")
        if slots <= self.slots and capacity <= self.capacity and text_capacity <= self.text_capacity:
            return
        exact = (max(slots, self.slots), max(-(-capacity // 256) * 256, self.capacity),
                 max(text_capacity, self.text_capacity))
        roomy = (min(self.max_slots, max(slots, 2 * self.slots)) if slots > self.slots else self.slots,
                 exact[1], max(text_capacity, 2 * self.text_capacity) if text_capacity > self.text_capacity
                 else self.text_capacity)
        for size in (roomy, exact):
            if limit_bytes is None or self.bytes_for(*size) <= limit_bytes:
                self._allocate(*size)
                self._grow_positions(size[1])
                return
        raise CacheBudgetExceeded(self.bytes_for(*exact), limit_bytes)

    def _grow_positions(self, length: int) -> None:
        if length > self.positions.shape[0]:  # sinusoids do not depend on the table's length
            self.positions = _sinusoids(-(-length // 1024) * 1024, self.width).to(self.device, self.dtype)

    @torch.inference_mode()
    def ensure_capacity(self, length: int) -> None:
        """Room for ``length`` positions per slot (rounded up to 256 so growth is rare)."""
        self.reserve(self.slots, length, self.text_capacity)

    @torch.inference_mode()
    def ensure_slots(self, count: int) -> None:
        """Room for ``count`` live slots (doubling, up to ``max_slots``)."""
        self.reserve(count, self.capacity, self.text_capacity)

    @torch.inference_mode()
    def release(self) -> None:
        """Shrink the caches back to their starting size (no request may be live): the idle engine's memory."""
        self.k = self.v = self.xk = self.xv = []
        self.slots = self.capacity = self.text_capacity = 0
        self.xlen = []
        self._allocate(1, MIN_CAPACITY, MIN_TEXT)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.inference_mode()
    def move_slot(self, src: int, dst: int) -> None:
        """Copy slot ``src``'s cache into ``dst`` (keeping live slots compact when one leaves)."""
        s, d = slice(2 * src, 2 * src + 2), slice(2 * dst, 2 * dst + 2)
        for i in range(len(self.layers)):
            self.k[i][d] = self.k[i][s]
            self.v[i][d] = self.v[i][s]
            if self.xk:
                self.xk[i][dst] = self.xk[i][src]
                self.xv[i][dst] = self.xv[i][src]
        self.xlen[dst] = self.xlen[src]

    # -- conditioning ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def text_states(self, batch: list[list[int] | None]) -> list[torch.Tensor | None]:
        """T5 states projected to the decoder width, (tokens, width) per prompt; None for an unconditional one.

        Prompts admitted together are encoded as one padded batch (padding is masked, as in
        transformers' batched generate).
        """
        texts = [list(t) for t in batch if t]
        out: list[torch.Tensor | None] = [None] * len(batch)
        if not texts:
            return out
        longest = max(len(t) for t in texts)
        ids = torch.zeros(len(texts), longest, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        for i, t in enumerate(texts):
            ids[i, :len(t)] = torch.tensor(t)
            mask[i, :len(t)] = 1
        enc = self.model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.model.text_encoder.config.hidden_size != self.width and \
                self.model.decoder.config.cross_attention_hidden_size is None:
            enc = self.model.enc_to_dec_proj(enc)
        states = iter(enc[i, :len(t)].to(self.dtype) for i, t in enumerate(texts))
        return [next(states) if t else None for t in batch]

    @torch.inference_mode()
    def set_cross(self, slots: list[int], states: list[torch.Tensor | None]) -> None:
        """Cache the conditional rows' cross-attention keys/values (one projection for all ``slots``)."""
        lengths = [1 if s is None else s.shape[0] for s in states]
        if max(lengths) > self.text_capacity:
            self.reserve(self.slots, self.capacity, max(lengths))
        real = [s for s in states if s is not None]
        joined = torch.cat(real) if real else None
        for i, layer in enumerate(self.layers):
            ks = iter(layer.cross_k(joined).split([s.shape[0] for s in real])) if joined is not None else iter(())
            vs = iter(layer.cross_v(joined).split([s.shape[0] for s in real])) if joined is not None else iter(())
            for slot, st, n in zip(slots, states, lengths):
                if st is None:  # unconditional: one zero key/value -> attention output exactly 0
                    self.xk[i][slot, :, :1] = 0
                    self.xv[i][slot, :, :1] = 0
                    continue
                self.xk[i][slot, :, :n] = next(ks).view(n, self.heads, self.head_dim).transpose(0, 1)
                self.xv[i][slot, :, :n] = next(vs).view(n, self.heads, self.head_dim).transpose(0, 1)
        for slot, n in zip(slots, lengths):
            self.xlen[slot] = n

    @torch.inference_mode()
    def melody_prefix(self, text_ids: list[int] | None, chroma: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """MusicGen-Melody's conditioning prefix (conditional, unconditional), each (length, width).

        As ``MusicgenMelodyForConditionalGeneration.generate``: the chroma (one-hot, (frames, 12)) or the
        "null" chroma is projected, tiled to ``chroma_length`` frames and followed by the projected T5
        states; the unconditional row gets the null chroma and zeros for the text. Nothing is masked.
        """
        m = self.model
        dev, mdt = self.device, next(m.audio_enc_to_dec_proj.parameters()).dtype
        n_chroma, length = m.config.num_chroma, m.config.chroma_length
        if chroma is None:
            audio = torch.zeros(1, 1, n_chroma, device=dev, dtype=mdt)
            audio[..., 0] = 1
            null = audio
        else:
            audio = chroma.to(dev, mdt)[None]
            null = torch.zeros_like(audio)
            null[..., 0] = 1
        rows = m.audio_enc_to_dec_proj(torch.cat([audio, null]))
        rows = rows.repeat(1, math.ceil(length / rows.shape[1]), 1)[:, :length]
        cond, uncond = rows[0], rows[1]
        if text_ids:
            ids = torch.tensor([list(text_ids)], device=dev)
            text = m.text_encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            if m.text_encoder.config.hidden_size != self.width:
                text = m.enc_to_dec_proj(text)
            cond = torch.cat([cond, text[0]])
            uncond = torch.cat([uncond, torch.zeros_like(text[0])])
        return cond.to(self.dtype), uncond.to(self.dtype)

    # -- forward ----------------------------------------------------------------------------------------
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Sum of the per-codebook embeddings, in transformers' order; tokens (..., K)."""
        out = self.embed[0][tokens[..., 0]]
        for k in range(1, self.num_codebooks):
            out = out + self.embed[k][tokens[..., k]]
        return out

    @torch.inference_mode()
    def forward(self, rows: int, x: torch.Tensor, positions: torch.Tensor, row_offset: int = 0) -> torch.Tensor:
        """Run the decoder over ``x`` (rows, T, width) for cache rows ``row_offset .. row_offset+rows``.

        ``positions`` (rows, T) are absolute cache positions (also used for the positional embedding);
        each row attends to its keys up to its own position. Returns final hidden states (rows, T, width).
        """
        T = x.shape[1]
        r = torch.arange(row_offset, row_offset + rows, device=self.device)
        span = int(positions.max()) + 1
        mask = torch.arange(span, device=self.device)[None, None, :] <= positions[:, :, None]
        mask = None if bool(mask.all()) else mask[:, None]  # (rows, 1, T, span); None: every key visible
        xmask = self._cross_mask(row_offset // 2, rows // 2) if self.has_cross else None
        # flat cache index of (row, t, head) in a layer's (rows, heads, capacity, head_dim) cache, for index_put_
        heads = torch.arange(self.heads, device=self.device)
        at = ((r[:, None, None] * self.heads + heads) * self.capacity + positions[:, :, None]).reshape(-1)
        h = x + self.positions[positions]
        for i, layer in enumerate(self.layers):
            res = h
            a = F.layer_norm(h, (self.width,), *layer.ln1)
            q, k, v = layer.qkv(a).view(rows, T, 3, self.heads, self.head_dim).unbind(2)
            self.k[i].view(-1, self.head_dim).index_put_((at,), k.reshape(-1, self.head_dim))
            self.v[i].view(-1, self.head_dim).index_put_((at,), v.reshape(-1, self.head_dim))
            kk = self.k[i][row_offset:row_offset + rows, :, :span]
            vv = self.v[i][row_offset:row_offset + rows, :, :span]
            att = F.scaled_dot_product_attention(q.transpose(1, 2), kk, vv, attn_mask=mask, scale=self.scale)
            h = res + layer.out(att.transpose(1, 2).reshape(rows, T, self.width))
            if layer.cross_q is not None:
                h = self._cross(i, layer, h, rows, T, row_offset, xmask)
            res = h
            a = F.layer_norm(h, (self.width,), *layer.ln3)
            h = res + layer.fc2(layer.fc1(a))
        return F.layer_norm(h, (self.width,), *self.final_ln)

    def _cross_mask(self, s0: int, n: int) -> torch.Tensor | None:
        """Which text positions each conditional row attends to; None when all slots' texts are equally long."""
        lengths = self.xlen[s0:s0 + n]
        if min(lengths) == max(lengths):
            return None
        return (torch.arange(max(lengths), device=self.device)[None, :] <
                torch.tensor(lengths, device=self.device)[:, None])[:, None, None, :]

    def _cross(self, i: int, layer: _Layer, h: torch.Tensor, rows: int, T: int, row_offset: int,
               xmask: torch.Tensor | None) -> torch.Tensor:
        """Cross-attention on the conditional rows (even rows); the unconditional rows add exactly 0."""
        n = rows // 2
        s0 = row_offset // 2
        cond = h[0::2]
        a = F.layer_norm(cond, (self.width,), *layer.ln2)
        q = layer.cross_q(a).view(n, T, self.heads, self.head_dim).transpose(1, 2)
        span = max(self.xlen[s0:s0 + n])
        att = F.scaled_dot_product_attention(q, self.xk[i][s0:s0 + n, :, :span], self.xv[i][s0:s0 + n, :, :span],
                                             attn_mask=xmask, scale=self.scale)
        h[0::2] += layer.cross_out(att.transpose(1, 2).reshape(n, T, self.width))  # h is this layer's own tensor
        return h

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(rows, width) -> (rows, K, vocab) in float32."""
        return self.heads_proj(hidden).view(hidden.shape[0], self.num_codebooks, self.vocab).float()

    @torch.inference_mode()
    def decode_step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One step for the live slots ``0..n-1``: tokens (n, K), absolute positions (n,).

        Returns logits (n, 2, K, vocab): conditional then unconditional.
        """
        n = tokens.shape[0]
        rows = 2 * n
        tok = tokens.to(self.device).repeat_interleave(2, dim=0)
        pos = positions.to(self.device).repeat_interleave(2)[:, None]
        x = self.embed_tokens(tok)[:, None, :]
        h = self.forward(rows, x, pos)
        return self.logits(h[:, 0]).view(n, 2, self.num_codebooks, self.vocab)

    @torch.inference_mode()
    def prefill(self, slot: int, cond: torch.Tensor, uncond: torch.Tensor, start: int = 0) -> None:
        """Run a prompt (embeddings (T, width) per row) into ``slot``'s cache at ``start..start+T-1``."""
        T = cond.shape[0]
        x = torch.stack([cond, uncond]).to(self.dtype)
        pos = torch.arange(start, start + T, device=self.device)[None, :].expand(2, T)
        self.forward(2, x, pos, row_offset=2 * slot)
