"""Limits on what one principal (or one client address) can cost the server.

- Rate limits: one token bucket per principal, ``ECHOTUNE_RATE_BURST`` units deep and refilled at
  ``ECHOTUNE_RATE_PER_MINUTE``; a tool call takes its cost class's units (``ECHOTUNE_RATE_COSTS``; a generation
  costs more than a read, see ``auth.policy.tool_policy``), a resource read or prompt the cost of a read, the
  protocol's own methods nothing. The local user (stdio, loopback HTTP without auth) is limited only with
  ``ECHOTUNE_RATE_LIMIT_LOCAL=on``: the machine is theirs. Over HTTP ``RateLimitMiddleware`` answers an over-limit request with 429 and
  ``Retry-After`` before the SDK sees it; over stdio and in-process ``tool_limits_middleware`` answers the call
  with an error saying when to retry. A request charged at the HTTP layer is not charged again inside.
  Buckets live in this process: several server processes each hold their own.
- Auth failures: ``AuthFailureMiddleware`` counts requests from one client address that were refused for a bad
  token; from the third in ``FAILURE_WINDOW_S`` on, each further request from that address is held for a growing
  delay (doubling, at most ``ECHOTUNE_AUTH_FAIL_DELAY_MAX_S``) before it is served; each failure is logged, and
  the 1st, 2nd, 4th, 8th... of an address are audited (with the count), so a flood cannot fill the store.
  A request with no token at all (the first step of OAuth discovery) is not a failure.
- Destructive tool calls that succeed are audited (``deletion``) here too, for every transport.
Quotas (concurrent jobs, artifact bytes) are per principal in ``auth/tenants.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types.methods import is_input_required
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .audit import audit
from .context import LOCAL, current_caller
from .policy import ToolPolicy, tool_calls_in, tool_policy

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from ..app import App

log = logging.getLogger(__name__)

MAX_TRACKED = 10_000  # buckets / client addresses remembered; the least recently seen are dropped first
MAX_CHARGED_BODY = 64 * 1024 * 1024  # larger request bodies are not parsed here (the inner layer charges them)
FAILURE_WINDOW_S = 600.0
FREE_FAILURES = 2  # failures from one address before its requests are slowed
FIRST_DELAY_S = 0.5
# Set by RateLimitMiddleware for the request it charged, so tool_limits_middleware does not charge it twice
# (the SDK runs each request in a copy of the HTTP request's context).
_charged_by_http: contextvars.ContextVar[bool] = contextvars.ContextVar("echotune_rate_charged", default=False)


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per principal. ``take`` is atomic (no await inside), so concurrent calls never overdraw."""

    def __init__(self, per_minute: float, burst: float, costs: dict[str, float], *, exempt: frozenset[str] = frozenset(),
                 clock=time.monotonic):
        self.rate = per_minute / 60.0
        self.exempt = exempt
        self.burst = burst
        self.costs = costs
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def cost(self, cost_class: str) -> float:
        return self.costs.get(cost_class, self.costs.get("write", 1.0))

    def take(self, principal: str, cost: float) -> float:
        """Take ``cost`` units from ``principal``'s bucket: 0.0 if taken, else the seconds until they will be
        there (nothing is taken then)."""
        if not self.enabled or cost <= 0 or principal in self.exempt:
            return 0.0
        now = self.clock()
        b = self._buckets.get(principal)
        if b is None:
            b = self._buckets[principal] = _Bucket(tokens=self.burst, at=now)
            while len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
        else:
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
            self._buckets.move_to_end(principal)
        if b.tokens >= cost:
            b.tokens -= cost
            return 0.0
        return (cost - b.tokens) / self.rate

    def remaining(self, principal: str) -> float:
        b = self._buckets.get(principal)
        if b is None:
            return self.burst
        return min(self.burst, b.tokens + (self.clock() - b.at) * self.rate)


_limiters: weakref.WeakKeyDictionary[Any, RateLimiter] = weakref.WeakKeyDictionary()


def limiter_for(app: App) -> RateLimiter:
    """The App's rate limiter (one per App, so every transport of one server shares the buckets)."""
    lim = _limiters.get(app)
    if lim is None:
        s = app.settings
        lim = _limiters[app] = RateLimiter(s.rate_per_minute, s.rate_burst, dict(s.rate_costs),
                                           exempt=frozenset() if s.rate_limit_local else frozenset({LOCAL}))
    return lim


def retry_after_seconds(wait_s: float) -> int:
    return max(1, math.ceil(wait_s))


def rate_message(principal_cost: float, cost_class: str, wait_s: float, lim: RateLimiter) -> str:
    return (f"rate limit reached: this call costs {principal_cost:g} units ({cost_class}) and this principal's "
            f"budget refills at {lim.rate * 60:g} units a minute (at most {lim.burst:g} banked); retry in "
            f"{retry_after_seconds(wait_s)} s")


class _Policies:
    """Tool name -> ToolPolicy from the server's registered tools (listed once, on first use)."""

    def __init__(self, server: MCPServer):
        self.server = server
        self._by_name: dict[str, ToolPolicy] = {}
        self._destructive: set[str] = set()

    async def of(self, name: str) -> ToolPolicy:
        if not self._by_name:
            tools = await self.server.list_tools()
            self._destructive = {t.name for t in tools if t.annotations and t.annotations.destructive_hint
                                 and not t.annotations.read_only_hint}
            self._by_name = {t.name: tool_policy(t.name, t.annotations) for t in tools}
        return self._by_name.get(name) or tool_policy(name, None)

    def destructive(self, name: str) -> bool:
        return name in self._destructive


def _cost_of(lim: RateLimiter, method: str, pol: ToolPolicy | None) -> tuple[float, str]:
    if pol is not None:
        return lim.cost(pol.cost_class), pol.cost_class
    if method.startswith(("resources/read", "prompts/get", "tasks/")):  # polling a task costs what get_job does
        return lim.cost("read"), "read"
    return 0.0, "protocol"


def tool_limits_middleware(app: App, server: MCPServer):
    """Rate limits for calls the HTTP layer did not charge (stdio, in-process), and the audit of every
    destructive tool call that succeeded."""
    policies = _Policies(server)

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params if isinstance(ctx.params, dict) else {}
        name = params.get("name") if ctx.method == "tools/call" else None
        pol = await policies.of(name) if isinstance(name, str) else None
        if not _charged_by_http.get():
            lim = limiter_for(app)
            cost, cls = _cost_of(lim, ctx.method, pol)
            principal = current_caller().principal
            wait = lim.take(principal, cost)
            if wait > 0:
                await audit(app, "rate_limited", principal=principal, method=ctx.method, tool=name,
                            cost_class=cls, retry_after_s=retry_after_seconds(wait))
                text = rate_message(cost, cls, wait, lim)
                if ctx.method == "tools/call":
                    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
                from mcp.shared.exceptions import MCPError

                raise MCPError(code=-32000, message=text)
        result = await call_next(ctx)
        # a question round (InputRequiredResult: confirm.py) changed nothing yet; only the answered call is audited
        if isinstance(name, str) and policies.destructive(name) and not _is_error(result) \
                and not is_input_required(result):
            args = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
            # delete_my_data erases the caller's audit entries too: this record must not name them again
            who = None if name == "delete_my_data" else current_caller().principal
            await audit(app, "deletion", principal=who, tool=name,
                        arguments=json.dumps(args, sort_keys=True, default=str)[:500])
        return result

    return middleware


def _is_error(result: Any) -> bool:
    if isinstance(result, dict):
        return bool(result.get("isError") or result.get("is_error"))
    return bool(getattr(result, "is_error", False))


async def _read_body(receive: Receive, cap: int) -> tuple[list[Message], bytes | None]:
    """Every message of the request body; the body bytes, or None past ``cap`` (then not parsed)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        body = message.get("body", b"")
        size += len(body)
        if size <= cap:
            chunks.append(body)
        if not message.get("more_body", False):
            return messages, b"".join(chunks) if size <= cap else None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class RateLimitMiddleware:
    """429 with ``Retry-After`` for a request whose calls the principal's bucket cannot pay for (inside the
    auth layer, so the caller is known)."""

    def __init__(self, inner: ASGIApp, app: App, server: MCPServer):
        self.inner = inner
        self.app = app
        self.policies = _Policies(server)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lim = limiter_for(self.app)
        if scope["type"] != "http" or scope.get("method") != "POST" or not lim.enabled:
            await self.inner(scope, receive, send)
            return
        messages, body = await _read_body(receive, MAX_CHARGED_BODY)
        receive = _replay(messages, receive)
        if body is None:  # too big to parse here: the inner middleware charges it
            await self.inner(scope, receive, send)
            return
        total, classes, tools = 0.0, [], []
        for method, name in tool_calls_in(body):
            pol = await self.policies.of(name) if method == "tools/call" and name is not None else None
            cost, cls = _cost_of(lim, method, pol)
            total += cost
            classes.append(cls)
            if name:
                tools.append(name)
        principal = current_caller().principal
        wait = lim.take(principal, total)
        if wait > 0:
            retry = retry_after_seconds(wait)
            await audit(self.app, "rate_limited", principal=principal, tools=tools, cost=total, retry_after_s=retry)
            cls = "+".join(sorted(set(classes))) or "request"
            payload = json.dumps({"error": "rate_limited", "error_description": rate_message(total, cls, wait, lim),
                                  "retry_after": retry}).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", str(retry).encode()),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        token = _charged_by_http.set(True)
        try:
            await self.inner(scope, receive, send)
        finally:
            _charged_by_http.reset(token)


def rate_limit_layer(app: App, server: MCPServer):
    """For ``auth.http.build_http_app``'s ``extra_middleware`` list."""
    return lambda inner: RateLimitMiddleware(inner, app, server)


class AuthFailureMiddleware:
    """Outermost layer: slows a client address that keeps sending bad tokens, and logs and audits each failure."""

    def __init__(self, inner: ASGIApp, app: App, *, clock=time.monotonic, sleep=asyncio.sleep):
        self.inner = inner
        self.app = app
        self.clock = clock
        self.sleep = sleep
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def recent(self, address: str) -> int:
        times = self._failures.get(address)
        if not times:
            return 0
        cutoff = self.clock() - FAILURE_WINDOW_S
        times[:] = [t for t in times if t > cutoff]
        return len(times)

    def delay_for(self, address: str) -> float:
        n = self.recent(address) - FREE_FAILURES
        if n <= 0:
            return 0.0
        return min(self.app.settings.auth_fail_delay_max_s, FIRST_DELAY_S * 2 ** min(n - 1, 16))

    def _record(self, address: str) -> int:
        times = self._failures.setdefault(address, [])
        self._failures.move_to_end(address)
        times.append(self.clock())
        del times[:-64]  # enough to reach the cap; bounded memory per address
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)
        return self.recent(address)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        delay = self.delay_for(address)
        if delay > 0:
            await self.sleep(delay)
        await self.inner(scope, receive, send)
        # The auth layer inside says what it refused in the scope (auth/http.py): ``echotune.denied``.
        denied = scope.get("echotune.denied") or {}
        event = denied.get("event")
        if event in ("step_up_denied", "scope_denied"):
            await audit(self.app, event, principal=denied.get("principal") or _principal_of(scope),
                        path=scope.get("path"), **{k: v for k, v in denied.items() if k not in ("event", "principal")})
        elif event == "auth_failure" and denied.get("reason") != "no token":  # no token: OAuth discovery's 1st step
            count = self._record(address)
            log.warning("auth failure from %s (%s; %d in the last %.0f s; its next requests are held %.1f s)",
                        address, denied.get("reason"), count, FAILURE_WINDOW_S, self.delay_for(address))
            if count & (count - 1) == 0:  # stored at the 1st, 2nd, 4th, 8th...: a flood cannot fill the store
                await audit(self.app, "auth_failure", principal=None, client_address=address,
                            path=scope.get("path"), reason=denied.get("reason"), recent_failures=count)


def _principal_of(scope: Scope) -> str | None:
    """The principal the auth layer inside found for this request (``echotune.caller``), if any."""
    caller = scope.get("echotune.caller")
    return getattr(caller, "principal", None)


def auth_failure_layer(app: App):
    """Wraps the whole HTTP app (outside the auth layer)."""
    return lambda inner: AuthFailureMiddleware(inner, app)
