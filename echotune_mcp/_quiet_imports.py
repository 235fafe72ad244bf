"""Keep third-party imports off stdout: on a stdio server stdout is the JSON-RPC channel.

pyfluidsynth prints "'fluidsynth' was found at ..." when it is imported with ``CI`` set in the environment, and
pretty_midi imports it at its own import, which happens mid-session (the first render, export or transcription).
A finder on ``sys.meta_path`` runs that one module's import with stdout sent to stderr. Importing fluidsynth
eagerly instead would load libfluidsynth (and the system libgomp it links) into every process, which the CPU
matmul kernel refuses to share with torch's own OpenMP runtime.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

NOISY_MODULES = frozenset({"fluidsynth"})


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            self._loader.exec_module(module)


class QuietImportFinder(importlib.abc.MetaPathFinder):
    """Finds NOISY_MODULES through the other finders and wraps their loader."""

    def find_spec(self, name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:  # noqa: ANN001
        if name not in NOISY_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def install() -> None:
    if not any(isinstance(f, QuietImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietImportFinder())
