"""Retry-After and QUOTA_EXCEEDED against a loopback server of our own (Prism sends no Retry-After)."""

from __future__ import annotations

import time

import anyio
import pytest

from echotune_mcp.errors import EchoError
from echotune_mcp.providers.backoff import parse_retry_after
from echotune_mcp.providers.base import QuotaExceeded, RateLimited
from echotune_mcp.providers.spotify import SpotifyProvider

TRACK = {"id": "4vLYewWIvqHfKtJDk8c8tq", "name": "So What", "artists": [{"name": "Miles Davis"}], "duration_ms": 545000,
         "external_ids": {"isrc": "USSM15900113"}, "album": {"name": "Kind of Blue", "release_date": "1959-08-17"}}


async def test_short_retry_after_is_waited_out_without_blocking_the_loop(loopback_api):
    hits = []

    def handler(method, path, headers, body):
        hits.append(path)
        if len(hits) == 1:
            return 429, {"Retry-After": "1"}, {"error": {"status": 429, "message": "API rate limit exceeded"}}
        return 200, {}, TRACK

    api = loopback_api(handler)
    sp = SpotifyProvider("t", api_base=api.base, cap_s=5)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await anyio.sleep(0.05)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        start = time.monotonic()
        track = await sp.get_track("4vLYewWIvqHfKtJDk8c8tq")
        elapsed = time.monotonic() - start
        tg.cancel_scope.cancel()
    assert track.title == "So What" and track.isrc == "USSM15900113"
    assert len(hits) == 2 and 0.9 <= elapsed < 3
    assert ticks >= 10  # the event loop kept running while we waited


async def test_retry_after_beyond_cap_becomes_tool_error(loopback_api):
    api = loopback_api(lambda *a: (429, {"Retry-After": "3600"}, {"error": {"status": 429, "message": "slow down"}}))
    sp = SpotifyProvider("t", api_base=api.base, cap_s=30)
    start = time.monotonic()
    with pytest.raises(RateLimited, match="rate limited by Spotify, retry after 3600 s") as err:
        await sp.search_tracks("x", 5)
    assert time.monotonic() - start < 2 and isinstance(err.value, EchoError)
    assert err.value.retry_after_s == 3600
    assert len(api.requests) == 1


async def test_quota_exceeded_is_distinguished_and_not_retried(loopback_api):
    body = {"error": {"status": 429, "message": "Quota exceeded for the day", "reason": "QUOTA_EXCEEDED"}}
    api = loopback_api(lambda *a: (429, {"Retry-After": "1"}, body))
    sp = SpotifyProvider("t", api_base=api.base)
    with pytest.raises(QuotaExceeded, match="QUOTA_EXCEEDED"):
        await sp.list_playlists(5)
    assert len(api.requests) == 1


def test_parse_retry_after_forms():
    assert parse_retry_after("7") == 7
    assert parse_retry_after(None) is None
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 <= parse_retry_after(http_date) <= 61
