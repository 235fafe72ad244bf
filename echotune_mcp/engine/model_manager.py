"""The model manager: which weights are on disk, getting them there, and which models are in memory.

Weights live in ``ECHOTUNE_MODELS_DIR`` (default ``<data dir>/weights/<model id>/``), each folder with a
manifest of file hashes written at pull time, so ``verify`` can tell a complete download from a
damaged one. Loaded models are kept under a memory budget (``ECHOTUNE_MODEL_MEMORY_MB``, through
``Settings``; the MusicGen engine counts its KV caches against the same budget) and evicted least
recently used first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Settings
from ..private_files import private_dir
from .model_cards import ModelCard, load_cards

MANIFEST = ".echotune-manifest.json"
FALLBACKS = {"musicgen": "backend=composer", "musicgen-melody": "backend=composer", "demucs": "model=dsp"}


class ModelMissing(LookupError):
    """The model's weights are not on disk; the message says how to get them or what to use instead."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ModelManager:
    def __init__(self, settings: Settings, cards: dict[str, ModelCard] | None = None, budget_mb: int | None = None):
        self.settings = settings
        self.cards = cards if cards is not None else load_cards()
        self.weights_dir = settings.weights_dir
        self.budget_mb = budget_mb if budget_mb is not None else settings.model_memory_mb
        self._loaded: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    # -- cards and disk -------------------------------------------------------------------------------
    def card(self, model_id: str) -> ModelCard:
        try:
            return self.cards[model_id]
        except KeyError:
            raise ValueError(f"unknown model {model_id!r}; known models: {', '.join(sorted(self.cards))}") from None

    def folder(self, model_id: str) -> Path:
        return self.weights_dir / self.card(model_id).id

    def manifest(self, model_id: str) -> dict[str, Any] | None:
        path = self.folder(model_id) / MANIFEST
        return json.loads(path.read_text()) if path.is_file() else None

    def is_downloaded(self, model_id: str) -> bool:
        return self.manifest(model_id) is not None

    def require(self, model_id: str) -> Path:
        """The weights folder, or ModelMissing with the command that fixes it."""
        card = self.card(model_id)
        if not self.is_downloaded(model_id):
            fallback = FALLBACKS.get(card.backend)
            raise ModelMissing(f"{model_id} is not downloaded: run `echotune-mcp models pull {model_id}`"
                               + (f", or use {fallback}" if fallback else ""))
        return self.folder(model_id)

    def pull(self, model_id: str, *, from_dir: Path | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
        """Download from the hub (or copy a local folder) into a temp folder, hash it, then rename into place."""
        card = self.card(model_id)
        private_dir(self.weights_dir, tighten=False)  # new folders 0700; an operator's own models dir is left as is
        final = self.folder(model_id)
        tmp = self.weights_dir / f".pull-{model_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            if from_dir is not None:
                src = Path(from_dir).expanduser()
                if not src.is_dir():
                    raise FileNotFoundError(f"--from-dir {src} is not a folder")
                log(f"copying {src} -> {final}")
                shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(MANIFEST))
                source, revision = {"type": "local_folder", "path": str(src.resolve())}, "local"
            else:
                from huggingface_hub import HfApi, snapshot_download

                log(f"downloading {card.hf_repo}@{card.revision} from the Hugging Face hub")
                snapshot_download(repo_id=card.hf_repo, revision=card.revision, local_dir=tmp)
                revision = HfApi().model_info(card.hf_repo, revision=card.revision).sha or card.revision
                source = {"type": "huggingface", "repo": card.hf_repo}
            files = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*"))
                     if p.is_file() and ".cache" not in p.parts}
            if not files:
                raise ValueError(f"nothing to pull for {model_id}: the source has no files")
            manifest = {"id": model_id, "source": source, "revision": revision, "license": card.license,
                        "files": files, "pulled_at": time.time()}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"{model_id}: {len(files)} files, revision {revision}")
        return manifest

    def verify(self, model_id: str) -> list[str]:
        """Problems with the downloaded weights (empty = every file present and unchanged)."""
        manifest = self.manifest(model_id)
        if manifest is None:
            return [f"{model_id} is not downloaded"]
        folder = self.folder(model_id)
        problems = []
        for rel, digest in manifest["files"].items():
            path = folder / rel
            if not path.is_file():
                problems.append(f"missing file {rel}")
            elif _sha256(path) != digest:
                problems.append(f"changed file {rel} (sha256 differs from the pull)")
        return problems

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for card in self.cards.values():
            m = self.manifest(card.id)
            out.append({"id": card.id, "backend": card.backend, "license": card.license,
                        "parameters": card.parameters, "memory_mb": card.memory_mb,
                        "downloaded": m is not None, "revision": (m or {}).get("revision"),
                        "loaded": card.id in self._loaded})
        return out

    # -- memory -------------------------------------------------------------------------------------------
    def get(self, model_id: str, loader: Callable[[Path, ModelCard], Any],
            available: Callable[[], None] | None = None) -> Any:
        """The loaded model, loading it (and evicting least recently used ones) to stay under budget.

        ``available`` replaces the manifest check for backends that accept weights placed by hand (it
        raises when they are missing). Evicted models that have ``close()`` are closed; one that says it
        is ``busy()`` is kept until a later load finds it idle.
        """
        with self._lock:
            if model_id in self._loaded:
                self._loaded.move_to_end(model_id)
                return self._loaded[model_id][0]
        if available is not None:
            available()
            folder = self.folder(model_id)
        else:
            folder = self.require(model_id)
        card = self.card(model_id)
        model = loader(folder, card)
        self.put(model_id, model, card.memory_mb)
        return model

    def put(self, model_id: str, model: Any, memory_mb: int) -> None:
        """Hold an already built model under the budget (evicting as ``get`` does)."""
        evicted = []
        with self._lock:
            self._loaded[model_id] = (model, memory_mb)
            self._loaded.move_to_end(model_id)
            for victim in list(self._loaded)[:-1]:
                if sum(mb for _, mb in self._loaded.values()) <= self.budget_mb:
                    break
                obj = self._loaded[victim][0]
                if getattr(obj, "busy", lambda: False)():
                    continue
                evicted.append(self._loaded.pop(victim)[0])
        for obj in evicted:
            if hasattr(obj, "close"):
                obj.close()

    def close_all(self) -> None:
        with self._lock:
            objs = [obj for obj, _ in self._loaded.values()]
            self._loaded.clear()
        for obj in objs:
            if hasattr(obj, "close"):
                obj.close()

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._loaded)
