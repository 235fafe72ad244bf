"""The server's side of the Ray Serve engine: the ``generate``/``events``/``cancel`` surface of Engine and
RemoteEngine, over ``DeploymentHandle``s (``ECHOTUNE_ENGINE_URL=ray://HOST:PORT`` or ``ray:auto``).

Retry: requests are deterministic given their seed (the engine samples each request from its own
generator, whatever it is batched with), so when the replica holding a request dies (``ActorDiedError``
and kin) the request is sent once more; Serve routes it to a live replica and the same seed gives the
same audio. The caller hears it as a progress event naming the retry, and ``handle.retries`` says how
many were needed. A request that has no seed gets one here, before it is first sent, so a retry is the
same request. A second death ends the request with an error (no retry storms).

Nothing waits without a bound: before a replica accepts a request (Serve may queue it while every replica
is full) the wait is at most ``queue_timeout_s``; after that replicas send at least a heartbeat every
``ray_serve.HEARTBEAT_S``, and ``ECHOTUNE_ENGINE_READ_TIMEOUT_S`` of silence fails the request.
Cancelling a handle cancels the streaming call; Serve cancels the generator on the replica, which frees
the engine slot (``ray_serve.MusicgenReplica.generate``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import is_ray_url, ray_address
from .engine import EngineEvent
from .melody_chroma import MAX_SECONDS as MELODY_SECONDS
from .ray_serve import (
    CLAP_APP,
    CLAP_DEPLOYMENT,
    DEMUCS_DEPLOYMENT,
    FINAL,
    MUSICGEN_DEPLOYMENT,
    connect,
    demucs_app,
    deployed,
    musicgen_app,
)
from .scheduler import EngineBusy

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)
DEPLOYED_TTL_S = 5.0  # how long what the cluster has deployed is taken as known
MAX_ROUTING_TRIES = 3  # a request that never reached a replica (routed to one just killed) is sent again
_connect_lock = threading.Lock()


def _replica_lost_errors() -> tuple[type[BaseException], ...]:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    from ray.serve.exceptions import ReplicaUnavailableError

    return (ActorDiedError, ActorUnavailableError, RayActorError, ReplicaUnavailableError)


def _event(data: dict[str, Any]) -> EngineEvent:
    return EngineEvent(data["kind"], fraction=float(data.get("fraction", 0.0)), message=str(data.get("message", "")),
                       audio=data.get("audio"), sample_rate=int(data.get("sample_rate", 0)), codes=data.get("codes"))


class _Stream:
    """One streaming call: reads its next non-heartbeat item within a bound."""

    def __init__(self, gen: Any, read_timeout_s: float):
        self.gen, self.read_timeout_s = gen, read_timeout_s
        self._it = gen.__aiter__()

    async def next(self, timeout_s: float | None = None) -> dict[str, Any]:
        limit = self.read_timeout_s if timeout_s is None else timeout_s
        while True:
            try:
                item = await asyncio.wait_for(self._it.__anext__(), limit)
            except StopAsyncIteration:
                raise RuntimeError("the engine replica closed the stream before the result") from None
            except asyncio.TimeoutError:
                raise TimeoutError(f"the engine replica sent nothing for {limit:g} s "
                                   "(ECHOTUNE_ENGINE_READ_TIMEOUT_S); the request was abandoned") from None
            if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
                raise RuntimeError(f"the engine replica sent a malformed event: {str(item)[:200]!r}")
            if item["kind"] != "heartbeat":
                return item

    def cancel(self) -> None:
        try:
            self.gen.cancel()
        except Exception:  # noqa: BLE001 - already finished or its replica is gone: nothing to stop
            pass


class RayHandle:
    """A request on a Serve replica: ``events()``, ``cancel()``, ``info``, ``retries``, ``replicas``."""

    def __init__(self, engine: RayEngine, start: Callable[[], Any], stream: _Stream, first: dict[str, Any]):
        self._engine, self._start, self._stream = engine, start, stream
        self.info: dict[str, Any] = dict(first.get("info", {}))
        self.id: str = str(first.get("request_id", ""))
        self.replicas: list[str] = [self.info.get("replica", "")]
        self.retries = 0
        self.final: EngineEvent | None = None
        self.final_data: dict[str, Any] | None = None
        self._cancelled = False

    async def events(self) -> AsyncIterator[EngineEvent]:
        """Progress and preview events, then the final one; a lost replica is retried once, then an error."""
        lost = _replica_lost_errors()
        fraction = 0.0
        try:
            while self.final is None:
                try:
                    data = await self._stream.next()
                except lost as exc:
                    if self._cancelled:
                        self.final = EngineEvent("cancelled", message="cancelled")
                        yield self.final
                        return
                    if self.retries >= 1:
                        self.final = EngineEvent("error", message=f"the engine replica died again after a retry "
                                                                  f"({type(exc).__name__}); the request was abandoned")
                        yield self.final
                        return
                    self.retries += 1
                    dead = self.info.get("replica", "?")
                    yield EngineEvent("progress", fraction=fraction,
                                      message=f"engine replica {dead} died ({type(exc).__name__}); retrying once on "
                                              "another replica (same seed, so the same result)")
                    try:
                        self._stream, first = await self._start()
                    except Exception as exc2:  # noqa: BLE001 - no replica took the retry
                        self.final = EngineEvent("error", message=f"retrying on another replica failed: {exc2}")
                        yield self.final
                        return
                    self.info = dict(self.info, **first.get("info", {}))
                    self.id = str(first.get("request_id", ""))
                    self.replicas.append(self.info.get("replica", ""))
                    continue
                except (RuntimeError, TimeoutError) as exc:
                    self.final = EngineEvent("error", message=str(exc))
                    yield self.final
                    return
                event = _event(data)
                if event.kind in FINAL:
                    self.final_data = data  # a separation's stems travel beside what an EngineEvent holds
                if event.kind == "progress":
                    fraction = event.fraction
                if event.kind in FINAL:
                    self.final = event
                yield event
        finally:
            if self.final is None:
                self.cancel()

    async def result(self) -> EngineEvent:
        async for _ in self.events():
            pass
        assert self.final is not None
        if self.final.kind != "result":
            raise RuntimeError(self.final.message)
        return self.final

    def cancel(self) -> None:
        """Cancel the streaming call: Serve cancels the generator on the replica, which frees the engine slot."""
        self._cancelled = True
        self._stream.cancel()


class RayEngine:
    """Submits to the ``echotune-*`` Serve applications of a Ray cluster (``engine deploy`` made them)."""

    def __init__(self, url: str, *, read_timeout_s: float = 30.0, queue_timeout_s: float = 300.0):
        if not is_ray_url(url):
            raise ValueError(f"not a Ray engine URL: {url!r} (ray://HOST:PORT or ray:auto)")
        self.url = url
        self.address = ray_address(url)
        self.read_timeout_s, self.queue_timeout_s = float(read_timeout_s), float(queue_timeout_s)
        self._handles: dict[tuple[str, str], Any] = {}
        self._info: dict[str, dict[str, Any]] = {}
        self._deployed_at: dict[str, tuple[float, list[str]]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RayEngine:
        if not settings.engine_url:
            raise ValueError("ECHOTUNE_ENGINE_URL is not set")
        return cls(settings.engine_url, read_timeout_s=settings.engine_read_timeout_s)

    def _connect(self) -> None:
        with _connect_lock:
            try:
                connect(self.address)
            except Exception as exc:  # noqa: BLE001 - a cluster that cannot be joined: say where and how
                raise RuntimeError(f"the Ray cluster at {self.url} cannot be reached ({exc}); start it with "
                                   "`echotune-mcp engine deploy` or unset ECHOTUNE_ENGINE_URL") from exc

    def _handle(self, deployment: str, app: str) -> Any:
        from ray import serve

        key = (deployment, app)
        if key not in self._handles:
            self._handles[key] = serve.get_deployment_handle(deployment, app_name=app)
        return self._handles[key]

    # -- what is deployed ------------------------------------------------------------------------------
    def _deployed(self, kind: str) -> list[str]:
        """``ray_serve.deployed(kind)``, asked of the Serve controller at most every DEPLOYED_TTL_S (it is a
        controller round trip: once per request it was a good part of Serve's per-request overhead)."""
        now = time.monotonic()
        cached = self._deployed_at.get(kind)
        if cached is not None and now - cached[0] < DEPLOYED_TTL_S:
            return cached[1]
        try:
            self._connect()
            present = deployed(kind)
        except Exception as exc:  # noqa: BLE001
            log.warning("the Ray cluster at %s cannot be asked what is deployed: %s", self.url, exc)
            return []
        self._deployed_at[kind] = (now, present)
        return present

    def downloaded(self, melody: bool = False) -> list[str]:
        """The MusicGen checkpoints with a running deployment (empty when the cluster cannot be reached)."""
        return [m for m in self._deployed("musicgen") if (m == "musicgen-melody") == melody]

    def demucs_models(self) -> list[str]:
        """The Demucs models with a running deployment (empty when the cluster cannot be reached)."""
        return self._deployed("demucs")

    async def _choose(self, model_id: str, duration_s: float, melody: bool) -> tuple[str, str]:
        from .musicgen_backend import STEP_RATES, TEXT_MODELS

        present = await asyncio.to_thread(self.downloaded, melody)
        if melody:
            if model_id not in ("auto", "musicgen-melody"):
                raise ValueError(f"melody conditioning needs model musicgen-melody (or auto), not {model_id!r}")
            if not present:
                raise LookupError("no musicgen-melody deployment runs on the Ray cluster: "
                                  "`echotune-mcp engine deploy --musicgen musicgen-melody`")
            return "musicgen-melody", "the only MusicGen checkpoint that takes a melody"
        if model_id != "auto":
            if model_id not in present:
                raise LookupError(f"{model_id} has no deployment on the Ray cluster (deployed: "
                                  f"{', '.join(present) or 'none'}): `echotune-mcp engine deploy --musicgen {model_id}`")
            return model_id, "requested by the caller"
        if not present:
            raise LookupError("no MusicGen deployment runs on the Ray cluster: "
                              "`echotune-mcp engine deploy --musicgen musicgen-small`")
        ranked = [m for m in TEXT_MODELS if m in present] or present
        device = (await self._replica_info(ranked[0])).get("device", "cpu").split(":")[0]
        rates = STEP_RATES.get(device, STEP_RATES["cpu"])
        estimates = {m: duration_s * 50 / rates.get(m, rates["musicgen-small"]) for m in ranked}
        fitting = [m for m in ranked if estimates[m] <= 90.0]
        chosen = fitting[-1] if fitting else ranked[0]
        return chosen, (f"largest deployed checkpoint whose estimated {estimates[chosen]:.0f} s on {device} fits "
                        "the 90 s latency budget" if fitting else "no deployed checkpoint fits the 90 s latency "
                        f"budget; the smallest is estimated at {estimates[chosen]:.0f} s")

    async def _replica_info(self, checkpoint: str) -> dict[str, Any]:
        if checkpoint not in self._info:
            handle = self._handle(MUSICGEN_DEPLOYMENT, musicgen_app(checkpoint))
            self._info[checkpoint] = await asyncio.wait_for(handle.info.remote(), self.queue_timeout_s)
        return self._info[checkpoint]

    # -- requests --------------------------------------------------------------------------------------
    async def _open(self, call: Callable[[], Any]) -> tuple[_Stream, dict[str, Any]]:
        """Start a streaming call and read its ``accepted``; a request routed to a replica that just died is
        sent again (it never started), up to MAX_ROUTING_TRIES times."""
        from ray.serve.exceptions import BackPressureError

        lost = _replica_lost_errors()
        for attempt in range(MAX_ROUTING_TRIES):
            stream = _Stream(call(), self.read_timeout_s)
            try:
                first = await stream.next(timeout_s=self.queue_timeout_s)
            except lost:
                stream.cancel()
                if attempt + 1 == MAX_ROUTING_TRIES:
                    raise RuntimeError(f"no live engine replica took the request after {MAX_ROUTING_TRIES} tries")
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            except BackPressureError as exc:
                stream.cancel()
                raise EngineBusy(f"every engine replica and Serve's queue are full ({exc})", 5.0) from exc
            except BaseException:
                stream.cancel()
                raise
            if first["kind"] == "busy":
                raise EngineBusy(first.get("error", "engine busy"), float(first.get("retry_after_s", 5)))
            if first["kind"] == "rejected":
                raise ValueError(first.get("error", "the engine replica refused the request"))
            if first["kind"] != "accepted":
                raise RuntimeError(first.get("message") or f"the engine replica answered {first['kind']!r}")
            return stream, first
        raise AssertionError("unreachable")

    async def generate(self, **request: Any) -> RayHandle:
        """Like ``Engine.generate``: a running request on some replica of its checkpoint's deployment."""
        await asyncio.to_thread(self._connect)
        melody = request.get("melody") is not None
        model_id, reason = await self._choose(str(request.get("model_id", "auto")),
                                              float(request.get("duration_s", 10.0)), melody)
        request = dict(request, model_id=model_id)
        if melody:  # only its first 30 s condition MusicGen-Melody (1 s more: resampling edges), as remote.py sends
            audio, sr = request["melody"]
            request["melody"] = (np.asarray(audio, np.float32)[:int((MELODY_SECONDS + 1) * int(sr))], int(sr))
        if request.get("seed") is None:  # a retry must be the same request
            request["seed"] = secrets.randbelow(2**31)
        handle = self._handle(MUSICGEN_DEPLOYMENT, musicgen_app(model_id)).options(stream=True)

        async def start() -> tuple[_Stream, dict[str, Any]]:
            return await self._open(lambda: handle.generate.remote(request))

        stream, first = await start()
        out = RayHandle(self, start, stream, first)
        out.info.setdefault("reason", reason)
        return out

    async def separate(self, model_id: str, samples: np.ndarray, sample_rate: int,
                       on_progress: Callable[[float, str], None] | None = None) -> tuple[dict[str, Any], RayHandle]:
        """Stems from the Demucs deployment of ``model_id``; (the result event's data, the handle: retries)."""
        await asyncio.to_thread(self._connect)
        handle = self._handle(DEMUCS_DEPLOYMENT, demucs_app(model_id)).options(stream=True)
        audio = np.ascontiguousarray(samples, dtype=np.float32)

        async def start() -> tuple[_Stream, dict[str, Any]]:
            return await self._open(lambda: handle.separate.remote(audio, int(sample_rate)))

        stream, first = await start()
        out = RayHandle(self, start, stream, first)
        try:
            async for event in out.events():
                if event.kind == "progress" and on_progress is not None:
                    on_progress(event.fraction, event.message)
                elif event.kind in ("error", "cancelled"):
                    raise RuntimeError(f"Demucs on the Ray cluster: {event.message or event.kind}")
        except BaseException:  # the job was cancelled (or on_progress raised): stop the replica's work too
            out.cancel()
            raise
        assert out.final is not None and out.final_data is not None
        return out.final_data, out

    # -- CLAP (the recommender's embeddings) ---------------------------------------------------------------
    def clap_deployed(self) -> bool:
        """Whether the ``echotune-clap`` application has a running replica (asked at most every DEPLOYED_TTL_S;
        False when the cluster cannot be reached). Blocking: call it from a thread."""
        now = time.monotonic()
        cached = self._deployed_at.get("clap")
        if cached is not None and now - cached[0] < DEPLOYED_TTL_S:
            return bool(cached[1])
        try:
            self._connect()
            from ray import serve

            apps = serve.status().applications
            app = apps.get(CLAP_APP)
            running = app is not None and any(int((d.replica_states or {}).get("RUNNING", 0)) > 0
                                              for d in app.deployments.values())
        except Exception as exc:  # noqa: BLE001 - Serve not started there, or the cluster is gone
            log.warning("the Ray cluster at %s cannot be asked whether CLAP is deployed: %s", self.url, exc)
            return False
        self._deployed_at["clap"] = (now, [CLAP_APP] if running else [])
        return running

    async def _clap_call(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """One call to the CLAP deployment, bounded by ``timeout_s`` (default: the read timeout). Embeddings are
        deterministic, so a call whose replica died is sent once more (Serve routes it to a live one)."""
        await asyncio.to_thread(self._connect)
        handle = self._handle(CLAP_DEPLOYMENT, CLAP_APP)
        limit = self.read_timeout_s if timeout_s is None else float(timeout_s)
        lost = _replica_lost_errors()
        for attempt in range(2):
            response = getattr(handle, method).remote(*args)
            try:
                return await asyncio.wait_for(asyncio.ensure_future(response), limit)
            except asyncio.TimeoutError:
                response.cancel()
                raise TimeoutError(f"the CLAP replica did not answer {method} within {limit:g} s "
                                   "(ECHOTUNE_ENGINE_READ_TIMEOUT_S)") from None
            except lost:
                if attempt:
                    raise
                log.warning("a CLAP replica died during %s; sending it once more", method)
            except BaseException:
                response.cancel()
                raise
        raise AssertionError("unreachable")

    async def clap_info(self) -> dict[str, Any]:
        """The deployed CLAP's ``model_id``, ``dim`` and ``sample_rate`` (asked once per RayEngine)."""
        if "clap" not in self._info:
            self._info["clap"] = dict(await self._clap_call("info"))
        return self._info["clap"]

    async def clap_text(self, texts: list[str], *, timeout_s: float | None = None) -> np.ndarray:
        """(len(texts), dim) unit rows from the CLAP deployment (``ClapEmbedder.text`` on a replica)."""
        return np.asarray(await self._clap_call("text", [str(t) for t in texts], timeout_s=timeout_s), np.float32)

    async def clap_audios(self, clips: list[tuple[np.ndarray, int]], *, timeout_s: float | None = None) -> np.ndarray:
        """(len(clips), dim) unit rows from the CLAP deployment (``ClapEmbedder.audios`` on a replica)."""
        sent = [(np.ascontiguousarray(samples, dtype=np.float32), int(sr)) for samples, sr in clips]
        return np.asarray(await self._clap_call("audios", sent, timeout_s=timeout_s), np.float32)

    def clap_text_blocking(self, texts: list[str], *, timeout_s: float | None = None) -> tuple[np.ndarray, dict]:
        """(rows, the deployment's info) like :meth:`clap_text`, for a thread with no event loop (a model fit's);
        each call bounded by ``timeout_s`` (default: the read timeout)."""
        self._connect()
        handle = self._handle(CLAP_DEPLOYMENT, CLAP_APP)
        limit = self.read_timeout_s if timeout_s is None else float(timeout_s)
        out = []
        for method, args in (("info", ()), ("text", ([str(t) for t in texts],))):
            response = getattr(handle, method).remote(*args)
            try:
                out.append(response.result(timeout_s=limit))
            except TimeoutError:
                response.cancel()
                raise TimeoutError(f"the CLAP replica did not answer {method} within {limit:g} s "
                                   "(ECHOTUNE_ENGINE_READ_TIMEOUT_S)") from None
        return np.asarray(out[1], np.float32), dict(out[0])
