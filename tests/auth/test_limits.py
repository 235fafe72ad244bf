"""Limits and the audit log: per-principal rate limits priced by tool class (a ToolError in-process, 429 with
Retry-After over HTTP), the slow-down of a client that keeps sending bad tokens, and the audit records (owner
scoped, expiring) with the ``audit_log`` tool that shows a caller their own."""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager

import pytest
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

from echotune_mcp.auth.audit import ANONYMOUS, audit, entries
from echotune_mcp.auth.context import LOCAL, VerifiedToken, principal_for
from echotune_mcp.auth.limits import AuthFailureMiddleware, RateLimiter
from echotune_mcp.config import Settings
from tests.foundation.test_tracing import spans  # noqa: F401 - the fixture, shared with the tracing tests

ALICE = principal_for("https://idp.example", "alice")


@contextmanager
def as_user(sub: str):
    token = VerifiedToken(token="t", client_id="cli", scopes=["echotune:read", "echotune:write"], subject=sub,
                          issuer="https://idp.example", amr=["pwd", "otp"])
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield principal_for("https://idp.example", sub)
    finally:
        auth_context_var.reset(reset)


def text_of(result) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_charges_by_class_refills_and_says_when():
    clock = Clock()
    lim = RateLimiter(60, 20, {"read": 1, "generate": 20}, exempt=frozenset({LOCAL}), clock=clock)
    assert lim.take("a", lim.cost("generate")) == 0.0  # a full bucket pays for one generation
    assert lim.take("a", lim.cost("read")) == pytest.approx(1.0)  # then even a read waits a second
    assert lim.take("b", lim.cost("read")) == 0.0  # another principal's bucket is its own
    clock.t += 5
    for _ in range(5):
        assert lim.take("a", 1) == 0.0
    assert lim.take("a", 20) == pytest.approx(20.0)  # nothing is taken by a refusal
    assert lim.remaining("a") == pytest.approx(0.0)
    clock.t += 1000
    assert lim.remaining("a") == 20  # refills up to the burst, no further
    for _ in range(100):
        assert lim.take(LOCAL, 20) == 0.0  # the local user is not limited (unless configured)
    assert RateLimiter(0, 20, {"read": 1}).take("a", 1e9) == 0.0  # rate 0: off


def test_rate_settings_are_read_and_checked(monkeypatch):
    monkeypatch.setenv("ECHOTUNE_RATE_COSTS", "generate=30, read=0.5")
    monkeypatch.setenv("ECHOTUNE_RATE_BURST", "40")
    s = Settings.from_env()
    assert dict(s.rate_costs)["generate"] == 30 and dict(s.rate_costs)["read"] == 0.5
    assert dict(s.rate_costs)["job"] == 5  # the defaults stay for classes not named
    s.validate()
    monkeypatch.setenv("ECHOTUNE_RATE_COSTS", "render=3")
    with pytest.raises(ValueError, match="ECHOTUNE_RATE_COSTS has 'render=3'"):
        Settings.from_env()
    monkeypatch.setenv("ECHOTUNE_RATE_COSTS", "generate=30")
    monkeypatch.setenv("ECHOTUNE_RATE_BURST", "10")
    with pytest.raises(ValueError, match="ECHOTUNE_RATE_BURST is 10.0; use at least the dearest call's cost"):
        Settings.from_env().validate()
    monkeypatch.setenv("ECHOTUNE_RATE_BURST", "40")
    monkeypatch.setenv("ECHOTUNE_AUDIT_TTL_DAYS", "0")
    with pytest.raises(ValueError, match="ECHOTUNE_AUDIT_TTL_DAYS"):
        Settings.from_env().validate()


async def test_in_process_calls_are_limited_per_principal_and_a_generation_costs_more(make_client):
    async with make_client(rate_per_minute=6, rate_burst=20) as (client, app):
        with as_user("alice"):
            for _ in range(15):
                assert not (await client.call_tool("list_artifacts", {})).is_error
            # 5 units left: a read still runs, a generation (20 units) is refused before it starts anything
            refused = await client.call_tool("generate_music", {"prompt": "calm piano", "duration_s": 2})
            assert refused.is_error
            msg = text_of(refused)
            assert "rate limit reached" in msg and "costs 20 units (generate)" in msg, msg
            assert "retry in 150 s" in msg  # 15 more units at 6 a minute (the bucket refilled a little meanwhile)
            assert (await client.call_tool("list_jobs", {})).structured_content["jobs"] == []
            assert not (await client.call_tool("list_artifacts", {})).is_error
            log = (await client.call_tool("audit_log", {"event": "rate_limited"})).structured_content
            assert len(log["entries"]) == 1 and log["entries"][0]["fields"]["tool"] == "generate_music"
            assert log["retention_days"] == app.settings.audit_ttl_days
        with as_user("bob"):
            assert not (await client.call_tool("list_artifacts", {})).is_error  # Bob's budget is his own
            assert (await client.call_tool("audit_log", {})).structured_content["entries"] == []
        for _ in range(40):  # the local user (stdio) is not limited by default
            assert not (await client.call_tool("list_artifacts", {})).is_error
    async with make_client(rate_per_minute=6, rate_burst=20, rate_limit_local=True) as (client, app):
        for _ in range(20):
            assert not (await client.call_tool("list_artifacts", {})).is_error
        res = await client.call_tool("list_artifacts", {})
        assert res.is_error and "retry in 10 s" in text_of(res)
        from mcp.shared.exceptions import MCPError

        with pytest.raises(MCPError, match=r"costs 1 units \(read\).*retry in \d+ s"):  # resource reads cost a read
            await client.read_resource("echotune://jobs/job_none")
        assert [e.event for e in (await entries(app, LOCAL))[0]] == ["rate_limited", "rate_limited"]


async def test_deletions_are_audited_for_their_owner_only(make_client):
    import base64
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    up = {"data_base64": base64.b64encode(buf.getvalue()).decode(), "filename": "x.wav"}
    async with make_client() as (client, app):
        with as_user("alice"):
            art = (await client.call_tool("import_audio", up)).structured_content["artifact_id"]
            missing = await client.call_tool("delete_artifact", {"artifact": "art_doesnotexist"})
            assert missing.is_error
            assert not (await client.call_tool("delete_artifact", {"artifact": art})).is_error
            log = (await client.call_tool("audit_log", {})).structured_content["entries"]
            assert [e["event"] for e in log] == ["deletion"]  # the failed delete deleted nothing
            assert log[0]["fields"]["tool"] == "delete_artifact" and art in log[0]["fields"]["arguments"]
        assert (await client.call_tool("audit_log", {})).structured_content["entries"] == []  # not the local user's


async def test_audit_records_expire_and_are_purged(make_client, monkeypatch):
    from echotune_mcp.auth import audit as audit_mod

    async with make_client(audit_ttl_days=1) as (client, app):
        await audit(app, "roots_granted", principal=ALICE, roots=["/x"])
        coll = app.storage.collection("audit")
        old = {"id": "aud_old", "owner": ALICE, "created_at": time.time() - 3 * 86400,
               "expires_at": time.time() - 2 * 86400, "event": "grant_added", "fields": {}}
        await coll.insert(old)
        recs, _ = await entries(app, ALICE)
        assert [r.event for r in recs] == ["roots_granted"]  # the expired one is hidden at once
        assert recs[0].expires_at == pytest.approx(recs[0].created_at + 86400)
        monkeypatch.setattr(audit_mod, "_last_purge", {})  # the next write purges (at most once an hour)
        await audit(app, "grant_removed", principal=ALICE, provider="spotify")
        rows = await app.storage.backend.run(lambda c: c.execute("SELECT id FROM audit").fetchall())
        assert "aud_old" not in {r[0] for r in rows} and len(rows) == 2
        await audit(app, "auth_failure", principal=None, client_address="10.0.0.9")
        assert (await entries(app, ANONYMOUS))[0][0].fields["client_address"] == "10.0.0.9"
        assert len((await entries(app, ALICE))[0]) == 2


async def test_repeated_auth_failures_from_one_address_are_slowed_with_a_bounded_growing_delay(make_client, caplog):
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    async def refusing(scope, receive, send):  # what the bearer layer does with a bad token
        scope["echotune.denied"] = {"event": "auth_failure", "reason": "invalid token"}
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(_message):
        return None

    async def receive():
        return {"type": "http.request", "body": b""}

    def scope(ip: str) -> dict:
        return {"type": "http", "path": "/mcp", "method": "POST", "client": (ip, 5555),
                "headers": [(b"authorization", b"Bearer nope")]}

    async with make_client(auth_fail_delay_max_s=3.0) as (_client, app):
        mw = AuthFailureMiddleware(refusing, app, sleep=sleep)
        with caplog.at_level(logging.WARNING, logger="echotune_mcp.auth.limits"):
            for _ in range(8):
                await mw(scope("203.0.113.7"), receive, send)
        assert slept == [0.5, 1.0, 2.0, 3.0, 3.0]  # two failures free, then doubling, capped
        assert "auth failure from 203.0.113.7 (invalid token; 8 in the last 600 s" in caplog.text
        slept.clear()
        for _ in range(2):
            await mw(scope("198.51.100.2"), receive, send)
        assert slept == []  # another address is not held for the first one's failures
        recs, _ = await entries(app, ANONYMOUS, event="auth_failure", limit=100)
        # audited at an address's 1st, 2nd, 4th, 8th failure (each one is logged): a flood cannot fill the store
        assert [(r.fields["client_address"], r.fields["recent_failures"]) for r in reversed(recs)] == [
            ("203.0.113.7", 1), ("203.0.113.7", 2), ("203.0.113.7", 4), ("203.0.113.7", 8),
            ("198.51.100.2", 1), ("198.51.100.2", 2)]

        async def no_token(scope, receive, send):  # OAuth discovery's first request: not a failure
            scope["echotune.denied"] = {"event": "auth_failure", "reason": "no token"}
            await send({"type": "http.response.start", "status": 401, "headers": []})

        mw2 = AuthFailureMiddleware(no_token, app, sleep=sleep)
        for _ in range(5):
            await mw2(scope("192.0.2.1"), receive, send)
        assert slept == []


async def test_over_http_a_spent_budget_is_answered_429_with_retry_after(http_server, issuer):
    import httpx2

    from tests.auth.conftest import mcp_http_client

    server = http_server({"ECHOTUNE_RATE_PER_MINUTE": "6", "ECHOTUNE_RATE_BURST": "20",
                          "ECHOTUNE_AUTH_FAIL_DELAY_MAX_S": "1", "ECHOTUNE_TOOLSETS": "jobs,artifacts,account"})
    alice = issuer.token("alice", scopes=("echotune:read", "echotune:write"))
    bob = issuer.token("bob", scopes=("echotune:read",))
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_artifacts", "arguments": {}}}
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with httpx2.AsyncClient(timeout=30) as http:
        async def post(token: str, body: object = call):
            return await http.post(server.mcp, content=json.dumps(body),
                                   headers={**headers, "authorization": f"Bearer {token}"})

        for _ in range(20):
            assert (await post(alice)).status_code != 429
        answer = await post(alice)
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "10"  # one unit at 6 a minute
        body = answer.json()
        assert body["error"] == "rate_limited" and "retry in 10 s" in body["error_description"]
        batch = [call, {**call, "id": 2}]
        assert (await post(bob, batch)).status_code != 429  # Bob's budget is his own
        async with mcp_http_client(server.mcp, bob) as client:  # a real session: each call is charged once
            for _ in range(3):
                assert not (await client.call_tool("list_artifacts", {})).is_error
            limits = (await client.call_tool("my_limits", {})).structured_content
        assert 14 <= limits["rate_available"] < 15.5, limits  # 20 - 2 (batch) - 3 - 1 (my_limits), + refill
        assert limits["rate_costs"]["generate"] == 20 and limits["principal"].startswith("user:")
        # Repeated bad tokens from this address: from the third on, each request waits (bounded by the setting).
        for _ in range(3):
            assert (await post("not-a-token")).status_code == 401
        started = time.monotonic()
        assert (await post("not-a-token")).status_code == 401
        assert 0.45 <= time.monotonic() - started < 5
    assert "auth failure from 127.0.0.1 (invalid token" in server.log_text()


async def test_audit_events_are_opentelemetry_span_events(make_client, spans):
    exporter = spans  # the tracing tests' in-memory exporter (a process has one tracer provider)
    exporter.clear()
    async with make_client(rate_per_minute=6, rate_burst=20) as (client, app):
        with as_user("alice"):
            for _ in range(20):
                await client.call_tool("list_artifacts", {})
            assert (await client.call_tool("list_artifacts", {})).is_error
    events = [(s.name, e) for s in exporter.get_finished_spans() for e in s.events
              if e.name == "echotune.audit.rate_limited"]
    assert len(events) == 1
    span_name, event = events[0]
    assert "list_artifacts" in span_name  # on the SDK's span of that tools/call
    assert event.attributes["echotune.principal"] == ALICE
    assert event.attributes["echotune.audit.tool"] == "list_artifacts"


def test_polling_a_task_costs_what_get_job_costs():
    """tasks/get is the protocol's get_job: free polling would let a client bypass the read limit."""
    from echotune_mcp.auth.limits import _cost_of

    lim = RateLimiter(60, 20, {"read": 1, "generate": 20})
    assert _cost_of(lim, "tasks/get", None) == (1, "read")
    assert _cost_of(lim, "tasks/cancel", None) == (1, "read")
    assert _cost_of(lim, "ping", None) == (0.0, "protocol")
