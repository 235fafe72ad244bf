"""The engine: async ``submit(request) -> handle`` over per-model workers that batch at the decode step.

A worker thread owns one model's runner and scheduler. Each iteration it frees the slots of
cancelled requests, admits waiting ones (text encoding, cross-attention cache, continuation
prefill), runs one decode step for every live slot, and lets finished requests leave. A request
therefore joins the running batch as soon as its prefill is done and never waits for longer
requests; a cancelled one is gone before the next step. Audio decoding (EnCodec) for previews and
results runs on a separate thread so the decode loop does not stall on it.

Handles deliver ``EngineEvent``s (progress, preview, result, error, cancelled) to the caller's
event loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .melody_chroma import HOP, SAMPLE_RATE, chroma_onehot
from .musicgen_codec import decode_codes, encode_audio
from .musicgen_runner import CacheBudgetExceeded, MusicgenRunner
from .musicgen_sequence import SamplingParams, TokenSequence, advance_all, window_plan
from .scheduler import EngineBusy, Entry, Scheduler

log = logging.getLogger(__name__)
CHROMA_RATE = SAMPLE_RATE / HOP  # MusicGen-Melody's chroma frames per second

__all__ = ["Engine", "EngineBusy", "EngineEvent", "GenerationRequest", "Handle", "MusicgenWorker", "RequestCancelled"]


class RequestCancelled(Exception):
    """The request was cancelled before it finished."""


@dataclass
class GenerationRequest:
    model_id: str
    new_tokens: int  # decode steps (MusicGen: 50 per second of audio)
    text_ids: list[int] | None = None  # tokenised prompt; None = unconditional
    sampling: SamplingParams = field(default_factory=SamplingParams)
    prompt_codes: torch.Tensor | None = None  # (K, P) codes of a clip to continue
    prompt_audio: tuple[np.ndarray, int] | None = None  # or the clip itself (mono, sample rate), encoded on admission
    melody_chroma: torch.Tensor | None = None  # MusicGen-Melody: one-hot chroma (frames, 12) of the melody
    priority: int = 0
    preview_every_s: float = 0.0  # seconds of generated audio between live previews; 0 = none
    decode_audio: bool = True


@dataclass
class EngineEvent:
    kind: str  # progress | preview | result | error | cancelled
    fraction: float = 0.0
    message: str = ""
    audio: np.ndarray | None = None  # (channels, samples) float32
    sample_rate: int = 0
    codes: torch.Tensor | None = None


class Handle:
    """The caller's side of a request: an event stream, the result, and cancel."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.id = secrets.token_hex(12)
        self._loop = loop
        self._queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._cancel: Callable[[], None] = lambda: None
        self.final: EngineEvent | None = None

    def _post(self, event: EngineEvent) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the caller's loop is gone; nobody is listening
            pass

    async def events(self) -> AsyncIterator[EngineEvent]:
        """Progress and preview events, ending with the final one (result, error or cancelled)."""
        while self.final is None:
            event = await self._queue.get()
            if event.kind in ("result", "error", "cancelled"):
                self.final = event
            yield event

    async def result(self) -> EngineEvent:
        async for _ in self.events():
            pass
        assert self.final is not None
        if self.final.kind == "error":
            raise RuntimeError(self.final.message)
        if self.final.kind == "cancelled":
            raise RequestCancelled(self.final.message)
        return self.final

    def cancel(self) -> None:
        self._cancel()


@dataclass(eq=False)
class _Live:
    handle: Handle
    request: GenerationRequest
    seq: TokenSequence | None = None  # the current window's tokens
    last_progress: float = 0.0
    next_preview: int = 0  # steps done (over all windows) at which the next live preview is due; 0 = none
    steps_taken: int = 0
    last_step: int = 0  # the worker step this request last took part in (cancel must stop it within one)
    plan: list[tuple[int, int, int]] = field(default_factory=list)  # (start, prompt, frames) of each window
    window: int = 0  # which of them runs now
    done_codes: torch.Tensor | None = None  # (K, frames) final so far: the caller's prompt, then finished windows
    steps_before: int = 0  # decode steps of the finished windows
    total_steps: int = 0
    positions: int = 0  # cache positions the longest window takes, its conditioning prefix included
    text_len: int = 1  # text tokens held in the cross-attention cache

    @property
    def steps_done(self) -> int:
        return self.steps_before + (self.seq.steps_done if self.seq is not None else 0)

    def codes_so_far(self) -> torch.Tensor:
        """Every finished frame: the final ones, then the current window's past its prompt."""
        assert self.seq is not None and self.done_codes is not None
        prompt = self.plan[self.window][1]
        return torch.cat([self.done_codes, self.seq.codes()[:, prompt:]], dim=1)


class MusicgenWorker(threading.Thread):
    """One model's decode loop: a runner, a scheduler, and a thread that drives both.

    Nothing a request does can take the loop down: a failure while admitting, in a decode step or in
    sampling fails the requests it touched (their slots freed) and the loop goes on; if the thread ends
    anyway (stopped, or something that is not an ``Exception``), every running and queued request hears
    so, and later submissions are refused, so no caller waits for a thread that is gone.
    """

    def __init__(self, model: Any = None, *, loader: Callable[[], Any] | None = None, max_slots: int = 16,
                 max_queue: int = 64, device: str = "cpu", dtype: torch.dtype = torch.float32, name: str = "musicgen",
                 cache_allowance: Callable[[], int | None] | None = None, idle_release_s: float | None = 30.0):
        super().__init__(name=f"echotune-engine-{name}", daemon=True)
        self.model = model
        self.model_name = name
        self._loader = loader
        self._runner_args = dict(max_slots=max_slots, device=device, dtype=dtype)
        self.runner: MusicgenRunner | None = None
        self.tokenizer: Any = None  # the text tokenizer that came with the weights, if any
        self.load_error: BaseException | None = None
        self._ready = threading.Event()
        self.scheduler = Scheduler(max_slots, max_queue)
        self._cond = threading.Condition()
        self._stopping = False
        self.stopped = False  # the loop has ended: this worker takes no more requests
        self.exit_reason: BaseException | None = None
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"echotune-decode-{name}")
        self._cache_allowance = cache_allowance  # bytes the KV cache may take now (None: no budget)
        self.idle_release_s = idle_release_s  # idle this long, the KV cache shrinks back to its starting size
        self._admit_limit: int | None = None  # running requests the KV cache budget allows until a slot frees
        self._last_active = time.monotonic()
        self.step_count = 0
        self.steps_per_s: float | None = None  # per-slot decode rate, measured
        self.start()

    @property
    def cache_bytes(self) -> int:
        """The KV cache's size now (the engine reads it for the memory budget)."""
        return self.runner.cache_bytes() if self.runner is not None else 0

    def wait_ready(self, timeout: float | None = None) -> MusicgenWorker:
        """Block until the model is loaded on the worker thread (raises what loading raised)."""
        if not self._ready.wait(timeout):
            raise TimeoutError("the model is still loading")
        if self.load_error is not None:
            raise self.load_error
        return self

    # -- caller side -------------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest, handle: Handle) -> Entry:
        self.wait_ready()
        assert self.runner is not None
        if request.new_tokens < self.runner.num_codebooks:
            raise ValueError(f"new_tokens must be at least {self.runner.num_codebooks} (one frame per codebook)")
        entry = Entry(priority=request.priority, payload=_Live(handle, request), steps_left=request.new_tokens)
        with self._cond:
            if self._stopping:
                why = "" if self.exit_reason is None else f" ({type(self.exit_reason).__name__}: {self.exit_reason})"
                raise RuntimeError(f"the engine worker for {self.model_name} has stopped{why}; submit again to "
                                   "start a new one")
            self.scheduler.add(entry, self.steps_per_s)
            self._cond.notify()
        handle._cancel = lambda: self.cancel(entry)
        return entry

    def cancel(self, entry: Entry) -> None:
        with self._cond:
            entry.cancelled = True
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self is not threading.current_thread():
            self.join(timeout=30)
        self._decoder.shutdown(wait=False, cancel_futures=True)

    # -- worker thread -----------------------------------------------------------------------------------
    def run(self) -> None:
        # Loading happens here, not on the caller's thread: libgomp gives every thread that runs a parallel
        # op its own OpenMP team, and once the process has more team threads than cores every team's
        # barriers sleep instead of spinning (about a third slower per decode step on 2 cores).
        try:
            with torch.inference_mode():
                if self.model is None and self._loader is not None:
                    loaded = self._loader()
                    self.model, self.tokenizer = loaded if isinstance(loaded, tuple) else (loaded, None)
                self.runner = MusicgenRunner(self.model, **self._runner_args)
                self._small_cache = self.runner.cache_bytes()
        except BaseException as exc:  # noqa: BLE001 - reported to every caller of wait_ready
            self.load_error = exc
            self.stopped = True
            self._ready.set()
            return
        self._ready.set()
        try:
            with torch.inference_mode():
                self._loop()
        except BaseException as exc:  # noqa: BLE001 - not an Exception (those are handled per iteration)
            self.exit_reason = exc
            log.error("engine worker %s ended: %s: %s", self.model_name, type(exc).__name__, exc)
        finally:
            self._drain()

    def _drain(self) -> None:
        """The loop has ended: refuse new requests and give every running and queued one its final event."""
        with self._cond:
            self._stopping = self.stopped = True
            entries = list(self.scheduler.running) + self.scheduler.take_all_waiting()
            for entry in self.scheduler.running:
                entry.slot = None
            self.scheduler.running.clear()
        if self.exit_reason is None:
            event = EngineEvent("cancelled", message="cancelled: the engine stopped")
        else:
            event = EngineEvent("error", message=f"the engine worker for {self.model_name} stopped "
                                                 f"({type(self.exit_reason).__name__}: {self.exit_reason}); "
                                                 "the request did not finish")
        for entry in entries:
            entry.payload.handle._post(event)

    def _loop(self) -> None:
        while True:
            try:
                if not self._iteration():
                    return
            except Exception as exc:  # noqa: BLE001 - whatever it was, the requests in flight end, the loop goes on
                log.exception("engine worker %s: unexpected error", self.model_name)
                with self._cond:
                    running = list(self.scheduler.running)
                    for entry in running:
                        entry.slot = None
                    self.scheduler.running.clear()
                    self._admit_limit = None
                for entry in running:
                    entry.payload.handle._post(EngineEvent(
                        "error", message=f"the engine failed while running this request ({type(exc).__name__}: "
                                         f"{exc}); it was stopped and the engine goes on"))
                self._release_cache()

    def _iteration(self) -> bool:
        """One turn of the loop; False when the worker is stopping."""
        with self._cond:
            self._wait_for_work()
            if self._stopping:
                return False
            for entry in [e for e in self.scheduler.running if e.cancelled]:
                self._leave(entry)
                entry.payload.handle._post(EngineEvent("cancelled", message="cancelled"))
            for entry in self.scheduler.drop_cancelled_waiting():
                entry.payload.handle._post(EngineEvent("cancelled", message="cancelled while queued"))
            admitted = self.scheduler.admissions(self._admit_limit)
        if admitted:
            self._admit_all(admitted)
        if self.scheduler.running:
            self._step()
            self._last_active = time.monotonic()
        return True

    def _wait_for_work(self) -> None:
        """(Holding the condition) wait for a request or stop; an idle engine's grown KV cache is released."""
        while not self._stopping and not len(self.scheduler):
            if self.idle_release_s is not None and self.cache_bytes > self._small_cache:
                left = self._last_active + self.idle_release_s - time.monotonic()
                if left <= 0:
                    self._release_cache()
                    continue
                self._cond.wait(left)
            else:
                self._cond.wait()

    def _release_cache(self) -> None:
        if not self.scheduler.running:
            self.runner.release()

    # -- admission -----------------------------------------------------------------------------------------
    def _admit_all(self, admitted: list[Entry]) -> None:
        """Prefill the newly admitted requests: their texts encoded in one batch, then each one's first window."""
        r = self.runner
        ready = []
        for entry in admitted:
            try:
                self._plan(entry)
                ready.append(entry)
            except Exception as exc:  # noqa: BLE001 - a bad request must not take the loop down
                self._fail([entry], f"{type(exc).__name__}: {exc}")
        ready = self._reserve(ready)
        if not ready:
            return
        try:
            if r.has_cross:
                slots = [e.slot for e in ready]
                r.set_cross(slots, r.text_states([e.payload.request.text_ids for e in ready]))  # type: ignore[arg-type]
            ok = True
        except Exception:  # noqa: BLE001 - one bad prompt must not fail the others: retry one by one
            ok = False
        for entry in ready:
            try:
                if not ok and r.has_cross:
                    r.set_cross([entry.slot], r.text_states([entry.payload.request.text_ids]))  # type: ignore[list-item]
                self._start_window(entry)
            except Exception as exc:  # noqa: BLE001 - a bad request must not take the loop down
                self._fail([entry], f"{type(exc).__name__}: {exc}")
            live: _Live = entry.payload
            live.next_preview = self._next_preview(0, live.request)
            live.last_progress = time.monotonic()

    def _plan(self, entry: Entry) -> None:
        """The request's windows, decode steps and cache needs (a continuation's clip is encoded here)."""
        live: _Live = entry.payload
        req, r = live.request, self.runner
        if req.prompt_audio is not None:  # continuation: EnCodec codes of the clip to extend
            req.prompt_codes = encode_audio(self.model, *req.prompt_audio)
        if r.has_cross and req.melody_chroma is not None:
            raise ValueError("melody conditioning needs a MusicGen-Melody checkpoint (musicgen-melody)")
        K = r.num_codebooks
        prompt = req.prompt_codes if req.prompt_codes is not None else torch.zeros(K, 0, dtype=torch.long)
        if prompt.dim() != 2 or prompt.shape[0] < K:
            raise ValueError(f"the clip to continue must have codes of shape ({K}, frames), got {tuple(prompt.shape)}")
        live.done_codes = prompt[:K].to(torch.long).cpu()  # the codec may hand more codebooks than the decoder reads
        total = prompt.shape[1] + req.new_tokens - K + 1  # frames out, the prompt's included
        live.plan = window_plan(total, prompt.shape[1], r.window_frames, r.stride_frames)
        live.total_steps = sum(frames - plen + K - 1 for _, plen, frames in live.plan)
        entry.steps_left = live.total_steps
        prefix = 0 if r.has_cross else self.model.config.chroma_length + len(req.text_ids or [])
        live.positions = prefix + max(frames for _, _, frames in live.plan) + K
        live.text_len = max(1, len(req.text_ids or [])) if r.has_cross else 1

    def _reserve(self, ready: list[Entry]) -> list[Entry]:
        """Grow the KV cache for everything now running, within the model memory budget.

        Where it does not fit, the newest admissions go back to the queue (in their place) until a running
        request leaves; a request that does not fit even alone fails, saying what to change.
        """
        r = self.runner
        while ready:
            running = [e.payload for e in self.scheduler.running]
            allowed = None if self._cache_allowance is None else self._cache_allowance()
            try:
                r.reserve(len(running), max(p.positions for p in running), max(p.text_len for p in running),
                          None if allowed is None else allowed + self.cache_bytes)
                return ready
            except CacheBudgetExceeded as exc:
                fresh = all(e in ready for e in self.scheduler.running)
                if fresh and self.cache_bytes > self._small_cache:  # nothing to keep: start from a small cache
                    r.release()
                    continue
                victim = max(ready, key=lambda e: e.slot)
                ready.remove(victim)
                if len(self.scheduler.running) == 1:
                    self._fail([victim], f"{exc}: this request's KV cache does not fit the model memory budget even "
                                         "alone; raise ECHOTUNE_MODEL_MEMORY_MB or retry when other models are idle")
                    continue
                with self._cond:
                    self._leave(victim)
                    self.scheduler.requeue(victim)
                    self._admit_limit = len(self.scheduler.running)
        return ready

    def _start_window(self, entry: Entry) -> None:
        """Prefill the request's next window: its conditioning, then its prompt (the caller's or the overlap)."""
        live: _Live = entry.payload
        req, r, slot = live.request, self.runner, entry.slot
        assert slot is not None and live.done_codes is not None
        start, plen, frames = live.plan[live.window]
        prompt = live.done_codes[:, start:start + plen] if plen else None
        new_tokens = frames - plen + r.num_codebooks - 1
        generator = live.seq.generator if live.seq is not None else None
        seq = TokenSequence(r.num_codebooks, r.pad, new_tokens, req.sampling, prompt, generator=generator)
        prefix = None
        if not r.has_cross:  # MusicGen-Melody: the conditioning is a prefix of the decoder's own sequence
            prefix = r.melody_prefix(req.text_ids, self._melody_at(req.melody_chroma, start))
            seq.offset = prefix[0].shape[0]
        r.ensure_capacity(seq.offset + seq.length)  # reserved at admission: no growth here
        if prefix is not None:
            r.prefill(slot, prefix[0], prefix[1], start=0)
        if seq.t:
            emb = r.embed_tokens(seq.prefix_inputs().to(r.device))
            r.prefill(slot, emb, emb, start=seq.offset)
        live.seq = seq

    def _melody_at(self, chroma: torch.Tensor | None, start_frame: int) -> torch.Tensor | None:
        """The melody from a window's start on, looped as audiocraft loops it (``positions % length``)."""
        if chroma is None or not start_frame:
            return chroma
        shift = round(start_frame / self.runner.frame_rate * CHROMA_RATE) % chroma.shape[0]
        return torch.roll(chroma, -shift, dims=0)

    def _next_preview(self, done: int, req: GenerationRequest) -> int:
        """The steps done at which the next live preview is due (0: this request wants none)."""
        return done + max(1, int(req.preview_every_s * self.runner.frame_rate)) if req.preview_every_s else 0

    def _leave(self, entry: Entry) -> None:
        moved = self.scheduler.release(entry)
        self._admit_limit = None  # a slot is free: the budget may allow more now
        if moved is not None:
            self.runner.move_slot(*moved)

    def _fail(self, entries: list[Entry], message: str) -> None:
        """End these requests with an error, freeing their slots (their caches are overwritten by the next)."""
        with self._cond:
            for entry in entries:
                if entry.slot is not None:
                    self._leave(entry)
        for entry in entries:
            entry.payload.handle._post(EngineEvent("error", message=message))

    # -- decoding --------------------------------------------------------------------------------------------
    def _step(self) -> None:
        running = list(self.scheduler.running)
        seqs = [e.payload.seq for e in running]
        t0 = time.perf_counter()
        try:
            tokens = torch.stack([s.current_input() for s in seqs])
            positions = torch.tensor([s.t + s.offset for s in seqs])
            logits = self.runner.decode_step(tokens, positions).cpu()
        except Exception as exc:  # noqa: BLE001 - out of memory, a device error: these requests end, the loop goes on
            self._fail(running, f"the decode step failed: {type(exc).__name__}: {exc}; the request was stopped "
                                "and its slot freed")
            self._release_cache()
            return
        elapsed = time.perf_counter() - t0
        rate = 1.0 / max(elapsed, 1e-6)
        self.steps_per_s = rate if self.steps_per_s is None else 0.8 * self.steps_per_s + 0.2 * rate
        self.step_count += 1
        now = time.monotonic()
        failed = advance_all(seqs, logits)
        for i, (entry, seq) in enumerate(zip(running, seqs)):
            live: _Live = entry.payload
            if i in failed:
                self._fail([entry], failed[i])
                continue
            live.steps_taken += 1
            live.last_step = self.step_count
            entry.steps_left = live.total_steps - live.steps_done
            if seq.done and not self._next_window(entry):
                with self._cond:
                    self._leave(entry)
                self._finish(live)
                continue
            if entry.slot is None:  # its next window could not start
                continue
            if now - live.last_progress >= 0.5:
                live.last_progress = now
                live.handle._post(self._progress(live))
            if live.next_preview and live.steps_done >= live.next_preview:
                live.next_preview = self._next_preview(live.steps_done, live.request)
                codes = live.codes_so_far()
                if codes.shape[1]:
                    self._decode(live.handle, codes, "preview")

    def _next_window(self, entry: Entry) -> bool:
        """The current window is done: keep its new frames and start the next one (False: that was the last)."""
        live: _Live = entry.payload
        assert live.seq is not None
        live.done_codes = live.codes_so_far()
        if live.window + 1 >= len(live.plan):
            return False
        live.steps_before += live.seq.steps_done
        live.window += 1
        try:
            self._start_window(entry)
        except Exception as exc:  # noqa: BLE001 - this request ends, the others go on
            self._fail([entry], f"starting window {live.window + 1} of {len(live.plan)} failed: "
                                f"{type(exc).__name__}: {exc}")
        return True

    def _progress(self, live: _Live) -> EngineEvent:
        fps = self.runner.frame_rate
        done, total = live.steps_done, live.total_steps
        windows = f", window {live.window + 1} of {len(live.plan)}" if len(live.plan) > 1 else ""
        return EngineEvent("progress", fraction=done / max(1, total),
                           message=f"generating: {done}/{total} steps ({done / fps:.1f} of {total / fps:.1f} s"
                                   f"{windows})")

    def _finish(self, live: _Live) -> None:
        assert live.done_codes is not None
        codes = live.done_codes
        live.handle._post(self._progress(live))
        if live.request.decode_audio:
            self._decode(live.handle, codes, "result")
        else:
            live.handle._post(EngineEvent("result", fraction=1.0, codes=codes, sample_rate=self.runner.sample_rate))

    def _decode(self, handle: Handle, codes: torch.Tensor, kind: str) -> None:
        """Decode on the audio thread; a result that can no longer be decoded (engine stopping) is reported."""
        def lost(message: str) -> None:
            if kind == "result":
                handle._post(EngineEvent("cancelled", message=message))

        try:
            future = self._decoder.submit(self._decode_and_post, handle, codes, kind)
        except RuntimeError:  # the decoder has shut down
            lost("cancelled: the engine stopped before the audio was decoded")
            return
        future.add_done_callback(lambda f: f.cancelled() and lost("cancelled: the engine stopped before the audio "
                                                                  "was decoded"))

    def _decode_and_post(self, handle: Handle, codes: torch.Tensor, kind: str) -> None:
        try:
            audio = decode_codes(self.model, codes)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, the worker carries on
            if kind == "result":
                handle._post(EngineEvent("error", message=f"decoding audio failed: {exc}"))
            return
        handle._post(EngineEvent(kind, fraction=1.0 if kind == "result" else 0.0, audio=audio,
                                 sample_rate=self.runner.sample_rate, codes=codes))


class Engine:
    """The process's engine: one worker per loaded model, created on first use.

    Loaded models and their KV caches are kept under ``budget_mb`` (the cards' memory estimates for the
    weights, the caches as allocated): loading one more stops the least recently used idle workers first;
    if only busy ones are left, the caller hears "busy". A worker grows its cache only within what the
    budget leaves (requests wait for a slot otherwise) and shrinks it after ``idle_release_s`` idle.
    """

    def __init__(self, loader: Callable[[str], tuple[Callable[[], Any], dict[str, Any]]] | None = None, *, max_slots: int = 16,
                 max_queue: int = 64, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 budget_mb: float | None = None, idle_release_s: float | None = 30.0):
        self._loader = loader
        self.budget_mb = budget_mb
        self.idle_release_s = idle_release_s
        self._last_used: dict[str, float] = {}
        self.max_slots, self.max_queue, self.device, self.dtype = max_slots, max_queue, device, dtype
        self._workers: dict[str, MusicgenWorker] = {}
        self.model_info: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add_model(self, model_id: str, model: Any = None, info: dict[str, Any] | None = None,
                  loader: Callable[[], Any] | None = None) -> MusicgenWorker:
        with self._lock:
            if model_id not in self._workers:
                self._workers[model_id] = MusicgenWorker(
                    model, loader=loader, max_slots=self.max_slots, max_queue=self.max_queue, device=self.device,
                    dtype=self.dtype, name=model_id, idle_release_s=self.idle_release_s,
                    cache_allowance=None if self.budget_mb is None else lambda: self._cache_allowance(model_id))
                self.model_info[model_id] = dict(info or {})
            worker = self._workers[model_id]
        try:
            return worker.wait_ready()
        except BaseException:
            with self._lock:
                if self._workers.get(model_id) is worker:
                    del self._workers[model_id]
            raise

    def worker(self, model_id: str) -> MusicgenWorker:
        with self._lock:
            existing = self._workers.get(model_id)
        if existing is not None:
            existing.wait_ready()
            if not existing.stopped:
                return existing
            # its thread ended (every request it held was told): a fresh worker on the same weights
            with self._lock:
                if self._workers.get(model_id) is existing:
                    del self._workers[model_id]
            existing.stop()
            model, tokenizer = existing.model, existing.tokenizer
            return self.add_model(model_id, info=self.model_info.get(model_id), loader=lambda: (model, tokenizer))
        if self._loader is None:
            raise LookupError(f"model {model_id!r} is not loaded in this engine")
        load, info = self._loader(model_id)
        self._make_room(model_id, int(info.get("memory_mb", 0)))
        return self.add_model(model_id, info=info, loader=load)

    def memory_mb(self) -> dict[str, dict[str, float]]:
        """Per loaded model: its weights (the card's estimate) and its KV cache now, in MB."""
        with self._lock:
            workers = dict(self._workers)
        return {m: {"weights": float(self.model_info.get(m, {}).get("memory_mb", 0)), "kv_cache": w.cache_bytes / 2**20}
                for m, w in workers.items()}

    def _used_mb(self, models: list[str] | None = None) -> float:
        """(Holding the lock) weights and KV caches of the loaded models (or of ``models``), in MB."""
        return sum(float(self.model_info.get(m, {}).get("memory_mb", 0)) + w.cache_bytes / 2**20
                   for m, w in self._workers.items() if models is None or m in models)

    def _cache_allowance(self, model_id: str) -> int:
        """Bytes ``model_id``'s KV cache may grow by now: the budget less every loaded model and cache."""
        assert self.budget_mb is not None
        with self._lock:
            return int((self.budget_mb - self._used_mb()) * 2**20)

    def _make_room(self, model_id: str, need_mb: int) -> None:
        """Stop least recently used idle workers until ``need_mb`` more fits the budget (KV caches count)."""
        if self.budget_mb is None:
            return
        while True:
            with self._lock:
                used = self._used_mb()
                if used + need_mb <= self.budget_mb or not self._workers:
                    return
                idle = [m for m, w in self._workers.items() if not len(w.scheduler)]
                freeable = self._used_mb(idle)
                if used - freeable + need_mb > self.budget_mb:  # evicting every idle model would not be enough
                    busy = ", ".join(sorted(m for m in self._workers if m not in idle))
                    raise EngineBusy(f"loading {model_id} ({need_mb} MB) would exceed the {self.budget_mb:g} MB model "
                                     f"memory budget even after unloading idle models; busy: {busy}; retry when "
                                     "they finish",
                                     min(w.scheduler.retry_after(w.steps_per_s) for w in self._workers.values()))
                victim = min(idle, key=lambda m: self._last_used.get(m, 0.0))
                worker = self._workers.pop(victim)
            worker.stop()

    async def submit(self, request: GenerationRequest) -> Handle:
        worker = await asyncio.to_thread(self.worker, request.model_id)
        self._last_used[request.model_id] = time.monotonic()
        handle = Handle(asyncio.get_running_loop())
        worker.submit(request, handle)
        return handle

    async def generate(self, *, model_id: str, prompt: str, duration_s: float, seed: int | None = None,
                       temperature: float = 1.0, top_k: int = 250, top_p: float = 0.0, guidance_scale: float = 3.0,
                       priority: int = 0, preview_every_s: float = 0.0,
                       continuation: tuple[np.ndarray, int] | None = None,
                       melody: tuple[np.ndarray, int] | None = None) -> Handle:
        """Text (and optionally a clip to continue) to a running request: the API the daemon also serves."""
        worker = await asyncio.to_thread(self.worker, model_id)
        self._last_used[model_id] = time.monotonic()
        assert worker.runner is not None
        if worker.tokenizer is None:
            raise LookupError(f"{model_id} has no tokenizer in its weights folder; pull the full checkpoint")
        text_ids = list(worker.tokenizer(prompt)["input_ids"]) if prompt else None
        frames = max(1, round(duration_s * worker.runner.frame_rate))
        request = GenerationRequest(
            model_id, new_tokens=frames + worker.runner.num_codebooks - 1, text_ids=text_ids,
            sampling=SamplingParams(guidance_scale=guidance_scale, do_sample=True, temperature=temperature,
                                    top_k=top_k, top_p=top_p, seed=seed),
            prompt_audio=continuation, priority=priority, preview_every_s=preview_every_s,
            melody_chroma=None if melody is None else torch.as_tensor(chroma_onehot(*melody)))
        handle = Handle(asyncio.get_running_loop())
        worker.submit(request, handle)
        return handle

    def info(self, model_id: str) -> dict[str, Any]:
        return dict(self.model_info.get(model_id, {}), device=self.device)

    def loaded(self) -> list[str]:
        with self._lock:
            return sorted(self._workers)

    def load(self) -> dict[str, dict[str, int]]:
        """Per loaded model: requests decoding now and requests waiting for a slot."""
        with self._lock:
            workers = dict(self._workers)
        return {m: {"running": len(w.scheduler.running), "waiting": w.scheduler.waiting} for m, w in workers.items()}

    def close(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for w in workers:
            w.stop()
