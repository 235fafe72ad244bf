"""MusicGen behind ``generate_music``: which model, loading it, and running it through the engine.

``model="auto"`` picks among the downloaded MusicGen checkpoints the largest one whose estimated
time for the requested duration fits the latency budget on this device (the result says which and
why). Requests go to the process's in-process engine, or to a shared engine daemon when
``ECHOTUNE_ENGINE_URL`` is set (``echotune-mcp engine serve``), so several MCP server processes
share one GPU's models.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings, is_ray_url
from .model_manager import ModelManager

TEXT_MODELS = ("musicgen-small", "musicgen-medium", "musicgen-large")
# Decode steps per second for one request, by device (CPU: tools/bench_engine.py on 2 cores for small;
# the others scaled by weight bytes; GPU figures are conservative single-stream rates).
STEP_RATES = {"cpu": {"musicgen-small": 14.0, "musicgen-medium": 4.5, "musicgen-large": 2.0},
              "mps": {"musicgen-small": 40.0, "musicgen-medium": 18.0, "musicgen-large": 9.0},
              "cuda": {"musicgen-small": 90.0, "musicgen-medium": 55.0, "musicgen-large": 35.0}}


@dataclass
class MusicgenResult:
    audio: np.ndarray  # (samples, channels) float32
    sample_rate: int
    model_id: str
    weights_revision: str | None
    weights_license: str
    device: str
    model_reason: str
    engine_retries: int = 0  # Ray engine: times the request was re-sent because its replica died (0 or 1)


def musicgen_available(settings: Settings, melody: bool = False) -> bool:
    """True when transformers imports and a MusicGen checkpoint is downloaded (``melody``: MusicGen-Melody)."""
    if settings.engine_url:  # the daemon's (or the Ray cluster's deployed) weights count, not this machine's
        return bool(get_engine(settings).downloaded(melody=melody))
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return bool(downloaded_models(settings, melody=melody))


def downloaded_models(settings: Settings, melody: bool = False) -> list[str]:
    manager = ModelManager(settings)
    wanted = ("musicgen-melody",) if melody else TEXT_MODELS
    return [m for m in wanted if m in manager.cards and manager.is_downloaded(m)]


def choose_model(settings: Settings, requested: str, duration_s: float, device: str,
                 latency_budget_s: float | None = None, melody: bool = False) -> tuple[str, str]:
    """(model id, reason). ``requested`` is a model id or "auto"; a melody needs MusicGen-Melody."""
    manager = ModelManager(settings)
    if melody:
        if requested not in ("auto", "musicgen-melody"):
            raise ValueError(f"melody conditioning needs model musicgen-melody (or auto), not {requested!r}")
        manager.require("musicgen-melody")
        return "musicgen-melody", "the only MusicGen checkpoint that takes a melody"
    if requested != "auto":
        if requested not in manager.cards or not manager.card(requested).backend.startswith("musicgen"):
            known = ", ".join(m for m in manager.cards if manager.card(m).backend.startswith("musicgen"))
            raise ValueError(f"model {requested!r} is not a MusicGen model; use auto or one of {known}")
        manager.require(requested)
        return requested, "requested by the caller"
    budget = latency_budget_s or settings.musicgen_latency_s
    present = [m for m in TEXT_MODELS if m in manager.cards and manager.is_downloaded(m)]
    if not present:
        manager.require("musicgen-small")  # raises the "not downloaded: run ... pull" error
    rates = STEP_RATES.get(device.split(":")[0], STEP_RATES["cpu"])
    steps = duration_s * 50
    estimates = {m: steps / rates[m] for m in present}
    fitting = [m for m in present if estimates[m] <= budget]
    chosen = fitting[-1] if fitting else present[0]
    why = (f"largest downloaded model whose estimated {estimates[chosen]:.0f} s for {duration_s:g} s of audio on "
           f"{device} fits the {budget:.0f} s latency budget" if fitting else
           f"no downloaded model fits the {budget:.0f} s budget on {device}; the smallest is estimated "
           f"at {estimates[chosen]:.0f} s")
    others = ", ".join(f"{m} ~{estimates[m]:.0f} s" for m in present if m != chosen)
    return chosen, why + (f" (also downloaded: {others})" if others else "")


def load_musicgen(folder: Path, device: str, dtype: str) -> tuple[Any, Any]:
    """(model, tokenizer) from a pulled folder (``save_pretrained`` layout, as on the hub)."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    transformers.logging.set_verbosity_error()
    config = AutoConfig.from_pretrained(folder)
    cls = (transformers.MusicgenMelodyForConditionalGeneration if config.model_type == "musicgen_melody"
           else transformers.MusicgenForConditionalGeneration)
    model = cls.from_pretrained(folder, dtype=getattr(torch, dtype)).to(device).eval()
    model.audio_encoder.float()  # EnCodec stays in float32: decoding is cheap and precision-sensitive
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


# -- the process's engine --------------------------------------------------------------------------------
_engine_lock = threading.Lock()
_engines: dict[tuple[str, str], Any] = {}
_ray_engines: dict[str, Any] = {}


def _ray_engine(settings: Settings) -> Any:
    """One RayEngine per URL (it caches its DeploymentHandles)."""
    from .ray_client import RayEngine

    with _engine_lock:
        key = str(settings.engine_url)
        if key not in _ray_engines:
            _ray_engines[key] = RayEngine.from_settings(settings)
        return _ray_engines[key]


def get_engine(settings: Settings) -> Any:
    """The in-process Engine (created once per weights folder and device), or a RemoteEngine client."""
    if is_ray_url(settings.engine_url):  # Ray Serve deployments (`engine deploy`)
        return _ray_engine(settings)
    if settings.engine_url:
        from .remote import RemoteEngine

        return RemoteEngine.from_settings(settings)
    from .device import generation_dtype, pick_device
    from .engine import Engine

    choice = pick_device(settings.device)
    dtype = generation_dtype(choice, settings.engine_dtype)
    key = (str(settings.weights_dir), choice.device)
    with _engine_lock:
        if key not in _engines:
            manager = ModelManager(settings)
            import torch

            def loader(model_id: str) -> tuple[Callable[[], Any], dict[str, Any]]:
                folder = manager.require(model_id)
                card = manager.card(model_id)
                manifest = manager.manifest(model_id) or {}

                def load() -> Any:
                    return load_musicgen(folder, choice.device, dtype)

                return load, {"revision": manifest.get("revision"), "license": card.license,
                              "device": choice.device, "dtype": dtype, "memory_mb": card.memory_mb}

            slots = settings.engine_slots or (16 if choice.device != "cpu" else 8)
            _engines[key] = Engine(loader, max_slots=slots, device=choice.device, dtype=getattr(torch, dtype),
                                   budget_mb=manager.budget_mb)
        return _engines[key]


async def generate_musicgen(*, prompt: str, duration_s: float, model: str, seed: int | None, temperature: float,
                            top_k: int, top_p: float, guidance_scale: float, melody: np.ndarray | None,
                            melody_sr: int | None, continuation: np.ndarray | None, continuation_sr: int | None,
                            on_progress: Callable[[float, str], Awaitable[None]],
                            on_preview: Callable[[np.ndarray, int], Awaitable[None]] | None,
                            settings: Settings, preview_every_s: float | None = None, priority: int = 0) -> MusicgenResult:
    """Generate ``duration_s`` seconds through the engine; progress and previews are awaited as they come."""
    from .device import pick_device

    if settings.engine_url:  # the daemon, which has the weights, chooses the model
        device, model_id, reason = "engine daemon", model, ""
    else:
        device = pick_device(settings.device).device
        model_id, reason = choose_model(settings, model, duration_s, device, melody=melody is not None)
    engine = get_engine(settings)
    if preview_every_s is None:
        preview_every_s = settings.preview_every_s
    request = dict(model_id=model_id, prompt=prompt, duration_s=duration_s, seed=seed, temperature=temperature,
                   top_k=top_k, top_p=top_p, guidance_scale=guidance_scale, priority=priority,
                   preview_every_s=preview_every_s,
                   continuation=None if continuation is None else (np.asarray(continuation, np.float32),
                                                                   int(continuation_sr or 0)),
                   melody=None if melody is None else (np.asarray(melody, np.float32), int(melody_sr or 0)))
    handle = await engine.generate(**request)
    final = None
    try:
        async for event in handle.events():
            if event.kind == "progress":
                await on_progress(event.fraction, event.message)
            elif event.kind == "preview" and on_preview is not None and event.audio is not None:
                await on_preview(event.audio.T.copy(), event.sample_rate)
            elif event.kind == "result":
                final = event
            elif event.kind == "error":
                raise RuntimeError(f"MusicGen failed: {event.message}")
            elif event.kind == "cancelled":
                raise RuntimeError(f"MusicGen request ended: {event.message}")
    finally:
        if final is None:  # the job was cancelled (or failed): free the engine slot now, not at the end
            handle.cancel()
    assert final is not None and final.audio is not None
    info = engine.info(model_id) if not settings.engine_url else handle.info
    model_id, reason = info.get("model_id", model_id), info.get("reason", reason)
    return MusicgenResult(audio=final.audio.T.copy(), sample_rate=final.sample_rate, model_id=model_id,
                          weights_revision=info.get("revision"), weights_license=info.get("license", "CC-BY-NC-4.0"),
                          device=info.get("device", device), model_reason=reason,
                          engine_retries=int(getattr(handle, "retries", 0)))


def close_engines() -> None:
    """Stop every in-process engine (their worker threads and models); the next request starts afresh."""
    with _engine_lock:
        engines = list(_engines.values())
        _engines.clear()
        _ray_engines.clear()
    for engine in engines:
        engine.close()
