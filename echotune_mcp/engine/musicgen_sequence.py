"""One MusicGen request's token state: the codebook delay pattern, sampling, and the codes so far.

MusicGen predicts K codebooks per frame with codebook k delayed by k steps. transformers builds a
pattern of forced tokens (pad before a codebook starts and after it ends, prompt codes where a
continuation gives them) and overwrites the model's choices with it before every step; this module
does the same per request, so a request's tokens do not depend on which batch it ran in.

Sampling follows transformers' processors in their order: classifier-free guidance
(``uncond + (cond - uncond) * scale``), temperature, top-k, top-p, then ``torch.multinomial`` with
the request's own generator, so a seeded request draws the same random numbers alone or batched.

Pieces longer than the model's window (30 s, the length MusicGen was trained on) are generated as
audiocraft does (``MusicGen._generate_tokens``): windows of at most ``window`` frames, each after the
first prompted with the last ``window - stride`` frames of the one before (``extend_stride``);
``window_plan`` says which windows a request runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SamplingParams:
    guidance_scale: float = 3.0
    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    seed: int | None = None


def delay_pattern(prompt: torch.Tensor | None, num_codebooks: int, length: int, pad: int) -> torch.Tensor:
    """(K, length) forced tokens, -1 where the model chooses; ``prompt`` is (K, P) codes or None.

    Mirrors ``MusicgenForCausalLM.build_delay_pattern_mask`` for mono models: position 0 is the start
    token, codebook k's prompt codes sit at k+1 .. k+P, and the last K-1-k positions are pad.
    """
    K = num_codebooks
    pattern = torch.full((K, length), -1, dtype=torch.long)
    if prompt is not None:
        P = prompt.shape[1]
        for k in range(K):
            pattern[k, k + 1:k + 1 + P] = prompt[k, :max(0, min(P, length - k - 1))]
    pos = torch.arange(length)[None, :]
    book = torch.arange(K)[:, None]
    forced_pad = (pos <= book) | (pos >= length - K + 1 + book)
    pattern[forced_pad] = pad
    return pattern


class TokenSequence:
    """The codes of one request as they are generated, with its delay pattern and sampler."""

    def __init__(self, num_codebooks: int, pad: int, new_tokens: int, params: SamplingParams,
                 prompt: torch.Tensor | None = None, generator: torch.Generator | None = None):
        self.K = num_codebooks
        self.pad = pad
        self.prompt_frames = 0 if prompt is None else int(prompt.shape[1])
        self.length = 1 + self.prompt_frames + new_tokens  # transformers' max_length
        self.pattern = delay_pattern(prompt, num_codebooks, self.length, pad)
        self.tokens = self.pattern.clone()
        self.params = params
        if generator is not None:  # a later window of the same request: its random stream goes on
            self.generator = generator
        elif params.seed is not None:
            self.generator = torch.Generator()
            self.generator.manual_seed(int(params.seed))
        else:
            self.generator = torch.Generator()
            self.generator.seed()
        # Decoding starts where codebook 0's first free position is (after the prompt).
        self.t = self.prompt_frames
        self.offset = 0  # cache positions taken by a conditioning prefix (MusicGen-Melody)

    @property
    def steps_total(self) -> int:
        return self.length - 1 - self.prompt_frames

    @property
    def steps_done(self) -> int:
        return self.t - self.prompt_frames

    @property
    def done(self) -> bool:
        return self.t >= self.length - 1

    def input_at(self, t: int) -> torch.Tensor:
        """The K tokens fed at position t (the model's choices overwritten by the pattern)."""
        forced = self.pattern[:, t]
        return torch.where(forced == -1, self.tokens[:, t], forced)

    def prefix_inputs(self) -> torch.Tensor:
        """Inputs for positions 0 .. t-1 (a continuation's prompt), (t, K)."""
        return torch.stack([self.input_at(i) for i in range(self.t)]) if self.t else torch.zeros(0, self.K, dtype=torch.long)

    def current_input(self) -> torch.Tensor:
        return self.input_at(self.t)

    def accept(self, tokens: torch.Tensor) -> None:
        """Take the next K tokens and move on one position."""
        self.tokens[:, self.t + 1] = tokens.to(self.tokens.device)
        self.t += 1

    def codes(self) -> torch.Tensor:
        """Finished frames (K, frames): every codebook's tokens where its last codebook is generated too
        (all of them once done; what a live preview can decode before), prompt included."""
        frames = max(0, min(self.t - self.K + 1, self.length - self.K))
        out = torch.empty(self.K, frames, dtype=torch.long)
        filled = torch.where(self.pattern == -1, self.tokens, self.pattern)
        for k in range(self.K):
            out[k] = filled[k, k + 1:k + 1 + frames]
        return out


def window_plan(total_frames: int, prompt_frames: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(start frame, prompt frames, window frames) of each window that makes ``total_frames`` frames.

    audiocraft's extend loop: a window holds at most ``window`` frames, the first one starts with the
    caller's prompt (if any), each later one starts ``stride`` frames after the one before with that
    one's last ``window - stride`` frames as its prompt. A caller's prompt as long as a window or longer
    is cut to the same overlap (the frames before it are kept in the output, not shown to the model).
    """
    if not 0 < stride < window:
        raise ValueError(f"the window stride must be between 1 and the window ({window} frames) - 1, got {stride}")
    start, plen = 0, prompt_frames
    if prompt_frames >= window:
        start, plen = prompt_frames - (window - stride), window - stride
    plan = []
    while start + plen < total_frames:
        chunk = min(total_frames - start, window)
        plan.append((start, plen, chunk))
        start, plen = start + stride, chunk - stride
    return plan


def advance_all(seqs: list[TokenSequence], logits: torch.Tensor) -> dict[int, str]:
    """Choose every request's next K tokens from one step's logits (n, 2, K, vocab) and move each on.

    Requests that share warper settings are warped in one go (every operation is per row, so a
    request's numbers do not depend on its neighbours); the draw uses each request's own generator.
    Returns the requests that could not go on ({index: why}): non-finite scores from the model, or a
    sampling value that makes no distribution. The others have moved on; those have not.
    """
    failed: dict[int, str] = {}
    finite = torch.isfinite(logits.reshape(logits.shape[0], -1)).all(dim=1).tolist()
    groups: dict[tuple, list[int]] = {}
    for i, seq in enumerate(seqs):
        if not finite[i]:
            failed[i] = f"the model produced non-finite scores (NaN or inf) at step {seq.steps_done}"
            continue
        p = seq.params
        groups.setdefault((p.guidance_scale, p.do_sample, p.temperature, p.top_k, p.top_p), []).append(i)
    for idx in groups.values():
        params = seqs[idx[0]].params
        why = (f"sampling failed (temperature={params.temperature}, top_k={params.top_k}, top_p={params.top_p}, "
               f"guidance_scale={params.guidance_scale})")
        sub = logits[idx]
        K, V = sub.shape[2], sub.shape[3]
        try:
            scores = _warp(sub[:, 0].reshape(-1, V), sub[:, 1].reshape(-1, V), params)
            if not params.do_sample:
                chosen = torch.argmax(scores, dim=-1).view(len(idx), K)
            else:
                probs = torch.softmax(scores, dim=-1).view(len(idx), K, V)
        except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:  # the same settings fail them all
            failed.update({i: f"{why}: {exc}" for i in idx})
            continue
        for j, i in enumerate(idx):
            try:
                if params.do_sample:  # each draw on its own: a bad row fails alone and draws nothing for others
                    tokens = torch.multinomial(probs[j], num_samples=1, generator=seqs[i].generator).squeeze(1)
                else:
                    tokens = chosen[j]
            except RuntimeError as exc:
                failed[i] = f"{why}: {exc}"
                continue
            seqs[i].accept(tokens)
    return failed


def _warp(cond: torch.Tensor, uncond: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """Guidance, then (when sampling) temperature, top-k and top-p, as transformers' processors do; rows independent."""
    scores = cond if p.guidance_scale is None or p.guidance_scale <= 1 else uncond + (cond - uncond) * p.guidance_scale
    if not p.do_sample:
        return scores
    if p.temperature is not None and p.temperature != 1.0:
        scores = scores / p.temperature
    if p.top_k:
        k = min(max(int(p.top_k), 1), scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    if p.top_p and 0.0 < p.top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - p.top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(1, sorted_idx, remove), -float("inf"))
    return scores
