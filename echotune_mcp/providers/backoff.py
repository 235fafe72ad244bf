"""Our own capped back-off for provider rate limits, so nothing ever sleeps on the event loop.

Client libraries sleep inside their retry loops (spotipy honours ``Retry-After`` even when it says
hours). Adapters turn those retries off and raise ``RateLimitHit`` instead; ``call_with_backoff``
runs the blocking call in a worker thread and waits out a ``Retry-After`` asynchronously only
while the total stays under the configured cap. Beyond it the agent gets a ToolError with the wait,
and a quota exhaustion (``QUOTA_EXCEEDED``) is reported at once: waiting seconds will not fix it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import TypeVar

import anyio

from .base import QuotaExceeded, RateLimited

T = TypeVar("T")


class RateLimitHit(Exception):
    """Raised by an adapter's blocking call when the service answered 429 (or a quota error)."""

    def __init__(self, retry_after_s: float | None, *, quota: bool = False, detail: str = ""):
        super().__init__(detail or "rate limited")
        self.retry_after_s = retry_after_s
        self.quota = quota
        self.detail = detail


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def call_with_backoff(fn: Callable[[], T], *, provider: str, cap_s: float, max_attempts: int = 4) -> T:
    """Run ``fn`` in a worker thread; on a rate limit wait (asynchronously) within ``cap_s`` in total."""
    waited = 0.0
    for attempt in range(max_attempts):
        try:
            return await anyio.to_thread.run_sync(fn)
        except RateLimitHit as hit:
            if hit.quota:
                raise QuotaExceeded(provider, hit.detail) from None
            wait = hit.retry_after_s if hit.retry_after_s is not None else min(2.0 ** attempt, cap_s)
            if waited + wait > cap_s or attempt == max_attempts - 1:
                raise RateLimited(provider, max(wait, 1.0)) from None
            await anyio.sleep(wait)
            waited += wait
    raise AssertionError("unreachable")  # pragma: no cover
