"""``echotune-mcp engine serve``: the engine as a loopback HTTP daemon shared by several MCP servers.

One process holds the models (one GPU's worth); each MCP server process (one per IDE window) sets
``ECHOTUNE_ENGINE_URL`` and sends its requests here, so requests from all of them batch together.

Protocol: ``POST /v1/generate`` with a JSON request streams NDJSON events: ``heartbeat`` lines every
``HEARTBEAT_S`` whenever nothing else is due (so the client's read timeout tells a live daemon from
a wedged one), then ``accepted`` (or ``busy`` / ``rejected`` / ``error`` when the model cannot take
it), then progress, preview and one of result | error | cancelled. Closing the stream cancels the
request. ``GET /v1/health`` says what is loaded.

Not an open door, although it binds loopback only: a web page in a browser on this machine can
reach loopback ports, so every request must name a loopback ``Host`` (no DNS rebinding) and carry
no ``Origin`` (browsers add one to every cross-origin fetch and form post); with
``ECHOTUNE_ENGINE_TOKEN`` set it must also carry ``Authorization: Bearer <token>``. Bodies over
``MAX_BODY_BYTES`` are refused (413) before they are read, and every field is validated by
:class:`GenerateBody` with the bounds the ``generate_music`` tool has, so bad input gets a 400
naming the field and never reaches the worker.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import math
import re
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, \
    model_validator

from ..config import Settings
from .engine import EngineEvent
from .remote import FINAL, audio_to_b64
from .scheduler import EngineBusy

HEARTBEAT_S = 2.0  # remote.HEARTBEAT_S: what clients' read timeouts are sized against
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
MAX_CLIP_SECONDS = 32.0  # a continuation (MusicGen's prompt window, <= 30 s) or a melody (its first 30 s are used)
MAX_CLIP_B64 = 4 * math.ceil(MAX_CLIP_SECONDS * MAX_SAMPLE_RATE * 4 / 3)  # float32 samples, base64
MAX_BODY_BYTES = 2 * MAX_CLIP_B64 + 64 * 1024  # two clips and the rest of the request
LOOPBACK_HOST = re.compile(r"^(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$", re.IGNORECASE)


class Clip(BaseModel):
    """Mono float32 samples, base64 (``remote.audio_to_b64``), and their sample rate."""

    model_config = ConfigDict(extra="forbid")
    audio_b64: str = Field(min_length=1, max_length=MAX_CLIP_B64)
    sample_rate: int = Field(ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)
    _audio: np.ndarray = PrivateAttr()

    @model_validator(mode="after")
    def _decode(self) -> Clip:
        try:
            raw = base64.b64decode(self.audio_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("audio_b64 is not base64") from None
        if not raw or len(raw) % 4:
            raise ValueError("audio_b64 must hold whole float32 samples")
        audio = np.frombuffer(raw, dtype=np.float32)
        if len(audio) > MAX_CLIP_SECONDS * self.sample_rate:
            raise ValueError(f"at most {MAX_CLIP_SECONDS:g} s of audio, got {len(audio) / self.sample_rate:.1f} s")
        if not np.isfinite(audio).all():
            raise ValueError("audio_b64 holds NaN or infinite samples")
        self._audio = audio
        return self

    def pair(self) -> tuple[np.ndarray, int]:
        return self._audio, self.sample_rate


class GenerateBody(BaseModel):
    """``POST /v1/generate``: the generate_music tool's bounds (validate with context ``max_seconds``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    model_id: str = Field("auto", min_length=1, max_length=64)
    prompt: str = Field("", max_length=4000)  # the tool's 1000 characters plus what the server folds in
    duration_s: float = Field(10.0, gt=0)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    temperature: float = Field(1.0, gt=0, le=10)
    top_k: int = Field(250, ge=0, le=2048)  # 0: no top-k; 2048 is a MusicGen codebook's size
    top_p: float = Field(0.0, ge=0, le=1)
    guidance_scale: float = Field(3.0, ge=0, le=30)
    priority: int = Field(0, ge=-100, le=100)
    preview_every_s: float = Field(0.0, ge=0)
    continuation: Clip | None = None
    melody: Clip | None = None

    @field_validator("duration_s", "preview_every_s")
    @classmethod
    def _within_max(cls, value: float, info: ValidationInfo) -> float:
        limit = float((info.context or {}).get("max_seconds", 300.0))
        if value > limit:
            raise ValueError(f"must be at most {limit:g} s (ECHOTUNE_MAX_GENERATION_SECONDS), got {value:g}")
        return value

    def engine_kwargs(self) -> dict[str, Any]:
        out = self.model_dump(exclude={"continuation", "melody"})
        out["continuation"] = self.continuation.pair() if self.continuation else None
        out["melody"] = self.melody.pair() if self.melody else None
        return out


def validation_error(exc: ValidationError) -> dict[str, str]:
    """The first problem as ``{"error": "field: what is wrong", "field": "field"}``."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "body"
    message = str(first["msg"]).removeprefix("Value error, ")
    return {"error": f"invalid request: {field}: {message}", "field": field}


def refusal(headers: list[tuple[bytes, bytes]], token: str | None) -> tuple[int, str] | None:
    """Why a request may not proceed (status, message), from its headers alone; None when it may."""
    seen: dict[str, list[str]] = {}
    for key, value in headers:
        seen.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    hosts = seen.get("host", [])
    if len(hosts) != 1 or not LOOPBACK_HOST.match(hosts[0].strip()):
        return 403, "the engine daemon answers only requests addressed to 127.0.0.1, localhost or [::1]"
    if "origin" in seen or any(v.strip().lower() in ("cross-site", "same-site") for v in seen.get("sec-fetch-site", [])):
        return 403, "the engine daemon does not answer requests made by web pages"
    if token:
        given = seen.get("authorization", [""])
        expected = f"Bearer {token}".encode()
        if len(given) != 1 or not hmac.compare_digest(given[0].encode("latin-1"), expected):
            return 401, "the engine daemon needs Authorization: Bearer <ECHOTUNE_ENGINE_TOKEN>"
    lengths = seen.get("content-length", [])
    if lengths:
        try:
            size = max(int(v) for v in lengths)
        except ValueError:
            return 400, "Content-Length is not a number"
        if size > MAX_BODY_BYTES:
            return 413, f"request body of {size} bytes is over the engine daemon's {MAX_BODY_BYTES} byte limit"
    return None


class Guard:
    """ASGI middleware: :func:`refusal` before the app sees a request (and before its body is read)."""

    def __init__(self, app: Any, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refused = refusal(scope.get("headers", []), self.token)
            if refused is not None:
                from starlette.responses import JSONResponse

                status, message = refused
                await JSONResponse({"error": message}, status_code=status, headers={"Connection": "close"})(
                    scope, receive, send)
                return
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    pass


async def read_capped(request: Any) -> bytes:
    """The request body, refusing (BodyTooLarge) as soon as it passes MAX_BODY_BYTES (chunked uploads too)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def event_json(event: EngineEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": event.kind, "fraction": event.fraction, "message": event.message}
    if event.audio is not None:
        out.update(sample_rate=event.sample_rate, channels=int(event.audio.shape[0]),
                   audio_b64=audio_to_b64(event.audio))
    return out


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data) + "\n"


def build_app(settings: Settings) -> Any:
    from dataclasses import replace

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    from .musicgen_backend import choose_model, downloaded_models, get_engine

    local = replace(settings, engine_url=None)
    engine = get_engine(local)

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "loaded": engine.loaded(), "load": engine.load(), "device": engine.device,
                             "musicgen": downloaded_models(local), "melody": downloaded_models(local, melody=True)})

    async def generate(request: Request) -> Any:
        try:
            raw = await read_capped(request)
        except BodyTooLarge:
            return JSONResponse({"error": f"request body is over the engine daemon's {MAX_BODY_BYTES} byte limit"},
                                status_code=413, headers={"Connection": "close"})
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": "invalid request: body: not JSON", "field": "body"}, status_code=400)
        if not isinstance(data, dict):
            return JSONResponse({"error": "invalid request: body: must be a JSON object", "field": "body"},
                                status_code=400)
        try:
            body = GenerateBody.model_validate(data, context={"max_seconds": local.max_generation_seconds})
        except ValidationError as exc:
            return JSONResponse(validation_error(exc), status_code=400)
        try:
            model_id, reason = choose_model(local, body.model_id, body.duration_s, engine.device,
                                            melody=body.melody is not None)
        except (ValueError, LookupError) as exc:
            field = "melody" if body.melody is not None and "melody" in str(exc) else "model_id"
            return JSONResponse({"error": f"invalid request: {field}: {exc}", "field": field}, status_code=400)
        kwargs = dict(body.engine_kwargs(), model_id=model_id)
        return StreamingResponse(_stream(engine, kwargs, model_id, reason), media_type="application/x-ndjson")

    app = Starlette(routes=[Route("/v1/health", health), Route("/v1/generate", generate, methods=["POST"])],
                    middleware=[Middleware(Guard, token=settings.engine_token)])
    app.state.engine = engine
    return app


async def _stream(engine: Any, kwargs: dict[str, Any], model_id: str, reason: str) -> Any:
    """The NDJSON event stream of one request, with a heartbeat whenever nothing else is due."""
    started = asyncio.ensure_future(engine.generate(**kwargs))  # loads the model first if need be
    handle = None
    pending: asyncio.Future[Any] | None = None
    finished = False
    try:
        while not (await asyncio.wait({started}, timeout=HEARTBEAT_S))[0]:
            yield _line({"kind": "heartbeat"})
        try:
            handle = started.result()
        except EngineBusy as exc:
            finished = True
            yield _line({"kind": "busy", "error": str(exc), "retry_after_s": exc.retry_after_s})
            return
        except (ValueError, LookupError) as exc:
            finished = True
            yield _line({"kind": "rejected", "error": str(exc)})
            return
        except Exception as exc:  # noqa: BLE001 - the model failed to load: the client is told, the daemon serves on
            finished = True
            yield _line({"kind": "error", "message": f"the engine could not start the request: {exc}"})
            return
        info = dict(engine.info(model_id), model_id=model_id, reason=reason)
        yield _line({"kind": "accepted", "request_id": handle.id, "info": info})
        events = handle.events().__aiter__()
        while not finished:
            pending = asyncio.ensure_future(events.__anext__())
            while not (await asyncio.wait({pending}, timeout=HEARTBEAT_S))[0]:
                yield _line({"kind": "heartbeat"})
            try:
                event = pending.result()
            except StopAsyncIteration:
                break
            finished = event.kind in FINAL
            yield _line(event_json(event))
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
        if handle is not None and not finished:  # the client went away: free the slot
            handle.cancel()
        elif handle is None and not started.done():  # went away while the model loaded: cancel on arrival
            started.add_done_callback(lambda t: t.cancelled() or t.exception() is not None or t.result().cancel())


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8771) -> None:
    import ipaddress

    import uvicorn

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise SystemExit(f"the engine daemon binds loopback only; {host} is not loopback")
    app = build_app(settings)
    auth = "token required" if settings.engine_token else "no token (set ECHOTUNE_ENGINE_TOKEN on both sides to require one)"
    print(f"echotune engine listening on http://{host}:{port}, {auth} (set ECHOTUNE_ENGINE_URL=http://{host}:{port})",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
