"""What a piece we made sounds like, and which catalogue tracks sound like it.

Spotify stopped giving new apps audio features (Nov 2024), so the only audio we can measure is our own:
``analyze_audio``'s features of an artifact. ``artifact_features`` maps them onto the Spotify-style keys the
corpus items carry, and ``feature_distance`` compares two such feature dicts over the keys both have:

* tempo: |log2(a/b)|, folded so that half or double time counts as close (plus a small penalty equal to a
  4 % tempo difference), then divided by log2(1.25): 25 % apart or more is as far as it gets (1);
* key: the Camelot wheel (the circle of fifths with each minor key beside its relative major):
  (steps around the wheel, 0..6, + 0.75 if the modes differ) / 6.75. Same key 0, relative major/minor 0.11,
  a fifth apart 0.15, a tritone in the other mode 1. Spotify's key -1 (none detected) is left out;
* loudness: |a-b| / 12 dB, capped at 1 (ours is integrated LUFS, Spotify's an average in dB: close enough
  to tell a quiet track from a loud master, not a measurement to compare to the decibel);
* energy, danceability, valence and the other 0..1 features: |a-b| (our energy and danceability are the
  written-out formulas of ``music.features``, not Spotify's models: same scale and direction, not identical);
* the distance is the weighted root-mean-square of those parts, in 0..1 (weights in ``WEIGHTS``); with no
  key in common it is ``inf``.

CLAP (laion/clap through ``transformers``) gives audio and text embeddings in one space. Its weights are
read only from disk (``<models dir>/<ECHOTUNE_CLAP_MODEL>/``, put there by ``echotune-mcp models pull``),
never fetched on demand; when they are there, two audio artifacts are also compared by their embeddings.
With ``ECHOTUNE_ENGINE_URL`` a Ray URL and an ``echotune-clap`` Serve application deployed (``engine deploy
--clap``), the embeddings come from its replicas instead (:func:`clap_backend`; same code and weights, so the
same vectors), and the server needs no CLAP weights of its own; results say which embedded and why.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
from pydantic import BaseModel, Field

from ..music.theory import conventional_tonic_name

from .service import RecommendedItem

if TYPE_CHECKING:
    from ..app import App
    from ..config import Settings

WEIGHTS = {"tempo": 1.0, "key": 1.0, "energy": 1.0, "danceability": 0.5, "valence": 0.5, "acousticness": 0.5,
           "instrumentalness": 0.25, "speechiness": 0.25, "liveness": 0.25, "loudness": 0.25}
UNIT_KEYS = ("energy", "danceability", "valence", "acousticness", "instrumentalness", "speechiness", "liveness")
TEMPO_SCALE = math.log2(1.25)
FOLD_PENALTY = math.log2(1.04)
LOUDNESS_SCALE_DB = 12.0
MODE_STEP = 0.75
# a part at most this far (0..1) is named as a reason: tempo within about 7 % (3 % in half/double time),
# a key a fifth away or the relative major/minor, loudness within 3 dB, a 0..1 feature within 0.1
CLOSE = {"tempo": 0.3, "key": 0.16, "loudness": 0.25}
CLOSE_UNIT = 0.1
MAX_ARTIFACTS = 200  # the owner's most recent audio artifacts compared
MAX_FRESH = 4  # artifacts analysed/embedded for the first time in one call (the rest: next time)
EMBED_CACHE = "idempotency"  # the owner-scoped TTL collection the analyses are cached in
EMBED_TTL_S = 90 * 24 * 3600


# -- features -----------------------------------------------------------------------------------------------
def _pitch_class(tonic: str) -> int | None:
    from ..music.analysis import key_pitch_class

    try:
        return key_pitch_class(tonic)
    except ValueError:
        return None


def artifact_features(analysis: dict[str, Any]) -> dict[str, float]:
    """``analyze_audio``'s result as Spotify-style keys: tempo (bpm), key (pitch class 0-11, C=0), mode
    (1 major, 0 minor), loudness (integrated LUFS), energy and danceability (0..1). A value the analysis
    could not measure (no tempo, no key in silence, no loudness) is left out rather than guessed."""
    out: dict[str, float] = {}
    bpm = (analysis.get("tempo") or {}).get("bpm")
    if isinstance(bpm, (int, float)) and bpm > 0:
        out["tempo"] = float(bpm)
    key = analysis.get("key") or {}
    pc = _pitch_class(str(key.get("tonic") or ""))
    if pc is not None and key.get("mode") in ("major", "minor") and (key.get("confidence") or 0) > 0:
        out["key"] = float(pc)
        out["mode"] = 1.0 if key["mode"] == "major" else 0.0
    lufs = (analysis.get("loudness") or {}).get("integrated_lufs")
    if isinstance(lufs, (int, float)) and math.isfinite(lufs) and lufs > -70:
        out["loudness"] = float(lufs)
    for name, value in (analysis.get("scores") or {}).items():
        if name in ("energy", "danceability") and isinstance(value, (int, float)):
            out[name] = float(value)
    return out


def camelot(pc: int, major: bool) -> tuple[int, str]:
    """Camelot wheel position: (1-12, 'B' major / 'A' minor); C major 8B, A minor 8A, G major 9B."""
    major_pc = pc if major else (pc + 3) % 12  # a minor key sits beside its relative major
    return (7 * major_pc % 12 + 7) % 12 + 1, "B" if major else "A"


def key_name(key: float, mode: float | None) -> str:
    """'A minor' for key 9, mode 0; the tonic alone ('A') without a mode."""
    m = "minor" if mode is not None and mode < 0.5 else "major"
    name = conventional_tonic_name(int(key) % 12, m)
    return name if mode is None else f"{name} {m}"


def _wheel(pc: np.ndarray, major: np.ndarray) -> np.ndarray:
    major_pc = np.where(major, pc, (pc + 3) % 12)
    return (7 * major_pc) % 12


def _parts(a: dict[str, float], cols: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Per-key distances (0..1) of ``a`` to each of n candidates given as columns; NaN where either lacks it."""
    out: dict[str, np.ndarray] = {}
    nan = np.full(n, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        if "tempo" in a and a["tempo"] > 0 and "tempo" in cols:
            b = cols["tempo"]
            r = np.abs(np.log2(np.where(b > 0, b, np.nan) / a["tempo"]))
            folded = np.abs(r - 1.0) + FOLD_PENALTY
            out["tempo"] = np.minimum(1.0, np.minimum(r, folded) / TEMPO_SCALE)
        if "key" in a and a["key"] >= 0 and "key" in cols:
            kb = cols["key"]
            valid = (kb >= 0) & (kb <= 11)
            pb = np.where(valid, kb, 0).astype(int)
            if "mode" in a and "mode" in cols:
                mb = cols["mode"]
                have_mode = ~np.isnan(mb)
                wa = _wheel(np.array([int(a["key"])]), np.array([a["mode"] >= 0.5]))[0]
                wb = _wheel(pb, np.where(have_mode, mb, 1) >= 0.5)
                steps = np.abs(wa - wb)
                steps = np.minimum(steps, 12 - steps)
                differ = np.where(have_mode, (np.where(have_mode, mb, 0) >= 0.5) != (a["mode"] >= 0.5), False)
                d = (steps + MODE_STEP * differ) / (6 + MODE_STEP)
                # without a mode on the candidate side, compare pitch classes on the circle of fifths only
                steps_pc = np.abs((7 * int(a["key"])) % 12 - (7 * pb) % 12)
                d = np.where(have_mode, d, np.minimum(steps_pc, 12 - steps_pc) / 6)
            else:
                steps_pc = np.abs((7 * int(a["key"])) % 12 - (7 * pb) % 12)
                d = np.minimum(steps_pc, 12 - steps_pc) / 6
            out["key"] = np.where(valid, d, np.nan)
        if "loudness" in a and "loudness" in cols:
            out["loudness"] = np.minimum(1.0, np.abs(cols["loudness"] - a["loudness"]) / LOUDNESS_SCALE_DB)
        for k in UNIT_KEYS:
            if k in a and k in cols:
                out[k] = np.minimum(1.0, np.abs(cols[k] - a[k]))
    return {k: (v if v.shape == (n,) else nan) for k, v in out.items()}


def _combine(parts: dict[str, np.ndarray], n: int) -> np.ndarray:
    num = np.zeros(n)
    den = np.zeros(n)
    for k, d in parts.items():
        have = ~np.isnan(d)
        num += np.where(have, WEIGHTS[k] * np.nan_to_num(d) ** 2, 0.0)
        den += np.where(have, WEIGHTS[k], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sqrt(num / np.where(den > 0, den, 1.0)), np.inf)


def _columns(feats: Sequence[dict[str, float]]) -> dict[str, np.ndarray]:
    keys = {k for f in feats for k in f if k in WEIGHTS or k == "mode"}
    return {k: np.array([f.get(k, np.nan) for f in feats], dtype=np.float64) for k in keys}


def feature_distance(a: dict[str, float], b: dict[str, float]) -> float:
    """Distance 0..1 between two Spotify-style feature dicts over the keys both have (see the module doc);
    ``inf`` when they share none."""
    return float(_combine(_parts(a, _columns([b]), 1), 1)[0])


def feature_distances(a: dict[str, float], feats: Sequence[dict[str, float]]) -> np.ndarray:
    """``feature_distance(a, f)`` for every f, vectorised (the same formulas)."""
    return _combine(_parts(a, _columns(feats), len(feats)), len(feats)) if feats else np.zeros(0)


def closeness_reasons(a: dict[str, float], b: dict[str, float], limit: int = 3) -> list[str]:
    """The nearest features of ``b`` to ``a`` in words, nearest first, e.g. 'same key A minor',
    '122 vs 120 bpm', 'similar energy (0.71 vs 0.68)' (b's value first). Only parts within ``CLOSE`` are named."""
    parts = {k: float(v[0]) for k, v in _parts(a, _columns([b]), 1).items() if not math.isnan(v[0])}
    said: list[tuple[float, str]] = []
    for k, d in parts.items():
        if d > CLOSE.get(k, CLOSE_UNIT):
            continue
        if k == "tempo":
            ta, tb = a["tempo"], b["tempo"]
            ratio = abs(math.log2(tb / ta))
            if abs(ratio - 1) < ratio:
                said.append((d, f"{'half' if tb < ta else 'double'}-time: {tb:.0f} vs {ta:.0f} bpm"))
            else:
                said.append((d, f"{tb:.0f} vs {ta:.0f} bpm"))
        elif k == "key":
            ma, mb = a.get("mode"), b.get("mode")
            na, nb = key_name(a["key"], ma), key_name(b["key"], mb)
            if na == nb:
                said.append((d, f"same key {na}"))
            elif ma is not None and mb is not None and camelot(int(a["key"]), ma >= 0.5)[0] == camelot(
                    int(b["key"]), mb >= 0.5)[0]:
                said.append((d, f"relative key ({nb} vs {na})"))
            else:
                said.append((d, f"neighbouring key on the circle of fifths ({nb} vs {na})"))
        elif k == "loudness":
            said.append((d, f"similar loudness ({b[k]:.0f} vs {a[k]:.0f} dB)"))
        else:
            said.append((d, f"similar {k} ({b[k]:.2f} vs {a[k]:.2f})"))
    said.sort(key=lambda t: t[0])
    return [s for _, s in said[:limit]]


# -- CLAP ---------------------------------------------------------------------------------------------------
class ClapUnavailable(RuntimeError):
    """CLAP cannot be used; the message says why and how to fix it."""


def clap_dir(settings: Settings) -> Path:
    return Path(settings.weights_dir) / settings.clap_model


def clap_status(settings: Settings) -> tuple[bool, str]:
    """(usable, why): whether CLAP weights are on disk and ``transformers`` is installed."""
    folder = clap_dir(settings)
    pull = f"run `echotune-mcp models pull {settings.clap_model}` (laion CLAP, Apache-2.0)"
    if not (folder / "config.json").is_file():
        return False, f"no CLAP weights at {folder}: {pull}"
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        return False, f"{folder} has a config but no weights file: {pull}"
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return False, "transformers/torch are not installed (pip install 'echotune-mcp[ml]')"
    return True, f"CLAP weights at {folder}"


@dataclass
class ClapEmbedder:
    """CLAP text and audio embeddings (L2-normalised rows), from a folder in the Hugging Face layout.

    Audio is mixed to mono and resampled to the model's rate (48 kHz, soxr). A clip longer than the
    model's window (10 s for laion CLAP) is cut into up to ``max_windows`` evenly spaced windows whose
    embeddings are averaged, so the result is deterministic (the processor's own truncation of long
    audio picks a random crop); a shorter clip is repeat-padded by the processor.
    """

    model: Any
    processor: Any
    folder: Path
    max_windows: int = 6

    @classmethod
    def from_dir(cls, path: Path, device: str = "cpu") -> ClapEmbedder:
        from transformers import ClapModel, ClapProcessor

        path = Path(path)
        model = ClapModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        processor = ClapProcessor.from_pretrained(str(path), local_files_only=True)
        return cls(model=model, processor=processor, folder=path)

    @staticmethod
    def available(settings: Settings) -> tuple[bool, str]:
        return clap_status(settings)

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def sample_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    @property
    def window(self) -> int:
        return int(self.processor.feature_extractor.nb_max_samples)

    @staticmethod
    def _rows(out: Any) -> np.ndarray:
        t = out if hasattr(out, "detach") else out.pooler_output  # transformers 4 returns the tensor itself
        x = t.detach().float().cpu().numpy().astype(np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def text(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) unit rows."""
        import torch

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        inputs = self.processor(text=list(texts), return_tensors="pt", padding=True, truncation=True)
        with torch.inference_mode():
            return self._rows(self.model.get_text_features(
                input_ids=inputs["input_ids"].to(self.model.device),
                attention_mask=inputs["attention_mask"].to(self.model.device)))

    def _windows(self, samples: np.ndarray, sr: int) -> list[np.ndarray]:
        import soxr

        y = np.asarray(samples, dtype=np.float32)
        y = y.mean(axis=1) if y.ndim == 2 else y
        if sr != self.sample_rate:
            y = soxr.resample(y, sr, self.sample_rate).astype(np.float32)
        if y.size == 0:
            raise ValueError("no audio samples to embed")
        w = self.window
        if y.size <= w:
            return [y]
        count = min(self.max_windows, math.ceil(y.size / w))
        starts = np.linspace(0, y.size - w, count).round().astype(int)
        return [y[s:s + w] for s in starts]

    def audios(self, clips: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
        """(len(clips), dim) unit rows; each clip is (samples (frames[, channels]), sample rate)."""
        import torch

        if not clips:
            return np.zeros((0, self.dim), np.float32)
        windows: list[np.ndarray] = []
        owners: list[int] = []
        for i, (samples, sr) in enumerate(clips):
            ws = self._windows(samples, sr)
            windows += ws
            owners += [i] * len(ws)
        inputs = self.processor(audio=windows, sampling_rate=self.sample_rate, return_tensors="pt",
                                truncation="fusion" if self.model.config.audio_config.enable_fusion else "rand_trunc")
        kwargs = {"input_features": inputs["input_features"].to(self.model.device)}
        if "is_longer" in inputs:
            # No window is longer than the model's: say so. (With fusion, the extractor marks a random clip of
            # a batch 'longer' when none is, which would make the result depend on the batch and on chance.)
            kwargs["is_longer"] = torch.zeros_like(inputs["is_longer"]).to(self.model.device)
        with torch.inference_mode():
            rows = self._rows(self.model.get_audio_features(**kwargs))
        idx = np.asarray(owners)
        out = np.stack([rows[idx == i].mean(axis=0) for i in range(len(clips))])
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def audio(self, samples: np.ndarray, sr: int) -> np.ndarray:
        """(dim,) unit vector for one clip."""
        return self.audios([(samples, sr)])[0]


_embedders: dict[str, ClapEmbedder] = {}
_embedders_lock = threading.Lock()


def get_embedder(settings: Settings) -> ClapEmbedder:
    """The process's embedder for the configured CLAP folder (loaded once); ClapUnavailable if it cannot be."""
    ok, why = clap_status(settings)
    if not ok:
        raise ClapUnavailable(why)
    folder = clap_dir(settings).resolve()
    key = f"{folder}:{(folder / 'config.json').stat().st_mtime_ns}"
    with _embedders_lock:
        if key not in _embedders:
            try:
                _embedders.clear()  # one CLAP at a time; a changed folder replaces the old model
                _embedders[key] = ClapEmbedder.from_dir(folder)
            except Exception as exc:  # damaged or incompatible weights: say so, features still work
                raise ClapUnavailable(f"CLAP weights at {folder} could not be loaded: {exc}") from exc
        return _embedders[key]


def clear_embedders() -> None:
    with _embedders_lock:
        _embedders.clear()


@dataclass
class ClapBackend:
    """Where this call's CLAP embeddings are computed: this process's :class:`ClapEmbedder` (on the CPU pool,
    off the event loop) or the ``echotune-clap`` Serve application of the Ray cluster (awaited through its
    DeploymentHandle, bounded by ``ECHOTUNE_ENGINE_READ_TIMEOUT_S``)."""

    model: str  # the CLAP folder name; cached embeddings are keyed by it, whichever backend made them
    dim: int
    where: str  # said in results: 'ray ...' or 'in-process ...', with why
    local: ClapEmbedder | None = None
    ray: Any = None  # engine.ray_client.RayEngine

    async def audio(self, app: App, samples: np.ndarray, sr: int) -> np.ndarray:
        if self.ray is not None:
            return (await self.ray.clap_audios([(samples, int(sr))]))[0]
        assert self.local is not None
        return await app.cpu.run(self.local.audio, samples, sr, start_within=app.settings.max_wait_seconds)

    async def text(self, app: App, texts: list[str]) -> np.ndarray:
        if self.ray is not None:
            return await self.ray.clap_text(list(texts))
        assert self.local is not None
        return await app.cpu.run(self.local.text, list(texts), start_within=app.settings.max_wait_seconds)


def ray_text_embedder(settings: Any) -> tuple[Any, str]:
    """(RayEngine, '') when ``settings.engine_url`` is a Ray URL whose cluster runs ``echotune-clap``, else
    (None, why not: '' when no Ray URL is set). Blocking: for a model fit's thread, never the event loop."""
    from ..config import is_ray_url

    url = getattr(settings, "engine_url", None)
    if not is_ray_url(url):
        return None, ""
    from ..engine.musicgen_backend import get_engine

    engine = get_engine(settings)
    if engine.clap_deployed():
        return engine, ""
    return None, f"no echotune-clap application runs on the Ray cluster at {url} (`echotune-mcp engine deploy --clap`)"


async def clap_backend(app: App) -> tuple[ClapBackend | None, str]:
    """(backend, why): the Ray cluster's CLAP deployment when ``ECHOTUNE_ENGINE_URL`` is a Ray URL and one
    runs there, else this process's CLAP when its weights are on disk, else None; ``why`` says what was
    chosen or missing and how to fix it."""
    from ..config import is_ray_url

    settings = app.settings
    remote_why = ""
    if is_ray_url(settings.engine_url):
        from ..engine.musicgen_backend import get_engine

        engine = get_engine(settings)
        try:
            if await anyio.to_thread.run_sync(engine.clap_deployed):
                info = await engine.clap_info()
                where = f"ray: the echotune-clap Serve application on {settings.engine_url}"
                return ClapBackend(model=str(info["model_id"]), dim=int(info["dim"]), where=where, ray=engine), where
            remote_why = (f"no echotune-clap application runs on the Ray cluster at {settings.engine_url} "
                          "(`echotune-mcp engine deploy --clap`)")
        except Exception as exc:  # noqa: BLE001 - a cluster that does not answer: say so, embed here if we can
            remote_why = f"the Ray cluster's CLAP at {settings.engine_url} did not answer ({type(exc).__name__}: {exc})"
    ok, why = clap_status(settings)
    if ok:
        try:
            embedder = await app.cpu.run(get_embedder, settings, start_within=settings.max_wait_seconds)
        except ClapUnavailable as exc:
            ok, why = False, str(exc)
    if not ok:
        return None, "; ".join(w for w in (remote_why, why) if w)
    where = "in-process" + (f" ({remote_why})" if remote_why else "")
    return ClapBackend(model=settings.clap_model, dim=embedder.dim, where=where, local=embedder), where


# -- similar_to ---------------------------------------------------------------------------------------------
class QueryPiece(BaseModel):
    artifact_id: str
    features: dict[str, float] = Field(description="its Spotify-style features (tempo bpm, key 0-11, mode, "
                                                   "loudness LUFS, energy, danceability)")
    key: str | None = Field(default=None, description="its key in words, e.g. 'A minor'")


class SimilarResult(BaseModel):
    query: QueryPiece
    items: list[RecommendedItem] = Field(description="nearest first")
    compared: dict[str, int] = Field(description="how many candidates of each source were compared")
    embeddings: str | None = Field(description="'clap:<model>' when CLAP embeddings were compared too, else None")
    embedded_by: str | None = Field(default=None, description="where the CLAP embeddings were computed and why: "
                                    "'ray: ...' (the cluster's echotune-clap deployment) or 'in-process ...'")
    notes: list[str] = Field(description="what was left out and why (no CLAP weights, artifacts not yet "
                                         "analysed, corpora without features)")


_TRACKS: dict[tuple[str, int], tuple[list[Any], dict[str, np.ndarray]]] = {}
_TRACKS_LOCK = threading.Lock()


def _corpus_tracks(corpus: Any) -> tuple[list[Any], dict[str, np.ndarray]]:
    """A corpus's track items with features and their feature columns (cached per corpus id and version)."""
    key = (corpus.info.id, corpus.info.version)
    with _TRACKS_LOCK:
        hit = _TRACKS.get(key)
    if hit is not None:
        return hit
    items = [it for it in corpus.items if it.kind == "track" and it.features]
    cols = _columns([it.features for it in items])
    with _TRACKS_LOCK:
        while len(_TRACKS) >= 4:
            del _TRACKS[next(iter(_TRACKS))]
        _TRACKS[key] = (items, cols)
    return items, cols


def _load_corpora(root: Path, corpus_id: str | None) -> list[Any]:
    """The corpus named (KeyError if there is none), or every loaded one."""
    from . import corpus as corpus_mod

    if corpus_id is not None:
        return [corpus_mod.load_corpus(root, corpus_id)]
    out = []
    for info in corpus_mod.list_corpora(root):
        try:
            out.append(corpus_mod.load_corpus(root, info.id))
        except KeyError:  # removed between listing and loading
            continue
    return out


def _nearest_tracks(corpus: Any, query: dict[str, float], k: int) -> tuple[list[tuple[float, Any]], int]:
    """The k tracks of ``corpus`` nearest to ``query`` (finite distances only), and how many were compared."""
    items, cols = _corpus_tracks(corpus)
    if not items:
        return [], 0
    dist = _combine(_parts(query, cols, len(items)), len(items))
    order = np.argsort(dist, kind="stable")[:k]
    return [(float(dist[i]), items[i]) for i in order if math.isfinite(dist[i])], len(items)


async def _cached_doc(app: App, owner: str, doc_id: str) -> dict | None:
    return await app.storage.collection(EMBED_CACHE).get(owner, doc_id)


async def _store_doc(app: App, owner: str, doc_id: str, key: str, body: dict) -> None:
    now = time.time()
    try:
        await app.storage.collection(EMBED_CACHE).insert({"id": doc_id, "owner": owner, "key": key, "created_at": now,
                                                           "expires_at": now + EMBED_TTL_S, **body})
    except Exception:  # stored concurrently by another call: same content, same answer
        pass


def _clap_doc_id(model: str, sha: str) -> str:
    return f"clap-{model}-{sha}"


async def _embedding(app: App, owner: str, sha: str, load: Any, embedder: ClapBackend | None) -> np.ndarray | None:
    """The cached CLAP audio embedding of this content, computing it (``load`` gives the audio) on a miss."""
    if embedder is None:
        return None
    doc_id = _clap_doc_id(embedder.model, sha)
    doc = await _cached_doc(app, owner, doc_id)
    if doc is not None and len(doc.get("embedding", ())) == embedder.dim:
        return np.asarray(doc["embedding"], np.float32)
    inp = await load()
    vec = await embedder.audio(app, inp.audio.samples, inp.audio.sample_rate)
    await _store_doc(app, owner, doc_id, f"clap:{sha}", {"embedding": [float(v) for v in vec]})
    return vec


def _artifact_title(rec: Any) -> str:
    """The artifact's file name, with the prompt it was made from where its provenance has one."""
    prompt = (rec.provenance or {}).get("prompt")
    return f"{rec.name}: {prompt[:80]}" if isinstance(prompt, str) and prompt else rec.name


async def find_similar(app: App, owner: str, artifact_id: str, k: int, corpus_id: str | None = None, *,
                       include_artifacts: bool = True) -> SimilarResult:
    """Catalogue tracks and (unless ``include_artifacts`` is off) the owner's other audio artifacts that sound
    like ``artifact_id``, nearest first."""
    from ..audio_inputs import load_audio_input
    from ..errors import BadInput, Busy, EchoError, NotFound
    from ..toolsets.audio import _analysis, _cache_id
    from . import corpus as corpus_mod

    record = await app.artifacts.resolve(owner, artifact_id.strip())  # another owner's: not found, like a wrong id
    if not (record.media_type.startswith("audio/") and record.media_type != "audio/midi"):
        raise BadInput("artifact_id", f"artifact {record.id} is {record.media_type} ({record.kind}), which has "
                                      "no audio to compare", "an audio artifact (a mix, remix, stem or upload)")
    notes: list[str] = []
    root = corpus_mod.corpora_dir(app.settings)
    try:  # reading corpora from disk (tens of MB for a large one) stays off the event loop
        corpora = await anyio.to_thread.run_sync(_load_corpora, root, corpus_id)
    except KeyError:
        have = [c.id for c in await anyio.to_thread.run_sync(corpus_mod.list_corpora, root)]
        raise BadInput("corpus_id", f"no corpus {corpus_id!r}", have or "none loaded yet: `echotune-mcp "
                       "recommend corpus add FILE --format playlists --licence TEXT`") from None
    loaded: dict[str, Any] = {}

    async def load(rec: Any, field: str) -> Any:
        if rec.id not in loaded:
            loaded[rec.id] = await load_audio_input(app, owner, rec.id, field=field, allow_paths=False)
        return loaded[rec.id]

    async def features_of(rec: Any, field: str, fresh_ok: bool) -> dict[str, float] | None:
        doc = await _cached_doc(app, owner, _cache_id(rec.sha256))
        if doc is not None:
            return artifact_features(doc["analysis"])
        if not fresh_ok:
            return None
        return artifact_features(await _analysis(app, owner, await load(rec, field),
                                                 start_within=app.settings.max_wait_seconds))

    query = await features_of(record, "artifact_id", True)
    assert query is not None
    embedder, why = await clap_backend(app)
    embedded_by = embedder.where if embedder is not None else None
    if embedder is None:
        notes.append(f"compared by audio features only: {why}")

    async def embed(rec: Any) -> np.ndarray | None:
        """The CLAP embedding of ``rec``; a model that fails is reported and switched off for this call."""
        nonlocal embedder
        try:
            return await _embedding(app, owner, rec.sha256, lambda: load(rec, "artifact_id"), embedder)
        except (EchoError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a broken model must not cost the feature comparison
            notes.append(f"CLAP embedding failed ({type(exc).__name__}: {exc}); compared by audio features only")
            embedder = None
            return None

    embedded_model = embedder.model if embedder is not None else None
    query_vec = await embed(record)

    results: list[tuple[float, Any]] = []
    compared = {"corpus_tracks": 0, "artifacts": 0}
    for corpus in corpora:
        nearest, total = await anyio.to_thread.run_sync(_nearest_tracks, corpus, query, k)
        if not total:
            notes.append(f"corpus {corpus.info.id} ({corpus.info.name}) has no tracks with audio features")
            continue
        compared["corpus_tracks"] += total
        for d, it in nearest:
            results.append((d, RecommendedItem(
                item_id=it.id, kind="track", title=it.title, artists=list(it.artists), spotify_id=it.spotify_id,
                isrc=it.isrc, tags=list(it.tags), features=dict(it.features), popularity=it.popularity,
                score=round(1.0 - d, 4), reasons=closeness_reasons(query, it.features) or
                ["the nearest by audio features, though none is close"], source=f"corpus:{corpus.info.id}")))

    others: list[Any] = []
    cursor = None
    while include_artifacts and len(others) < MAX_ARTIFACTS:
        page, cursor = await app.artifacts.list(owner, kind="audio", limit=100, cursor=cursor)
        others += [r for r in page if r.id != record.id and r.sha256 != record.sha256]
        if not cursor:
            break
    others = others[:MAX_ARTIFACTS]
    budget = [MAX_FRESH]  # decoding + analysing/embedding an artifact for the first time costs seconds
    unanalysed = unembedded = 0

    async def fresh(make: Any) -> Any:
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        return await make()

    for rec in others:
        try:
            feats = await features_of(rec, "artifact_id", False)
            if feats is None:
                feats = await fresh(lambda rec=rec: features_of(rec, "artifact_id", True))
            if feats is None:
                unanalysed += 1
                continue
            vec = None
            if embedder is not None and query_vec is not None:
                doc = await _cached_doc(app, owner, _clap_doc_id(embedder.model, rec.sha256))
                if doc is not None or rec.id in loaded or budget[0] > 0:
                    if doc is None and rec.id not in loaded:
                        budget[0] -= 1
                    vec = await embed(rec)
                else:
                    unembedded += 1
        except (BadInput, NotFound) as exc:  # undecodable, too long, or deleted meanwhile: left out, said so
            notes.append(f"artifact {rec.id} left out: {exc}")
            continue
        except Busy:
            notes.append("the CPU pool is busy: the remaining artifacts were not analysed this time")
            budget[0] = 0
            continue
        finally:
            loaded.pop(rec.id, None)
        compared["artifacts"] += 1
        d = feature_distance(query, feats)
        reasons = closeness_reasons(query, feats)
        if vec is not None and query_vec is not None:
            cos = float(np.dot(vec, query_vec))
            d = (d + (1.0 - cos) / 2.0) / 2.0 if math.isfinite(d) else (1.0 - cos) / 2.0
            reasons.append(f"CLAP audio embeddings {'close' if cos >= 0.8 else 'compared'} (cosine {cos:.2f})")
        if not math.isfinite(d):
            continue
        results.append((d, RecommendedItem(
            item_id=rec.id, kind="track", title=_artifact_title(rec), artists=[], features=feats,
            score=round(1.0 - d, 4), reasons=reasons or ["the nearest by audio features, though none is close"],
            source="artifact")))
    if unanalysed:
        notes.append(f"{unanalysed} of your audio artifacts were not compared yet (at most {MAX_FRESH} are "
                     "analysed per call): ask again, or run analyze_audio on them")
    if unembedded:
        notes.append(f"{unembedded} of your audio artifacts were compared by features only (their CLAP embeddings "
                     f"are computed at most {MAX_FRESH} per call): ask again for embeddings")
    if not corpora:
        notes.append("no corpus is loaded: `echotune-mcp recommend corpus add FILE --format playlists "
                     "--licence TEXT` adds catalogue tracks with audio features")
    results.sort(key=lambda t: t[0])
    q = QueryPiece(artifact_id=record.id, features=query,
                   key=key_name(query["key"], query.get("mode")) if "key" in query else None)
    return SimilarResult(query=q, items=[r for _, r in results[:k]], compared=compared,
                         embeddings=f"clap:{embedded_model}" if query_vec is not None else None,
                         embedded_by=embedded_by if query_vec is not None else None, notes=notes)


async def similar_to_artifact(app: App, owner: str, artifact_id: str, k: int, corpus_id: str | None = None, *,
                              include_artifacts: bool = True) -> list[RecommendedItem]:
    """``find_similar``'s items only (``include_artifacts=False``: corpus tracks only, e.g. as seeds)."""
    return (await find_similar(app, owner, artifact_id, k, corpus_id, include_artifacts=include_artifacts)).items
