"""Stem separation behind one async call: Demucs 4.1 through the batched runner, or the DSP fallback.

The tool layer validates and resolves ``model`` before a job exists (``resolve_model``), so a
missing-weights or unknown-stem mistake is a clear argument error, never a failed job. Weights are
read only from disk: ``<weights_dir>/<model id>/`` holding the Hugging Face layout that
``echotune-mcp models pull`` downloads (``<id>.yaml`` naming the bag plus one ``<sig>.safetensors``
per member, loaded with ``demucs.hf.load_safetensors_model``) or demucs' legacy local repo layout
(``<id>.yaml`` + ``<sig>.th``). Nothing here ever reaches the network.

One ``DemucsRunner`` per (weights folder, device) is shared by every request in the process, which
is what lets concurrent separations share forward passes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..music.audio_io import resample, to_channels

if TYPE_CHECKING:
    from ..config import Settings
    from .demucs_runner import DemucsRunner

FOUR = ("drums", "bass", "other", "vocals")


@dataclass(frozen=True)
class ModelSpec:
    sources: tuple[str, ...]
    hf_repo: str | None
    weights_license: str | None
    about: str


def _specs_from_cards() -> dict[str, ModelSpec]:
    """Demucs models come from their cards in ``models/`` (repo, licence, stems); ``dsp`` needs no card."""
    from .model_cards import load_cards

    specs = {c.id: ModelSpec(c.sources or FOUR, c.hf_repo, c.license, c.description)
             for c in load_cards().values() if c.backend == "demucs"}
    specs["dsp"] = ModelSpec(FOUR, None, None, "classical HPSS + REPET-SIM foreground + mid/side soft masks; no weights, low quality")
    return specs


MODELS: dict[str, ModelSpec] = _specs_from_cards()
MODEL_CHOICES = ("auto", *MODELS)


class WeightsMissing(LookupError):
    """The requested Demucs model has no weights on disk; the message says how to get them."""


@dataclass
class Resolved:
    """What ``model=...`` became, and why (shown to the agent in the result)."""

    model_id: str
    fallback: bool
    reason: str


@dataclass
class Separation:
    stems: dict[str, np.ndarray]  # name -> float32 (frames, channels), at the input's rate and channel count
    sample_rate: int
    model: dict[str, Any]
    residual_db: float  # energy of (input - sum of stems) relative to the input, dB
    extra: dict[str, Any] = field(default_factory=dict)


# -- weights on disk ------------------------------------------------------------------------------------
def weights_folder(settings: Settings, model_id: str) -> Path:
    return Path(settings.weights_dir) / model_id


def _bag_file(folder: Path, model_id: str) -> Path | None:
    for name in (f"{model_id}.yaml", "bag.yaml"):
        if (folder / name).is_file():
            return folder / name
    return None


def weights_available(settings: Settings, model_id: str) -> bool:
    """Whether every member named by the bag file is present (checked without loading anything)."""
    if model_id == "dsp":
        return True
    from ..config import is_ray_url

    if is_ray_url(settings.engine_url):  # the Ray cluster's Demucs deployments count, not this machine's disk
        from .musicgen_backend import get_engine

        return model_id in get_engine(settings).demucs_models()
    folder = weights_folder(settings, model_id)
    bag = _bag_file(folder, model_id)
    if bag is None:
        return False
    import yaml

    sigs = (yaml.safe_load(bag.read_text()) or {}).get("models") or []
    return bool(sigs) and all((folder / f"{s}.safetensors").is_file() or any(folder.glob(f"{s}*.th")) for s in sigs)


def missing_message(settings: Settings, model_id: str) -> str:
    return (f"Demucs model {model_id} is not downloaded (no weights in {weights_folder(settings, model_id)}): "
            f"run `echotune-mcp models pull {model_id}`, or use model=dsp")


def resolve_model(settings: Settings, model: str, stems: list[str] | None) -> Resolved:
    """``auto`` picks the best downloaded model for the stems asked for, else the DSP fallback."""
    if model != "auto":
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}")
        if not weights_available(settings, model):
            raise WeightsMissing(missing_message(settings, model))
        return Resolved(model, False, "requested")
    wants_six = bool(set(stems or ()) - set(FOUR))
    order = ("htdemucs_6s",) if wants_six else ("htdemucs", "htdemucs_ft", "htdemucs_6s")
    for mid in order:
        if weights_available(settings, mid):
            return Resolved(mid, False, f"auto: {mid} weights are downloaded")
    if wants_six:
        raise WeightsMissing(missing_message(settings, "htdemucs_6s") + " (guitar/piano need htdemucs_6s)")
    return Resolved("dsp", True, "auto: no Demucs weights are downloaded, so the classical DSP separator was used "
                                 "(much lower quality); run `echotune-mcp models pull htdemucs` for real stems")


def _weights_revision(folder: Path) -> str | None:
    """The revision pinned at pull time (the model manager's manifest), else a plain revision file."""
    manifest = folder / ".echotune-manifest.json"
    if manifest.is_file():
        import json

        return json.loads(manifest.read_text()).get("revision")
    for name in (".revision", "REVISION"):
        if (folder / name).is_file():
            return (folder / name).read_text().strip() or None
    return None


def load_demucs(folder: Path, model_id: str) -> Any:
    """Build the bag from ``folder`` only: safetensors (HF layout) first, demucs' legacy ``.th`` repo second."""
    import yaml
    from demucs.apply import BagOfModels

    bag_path = _bag_file(folder, model_id)
    if bag_path is None:
        raise FileNotFoundError(f"no {model_id}.yaml in {folder}")
    bag = yaml.safe_load(bag_path.read_text())
    sigs = bag["models"]
    if all((folder / f"{s}.safetensors").is_file() for s in sigs):
        from demucs.hf import load_safetensors_model

        models = [load_safetensors_model(folder / f"{s}.safetensors") for s in sigs]
        model = BagOfModels(models, bag.get("weights"), bag.get("segment"))
    else:
        from demucs.pretrained import get_model

        model = get_model(bag_path.stem, repo=folder)  # LocalRepo: reads the folder, never the network
    return model.eval()


# -- runners ---------------------------------------------------------------------------------------------
_MANAGERS: dict[tuple[str, str], Any] = {}  # (weights folder, device) -> ModelManager holding the runners
_RUNNERS_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()


def pick_device(settings: Settings) -> str:
    import torch

    if settings.device:
        return settings.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_batch(device: str) -> int:
    """Segments per forward pass: a GPU wants many; on CPU a batch of 2 htdemucs segments took twice as
    long per segment as one at a time (2-core bench, docs/BENCHMARKS.md), so CPU requests interleave
    segment by segment instead."""
    return 8 if device.startswith("cuda") else 1


def default_workers(device: str) -> int:
    """Runner threads. Two on CPU: each request is on one worker at a time, and a second worker overlaps one
    pass's single-threaded stretches with another request's pass; with the fast Demucs copy (``demucs_fast``)
    that measured 1.31x threaded stock at 4 concurrent on the 2-core Xeon against 1.19x with one worker
    (docs/BENCHMARKS.md). One on an accelerator, where the batch fills the device instead."""
    return 2 if device == "cpu" else 1


def _manager(settings: Settings) -> Any:
    """The process-wide model manager for this weights folder: it owns loaded runners and their memory budget."""
    from .model_manager import ModelManager

    key = (str(Path(settings.weights_dir).resolve()), pick_device(settings))
    with _RUNNERS_LOCK:
        if key not in _MANAGERS:
            _MANAGERS[key] = ModelManager(settings)
        return _MANAGERS[key]


def get_runner(settings: Settings, model_id: str) -> DemucsRunner:
    """The process-wide runner for this model, loaded on first use through the model manager."""
    from .demucs_runner import DemucsRunner

    device = pick_device(settings)

    def available() -> None:
        if not weights_available(settings, model_id):
            raise WeightsMissing(missing_message(settings, model_id))

    def load(folder: Path, _card: Any) -> DemucsRunner:
        return DemucsRunner(load_demucs(folder.resolve(), model_id), device=device, max_batch=default_batch(device),
                            workers=default_workers(device))

    manager = _manager(settings)
    with _LOAD_LOCK:  # one load at a time: two first requests must not build two runners
        return manager.get(model_id, load, available=available)


def install_runner(settings: Settings, model_id: str, runner: DemucsRunner) -> None:
    """Use an already built runner for ``model_id`` (an embedding application, or tests with a tiny model)."""
    manager = _manager(settings)
    manager.put(model_id, runner, manager.card(model_id).memory_mb)


def close_runners() -> None:
    with _RUNNERS_LOCK:
        managers = list(_MANAGERS.values())
        _MANAGERS.clear()
    for m in managers:
        m.close_all()


# -- separation ------------------------------------------------------------------------------------------
def residual_db(samples: np.ndarray, stems: dict[str, np.ndarray]) -> float:
    """10 log10(|x - sum(stems)|^2 / |x|^2): how far the stems are from adding back up to the input."""
    x = np.asarray(samples, dtype=np.float64)
    total = np.zeros_like(x)
    for s in stems.values():
        total += s
    num, den = float(((x - total) ** 2).sum()), float((x**2).sum())
    if den <= 0:
        return 0.0 if num <= 0 else float("inf")
    return float(10 * np.log10(max(num, 1e-30) / den))


async def separate(settings: Settings, samples: np.ndarray, sample_rate: int, resolved: Resolved, *,
                   on_progress: Callable[[float, str], None] | None = None,
                   run_cpu: Callable[..., Awaitable[Any]] | None = None) -> Separation:
    """Separate (frames, channels) float32 audio with the resolved model; stems come back like the input.

    ``on_progress`` is called from a worker thread after each segment; if it raises (the job was
    cancelled) the remaining segments of this request are dropped and the exception propagates.
    ``run_cpu`` runs the CPU-heavy steps (the DSP fallback, resampling, stitching): a job passes its
    bounded CPU pool (``JobContext.run_in_thread``) so they never occupy the threads storage calls use.
    """
    run = run_cpu or asyncio.to_thread
    if resolved.model_id == "dsp":
        return await run(_separate_dsp, samples, sample_rate, resolved, on_progress)
    from ..config import is_ray_url

    if is_ray_url(settings.engine_url):  # a Demucs replica on the Ray cluster (ray_serve.DemucsReplica)
        from .musicgen_backend import get_engine

        data, handle = await get_engine(settings).separate(resolved.model_id, samples, sample_rate, on_progress)
        model = dict(data["model"], reason=resolved.reason, engine_retries=handle.retries)
        return Separation(data["stems"], int(data["sample_rate"]), model, float(data["residual_db"]))
    runner = await run(get_runner, settings, resolved.model_id)
    mix, mean, std = await run(_prepare, samples, sample_rate, runner.samplerate, runner.audio_channels)

    def on_segment(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(done / total, f"separated segment {done}/{total}")

    ticket = runner.submit(mix, on_segment)
    try:
        out = await asyncio.wrap_future(ticket.future)
    except asyncio.CancelledError:
        ticket.cancel()
        raise
    stems = await run(_finish, out, mean, std, runner.sources, runner.samplerate, sample_rate, samples.shape[1])
    spec = MODELS[resolved.model_id]
    folder = weights_folder(settings, resolved.model_id)
    info = {"model_id": resolved.model_id, "backend": "demucs", "weights_license": spec.weights_license,
            "weights_revision": _weights_revision(folder), "hf_repo": spec.hf_repo, "device": str(runner.device),
            "segments": ticket.total_segments, "overlap": runner.overlap, "shifts": 0, "reason": resolved.reason}
    return Separation(stems, sample_rate, info, residual_db(samples, stems))


def _prepare(samples: np.ndarray, sr: int, model_sr: int, channels: int) -> tuple[Any, float, float]:
    """To the model's rate and channel count, normalised the way ``demucs.separate`` does it."""
    import torch

    x = to_channels(resample(np.asarray(samples, dtype=np.float32), sr, model_sr), channels)
    wav = torch.from_numpy(np.ascontiguousarray(x.T))
    ref = wav.mean(0)
    mean, std = float(ref.mean()), float(ref.std()) if ref.numel() > 1 else 1.0
    std = std if std > 1e-8 else 1.0
    return ((wav - mean) / std)[None], mean, std


def _finish(out: Any, mean: float, std: float, sources: list[str], model_sr: int, sr: int,
            channels: int) -> dict[str, np.ndarray]:
    est = (out[0] * std + mean / len(sources)).cpu().numpy()  # each source gets its share of the DC offset
    return {name: to_channels(resample(np.ascontiguousarray(est[k].T), model_sr, sr), channels).astype(np.float32)
            for k, name in enumerate(sources)}


def _separate_dsp(samples: np.ndarray, sr: int, resolved: Resolved,
                  on_progress: Callable[[float, str], None] | None) -> Separation:
    from ..music.dsp_separation import separate_dsp

    if on_progress is not None:
        on_progress(0.05, "DSP separation: computing masks")
    stems = separate_dsp(samples, sr)
    if on_progress is not None:
        on_progress(1.0, "DSP separation done")
    info = {"model_id": "dsp", "backend": "dsp", "weights_license": None, "weights_revision": None,
            "fallback": resolved.fallback, "reason": resolved.reason, "about": MODELS["dsp"].about}
    return Separation(stems, sr, info, residual_db(samples, stems))
