"""The scheduler: which requests wait, which hold a slot, and who joins the batch at each step.

Pure bookkeeping, no tensors: a bounded priority queue (higher priority first, then arrival order)
and a compact list of running requests whose index is their cache slot. When a request leaves,
the last running one moves into its slot so the live slots stay ``0..n-1`` (the runner copies its
cache rows); the scheduler reports that move.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any


class EngineBusy(RuntimeError):
    """The engine's queue is full; ``retry_after_s`` estimates when a place frees up."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Entry:
    """A request as the scheduler sees it; ``payload`` is the worker's per-request state."""

    priority: int
    payload: Any
    steps_left: int  # decode steps still to run (the worker counts down)
    cancelled: bool = False
    slot: int | None = None
    order: int = field(default=0)


class Scheduler:
    def __init__(self, max_slots: int, max_queue: int):
        self.max_slots = max_slots
        self.max_queue = max_queue
        self._waiting: list[tuple[int, int, Entry]] = []
        self._order = itertools.count()
        self.running: list[Entry] = []

    def __len__(self) -> int:
        return len(self._waiting) + len(self.running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def add(self, entry: Entry, steps_per_s: float | None = None) -> None:
        if len(self._waiting) >= self.max_queue:
            raise EngineBusy(
                f"the engine is busy: {len(self.running)} requests running and {len(self._waiting)} queued "
                f"(the queue holds {self.max_queue}); retry after ~{self.retry_after(steps_per_s):.0f} s",
                self.retry_after(steps_per_s))
        entry.order = next(self._order)
        heapq.heappush(self._waiting, (-entry.priority, entry.order, entry))

    def retry_after(self, steps_per_s: float | None) -> float:
        """Seconds until the earliest running request finishes, at the measured step rate."""
        rate = steps_per_s or 10.0
        if not self.running:
            return 1.0
        left = min(e.steps_left for e in self.running)
        return max(1.0, left / rate)

    def admissions(self, limit: int | None = None) -> list[Entry]:
        """Waiting requests that take a free slot now (highest priority first), cancelled ones dropped.

        ``limit`` caps the running requests below ``max_slots`` (the KV cache budget allows no more now)."""
        out: list[Entry] = []
        cap = self.max_slots if limit is None else min(limit, self.max_slots)
        while self._waiting and len(self.running) < cap:
            _, _, entry = heapq.heappop(self._waiting)
            if entry.cancelled:
                continue
            entry.slot = len(self.running)
            self.running.append(entry)
            out.append(entry)
        return out

    def drop_cancelled_waiting(self) -> list[Entry]:
        gone = [e for _, _, e in self._waiting if e.cancelled]
        if gone:
            self._waiting = [item for item in self._waiting if not item[2].cancelled]
            heapq.heapify(self._waiting)
        return gone

    def requeue(self, entry: Entry) -> None:
        """Put an admitted request whose slot was released back in the queue, in its original place."""
        assert entry.slot is None
        heapq.heappush(self._waiting, (-entry.priority, entry.order, entry))

    def take_all_waiting(self) -> list[Entry]:
        """Empty the queue (the worker is stopping), returning what waited."""
        gone = [e for _, _, e in sorted(self._waiting)]
        self._waiting = []
        return gone

    def release(self, entry: Entry) -> tuple[int, int] | None:
        """Free ``entry``'s slot; returns (from_slot, to_slot) when the last running request moved into it."""
        slot = entry.slot
        assert slot is not None and self.running[slot] is entry
        last = self.running.pop()
        entry.slot = None
        if last is entry:
            return None
        self.running[slot] = last
        moved_from = last.slot
        last.slot = slot
        return (moved_from, slot)  # type: ignore[return-value]
