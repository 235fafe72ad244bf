"""Idempotency keys for mutating curation tools: a retried call finishes the first call's work once.

An agent that times out and retries ``add_tracks`` must not add the tracks twice, and a call that
died half way must not leave the key unusable or (worse) let a retry start from scratch. So:

- The first call claims the key (an insert only one caller can win: the document id is derived from
  owner, tool and key) with a short lease (``LEASE_S``) that a heartbeat renews while it runs.
- While it runs it records how far it got (``Progress.save``); a finished call stores its result, a
  failed one stays as ``failed`` with its progress. The key is never deleted on failure.
- A later call with the same key replays a stored result; resumes a failed call, or one whose lease
  lapsed (its process stopped), from the recorded progress; and is told to wait while a live call runs.
- Every change to the record is a compare-and-set on ``expires_at``, which each write moves forward,
  so two retries cannot both take over and a superseded runner cannot overwrite the new one's record.

Keys live 24 hours; expired records are purged (they would otherwise block their id in SQLite).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..errors import BadInput, Busy
from ..storage.base import Collection, StorageError
from ..storage.records import now

TTL_S = 24 * 3600
LEASE_S = 60.0
HEARTBEAT_S = LEASE_S / 3
PURGE_EVERY_S = 600.0
_last_purge: dict[int, float] = {}
log = logging.getLogger(__name__)


def _doc_id(owner: str, tool: str, key: str) -> str:
    return "idem_" + hashlib.sha256(f"{owner}\x00{tool}\x00{key}".encode()).hexdigest()[:40]


def fingerprint(args: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()


class LeaseLost(Busy):
    def __init__(self, tool: str):
        super().__init__(f"another {tool} call with this idempotency key took over this one's work; "
                         "call again with the key for its result", retry_after_s=2)


class Progress:
    """How far a call got. ``state`` is what an earlier attempt saved (empty on a first run)."""

    def __init__(self, coll: Collection | None, owner: str, id_: str, tool: str, doc: dict[str, Any] | None):
        self._coll, self._owner, self._id, self._tool = coll, owner, id_, tool
        self.state: dict[str, Any] = dict((doc or {}).get("progress") or {})
        self.resumed = bool(self.state)
        self._version: float | None = (doc or {}).get("expires_at")
        self._lock = anyio.Lock()

    async def save(self, **fields: Any) -> None:
        """Record progress now (before the next request), so a retry never repeats a finished step."""
        self.state.update(fields)
        await self._write({"progress": self.state, "lease_until": now() + LEASE_S})

    async def renew(self) -> None:
        await self._write({"lease_until": now() + LEASE_S})

    async def _write(self, fields: dict[str, Any], *, strict: bool = True) -> bool:
        if self._coll is None:
            return True
        async with self._lock:
            version = max(now() + TTL_S, (self._version or 0) + 0.001)
            doc = await self._coll.update(self._owner, self._id, {**fields, "expires_at": version},
                                          expect={"expires_at": self._version})
            if doc is None:
                if strict:
                    raise LeaseLost(self._tool)
                return False
            self._version = version
            return True


async def _purge(coll: Collection, *, force: bool = False) -> None:
    last = _last_purge.get(id(coll), 0.0)
    if force or time.monotonic() - last > PURGE_EVERY_S:
        _last_purge[id(coll)] = time.monotonic()
        await coll.purge_expired()


async def _claim(coll: Collection, owner: str, tool: str, key: str, fp: str) -> tuple[dict[str, Any] | None, bool]:
    """(record to run under, False) or (stored result document, True) for a replay."""
    id_ = _doc_id(owner, tool, key)
    for _ in range(2):
        t = now()
        doc = {"id": id_, "owner": owner, "created_at": t, "key": key, "tool": tool, "fingerprint": fp,
               "state": "running", "lease_until": t + LEASE_S, "expires_at": t + TTL_S, "progress": {}, "attempts": 1}
        try:
            await coll.insert(doc)
            return doc, False
        except StorageError:
            existing = await coll.get(owner, id_)
        if existing is None:  # an expired record still holds the id: purge it and claim once more
            await _purge(coll, force=True)
            continue
        if existing.get("fingerprint") != fp:
            raise BadInput("idempotency_key", f"was already used for a different {tool} call",
                           "a new unique key for each distinct call")
        if existing.get("state") == "done":
            return existing, True
        if existing.get("state") == "running" and float(existing.get("lease_until") or 0) > t:
            wait = float(existing["lease_until"]) - t
            raise Busy(f"a {tool} call with this idempotency key is still running; call again in "
                       f"{int(wait) + 1} s for its result (a call whose server stopped is taken over after "
                       f"{int(LEASE_S)} s)", retry_after_s=min(wait, 5.0))
        # failed, or running past its lease (its process stopped): take it over and resume
        version = max(t + TTL_S, float(existing.get("expires_at") or 0) + 0.001)
        taken = await coll.update(owner, id_, {"state": "running", "lease_until": t + LEASE_S, "expires_at": version,
                                               "attempts": int(existing.get("attempts") or 1) + 1, "error": None},
                                  expect={"expires_at": existing.get("expires_at")})
        if taken is None:
            raise Busy(f"another {tool} call with this idempotency key just started; call again in a few seconds",
                       retry_after_s=2)
        return taken, False
    raise Busy(f"could not claim the idempotency key for {tool}; call again in a few seconds", retry_after_s=2)


async def once(coll: Collection, owner: str, tool: str, key: str | None, args: dict[str, Any],
               run: Callable[[Progress], Awaitable[dict[str, Any]]]) -> tuple[dict[str, Any], bool]:
    """Run ``run`` to completion at most once per (owner, tool, key); returns (result, replayed)."""
    if not key:
        return await run(Progress(None, owner, "", tool, None)), False
    await _purge(coll)
    doc, replay = await _claim(coll, owner, tool, key, fingerprint(args))
    assert doc is not None
    if replay:
        return doc["result"], True
    progress = Progress(coll, owner, doc["id"], tool, doc)

    async def heartbeat() -> None:
        while True:
            await anyio.sleep(HEARTBEAT_S)
            await progress.renew()

    outcome: list[Any] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            try:
                outcome.append(await run(progress))
            except BaseException as exc:  # re-raised below, outside the task group, unwrapped
                outcome.append(exc)
            tg.cancel_scope.cancel()
    except BaseException as exc:  # the heartbeat lost the lease (another retry took over)
        outcome = [exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1 else exc]
    result = outcome[0] if outcome else Busy(f"{tool} was interrupted; call again with the same key", 2)
    if isinstance(result, BaseException):
        with anyio.CancelScope(shield=True):
            try:  # keep the key and its progress: a retry resumes from here
                await progress._write({"state": "failed", "lease_until": 0,
                                       "error": f"{type(result).__name__}: {result}"[:500]}, strict=False)
            except Exception:  # storage down: the lease still lapses and a retry takes over
                log.exception("could not record the failure of %s", tool)
        raise result
    await progress._write({"state": "done", "result": result, "lease_until": 0}, strict=False)
    return result, False
