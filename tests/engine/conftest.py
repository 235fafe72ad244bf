"""Engine tests build tiny models; each test's in-process engines are stopped when it ends."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _close_engines():
    yield
    try:
        from echotune_mcp.engine.musicgen_backend import close_engines
    except ImportError:  # the ml extra is not installed
        return
    close_engines()
