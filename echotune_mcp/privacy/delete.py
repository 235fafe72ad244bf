"""delete_my_data's work: erase everything of one principal, in an order that is safe to interrupt and resume.

1. Stop their other jobs (cancelled and given up to ``JOB_STOP_S`` to stop), so nothing writes new records.
2. Provider grants: revoked at the provider where its adapter can (``TokenKeeper.revoke``), then deleted.
3. Their data key (``principal_keys``) is deleted first among the records: from then on every sealed field of
   theirs, here or in any backup, is unreadable, even if what follows is interrupted.
4. Artifacts: a blob (file or GridFS) goes when no other owner's artifact points at it, before its record, so an
   interrupted run finds the record again and finishes; a shared blob stays and is counted as kept.
5. Every other collection the storage opened: the owner's documents, expired ones included. Their jobs go
   except this one: its record is the receipt (counts only, no personal data) the caller polls.

Each step only deletes what is still there, so running it again after an interruption finishes the job; the
report names what each step deleted and, when it stopped early, what remains per collection. Corpus models
(models/recommend/) are fitted on public corpora, not on anyone's history, and stay; per-user analysis caches
live in the owner-scoped ``idempotency`` collection and go with it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger(__name__)
PHRASE = "delete all my data"
JOB_STOP_S = 10.0
REVOKE_S = 20.0
PAGE = 500
Progress = Callable[[float, str], Awaitable[None]]


class GrantOutcome(BaseModel):
    provider: str
    revoked_at_provider: bool = Field(description="the provider confirmed the revocation")
    deleted: bool
    note: str = ""


class DeleteReport(BaseModel):
    principal: str
    complete: bool = Field(description="true when nothing of the principal remains but this job's receipt")
    jobs_stopped: int = 0
    grants: list[GrantOutcome] = Field(default_factory=list)
    key_shredded: bool = Field(default=False, description="the data key sealing their events was deleted")
    deleted: dict[str, int] = Field(default_factory=dict, description="documents deleted per collection")
    blobs_deleted: int = 0
    blobs_kept_shared: int = Field(default=0, description="blobs left because another owner's artifact uses them")
    remaining: dict[str, int] = Field(default_factory=dict, description="the principal's documents still stored "
                                                                        "per collection (only if not complete)")
    kept: list[str] = Field(default_factory=list, description="what is kept on purpose, and why")
    steps_done: list[str] = Field(default_factory=list)


async def _stop_jobs(app: App, owner: str, keep_job: str | None, report: DeleteReport) -> None:
    active = []
    for status in ("queued", "running"):
        cursor = None
        while True:
            jobs, cursor = await app.jobs.list(owner, status=status, limit=100, cursor=cursor)
            active.extend(j for j in jobs if j.id != keep_job)
            if not cursor:
                break
    for job in active:
        await app.jobs.cancel(owner, job.id)
    # A job's work holds its quota slot until it has really stopped, in whichever process runs it.
    slots, ids = app.storage.collection("job_slots"), [j.id for j in active]
    with anyio.move_on_after(JOB_STOP_S):
        while ids and await slots.count(owner, {"job_id": ids}):
            await anyio.sleep(0.05)
    report.jobs_stopped = len(active)


async def _grants(app: App, owner: str, report: DeleteReport, hub: Any = None) -> None:
    from ..providers.base import PROVIDERS
    from ..providers.hub import ProviderHub

    stored = await app.storage.collection("tokens").count(owner)
    if not stored:
        return
    own_hub = hub is None
    hub = hub or ProviderHub(app)
    try:
        for provider in PROVIDERS:
            try:
                meta = await hub.keeper.store.metadata(owner, provider)
            except Exception as exc:  # the server key cannot open the store: delete without revoking
                meta, note = {}, f"not revoked: {exc}"
            else:
                note = ""
            if meta is None:
                continue
            revoked = False
            if not note:
                try:
                    with anyio.fail_after(REVOKE_S):
                        revoked = await hub.keeper.revoke(owner, provider)
                    note = "" if revoked else ("the provider has no revocation endpoint (or refused); remove the "
                                               "app in your account settings there too")
                except Exception as exc:
                    note = f"revocation failed ({type(exc).__name__}); remove the app in your account settings there"
            deleted = await hub.keeper.store.delete(owner, provider)
            report.grants.append(GrantOutcome(provider=provider, revoked_at_provider=revoked, deleted=deleted,
                                              note=note))
    finally:
        if own_hub:
            await hub.aclose()


async def _artifacts(app: App, owner: str, report: DeleteReport) -> None:
    coll = app.storage.collection("artifacts")
    deleted = 0
    while True:
        page = await coll.find(owner, limit=PAGE)
        if not page.items:
            break
        done: set[str] = set()
        for doc in page.items:
            sha = doc["sha256"]
            if sha in done:  # an earlier artifact of this page had the same bytes: all of them went then
                continue
            done.add(sha)
            total = await coll.count(None, {"sha256": sha})
            mine = await coll.count(owner, {"sha256": sha})
            if total > mine:
                report.blobs_kept_shared += 1
            elif await app.storage.blobs.exists(sha):
                await app.storage.blobs.delete(sha)
                report.blobs_deleted += 1
            await coll.delete_where(owner, {"sha256": sha})
            deleted += mine
    report.deleted["artifacts"] = report.deleted.get("artifacts", 0) + deleted


async def _collection(app: App, owner: str, name: str, keep: dict[str, str | None]) -> int:
    coll = app.storage.collection(name)
    keep_id = keep.get(name)
    if keep_id is None:
        return await coll.delete_where(owner, {})
    n = 0
    while True:  # everything but the kept document
        page = await coll.find(owner, limit=PAGE + 1)
        ids = [d["id"] for d in page.items if d["id"] != keep_id]
        if not ids:
            break
        n += await coll.delete_where(owner, {"id": ids})
    return n


async def remaining(app: App, owner: str, keep_job: str | None) -> dict[str, int]:
    """The owner's documents still stored per collection, leaving out this job's record and its quota slot."""
    out = {}
    for name in app.storage.collection_names():
        coll = app.storage.collection(name)
        n = await coll.count(owner)
        if keep_job and name == "jobs" and await coll.get(owner, keep_job) is not None:
            n -= 1
        if keep_job and name == "job_slots":
            n -= await coll.count(owner, {"job_id": keep_job})
        if n:
            out[name] = n
    return out


async def delete_principal(app: App, owner: str, *, keep_job: str | None, progress: Progress,
                           report: DeleteReport, hub: Any = None) -> DeleteReport:
    """Delete everything of ``owner`` (see the module docstring), filling ``report`` as each step finishes."""
    keep: dict[str, str | None] = {"jobs": keep_job}
    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("stop_jobs", lambda: _stop_jobs(app, owner, keep_job, report)),
        ("grants", lambda: _grants(app, owner, report, hub)),
        ("key", lambda: _shred(app, owner, report)),
        ("artifacts", lambda: _artifacts(app, owner, report)),
    ]
    names = [n for n in app.storage.collection_names() if n not in ("artifacts", "principal_keys", "job_slots")]
    for name in names:
        steps.append((name, lambda name=name: _count(report, name, _collection(app, owner, name, keep))))
    for i, (step, run) in enumerate(steps):
        await progress(i / len(steps), f"deleting: {step}")
        await run()
        report.steps_done.append(step)
    # Slots last: this job's own slot is given back by the job manager when the work returns.
    slots = app.storage.collection("job_slots")
    page = await slots.find(owner, limit=PAGE)
    others = [d["id"] for d in page.items if d.get("job_id") != keep_job]
    if others:
        report.deleted["job_slots"] = await slots.delete_where(owner, {"id": others})
    await app.storage.backend.scrub()
    report.steps_done.append("scrub")
    report.remaining = await remaining(app, owner, keep_job)
    report.complete = not report.remaining
    report.kept = ["this job's record: the receipt of this deletion (these counts only, nothing personal)"]
    if report.blobs_kept_shared:
        report.kept.append(f"{report.blobs_kept_shared} file(s) whose identical bytes another owner's artifact "
                           "also holds (content-addressed storage); only your records of them were deleted")
    return report


async def _count(report: DeleteReport, name: str, work: Awaitable[int]) -> None:
    n = await work
    if n:
        report.deleted[name] = report.deleted.get(name, 0) + n


async def _shred(app: App, owner: str, report: DeleteReport) -> None:
    keys = getattr(app.storage, "principal_keys", None)
    if keys is not None:
        report.key_shredded = await keys.shred(owner) or report.key_shredded
    else:
        report.key_shredded = await app.storage.collection("principal_keys").delete_where(owner, {}) > 0
    if report.key_shredded:
        report.deleted["principal_keys"] = 1
