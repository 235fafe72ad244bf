"""Retry-After and QUOTA_EXCEEDED against a loopback server of our own (Prism sends no Retry-After)."""

from __future__ import annotations

import math
import threading
import time

import anyio
import pytest

from echotune_mcp.errors import EchoError
from echotune_mcp.providers.backoff import MAX_RETRY_AFTER_S, parse_retry_after
from echotune_mcp.providers.base import ProviderDeadlineExceeded, QuotaExceeded, RateLimited
from echotune_mcp.providers.spotify import SpotifyProvider

TRACK_ID = "4vLYewWIvqHfKtJDk8c8tq"  # 22 base62 characters, as Spotify ids are
TRACK = {"id": TRACK_ID, "name": "So What", "artists": [{"name": "Miles Davis"}], "duration_ms": 545000,
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
        track = await sp.get_track(TRACK_ID)
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


# -- hostile Retry-After values and the overall deadline (issue #13 item 7) ---------------------
def _http_date(offset_s: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + offset_s))


@pytest.mark.parametrize(("raw", "expected"), [
    ("1e308", MAX_RETRY_AFTER_S),           # huge: clamped to the cap
    ("99999999999999999999", MAX_RETRY_AFTER_S),
    ("inf", MAX_RETRY_AFTER_S),             # "forever" is as long as we ever report
    ("Infinity", MAX_RETRY_AFTER_S),
    ("-5", 0.0),                            # negative: no wait
    ("-inf", 0.0),
    ("nan", None),                          # garbage: the caller's default back-off
    ("NaN", None),
    ("soon", None),
    ("", None),
    ("   ", None),
    ("0x10", None),
    ("Mon, 99 Foo 2025 25:61:61 GMT", None),
    (" 12 ", 12.0),
    ("1.5", 1.5),
    (_http_date(-3600), 0.0),               # a date in the past: no wait
    ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_S),
])
def test_parse_retry_after_hostile_values(raw, expected):
    got = parse_retry_after(raw)
    assert got == expected if expected is None or expected == MAX_RETRY_AFTER_S or expected == 0.0 else \
        got == pytest.approx(expected)
    assert got is None or (math.isfinite(got) and 0.0 <= got <= MAX_RETRY_AFTER_S)


def test_parse_retry_after_http_date_in_the_future():
    assert 55 <= parse_retry_after(_http_date(60)) <= 61
    assert 55 <= parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S -0000", time.gmtime(time.time() + 60))) <= 61


async def test_infinite_retry_after_is_a_clean_rate_limit_error(loopback_api):
    api = loopback_api(lambda *a: (429, {"Retry-After": "inf"}, {"error": {"status": 429, "message": "slow down"}}))
    sp = SpotifyProvider("t", api_base=api.base, cap_s=30)
    with pytest.raises(RateLimited, match=f"retry after {int(MAX_RETRY_AFTER_S)} s") as err:
        await sp.search_tracks("x", 5)
    assert err.value.retry_after_s == MAX_RETRY_AFTER_S and len(api.requests) == 1


async def test_garbage_retry_after_gets_the_default_backoff(loopback_api):
    hits = []

    def handler(method, path, headers, body):
        hits.append(path)
        if len(hits) == 1:
            return 429, {"Retry-After": "nan"}, {"error": {"status": 429, "message": "slow down"}}
        return 200, {}, TRACK

    api = loopback_api(handler)
    sp = SpotifyProvider("t", api_base=api.base, cap_s=30)
    start = time.monotonic()
    assert (await sp.get_track(TRACK_ID)).title == "So What"
    assert len(hits) == 2 and 0.9 <= time.monotonic() - start < 3  # waited the first default step (1 s)


async def test_endless_429_never_outlasts_the_call_deadline(loopback_api):
    api = loopback_api(lambda *a: (429, {"Retry-After": "2"}, {"error": {"status": 429, "message": "slow down"}}))
    sp = SpotifyProvider("t", api_base=api.base, cap_s=30)
    sp.deadline_s = 3.0
    start = time.monotonic()
    with pytest.raises(RateLimited):
        await sp.search_tracks("x", 5)
    assert time.monotonic() - start < 3.5
    assert 1 <= len(api.requests) <= 2


async def test_endless_503_fails_promptly(loopback_api):
    api = loopback_api(lambda *a: (503, {}, {"error": {"status": 503, "message": "unavailable"}}))
    sp = SpotifyProvider("t", api_base=api.base, cap_s=30)
    sp.deadline_s = 3.0
    start = time.monotonic()
    with pytest.raises(EchoError, match="503"):
        await sp.search_tracks("x", 5)
    assert time.monotonic() - start < 3.5


async def test_a_stalled_server_is_abandoned_at_the_deadline(loopback_api):
    release = threading.Event()

    def stall(*a):
        release.wait(30)  # answers only after the test is over
        return 200, {}, TRACK

    api = loopback_api(stall)
    sp = SpotifyProvider("t", api_base=api.base, cap_s=30)
    sp.deadline_s = 1.5
    start = time.monotonic()
    try:
        with pytest.raises(ProviderDeadlineExceeded, match="1.5 s") as err:
            await sp.get_track(TRACK_ID)
        assert time.monotonic() - start < 3
        assert isinstance(err.value, EchoError) and "ECHOTUNE_PROVIDER_DEADLINE_S" in str(err.value)
    finally:
        release.set()
