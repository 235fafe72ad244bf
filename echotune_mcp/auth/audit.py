"""The security audit log: what happened to whose account, kept for ``ECHOTUNE_AUDIT_TTL_DAYS``.

Each event is a stored record owned by the principal it concerns (so ``audit_log`` shows a caller their own
entries and ``export_my_data`` / ``delete_my_data`` find them by owner); events without a known principal (a
request with no valid token) are owned by ``ANONYMOUS``, which no caller can be. Each event is also an
OpenTelemetry span event on the current span and a log line on the ``echotune_mcp.audit`` logger, so an operator
sees it in traces and logs without reading the store.

Records expire after the TTL: reads never return them, and the expired ones are purged on a bounded schedule (at
most once per ``PURGE_EVERY_S`` per process, from the write path; MongoDB's TTL index also drops them).
Writing an audit record never fails the request it describes: a store error is logged and the request goes on.
Fields are plain values (str/int/float/bool/None or short lists of them); never put a secret in one.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from pydantic import BaseModel, Field

from ..storage.stores import RecordStore

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("echotune_mcp.audit")

EVENTS = ("auth_failure", "step_up_denied", "scope_denied", "rate_limited", "quota_refused", "grant_added",
          "grant_removed", "deletion", "data_exported", "data_deleted", "roots_granted",
          "roots_revoked", "principal_settings_changed")
ANONYMOUS = "~anonymous"  # the owner of events with no principal (not a principal any token can map to)
PURGE_EVERY_S = 3600.0
MAX_FIELD_CHARS = 500


class AuditRecord(BaseModel):
    id: str
    owner: str
    created_at: float
    expires_at: float
    event: str
    fields: dict[str, Any] = Field(default_factory=dict)


def _plain(value: Any) -> Any:
    """A field value the store and OTel can both hold: scalars as they are, anything else as bounded text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in list(value)[:50]]
    return str(value)[:MAX_FIELD_CHARS]


def _otel_value(value: Any) -> Any:
    if isinstance(value, list):
        return [str(v) for v in value]
    return "" if value is None else value


class AuditStore(RecordStore[AuditRecord]):
    def __init__(self, app: App):
        super().__init__(app.storage.collection("audit"), AuditRecord)


_last_purge: dict[int, float] = {}


async def audit(app: App, event: str, *, principal: str | None, **fields: Any) -> None:
    """Record ``event`` about ``principal`` (None: not known) with ``fields``; never raises."""
    if event not in EVENTS:  # a programming error; still recorded, since losing a security event is worse
        log.warning("audit event %r is not one of the known events %s", event, EVENTS)
    owner = principal or ANONYMOUS
    plain = {k: _plain(v) for k, v in fields.items()}
    attrs = {"echotune.audit.event": event, "echotune.principal": owner,
             **{f"echotune.audit.{k}": _otel_value(v) for k, v in plain.items()}}
    trace.get_current_span().add_event(f"echotune.audit.{event}", attributes=attrs)
    log.info("audit %s principal=%s %s", event, owner, " ".join(f"{k}={v!r}" for k, v in plain.items()))
    try:
        storage = app.storage
    except RuntimeError:  # the app is not started (a CLI that only logs): the log line is the record
        return
    t = time.time()
    record = AuditRecord(id="aud_" + secrets.token_urlsafe(16), owner=owner, created_at=t,
                         expires_at=t + app.settings.audit_ttl_days * 86400, event=event, fields=plain)
    try:
        coll = storage.collection("audit")
        await coll.insert(record.model_dump(mode="json"))
        if t - _last_purge.get(id(coll), 0.0) > PURGE_EVERY_S:
            _last_purge[id(coll)] = t
            purged = await coll.purge_expired()
            if purged:
                log.info("audit: purged %d entries older than %s days", purged, app.settings.audit_ttl_days)
    except Exception:
        log.warning("could not store the audit record of %s for %s", event, owner, exc_info=True)


async def entries(app: App, principal: str, *, event: str | None = None, limit: int = 50,
                  cursor: str | None = None) -> tuple[list[AuditRecord], str | None]:
    """``principal``'s unexpired entries, newest first (the owner-scoped read ``audit_log`` serves)."""
    return await AuditStore(app).find(principal, {"event": event} if event else None, limit=limit, cursor=cursor)
