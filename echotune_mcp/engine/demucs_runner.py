"""Demucs inference with segments batched across concurrent requests.

``demucs.apply.apply_model`` separates one track at a time: it cuts the track into overlapping
segments and runs them one forward pass each. With several requests in flight that leaves the
accelerator (or the CPU's wide kernels) mostly idle. ``DemucsRunner`` owns the model on one worker
thread; every request is planned into exactly the segments ``apply_model`` would use (same
``TensorChunk`` padding with real context, same triangular cross-fade weight, same bag-of-models
weighting), and the worker fills each forward pass with up to ``max_batch`` segments taken
round-robin from all live requests. Results are stitched back per request in offset order, so a
request's output equals ``apply_model(model, mix, shifts=0, overlap=...)`` up to float rounding
of the batched kernels. The worker runs ``demucs_fast.fast_copy`` of each model (same weights, attention
through SDPA, DConv branches in row chunks, channels-last 2-D convolutions), which is what makes one
request faster than stock.

Stitching is linear, so a bag (htdemucs_ft) is handled member by member: a request runs all the
segments of member 0, folds them in with the member's per-source weight, then member 1, and so
on; only one member's accumulator is alive at a time per request.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch as th
from demucs.apply import BagOfModels, TensorChunk
from demucs.htdemucs import HTDemucs
from demucs.utils import center_trim
from torch import nn

from .demucs_fast import fast_copy

SegmentCallback = Callable[[int, int], None]  # (segments done, segments total), called on the worker thread


class RequestCancelled(Exception):
    """The request was cancelled before all of its segments ran."""


@dataclass
class _Member:
    """One model of the bag with what ``apply_model`` derives from it for splitting."""

    model: nn.Module
    weights: list[float]  # per source
    segment_length: int
    stride: int
    weight: th.Tensor  # triangular cross-fade, (segment_length,)
    fixed_input: int | None  # HTDemucs with an explicit segment: every input is this long

    def input_length(self, chunk_length: int) -> int:
        """The padded length ``apply_model`` feeds the network for a chunk of this length."""
        if self.fixed_input is not None:
            return self.fixed_input
        if hasattr(self.model, "valid_length"):
            return int(self.model.valid_length(chunk_length))
        return chunk_length


@dataclass
class _Task:
    member: int
    offset: int
    length: int  # chunk length (the last chunk is shorter)
    input_length: int


@dataclass(eq=False)  # identity: requests are found in the active queue by ``is``, never by value
class _Request:
    mix: th.Tensor  # (1, channels, length)
    pending: deque[_Task]
    total: int
    future: Future[th.Tensor]
    on_segment: SegmentCallback | None
    done: int = 0
    member: int = -1
    out: th.Tensor | None = None  # current member's accumulator (1, S, C, L)
    sum_weight: th.Tensor | None = None
    estimates: th.Tensor | None = None
    cancelled: bool = False
    totals: list[float] = field(default_factory=list)
    in_flight: bool = False  # a worker holds one of its segments: others leave it alone (stitching stays in order)


class Ticket:
    """Handle of a submitted request: its future, and a way to cancel the segments not yet run."""

    def __init__(self, runner: DemucsRunner, request: _Request):
        self._runner, self._request = runner, request
        self.future = request.future
        self.total_segments = request.total

    def cancel(self) -> None:
        self._runner._cancel(self._request, RequestCancelled("separation cancelled"))

    def result(self, timeout: float | None = None) -> th.Tensor:
        return self.future.result(timeout)


class DemucsRunner:
    """Serve one Demucs model (or bag) to many concurrent requests from one worker thread."""

    def __init__(self, model: nn.Module, *, device: str | th.device | None = None, max_batch: int = 4,
                 overlap: float = 0.25, transition_power: float = 1.0, segment: float | None = None,
                 workers: int = 1):
        assert transition_power >= 1, "transition_power < 1 leads to weird behavior."
        self.device = th.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.sources: list[str] = list(model.sources)
        self.samplerate: int = int(model.samplerate)
        self.audio_channels: int = int(model.audio_channels)
        self.max_batch = max(1, int(max_batch))
        self.overlap = overlap
        members, weights = (list(model.models), model.weights) if isinstance(model, BagOfModels) else (
            [model], [[1.0] * len(self.sources)])
        self._members = [self._plan_member(m, w, transition_power, segment) for m, w in zip(members, weights)]
        self._lock = threading.Condition()
        self._active: deque[_Request] = deque()
        self._closed = False
        # Several workers overlap one pass's single-threaded stretches with another's (CPU); each request is
        # served by one worker at a time, so its segments are stitched in order without locks.
        self._threads = [threading.Thread(target=self._loop, name=f"demucs-runner-{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()

    def _plan_member(self, m: nn.Module, weights: list[float], transition_power: float,
                     segment: float | None) -> _Member:
        seg = segment if segment is not None else m.segment
        assert seg is not None and seg > 0.0
        segment_length = int(m.samplerate * seg)
        stride = int((1 - self.overlap) * segment_length)
        weight = th.cat([th.arange(1, segment_length // 2 + 1),
                         th.arange(segment_length - segment_length // 2, 0, -1)])
        weight = (weight / weight.max()) ** transition_power
        fixed = int(segment * m.samplerate) if isinstance(m, HTDemucs) and segment is not None else None
        return _Member(fast_copy(m), list(weights), segment_length, stride, weight, fixed)

    # -- client side ---------------------------------------------------------------------------------
    def plan(self, length: int) -> list[_Task]:
        """Every forward segment of a track of ``length`` samples, member by member, in offset order."""
        tasks = []
        for i, mb in enumerate(self._members):
            for offset in range(0, length, mb.stride):
                n = min(length - offset, mb.segment_length)
                tasks.append(_Task(i, offset, n, mb.input_length(n)))
        return tasks

    def submit(self, mix: th.Tensor, on_segment: SegmentCallback | None = None) -> Ticket:
        """Queue ``mix`` (channels, length) or (1, channels, length); the future gives (1, S, C, length)."""
        mix = mix[None] if mix.dim() == 2 else mix
        if mix.dim() != 3 or mix.shape[0] != 1 or mix.shape[1] != self.audio_channels or mix.shape[-1] == 0:
            raise ValueError(f"expected a (1, {self.audio_channels}, length>0) mix, got {tuple(mix.shape)}")
        tasks = self.plan(mix.shape[-1])
        req = _Request(mix=mix, pending=deque(tasks), total=len(tasks), future=Future(), on_segment=on_segment,
                       totals=[0.0] * len(self.sources))
        req.future.set_running_or_notify_cancel()
        with self._lock:
            if self._closed:
                raise RuntimeError("the runner is closed")
            self._active.append(req)
            self._lock.notify()
        return Ticket(self, req)

    def separate(self, mix: th.Tensor, on_segment: SegmentCallback | None = None) -> th.Tensor:
        """Blocking convenience: submit and wait."""
        return self.submit(mix, on_segment).result()

    def busy(self) -> bool:
        """Requests are queued or running (the model manager does not evict a busy runner)."""
        with self._lock:
            return bool(self._active)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._active)
            self._active.clear()
            self._lock.notify_all()
        for req in pending:
            if not req.future.done():
                req.future.set_exception(RuntimeError("the runner was closed"))
        for t in self._threads:
            t.join(timeout=30)

    def _cancel(self, req: _Request, exc: BaseException) -> None:
        with self._lock:
            req.cancelled = True
            req.pending.clear()
            if req in self._active:
                self._active.remove(req)
        if not req.future.done():
            req.future.set_exception(exc)

    # -- worker side ---------------------------------------------------------------------------------
    def _next_batch(self) -> list[tuple[_Request, _Task]]:
        """Up to ``max_batch`` same-shaped segments, one per request per round (fair across requests)."""
        batch: list[tuple[_Request, _Task]] = []
        key: tuple[int, int] | None = None
        while len(batch) < self.max_batch:
            took = False
            for req in self._active:
                if len(batch) >= self.max_batch:
                    break
                if req.pending and not req.in_flight and all(r is not req for r, _ in batch):
                    t = req.pending[0]
                    if key is None or (t.member, t.input_length) == key:
                        key = (t.member, t.input_length)
                        batch.append((req, req.pending.popleft()))
                        took = True
            if not took:
                break
        self._active.rotate(-1)  # the next batch starts with another request
        for req, _ in batch:
            req.in_flight = True
        return batch

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not any(r.pending and not r.in_flight for r in self._active):
                    self._lock.wait()
                if self._closed:
                    return
                batch = self._next_batch()
            try:
                outs = self._forward(batch)
            except BaseException as exc:  # a failed pass fails its requests, not the runner
                for req, _ in batch:
                    self._cancel(req, exc)
                    req.in_flight = False
                continue
            for (req, task), out in zip(batch, outs):
                if not req.cancelled:
                    try:
                        self._accumulate(req, task, out)
                    except BaseException as exc:
                        self._cancel(req, exc)
            with self._lock:
                for req, _ in batch:
                    req.in_flight = False
                self._lock.notify_all()

    def _forward(self, batch: list[tuple[_Request, _Task]]) -> list[th.Tensor]:
        member = self._members[batch[0][1].member]
        x = th.cat([TensorChunk(req.mix, t.offset, t.length).padded(t.input_length) for req, t in batch])
        with th.inference_mode():
            y = member.model(x.to(self.device))
        return [center_trim(y[i:i + 1], t.length).to(req.mix.device) for i, (req, t) in enumerate(batch)]

    def _accumulate(self, req: _Request, task: _Task, chunk_out: th.Tensor) -> None:
        mb = self._members[task.member]
        if task.member != req.member:
            self._fold(req)
            req.member = task.member
            _, channels, length = req.mix.shape
            req.out = th.zeros(1, len(self.sources), channels, length, device=req.mix.device)
            req.sum_weight = th.zeros(length, device=req.mix.device)
        assert req.out is not None and req.sum_weight is not None
        w = mb.weight[:task.length].to(req.mix.device)
        req.out[..., task.offset:task.offset + mb.segment_length] += w * chunk_out
        req.sum_weight[task.offset:task.offset + mb.segment_length] += w
        req.done += 1
        if req.on_segment is not None:
            try:
                req.on_segment(req.done, req.total)
            except BaseException as exc:  # e.g. the job was cancelled: stop this request only
                self._cancel(req, exc)
                return
        if req.done == req.total:
            self._fold(req)
            est = req.estimates
            assert est is not None
            for k in range(est.shape[1]):
                est[:, k] /= req.totals[k]
            with self._lock:
                if req in self._active:
                    self._active.remove(req)
            if not req.future.done():
                req.future.set_result(est)

    def _fold(self, req: _Request) -> None:
        """Close the current member: normalise its cross-fade and add it with its source weights."""
        if req.out is None or req.sum_weight is None:
            return
        assert req.sum_weight.min() > 0
        out = req.out / req.sum_weight
        for k, w in enumerate(self._members[req.member].weights):
            out[:, k] *= w
            req.totals[k] += w
        req.estimates = out if req.estimates is None else req.estimates + out
        req.out = req.sum_weight = None
