"""Replicas on one MongoDB: a client on one replica hears about jobs another replica runs.

A job publishes ``resources/updated`` for ``echotune://jobs/{id}`` on the bus of the process that runs it, so a
subscriber connected to another replica (a load balancer sent it there) would hear nothing. Each replica
therefore watches the shared ``jobs`` collection and republishes, on its own bus, every change to a job it
does not run itself:

- **change streams** (``collection.watch``) where the database offers them (a MongoDB replica set or sharded
  cluster; SecantusDB does): a change is heard within one round trip;
- **polling** otherwise (a standalone ``mongod`` answers ``$changeStream`` with an error, detected at start):
  the active jobs are read every ``ECHOTUNE_REPLICA_POLL_SECONDS`` (1 s by default, 0.1 to 60) and a job
  whose state moved, or that left the active set (it ended), is announced. A subscriber then hears of a
  change at most that long (plus one read) after it was stored.

The embedded SQLite backend has one process per data dir in practice and no watcher.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .storage.records import ACTIVE_STATUSES

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger(__name__)
# What a server without change streams answers (standalone mongod: 40573; others: 303 / 115, "not supported").
NO_CHANGE_STREAMS = {40573, 303, 115, 136}


class ReplicaWatcher:
    """Republishes other replicas' job changes to this replica's subscribers (see the module docstring)."""

    def __init__(self, app: App, *, mode: str = "auto"):
        self.app = app
        self.requested = mode  # "auto": a change stream if the database has them, else polling; or "poll"
        self.mode = "starting"  # then "change-stream" or "polling"
        self.announced = 0
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def poll_s(self) -> float:
        return self.app.settings.replica_poll_seconds

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="replica job watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5)
            self._task = None

    def _raw_jobs(self) -> Any | None:
        coll = self.app.storage.collection("jobs")
        return getattr(coll, "coll", None) if self.app.storage.backend.name == "mongodb" else None

    async def _run(self) -> None:
        raw = self._raw_jobs()
        while raw is not None and self.requested == "auto":
            try:
                await self._stream(raw)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                code = getattr(exc, "code", None)
                text = str(exc).lower()
                if self.mode != "change-stream" and (code in NO_CHANGE_STREAMS or "replica set" in text
                                                     or "not supported" in text or "changestream" in text):
                    log.info("this database has no change streams (%s); polling the jobs every %.1f s", exc,
                             self.poll_s)
                    break
                log.warning("the job change stream failed; reopening it in %.1f s", self.poll_s, exc_info=True)
                await asyncio.sleep(self.poll_s)  # bounded: a database that is down is retried, not spun on
        await self._poll()

    async def _stream(self, raw: Any) -> None:
        pipeline = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}]
        stream = await raw.watch(pipeline, max_await_time_ms=max(100, int(self.poll_s * 1000)))
        async with stream:
            self.mode = "change-stream"
            self.ready.set()
            while True:
                change = await stream.try_next()
                if change is None:
                    await asyncio.sleep(0.05)  # the server returned an empty batch at once: do not spin
                    continue
                job_id = (change.get("documentKey") or {}).get("_id")
                if isinstance(job_id, str):
                    await self._announce(job_id)

    async def _poll(self) -> None:
        self.mode = "polling"
        self.ready.set()
        seen: dict[str, tuple[Any, ...]] = {}
        active = [s.value for s in ACTIVE_STATUSES]
        coll = self.app.storage.collection("jobs")
        while True:
            try:
                now: dict[str, tuple[Any, ...]] = {}
                cursor = None
                while True:
                    page = await coll.find(None, {"status": active}, limit=500, cursor=cursor)
                    for d in page.items:
                        now[d["id"]] = (d.get("status"), d.get("progress"), d.get("message"), d.get("updated_at"),
                                        d.get("lease_owner"))
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                for job_id, state in now.items():
                    if seen.get(job_id) != state:
                        await self._announce(job_id)
                for job_id in set(seen) - set(now):  # ended (or deleted) since the last look
                    await self._announce(job_id)
                seen = now
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("polling the jobs for other replicas' changes failed; retrying", exc_info=True)
            await asyncio.sleep(self.poll_s)

    async def _announce(self, job_id: str) -> None:
        try:
            local = job_id in self.app.jobs._live
        except AssertionError:  # the app is stopping
            return
        if local:
            return  # this replica runs it and announces its changes itself
        self.announced += 1
        await self.app.notify_resource_updated(f"echotune://jobs/{job_id}")
