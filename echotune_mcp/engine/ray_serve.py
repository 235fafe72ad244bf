"""``echotune-mcp engine deploy``: the engine as Ray Serve deployments, for more users than one machine serves.

One Serve application per model family: ``echotune-musicgen-<checkpoint>`` (one per MusicGen checkpoint),
``echotune-demucs-<model>`` and, when asked, ``echotune-clap``. Each replica runs OUR engine, not
``@serve.batch``: a MusicGen replica holds one continuous-batching :class:`~.engine.Engine` (requests join
the running batch at the decode step), a Demucs replica one :class:`~.demucs_runner.DemucsRunner` (segments
of concurrent requests share forward passes). Serve only routes whole requests to replicas, so

* ``max_ongoing_requests`` is the engine's slot count (a replica never holds more requests than it decodes
  together; the rest wait in Serve's queue, where another replica can take them),
* autoscaling targets ``target_ongoing_requests`` = 3/4 of the slots, between ``--replicas-min`` and
  ``--replicas-max`` (queue depth is what Serve's autoscaler measures),
* each replica has its own model memory budget (``--memory-mb``, the model manager's budget) and its
  resources (``--gpus-per-replica``, fractional allowed, ``--cpus-per-replica``).

The request methods are async generators, so Serve streams their events back (``handle.options(stream=True)``):
``accepted`` (with the replica's id), ``progress``, ``preview`` (audio as numpy, pickled by Ray, no base64),
``heartbeat`` every :data:`HEARTBEAT_S` when nothing else is due (the client's read timeout tells a live
replica from a wedged one), then ``result`` | ``error`` | ``cancelled``. Cancelling the streaming call
(``DeploymentResponseGenerator.cancel()``, which :mod:`.ray_client` does when a job is cancelled or its
client goes away) cancels the generator on the replica, whose ``finally`` cancels the engine request: its
slot is free before the next decode step. ``stats()`` says what a replica holds and what it cancelled.

Only the fields a replica needs travel in the deployment's arguments (no secrets: Serve stores them in
its cluster-visible config).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..config import Settings

HEARTBEAT_S = 2.0
FINAL = ("result", "error", "cancelled")
APP_PREFIX = "echotune-"
MUSICGEN_DEPLOYMENT, DEMUCS_DEPLOYMENT, CLAP_DEPLOYMENT = "MusicgenReplica", "DemucsReplica", "ClapReplica"
REPLICA_FIELDS = ("data_dir", "models_dir", "device", "engine_slots", "engine_dtype", "model_memory_mb",
                  "max_generation_seconds", "preview_every_s", "clap_model")


def musicgen_app(checkpoint: str) -> str:
    return f"{APP_PREFIX}musicgen-{checkpoint}"


def demucs_app(model_id: str) -> str:
    return f"{APP_PREFIX}demucs-{model_id}"


CLAP_APP = f"{APP_PREFIX}clap"


def replica_settings(settings: Settings) -> dict[str, Any]:
    """What a replica rebuilds its Settings from: paths, device and engine sizing, never a secret."""
    return {k: getattr(settings, k) for k in REPLICA_FIELDS}


def _settings(fields: dict[str, Any]) -> Settings:
    from ..config import Settings

    return Settings(**fields)


def _replica_ids() -> dict[str, str]:
    """This replica's Serve id and Ray actor name (tests ``ray.kill`` it by name; results name who ran them)."""
    out = {"replica": "", "actor_name": ""}
    try:
        import ray
        from ray import serve

        out["replica"] = serve.get_replica_context().replica_id.unique_id
        out["actor_name"] = ray.get_runtime_context().get_actor_name() or ""
    except Exception:  # noqa: BLE001 - not inside Serve (direct use in-process): no ids
        pass
    return out


def _event(event: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": event.kind, "fraction": event.fraction, "message": event.message}
    if event.audio is not None:
        out.update(audio=np.ascontiguousarray(event.audio, dtype=np.float32), sample_rate=int(event.sample_rate))
    if getattr(event, "codes", None) is not None:
        out["codes"] = event.codes.cpu().numpy()
    return out


async def _with_heartbeats(source: Any) -> Any:
    """Items of the async iterator ``source``, with ``{"kind": "heartbeat"}`` whenever HEARTBEAT_S pass silently."""
    it = source.__aiter__()
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            pending = asyncio.ensure_future(it.__anext__())
            while not (await asyncio.wait({pending}, timeout=HEARTBEAT_S))[0]:
                yield {"kind": "heartbeat"}
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


def check_request(request: dict[str, Any], max_seconds: float) -> str | None:
    """Why a generate request is refused (the loopback daemon's bounds, ``daemon.GenerateBody``), or None.

    Serve callers are other processes of the cluster, not users, but a replica still refuses what the
    ``generate_music`` tool would (naming the field) rather than fail deep inside the engine."""
    from pydantic import ValidationError

    from .daemon import MAX_CLIP_SECONDS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, GenerateBody, validation_error

    scalars = {k: v for k, v in request.items() if k not in ("continuation", "melody")}
    try:
        GenerateBody.model_validate(scalars, context={"max_seconds": max_seconds})
    except ValidationError as exc:
        return validation_error(exc)["error"]
    for key in ("continuation", "melody"):
        clip = request.get(key)
        if clip is None:
            continue
        try:
            audio, sr = clip
            audio, sr = np.asarray(audio), int(sr)
        except (TypeError, ValueError):
            return f"invalid request: {key}: must be (mono float32 samples, sample rate)"
        if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
            return f"invalid request: {key}: sample rate must be {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz, got {sr}"
        if audio.ndim != 1 or not 0 < audio.size <= MAX_CLIP_SECONDS * sr or not np.isfinite(audio).all():
            return (f"invalid request: {key}: must be 1 to {MAX_CLIP_SECONDS:g} s of finite mono samples, got "
                    f"shape {audio.shape}")
    return None


@dataclass
class _Stats:
    started: int = 0
    finished: int = 0
    cancelled: deque[str] = field(default_factory=lambda: deque(maxlen=256))  # request ids cancelled by a client
    live: dict[str, Any] = field(default_factory=dict)  # request id -> engine handle


class MusicgenReplica:
    """One replica of a MusicGen checkpoint: an in-process continuous-batching Engine, loaded at start."""

    def __init__(self, fields: dict[str, Any], checkpoint: str):
        from .musicgen_backend import get_engine

        self.settings = replace(_settings(fields), engine_url=None)
        self.checkpoint = checkpoint
        self.engine = get_engine(self.settings)
        self.engine.worker(checkpoint)  # load now: a replica is ready (and counted by Serve) once it can decode
        self.ids = _replica_ids()
        self.stats_ = _Stats()

    async def generate(self, request: dict[str, Any]) -> Any:
        """Stream one request's events (see the module docstring); a cancelled stream cancels the request."""
        from .scheduler import EngineBusy

        problem = check_request(request, self.settings.max_generation_seconds)
        if problem:
            yield {"kind": "rejected", "error": problem}
            return
        request = dict(request, model_id=self.checkpoint)
        handle = None
        finished = False
        try:
            try:
                handle = await self.engine.generate(**request)
            except EngineBusy as exc:
                finished = True
                yield {"kind": "busy", "error": str(exc), "retry_after_s": exc.retry_after_s}
                return
            except (ValueError, LookupError, TypeError) as exc:
                finished = True
                yield {"kind": "rejected", "error": str(exc)}
                return
            self.stats_.started += 1
            self.stats_.live[handle.id] = handle
            info = dict(self.engine.info(self.checkpoint), model_id=self.checkpoint, **self.ids)
            yield {"kind": "accepted", "request_id": handle.id, "info": info}
            async for event in _with_heartbeats(handle.events()):
                if isinstance(event, dict):  # a heartbeat
                    yield event
                    continue
                finished = event.kind in FINAL
                yield _event(event)
        finally:
            if handle is not None:
                self.stats_.live.pop(handle.id, None)
                if finished:
                    self.stats_.finished += 1
                else:  # the caller cancelled the stream (or went away): free the slot now
                    handle.cancel()
                    self.stats_.cancelled.append(handle.id)

    def cancel(self, request_id: str) -> bool:
        """Cancel a request this replica holds (False: not here; Serve may route this call to another replica)."""
        handle = self.stats_.live.get(request_id)
        if handle is None:
            return False
        handle.cancel()
        return True

    def info(self) -> dict[str, Any]:
        return dict(self.engine.info(self.checkpoint), model_id=self.checkpoint, **self.ids)

    def stats(self) -> dict[str, Any]:
        """What this replica holds: engine load, requests started/finished, ids cancelled by clients."""
        worker = self.engine._workers.get(self.checkpoint)
        return {**self.ids, "load": self.engine.load(), "started": self.stats_.started,
                "finished": self.stats_.finished, "cancelled": list(self.stats_.cancelled),
                "live": sorted(self.stats_.live), "steps": worker.step_count if worker is not None else 0,
                "memory_mb": self.engine.memory_mb(), "budget_mb": self.engine.budget_mb}


class DemucsReplica:
    """One replica of a Demucs model: the batched DemucsRunner through separation_backend, loaded at start."""

    def __init__(self, fields: dict[str, Any], model_id: str):
        from . import separation_backend as sb

        self.settings = replace(_settings(fields), engine_url=None)
        self.model_id = model_id
        self.resolved = sb.resolve_model(self.settings, model_id, None)
        sb.get_runner(self.settings, model_id)  # load now
        self.ids = _replica_ids()
        self.stats_ = _Stats()

    async def separate(self, samples: np.ndarray, sample_rate: int) -> Any:
        """Stream progress, then ``{"kind": "result", "stems", "sample_rate", "model", "residual_db"}``."""
        from . import separation_backend as sb
        from .daemon import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

        samples = np.asarray(samples)
        if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE or samples.ndim != 2 or not samples.size \
                or not np.isfinite(samples).all():
            yield {"kind": "rejected", "error": f"invalid request: samples must be finite (frames, channels) audio at "
                                                f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz; got shape {samples.shape} at "
                                                f"{sample_rate} Hz"}
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        cancelled = False

        def on_progress(fraction: float, message: str) -> None:
            if cancelled:  # raising here drops the request's remaining segments (separation_backend.separate)
                raise RuntimeError("cancelled by the client")
            loop.call_soon_threadsafe(queue.put_nowait, {"kind": "progress", "fraction": fraction, "message": message})

        async def run() -> Any:
            try:
                sep = await sb.separate(self.settings, np.asarray(samples, np.float32), int(sample_rate),
                                        self.resolved, on_progress=on_progress)
                await queue.put({"kind": "result", "fraction": 1.0, "message": "", "stems": sep.stems,
                                 "sample_rate": sep.sample_rate, "model": dict(sep.model, **self.ids),
                                 "residual_db": sep.residual_db})
            except Exception as exc:  # noqa: BLE001 - reported to the caller, the replica serves on
                await queue.put({"kind": "error", "message": f"separation failed: {type(exc).__name__}: {exc}"})

        async def events() -> Any:
            while True:
                item = await queue.get()
                yield item
                if item["kind"] in FINAL:
                    return

        self.stats_.started += 1
        task = asyncio.ensure_future(run())
        finished = False
        request_id = f"sep-{self.stats_.started}"
        self.stats_.live[request_id] = task
        try:
            yield {"kind": "accepted", "request_id": request_id, "info": dict(self.ids, model_id=self.model_id)}
            async for item in _with_heartbeats(events()):
                finished = item["kind"] in FINAL
                yield item
        finally:
            self.stats_.live.pop(request_id, None)
            if finished:
                self.stats_.finished += 1
            else:
                cancelled = True  # noqa: F841 - read by on_progress on the runner's thread
                task.cancel()  # separation_backend.separate cancels the runner ticket on CancelledError
                self.stats_.cancelled.append(request_id)

    def info(self) -> dict[str, Any]:
        return dict(self.ids, model_id=self.model_id)

    def stats(self) -> dict[str, Any]:
        return {**self.ids, "started": self.stats_.started, "finished": self.stats_.finished,
                "cancelled": list(self.stats_.cancelled), "live": sorted(self.stats_.live)}


class ClapReplica:
    """CLAP audio/text embeddings (the recommender's ``similar_to``), one model per replica."""

    def __init__(self, fields: dict[str, Any]):
        from ..recommend.sound import get_embedder

        self.settings = _settings(fields)
        self.embedder = get_embedder(self.settings)  # ClapUnavailable (no weights) fails the deployment, loudly
        self.ids = _replica_ids()

    def text(self, texts: list[str]) -> np.ndarray:
        return self.embedder.text(list(texts))

    def audios(self, clips: list[tuple[np.ndarray, int]]) -> np.ndarray:
        return self.embedder.audios(clips)

    def info(self) -> dict[str, Any]:
        return dict(self.ids, model_id=self.settings.clap_model, dim=self.embedder.dim,
                    sample_rate=self.embedder.sample_rate)


# -- deploying ---------------------------------------------------------------------------------------------
@dataclass
class DeployPlan:
    """What ``engine deploy`` puts on the cluster (also used by tests and tools/bench_scale.py)."""

    musicgen: list[str] = field(default_factory=list)
    demucs: list[str] = field(default_factory=list)
    clap: bool = False
    replicas_min: int = 1
    replicas_max: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    slots: int | None = None  # engine slots per MusicGen replica; None: the settings' (16 GPU / 8 CPU)
    memory_mb: int | None = None  # the model manager's budget per replica; None: the settings'

    def validate(self) -> None:
        if not (self.musicgen or self.demucs or self.clap):
            raise ValueError("nothing to deploy: name --musicgen CHECKPOINT, --demucs or --clap")
        if not 1 <= self.replicas_min <= self.replicas_max <= 1024:
            raise ValueError(f"need 1 <= --replicas-min ({self.replicas_min}) <= --replicas-max "
                             f"({self.replicas_max}) <= 1024")
        if not 0 <= self.gpus_per_replica <= 8:
            raise ValueError(f"--gpus-per-replica must be between 0 and 8, got {self.gpus_per_replica:g}")
        if not 0 <= self.cpus_per_replica <= 256:
            raise ValueError(f"--cpus-per-replica must be between 0 and 256, got {self.cpus_per_replica:g}")
        if self.slots is not None and not 1 <= self.slots <= 256:
            raise ValueError(f"slots must be between 1 and 256, got {self.slots}")


def deployment_options(plan: DeployPlan, concurrency: int) -> dict[str, Any]:
    """Serve options for one family: resources, max_ongoing_requests = the engine's slots, autoscaling."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": plan.cpus_per_replica, "num_gpus": plan.gpus_per_replica},
        "max_ongoing_requests": concurrency,
        "health_check_period_s": 5.0,
        "graceful_shutdown_timeout_s": 10.0,
    }
    if plan.replicas_min == plan.replicas_max:
        options["num_replicas"] = plan.replicas_min
    else:
        options["autoscaling_config"] = {
            "min_replicas": plan.replicas_min, "max_replicas": plan.replicas_max,
            "target_ongoing_requests": max(1.0, 0.75 * concurrency),
            "upscale_delay_s": 10.0, "downscale_delay_s": 120.0}
    return options


def applications(settings: Settings, plan: DeployPlan) -> dict[str, Any]:
    """{Serve application name: bound application}, one per model family."""
    from ray import serve

    plan.validate()
    fields = replica_settings(settings)
    if plan.memory_mb is not None:
        fields["model_memory_mb"] = plan.memory_mb
    on_gpu = plan.gpus_per_replica > 0
    slots = plan.slots or settings.engine_slots or (16 if on_gpu else 8)
    fields["engine_slots"] = slots
    if on_gpu and not fields.get("device"):
        fields["device"] = "cuda"
    apps: dict[str, Any] = {}
    for ckpt in plan.musicgen:
        dep = serve.deployment(MusicgenReplica, name=MUSICGEN_DEPLOYMENT, **deployment_options(plan, slots))
        apps[musicgen_app(ckpt)] = dep.bind(fields, ckpt)
    for model_id in plan.demucs:
        # Demucs: one request per segment batch slot; 8 on a GPU (default_batch), 2 interleaved on CPU
        dep = serve.deployment(DemucsReplica, name=DEMUCS_DEPLOYMENT, **deployment_options(plan, 8 if on_gpu else 2))
        apps[demucs_app(model_id)] = dep.bind(fields, model_id)
    if plan.clap:
        dep = serve.deployment(ClapReplica, name=CLAP_DEPLOYMENT, **deployment_options(plan, 16))
        apps[CLAP_APP] = dep.bind(fields)
    return apps


def connect(address: str | None, *, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://host:port``, ``host:port``), or start a local one
    (``None``/``local``: in this process, ending with it), unless this process is already connected."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"namespace": "echotune", "log_to_driver": False, "configure_logging": False}
    if address in (None, "", "local"):
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    else:
        ray.init(address=address, **kwargs)


def deploy(settings: Settings, plan: DeployPlan, *, address: str | None = None,
           wait_timeout_s: float = 600.0) -> dict[str, Any]:
    """Deploy every application of ``plan`` and wait (bounded) until they run; returns {app: status}."""
    from ray import serve

    plan.validate()
    connect(address)
    serve.start(proxy_location="Disabled")  # requests come through DeploymentHandles, not HTTP
    apps = applications(settings, plan)
    for name, app in apps.items():
        serve.run(app, name=name, route_prefix=None, blocking=False)
    deadline = time.monotonic() + wait_timeout_s
    while True:
        status = {name: str(serve.status().applications[name].status) for name in apps}
        if all(s.endswith("RUNNING") for s in status.values()):
            return status
        failed = {n: s for n, s in status.items() if s.endswith(("DEPLOY_FAILED", "UNHEALTHY"))}
        if failed:
            details = {n: serve.status().applications[n].message for n in failed}
            raise RuntimeError(f"Serve could not deploy {', '.join(failed)}: {details}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Serve applications were not running after {wait_timeout_s:g} s: {status}")
        time.sleep(0.5)


def deployed(kind: str) -> list[str]:
    """Checkpoints (``musicgen``) or model ids (``demucs``) whose Serve application has a running replica.

    Replicas count, not the application's status: while Serve replaces a dead replica the application is
    DEPLOYING (or UNHEALTHY), yet its other replicas serve on, and requests must keep going to them."""
    from ray import serve

    prefix = f"{APP_PREFIX}{kind}-"
    try:
        apps = serve.status().applications
    except Exception:  # noqa: BLE001 - Serve not started on this cluster
        return []
    return sorted(n.removeprefix(prefix) for n, a in apps.items()
                  if n.startswith(prefix) and any(int((d.replica_states or {}).get("RUNNING", 0)) > 0
                                                  for d in a.deployments.values()))

