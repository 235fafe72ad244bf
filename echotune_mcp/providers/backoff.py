"""Our own capped back-off for provider rate limits, so nothing ever sleeps on the event loop.

Client libraries sleep inside their retry loops (spotipy honours ``Retry-After`` even when it says
hours). Adapters turn those retries off and raise ``RateLimitHit`` instead; ``call_with_backoff``
runs the blocking call in a worker thread and waits out a ``Retry-After`` asynchronously only
while the total stays under the configured cap. Beyond it the agent gets a ToolError with the wait,
and a quota exhaustion (``QUOTA_EXCEEDED``) is reported at once: waiting seconds will not fix it.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Callable
from typing import TypeVar

import anyio

from .base import ProviderDeadlineExceeded, QuotaExceeded, RateLimited

T = TypeVar("T")

#: the longest wait we ever report (a day); longer, infinite or far-future values are clamped to it
MAX_RETRY_AFTER_S = 86_400.0
#: one provider call's overall limit when the caller gives none (Settings.provider_deadline_s)
DEFAULT_DEADLINE_S = 60.0


class RateLimitHit(Exception):
    """Raised by an adapter's blocking call when the service answered 429 (or a quota error)."""

    def __init__(self, retry_after_s: float | None, *, quota: bool = False, detail: str = ""):
        super().__init__(detail or "rate limited")
        self.retry_after_s = retry_after_s
        self.quota = quota
        self.detail = detail


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds in ``[0, MAX_RETRY_AFTER_S]``, or None when it says nothing usable.

    Delta-seconds or an HTTP date (RFC 9110 10.2.3). A server is not trusted with our clock: negative
    values and past dates mean "now", huge, infinite and far-future ones are clamped to a day, and
    anything else (NaN, words, a broken date) is None, so the caller uses its own back-off.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000": the RFC says HTTP dates are GMT
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


async def call_with_backoff(fn: Callable[[], T], *, provider: str, cap_s: float,
                            deadline_s: float = DEFAULT_DEADLINE_S, max_attempts: int = 4) -> T:
    """Run ``fn`` in a worker thread; on a rate limit wait (asynchronously) within ``cap_s`` in total.

    The whole call, every attempt and every wait, ends within ``deadline_s``: a wait that would cross
    it is reported as a rate limit at once, and an attempt still running at the deadline is abandoned
    (its thread ends on its own HTTP timeouts) with ``ProviderDeadlineExceeded``.
    """
    deadline = time.monotonic() + deadline_s
    waited = 0.0
    for attempt in range(max_attempts):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderDeadlineExceeded(provider, deadline_s)
        hit: RateLimitHit | None = None
        with anyio.move_on_after(remaining):
            try:
                return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
            except RateLimitHit as exc:
                hit = exc
        if hit is None:  # the scope ran out: the attempt is still in its thread
            raise ProviderDeadlineExceeded(provider, deadline_s)
        if hit.quota:
            raise QuotaExceeded(provider, hit.detail) from None
        told = hit.retry_after_s
        if told is None or not math.isfinite(told):
            wait = min(2.0 ** attempt, cap_s)
        else:
            wait = min(max(told, 0.0), MAX_RETRY_AFTER_S)
        if waited + wait > cap_s or time.monotonic() + wait >= deadline or attempt == max_attempts - 1:
            raise RateLimited(provider, max(wait, 1.0)) from None
        await anyio.sleep(wait)
        waited += wait
    raise AssertionError("unreachable")  # pragma: no cover
