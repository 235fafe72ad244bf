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
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .melody_chroma import chroma_onehot
from .musicgen_codec import decode_codes, encode_audio
from .musicgen_runner import MusicgenRunner
from .musicgen_sequence import SamplingParams, TokenSequence, advance_all
from .scheduler import EngineBusy, Entry, Scheduler

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
    seq: TokenSequence | None = None
    last_progress: float = 0.0
    next_preview: int = 0
    steps_taken: int = 0
    last_step: int = 0  # the worker step this request last took part in (cancel must stop it within one)


class MusicgenWorker(threading.Thread):
    """One model's decode loop: a runner, a scheduler, and a thread that drives both."""

    def __init__(self, model: Any = None, *, loader: Callable[[], Any] | None = None, max_slots: int = 16,
                 max_queue: int = 64, device: str = "cpu", dtype: torch.dtype = torch.float32, name: str = "musicgen"):
        super().__init__(name=f"echotune-engine-{name}", daemon=True)
        self.model = model
        self._loader = loader
        self._runner_args = dict(max_slots=max_slots, device=device, dtype=dtype)
        self.runner: MusicgenRunner | None = None
        self.tokenizer: Any = None  # the text tokenizer that came with the weights, if any
        self.load_error: BaseException | None = None
        self._ready = threading.Event()
        self.scheduler = Scheduler(max_slots, max_queue)
        self._cond = threading.Condition()
        self._stopping = False
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"echotune-decode-{name}")
        self.step_count = 0
        self.steps_per_s: float | None = None  # per-slot decode rate, measured
        self.start()

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
                raise RuntimeError("the engine is shutting down")
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
        except BaseException as exc:  # noqa: BLE001 - reported to every caller of wait_ready
            self.load_error = exc
            self._ready.set()
            return
        self._ready.set()
        with torch.inference_mode():
            self._loop()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not len(self.scheduler):
                    self._cond.wait()
                if self._stopping:
                    break
                for entry in [e for e in self.scheduler.running if e.cancelled]:
                    self._leave(entry)
                    entry.payload.handle._post(EngineEvent("cancelled", message="cancelled"))
                for entry in self.scheduler.drop_cancelled_waiting():
                    entry.payload.handle._post(EngineEvent("cancelled", message="cancelled while queued"))
                admitted = self.scheduler.admissions()
            if admitted:
                self._admit_all(admitted)
            if self.scheduler.running:
                self._step()
        for entry in list(self.scheduler.running):
            entry.payload.handle._post(EngineEvent("cancelled", message="engine stopped"))

    def _admit_all(self, admitted: list[Entry]) -> None:
        """Prefill the newly admitted requests: their texts encoded in one batch, then each one's prompt."""
        r = self.runner
        r.ensure_slots(len(self.scheduler.running))
        try:
            if r.has_cross:
                slots = [e.slot for e in admitted]
                r.set_cross(slots, r.text_states([e.payload.request.text_ids for e in admitted]))  # type: ignore[arg-type]
            ok = True
        except Exception:  # noqa: BLE001 - one bad prompt must not fail the others: retry one by one
            ok = False
        for entry in admitted:
            try:
                if not ok and r.has_cross:
                    r.set_cross([entry.slot], r.text_states([entry.payload.request.text_ids]))  # type: ignore[list-item]
                self._admit(entry)
            except Exception as exc:  # noqa: BLE001 - a bad request must not take the loop down
                with self._cond:
                    self._leave(entry)
                entry.payload.handle._post(EngineEvent("error", message=f"{type(exc).__name__}: {exc}"))

    def _admit(self, entry: Entry) -> None:
        live: _Live = entry.payload
        req, r, slot = live.request, self.runner, entry.slot
        assert slot is not None
        if req.prompt_audio is not None:  # continuation: EnCodec codes of the clip to extend
            req.prompt_codes = encode_audio(self.model, *req.prompt_audio)
        live.seq = seq = TokenSequence(r.num_codebooks, r.pad, req.new_tokens, req.sampling, req.prompt_codes)
        prefix = None
        if not r.has_cross:  # MusicGen-Melody: the conditioning is a prefix of the decoder's own sequence
            prefix = r.melody_prefix(req.text_ids, req.melody_chroma)
            seq.offset = prefix[0].shape[0]
        elif req.melody_chroma is not None:
            raise ValueError("melody conditioning needs a MusicGen-Melody checkpoint (musicgen-melody)")
        r.ensure_capacity(seq.offset + seq.length)
        if prefix is not None:
            r.prefill(slot, prefix[0], prefix[1], start=0)
        if seq.t:
            emb = r.embed_tokens(seq.prefix_inputs().to(r.device))
            r.prefill(slot, emb, emb, start=seq.offset)
        live.next_preview = self._next_preview(seq.t, req)
        live.last_progress = time.monotonic()

    def _next_preview(self, t: int, req: GenerationRequest) -> int:
        """The position at which the next live preview is due (0: this request wants none)."""
        return t + max(1, int(req.preview_every_s * self.runner.frame_rate)) if req.preview_every_s else 0

    def _leave(self, entry: Entry) -> None:
        moved = self.scheduler.release(entry)
        if moved is not None:
            self.runner.move_slot(*moved)

    def _step(self) -> None:
        running = list(self.scheduler.running)
        seqs = [e.payload.seq for e in running]
        tokens = torch.stack([s.current_input() for s in seqs])
        positions = torch.tensor([s.t + s.offset for s in seqs])
        t0 = time.perf_counter()
        logits = self.runner.decode_step(tokens, positions).cpu()
        elapsed = time.perf_counter() - t0
        rate = 1.0 / max(elapsed, 1e-6)
        self.steps_per_s = rate if self.steps_per_s is None else 0.8 * self.steps_per_s + 0.2 * rate
        self.step_count += 1
        now = time.monotonic()
        advance_all(seqs, logits)
        for entry, seq in zip(running, seqs):
            live: _Live = entry.payload
            live.steps_taken += 1
            live.last_step = self.step_count
            entry.steps_left = seq.steps_total - seq.steps_done
            if seq.done:
                with self._cond:
                    self._leave(entry)
                self._finish(live)
                continue
            if now - live.last_progress >= 0.5:
                live.last_progress = now
                live.handle._post(self._progress(seq))
            if live.next_preview and seq.t >= live.next_preview:
                live.next_preview = self._next_preview(seq.t, live.request)
                codes = seq.codes()
                if codes.shape[1]:
                    self._decoder.submit(self._decode_and_post, live.handle, codes, "preview")

    def _progress(self, seq: TokenSequence) -> EngineEvent:
        fps = self.runner.frame_rate
        return EngineEvent("progress", fraction=seq.steps_done / max(1, seq.steps_total),
                           message=f"generating: {seq.steps_done}/{seq.steps_total} steps "
                                   f"({seq.steps_done / fps:.1f} of {seq.steps_total / fps:.1f} s)")

    def _finish(self, live: _Live) -> None:
        assert live.seq is not None
        codes = live.seq.codes()
        live.handle._post(self._progress(live.seq))
        if live.request.decode_audio:
            self._decoder.submit(self._decode_and_post, live.handle, codes, "result")
        else:
            live.handle._post(EngineEvent("result", fraction=1.0, codes=codes, sample_rate=self.runner.sample_rate))

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

    Loaded models are kept under ``budget_mb`` (their cards' memory estimates): loading one more stops
    the least recently used idle workers first; if only busy ones are left, the caller hears "busy".
    """

    def __init__(self, loader: Callable[[str], tuple[Callable[[], Any], dict[str, Any]]] | None = None, *, max_slots: int = 16,
                 max_queue: int = 64, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 budget_mb: int | None = None):
        self._loader = loader
        self.budget_mb = budget_mb
        self._last_used: dict[str, float] = {}
        self.max_slots, self.max_queue, self.device, self.dtype = max_slots, max_queue, device, dtype
        self._workers: dict[str, MusicgenWorker] = {}
        self.model_info: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add_model(self, model_id: str, model: Any = None, info: dict[str, Any] | None = None,
                  loader: Callable[[], Any] | None = None) -> MusicgenWorker:
        with self._lock:
            if model_id not in self._workers:
                self._workers[model_id] = MusicgenWorker(model, loader=loader, max_slots=self.max_slots,
                                                         max_queue=self.max_queue, device=self.device,
                                                         dtype=self.dtype, name=model_id)
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
            return existing.wait_ready()
        if self._loader is None:
            raise LookupError(f"model {model_id!r} is not loaded in this engine")
        load, info = self._loader(model_id)
        self._make_room(model_id, int(info.get("memory_mb", 0)))
        return self.add_model(model_id, info=info, loader=load)

    def _make_room(self, model_id: str, need_mb: int) -> None:
        """Stop least recently used idle workers until ``need_mb`` more fits the budget."""
        if self.budget_mb is None:
            return
        while True:
            with self._lock:
                used = sum(int(i.get("memory_mb", 0)) for m, i in self.model_info.items() if m in self._workers)
                if used + need_mb <= self.budget_mb or not self._workers:
                    return
                idle = [m for m, w in self._workers.items() if not len(w.scheduler)]
                freeable = sum(int(self.model_info[m].get("memory_mb", 0)) for m in idle)
                if used - freeable + need_mb > self.budget_mb:  # evicting every idle model would not be enough
                    busy = ", ".join(sorted(m for m in self._workers if m not in idle))
                    raise EngineBusy(f"loading {model_id} ({need_mb} MB) would exceed the {self.budget_mb} MB model "
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
