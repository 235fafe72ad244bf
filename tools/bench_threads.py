"""Shared by the benchmarks: run torch work on a thread that exits, as the server does.

libgomp gives each thread that runs a parallel op its own OpenMP team; once a process holds more
team threads than cores, every team's barriers sleep instead of spinning (about a third slower per
step on 2 cores). The server's main thread is an asyncio loop that runs no torch op and the engine
loads models on its worker thread, so a benchmark keeps torch off its main thread for both sides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on a fresh thread that exits afterwards; its exception is re-raised here."""
    out: list[Any] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
            err.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]
