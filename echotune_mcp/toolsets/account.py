"""Account toolset: what the server recorded about the caller's security, and what the caller may still use.

Both tools read only the caller's own records: the audit log entries owned by their principal, and their quotas
(concurrent jobs, artifact bytes, rate budget) with current usage, so an agent refused for a limit can see why.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from ..auth.audit import EVENTS, entries
from ..auth.limits import limiter_for
from ..auth.tenants import job_limit, path_policy, storage_quota, storage_usage
from ..principal import current_principal
from ..storage.records import ACTIVE_STATUSES
from .base import Toolset, current_app
from .common import cursor_argument

AuditEvent = Literal[EVENTS]  # type: ignore[valid-type]


class AuditEntry(BaseModel):
    id: str
    event: str
    at: float = Field(description="epoch seconds")
    fields: dict[str, Any]


class AuditLog(BaseModel):
    entries: list[AuditEntry]
    next_cursor: str | None = None
    retention_days: float = Field(description="entries are dropped this long after they were written")


class MyLimits(BaseModel):
    principal: str
    max_concurrent_jobs: int
    active_jobs: int
    storage_quota_bytes: int | None = Field(description="None: no quota")
    storage_used_bytes: int
    rate_per_minute: float | None = Field(description="units refilled a minute; None: no rate limit for you")
    rate_burst: float | None
    rate_available: float | None = Field(description="units this principal can spend now")
    rate_costs: dict[str, float] = Field(description="units per call, by class")
    local_roots: list[str] = Field(description="folders whose files tools may read for you")


toolset = Toolset("account", "Your security log and your limits on this server.")


@toolset.tool(title="Audit log", read_only=True)
async def audit_log(
    event: Annotated[AuditEvent | None, Field(description="only entries of this kind")] = None,
    limit: Annotated[int, Field(ge=1, le=100, description="page size (1-100)")] = 20,
    cursor: Annotated[str | None, Field(max_length=512, description="next_cursor from a previous page")] = None,
) -> AuditLog:
    """Your own security log, newest first: calls refused for a missing second factor (step-up) or scope,
    rate limiting and quota refusals, provider accounts connected or disconnected, deletions, data exports,
    and local folders an operator granted you.

    Use it to see why a call was refused or to check what happened to your account. Entries are kept for
    retention_days, then dropped.
    """
    app = current_app()
    with cursor_argument():
        recs, nxt = await entries(app, current_principal(), event=event, limit=limit, cursor=cursor)
    return AuditLog(entries=[AuditEntry(id=r.id, event=r.event, at=r.created_at, fields=r.fields) for r in recs],
                    next_cursor=nxt, retention_days=app.settings.audit_ttl_days)


@toolset.tool(title="My limits", read_only=True)
async def my_limits() -> MyLimits:
    """Your quotas and how much of them you use: concurrent jobs, artifact storage bytes, the rate budget
    (units a minute; each call costs its class's units, a generation more than a read) and the local
    folders tools may read for you. Call it after a quota or rate refusal to see what to free or wait for."""
    app = current_app()
    owner = current_principal()
    lim = limiter_for(app)
    limited = lim.enabled and owner not in lim.exempt
    quota = await storage_quota(app, owner)
    active = await app.storage.jobs.count(owner, {"status": [s.value for s in ACTIVE_STATUSES]})
    policy = await path_policy(app, owner)
    return MyLimits(principal=owner, max_concurrent_jobs=await job_limit(app, owner), active_jobs=active,
                    storage_quota_bytes=quota or None, storage_used_bytes=await storage_usage(app, owner),
                    rate_per_minute=lim.rate * 60 if limited else None,
                    rate_burst=lim.burst if limited else None,
                    rate_available=round(lim.remaining(owner), 3) if limited else None,
                    rate_costs=dict(lim.costs), local_roots=[str(r) for r in policy.roots])
