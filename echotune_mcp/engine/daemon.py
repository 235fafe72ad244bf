"""``echotune-mcp engine serve``: the engine as a loopback HTTP daemon shared by several MCP servers.

One process holds the models (one GPU's worth); each MCP server process (one per IDE window) sets
``ECHOTUNE_ENGINE_URL`` and sends its requests here, so requests from all of them batch together.
Protocol: ``POST /v1/generate`` with a JSON request streams NDJSON events (accepted, progress,
preview, result | error | cancelled); closing the stream cancels the request. A full queue answers
503 with ``Retry-After``. ``GET /v1/health`` says what is loaded. Loopback only: there is no auth.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import Settings
from .engine import EngineEvent
from .remote import audio_from_b64, audio_to_b64
from .scheduler import EngineBusy


def event_json(event: EngineEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": event.kind, "fraction": event.fraction, "message": event.message}
    if event.audio is not None:
        out.update(sample_rate=event.sample_rate, channels=int(event.audio.shape[0]),
                   audio_b64=audio_to_b64(event.audio))
    return out


def build_app(settings: Settings) -> Any:
    from dataclasses import replace

    from starlette.applications import Starlette
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
        body = await request.json()
        for key in ("continuation", "melody"):
            clip = body.pop(key, None)
            if clip is not None:
                body[key] = (audio_from_b64(clip["audio_b64"]), int(clip["sample_rate"]))
        allowed = {"model_id", "prompt", "duration_s", "seed", "temperature", "top_k", "top_p", "guidance_scale",
                   "priority", "preview_every_s", "continuation", "melody"}
        unknown = set(body) - allowed
        if unknown:
            return JSONResponse({"error": f"unknown fields {sorted(unknown)}"}, status_code=400)
        try:
            model_id, reason = choose_model(local, body.get("model_id", "auto"), float(body.get("duration_s", 10)),
                                            engine.device, melody=body.get("melody") is not None)
            body["model_id"] = model_id
            handle = await engine.generate(**body)
        except EngineBusy as exc:
            return JSONResponse({"error": str(exc), "retry_after_s": exc.retry_after_s}, status_code=503,
                                headers={"Retry-After": str(int(exc.retry_after_s + 0.999))})
        except (ValueError, LookupError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        info = dict(engine.info(model_id), model_id=model_id, reason=reason)

        async def stream():
            finished = False
            try:
                yield json.dumps({"kind": "accepted", "request_id": handle.id, "info": info}) + "\n"
                async for event in handle.events():
                    finished = event.kind in ("result", "error", "cancelled")
                    yield json.dumps(event_json(event)) + "\n"
            finally:
                if not finished:  # the client went away: free the slot
                    handle.cancel()

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    app = Starlette(routes=[Route("/v1/health", health), Route("/v1/generate", generate, methods=["POST"])])
    app.state.engine = engine
    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8771) -> None:
    import ipaddress

    import uvicorn

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise SystemExit(f"the engine daemon has no authentication and binds loopback only; {host} is not loopback")
    app = build_app(settings)
    print(f"echotune engine listening on http://{host}:{port} (set ECHOTUNE_ENGINE_URL=http://{host}:{port})",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
