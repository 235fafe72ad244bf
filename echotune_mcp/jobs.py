"""Jobs: every long operation runs in the background and is polled, not held open.

A job-starting tool submits work and waits at most ``wait_seconds`` (under clients' request
time-outs), forwarding progress as MCP progress notifications; if the job has not finished it
returns a handle the agent long-polls with ``get_job``. State is persisted on every transition, and
artifacts are only ever written whole (see ``artifacts.py``).

Several server processes may share the data (client windows, ``echotune-mcp jobs``, MongoDB replicas).
Each holds a lease, renewed by a heartbeat, on the jobs it runs; once a holder's lease is dead its jobs are
either taken over by a live process and run again from their inputs (jobs whose tool registered a
``resumable`` rebuilder: deterministic work such as a seeded composition) or marked ``interrupted``; both
are one compare-and-set on the dead lease, so exactly one process does exactly one of them. A job's state
changes only under the lease it holds, so a frozen process that comes back cannot overwrite the new run. A client's quota
is a set of slots taken atomically and held until the work has really stopped, and CPU-heavy work runs
in its own bounded pool (``CpuPool``), never in the threads storage calls use.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .errors import BadInput, Busy, EchoError, NotFound
from .storage.records import ACTIVE_STATUSES, ArtifactRecord, JobRecord, JobStatus
from .telemetry import attached, capture_context, span

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger(__name__)
HOW_TO_LIST = "call list_jobs to see the job ids you own"
T = TypeVar("T")
ProgressFn = Callable[[float, str], Awaitable[None]]
MAX_ATTEMPTS = 3  # a job that takes its replica down each time (out of memory) must not take down every replica


class JobCancelled(Exception):
    """Raised inside a job's work when the job was cancelled; unwinds it without an error."""


class JobFailed(Exception):
    """Raised by job work for an expected failure; the message is shown to the agent as-is."""


class CpuPool:
    """CPU-heavy work (rendering, analysis, pictures) on its own bounded set of threads.

    Apart from the threads storage and provider calls use, so saturating it slows only other heavy work.
    A caller that must answer promptly (a resource read) passes ``start_within``: if no thread is free by
    then the work is withdrawn and the caller is told the server is busy, instead of waiting without bound.
    """

    def __init__(self, workers: int):
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="echotune-cpu")

    async def run(self, fn: Callable[..., Any], *args: Any, start_within: float | None = None,
                  cancel: threading.Event | None = None) -> Any:
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        context = contextvars.copy_context()  # the caller's trace continues in the thread

        def call() -> Any:
            try:
                loop.call_soon_threadsafe(started.set)
            except RuntimeError:  # the loop is gone; nobody waits for this any more
                pass
            if cancel is not None and cancel.is_set():
                raise JobCancelled()  # cancelled while it waited for a thread: never start it
            return context.run(fn, *args)

        cfut = self._executor.submit(call)
        fut = asyncio.wrap_future(cfut)
        if start_within is not None and not fut.done():
            waiter = asyncio.ensure_future(started.wait())
            try:
                await asyncio.wait({waiter, fut}, timeout=start_within, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if not started.is_set() and cfut.cancel():
                raise Busy(f"the server is busy with other heavy work (all {self.workers} CPU workers, "
                           f"ECHOTUNE_CPU_WORKERS); nothing was started; retry in a few seconds", retry_after_s=5)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            if not cfut.cancel():
                # A thread cannot be interrupted: wait for it, so what the work holds (a job's quota slot)
                # stays held until it has really stopped. Shutdown bounds how long it waits for a job.
                try:
                    await fut
                except BaseException:
                    pass
            raise

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Live:
    """In-process state of a running job: the wake-up signal for waiters and the cancel flag."""

    changed: asyncio.Event = field(default_factory=asyncio.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[Any] | None = None
    slot: str | None = None  # the quota slot this job holds until its work has stopped
    last_write: float = 0.0
    progress: tuple[float, str] | None = None  # fresher than the throttled copy in storage
    lost: bool = False  # another replica took the job over (this one was frozen): stop, write nothing more


class JobContext:
    """What a job's work sees: progress reporting, cancellation, and artifact creation."""

    def __init__(self, manager: JobManager, job: JobRecord, live: _Live):
        self.manager = manager
        self.job = job
        self._live = live
        self.loop = asyncio.get_running_loop()
        self.artifacts: list[ArtifactRecord] = []

    @property
    def owner(self) -> str:
        return self.job.owner

    @property
    def cancelled(self) -> bool:
        return self._live.cancel.is_set()

    def check_cancelled(self) -> None:
        if self._live.cancel.is_set():
            raise JobCancelled()

    async def progress(self, fraction: float, message: str) -> None:
        self.check_cancelled()
        await self.manager._record_progress(self.job, self._live, fraction, message)

    def progress_threadsafe(self, fraction: float, message: str) -> None:
        """For work running in a worker thread: schedule a progress update, and honour cancel."""
        self.check_cancelled()
        asyncio.run_coroutine_threadsafe(self.progress_quiet(fraction, message), self.loop)

    async def progress_quiet(self, fraction: float, message: str) -> None:
        try:
            await self.manager._record_progress(self.job, self._live, fraction, message)
        except Exception:  # progress is best-effort; the job's own result is what matters
            pass

    async def until_cancelled(self, work: Awaitable[T], poll_s: float = 0.1) -> T:
        """Await ``work``, but end it within ``poll_s`` of cancel_job even while it waits on something that
        sends nothing (an engine daemon between events): it is cancelled, so its ``finally`` blocks free
        what it holds (the engine slot), and JobCancelled is raised."""
        task = asyncio.ensure_future(work)
        try:
            while not (await asyncio.wait({task}, timeout=poll_s))[0]:
                if self._live.cancel.is_set():
                    task.cancel()
                    await asyncio.wait({task}, timeout=1.0)  # its cleanup closes sockets: no network wait
                    raise JobCancelled()
            return task.result()
        finally:
            if not task.done():
                task.cancel()

    async def run_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """CPU-bound work in the app's CPU pool; cancellation is cooperative (``check_cancelled``,
        ``cancelled`` or ``progress_threadsafe`` in the work). Cancelled before a thread is free, it never runs."""
        return await self.manager.app.cpu.run(fn, *args, cancel=self._live.cancel)

    async def add_artifact(self, **kwargs: Any) -> ArtifactRecord:
        self.check_cancelled()
        record = await self.manager.app.artifacts.create(owner=self.owner, job_id=self.job.id, **kwargs)
        # Attached only while this process still holds the job: after a takeover the new run owns it, and what
        # this run made is removed again rather than mixed into the new run's artifacts.
        attached = await self.manager.store.update(
            self.owner, self.job.id, {"artifact_ids": [*self.job.artifact_ids, record.id]},
            expect={"lease_owner": self.manager.lease_id})
        if attached is None:
            self._live.lost = True
            self._live.cancel.set()
            try:
                await self.manager.app.artifacts.delete(self.owner, record.id)
            except Exception:
                log.warning("could not remove artifact %s of a job taken over elsewhere", record.id, exc_info=True)
            raise JobCancelled()
        self.artifacts.append(record)
        self.job.artifact_ids.append(record.id)
        return record


JobWork = Callable[[JobContext], Awaitable[dict[str, Any]]]
# Rebuilds a stored job's work from its record (params), for a replica taking it over; None: not resumable.
Resumer = Callable[["App", JobRecord], JobWork | None]
RESUMERS: dict[str, Resumer] = {}


def resumable(tool: str) -> Callable[[Resumer], Resumer]:
    """Register how to run ``tool``'s job again from its stored params alone (no closure of the first run).

    Only for deterministic work (its seed is in the params), so the run another replica finishes gives what
    the first would have; the rebuilder returns None for a job it cannot repeat (audio inputs, a model that is
    not deterministic), which then ends ``interrupted`` as before."""
    def register(fn: Resumer) -> Resumer:
        RESUMERS[tool] = fn
        return fn
    return register


class JobManager:
    def __init__(self, app: App):
        self.app = app
        self.store = app.storage.jobs
        self.leases = app.storage.leases
        self._live: dict[str, _Live] = {}
        self._shutting_down = False
        self.lease_id = ""
        self._heartbeat: asyncio.Task[None] | None = None
        self.replica = app.settings.replica_name or f"{socket.gethostname()}:{os.getpid()}"
        self.taken_over = 0  # jobs of stopped replicas this one ran again

    @property
    def _ttl(self) -> float:
        return self.app.settings.job_lease_seconds

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> int:
        """Take this process's lease, interrupt what dead processes left running, then keep the lease alive.

        Returns how many jobs were interrupted (work of processes that died, not of live neighbours).
        """
        lease = await self.leases.register(self._ttl, name=self.replica)
        self.lease_id = lease.id
        self.app.storage.blobs.writer = lease.id
        interrupted = await self._reap()
        self._heartbeat = asyncio.create_task(self._beat(), name=f"job lease {lease.id}")
        return interrupted

    async def _reap(self) -> int:
        """Interrupt the jobs and sweep the temp blobs of processes whose lease is dead, then drop those leases."""
        blobs = self.app.storage.blobs
        files = blobs.temp_files()  # listed before the leases are read: a new writer registers first
        if not self._shutting_down:
            await self._take_over()
        interrupted = await self.store.interrupt_dead(self.leases.alive_ids)
        blobs.sweep_temp_files(files, await self.leases.alive_ids(), grace_s=max(self._ttl, 60.0))
        await self.leases.drop_dead()
        if interrupted:
            log.warning("%d job(s) of a stopped server process were marked interrupted", interrupted)
        return interrupted

    async def _take_over(self) -> int:
        """Run again, here, the resumable jobs of replicas whose lease is dead; how many this replica claimed.

        The claim is a compare-and-set on the dead lease (``JobStore.take_over``): if another replica claimed or
        interrupted the job first, this one leaves it. What the dead run stored for the job is removed first
        (its artifacts were whole, but they belong to a run whose result nobody will get), and recorded in the
        job's ``takeovers`` note; the new run then makes them again from the same inputs.
        """
        claimed = 0
        for doc in await self.store.orphaned(self.leases.alive_ids):
            resumer = RESUMERS.get(doc.get("tool", ""))
            if resumer is None or int(doc.get("attempt") or 1) >= MAX_ATTEMPTS:
                continue
            try:
                work = resumer(self.app, JobRecord.model_validate(doc))
            except Exception:
                log.warning("job %s cannot be rebuilt from its params; it will be interrupted", doc["id"],
                            exc_info=True)
                work = None
            if work is None:
                continue
            old_lease = doc.get("lease_owner")
            lease = await self.leases.get(old_lease) if old_lease else None
            before = (lease.name if lease is not None and lease.name else None) or doc.get("replica") or "unknown"
            attempt = int(doc.get("attempt") or 1) + 1
            message = (f"taken over by replica {self.replica} after the lease of replica {before} expired; "
                       f"attempt {attempt}, run again from its inputs")
            previous = await self._artifacts_of(doc)
            note = {"attempt": attempt, "from_replica": before, "to_replica": self.replica, "at": time.time(),
                    "reason": "lease expired", "discarded_artifact_ids": [a.id for a in previous]}
            until = time.time() + self._ttl
            job = await self.store.take_over(doc, self.lease_id, until, self.replica, note, message)
            if job is None:
                continue  # another replica claimed or interrupted it first
            claimed += 1
            self.taken_over += 1
            log.warning("job %s: %s", job.id, message)
            for record in previous:
                try:
                    await self.app.artifacts.delete(job.owner, record.id)
                except NotFound:
                    pass
            live = _Live(slot=await self.store.move_slot(job.id, self.lease_id, until))
            self._live[job.id] = live
            live.task = asyncio.create_task(self._run(job, live, work, resumed=True), name=f"job {job.id}")
            await self.app.notify_resource_updated(f"echotune://jobs/{job.id}")
        return claimed

    async def _artifacts_of(self, doc: dict[str, Any]) -> list[ArtifactRecord]:
        """Every artifact stored for the job: those listed on it, and one stored but not yet listed (the run
        stopped between the two writes)."""
        found: list[ArtifactRecord] = []
        cursor = None
        while True:
            page, cursor = await self.app.storage.artifacts.find(doc["owner"], {"job_id": doc["id"]}, limit=200,
                                                                 cursor=cursor)
            found.extend(page)
            if cursor is None:
                return found

    async def _beat(self) -> None:
        """Renew the lease every third of its length; look at the neighbours beside it, one look at a time.

        The look (``_reap``: every active job and lease read, takeovers, sweeps) runs as its own task and is
        never awaited here: on a loaded database it can take longer than a lease, and a renewal that waited
        for it would let this live process's own jobs look dead to a neighbour (seen in CI)."""
        last = time.time()
        quiet_until = 0.0
        look: asyncio.Task[int] | None = None
        try:
            while True:
                await asyncio.sleep(self._ttl / 3)
                at = time.time()
                # Far later than planned means this machine slept or this process stalled: every neighbour's
                # lease looks old for the same reason, so give them a full lease length to renew before judging.
                gap, last = at - last, at
                late = gap > self._ttl
                if gap > 2 * self._ttl / 3:  # a beat missed: say so, it is why a neighbour may take this one's jobs
                    log.warning("the job lease heartbeat ran %.1f s late (lease %.0f s): this process's event loop "
                                "was blocked, storage answered slowly, or the machine stalled", gap - self._ttl / 3, self._ttl)
                try:
                    await self._renew()
                except Exception:  # storage unreachable for a moment: try again on the next beat
                    log.warning("renewing the job lease failed; retrying", exc_info=True)
                    continue
                if late:
                    quiet_until = at + self._ttl
                elif at >= quiet_until and (look is None or look.done()):
                    look = asyncio.create_task(self._look(), name=f"job lease {self.lease_id}: neighbours")
        finally:
            if look is not None:
                look.cancel()

    async def _look(self) -> int:
        try:
            return await self._reap()
        except asyncio.CancelledError:
            raise
        except Exception:  # the next beat looks again
            log.warning("looking for stopped neighbours failed; retrying", exc_info=True)
            return 0

    async def _renew(self) -> None:
        if not await self.leases.renew(self.lease_id, self._ttl):
            # Dropped as dead while this process was frozen; its jobs were interrupted. Come back under the
            # same lease (temp blobs carry its id) and stop the work whose result nobody will take any more.
            await self.leases.register(self._ttl, lease_id=self.lease_id, name=self.replica)
        ids = list(self._live)
        until = time.time() + self._ttl
        await self.store.renew_leases(self.lease_id, ids, until)
        await self.store.renew_slots(self.lease_id, ids, until)
        # A job cancelled through another process (or interrupted, or taken over by another replica, while this
        # one was frozen): stop its work; a taken-over one also writes nothing more.
        for job_id, (status, holder) in (await self.store.holders(ids)).items():
            live = self._live.get(job_id)
            if live is None or live.cancel.is_set():
                continue
            if holder != self.lease_id:
                live.lost = True
            if status.terminal or live.lost:
                live.cancel.set()
                live.changed.set()

    async def shutdown(self) -> None:
        """Stop running work; what was cut short is recorded as interrupted, not cancelled by a user."""
        self._shutting_down = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for live in list(self._live.values()):
            live.cancel.set()
            if live.task is not None:
                live.task.cancel()
        for live in list(self._live.values()):
            if live.task is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await asyncio.wait_for(asyncio.shield(live.task), 5)
                    except BaseException:
                        pass
        with anyio.CancelScope(shield=True):
            try:
                await self.leases.drop(self.lease_id)  # gone now: neighbours need not wait for it to run out
            except Exception:
                log.warning("could not drop this process's job lease; it will run out", exc_info=True)

    # -- submission ----------------------------------------------------------------------------
    async def submit(self, *, owner: str, tool: str, params: dict[str, Any], work: JobWork) -> JobRecord:
        from .auth.tenants import job_limit

        limit = await job_limit(self.app, owner)  # ECHOTUNE_MAX_JOBS_PER_CLIENT unless an operator set this one's
        job = JobRecord(owner=owner, tool=tool, params=params, trace_context=capture_context(),
                        lease_owner=self.lease_id, lease_expires_at=time.time() + self._ttl, replica=self.replica)
        # The quota is slots taken atomically (an insert only one caller can win), so concurrent submits from
        # one client, even through several processes, never exceed it.
        slot = await self.store.acquire_slot(owner, job.id, limit, self.lease_id, job.lease_expires_at)
        if slot is None:
            slot = await self.store.reclaim_slot(owner, job.id, limit, self.lease_id, job.lease_expires_at,
                                                 alive_leases=self.leases.alive_ids)
        if slot is None:
            raise Busy(
                f"this client already has {limit} jobs queued, running or still stopping (limit {limit} "
                "concurrent jobs for this principal); "
                "wait for one with get_job or cancel one with cancel_job, then retry",
                retry_after_s=5,
            )
        live = _Live(slot=slot)
        try:
            with span("job.submit", **{"echotune.job.id": job.id, "echotune.job.tool": tool}):
                await self.store.insert(job)
        except BaseException:
            await self._release(job, live)
            raise
        self._live[job.id] = live
        live.task = asyncio.create_task(self._run(job, live, work), name=f"job {job.id}")
        return job

    async def _release(self, job: JobRecord, live: _Live) -> None:
        """Give the job's quota slot back: its work has stopped (or never started)."""
        slot, live.slot = live.slot, None
        if slot is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self.store.release_slot(job.owner, slot, job.id)
            except Exception:  # no longer renewed, it lapses after one lease length
                log.warning("could not release the quota slot of job %s", job.id, exc_info=True)

    async def _run(self, job: JobRecord, live: _Live, work: JobWork, *, resumed: bool = False) -> None:
        # Runs detached from the request, but inside the caller's trace: the job span is a child of tools/call.
        # Every state change is conditional on this process still holding the job's lease (``mine``).
        mine = self.lease_id
        with attached(job.trace_context), span("job.run", **{"echotune.job.id": job.id, "echotune.job.tool": job.tool,
                                                            "echotune.job.attempt": job.attempt}) as sp:
            ctx = JobContext(self, job, live)
            try:
                if not resumed:
                    started = await self.store.set_status(job.owner, job.id, JobStatus.running,
                                                          expect=[JobStatus.queued], started_at=time.time())
                    if started is None:  # cancelled before it started
                        return
                await self._changed(job, live)
                try:
                    result = await work(ctx)
                finally:
                    await self._release(job, live)  # the work has stopped, whatever its outcome
                done = "done"
                if job.attempt > 1:
                    result = {**result, "attempt": job.attempt, "takeovers": job.takeovers}
                    done = f"done on attempt {job.attempt} ({job.message})"
                final = await self.store.set_status(
                    job.owner, job.id, JobStatus.succeeded, expect=[JobStatus.running], lease_owner=mine,
                    result=result, progress=1.0, message=done,
                )
                sp.set_attribute("echotune.job.status", "succeeded" if final else "cancelled")
            except (JobCancelled, asyncio.CancelledError):
                if live.lost:
                    sp.set_attribute("echotune.job.status", "taken over")
                elif self._shutting_down:
                    await self.store.set_status(job.owner, job.id, JobStatus.interrupted, expect=ACTIVE_STATUSES,
                                                lease_owner=mine,
                                                error="the server stopped while this job was running; start it again")
                    sp.set_attribute("echotune.job.status", "interrupted")
                else:
                    await self.store.set_status(job.owner, job.id, JobStatus.cancelled, expect=ACTIVE_STATUSES,
                                                lease_owner=mine, message="cancelled")
                    sp.set_attribute("echotune.job.status", "cancelled")
            except Exception as exc:
                message = str(exc) if isinstance(exc, JobFailed | EchoError | ValueError) else (
                    f"internal error ({type(exc).__name__}); the job was not completed")
                await self.store.set_status(job.owner, job.id, JobStatus.failed, expect=ACTIVE_STATUSES,
                                            lease_owner=mine, error=message)
                sp.set_attribute("echotune.job.status", "failed")
                sp.record_exception(exc)
                if not isinstance(exc, JobFailed | EchoError | ValueError):
                    log.exception("job %s crashed", job.id)
            finally:
                await self._release(job, live)
                await self._changed(job, live)
                self._live.pop(job.id, None)

    async def _changed(self, job: JobRecord, live: _Live) -> None:
        live.changed.set()
        await self.app.notify_resource_updated(f"echotune://jobs/{job.id}")

    async def _record_progress(self, job: JobRecord, live: _Live, fraction: float, message: str) -> None:
        fraction = max(0.0, min(1.0, float(fraction)))
        now = time.monotonic()
        # Persist at most a few times a second; waiters are woken every time.
        if now - live.last_write > 0.25 or fraction >= 1.0:
            live.last_write = now
            await self.store.update(job.owner, job.id, {"progress": fraction, "message": message,
                                                        "updated_at": time.time()},
                                    expect={"status": JobStatus.running.value, "lease_owner": self.lease_id})
        live.progress = (fraction, message)
        live.changed.set()

    # -- queries -------------------------------------------------------------------------------
    async def get(self, owner: str, job_id: str) -> JobRecord:
        job = await self.store.get(owner, job_id)
        if job is None:
            raise NotFound("job", job_id, HOW_TO_LIST)
        live = self._live.get(job_id)
        if live is not None and live.progress is not None and job.status == JobStatus.running:
            job.progress, job.message = live.progress
        return job

    async def wait(self, owner: str, job_id: str, wait_seconds: float, on_progress: ProgressFn | None = None) -> JobRecord:
        """Wait up to ``wait_seconds`` for the job to end, forwarding progress; return its latest state."""
        deadline = time.monotonic() + max(0.0, min(wait_seconds, self.app.settings.max_wait_seconds))
        job = await self.get(owner, job_id)
        last_sent: tuple[float, str] | None = None
        while True:
            live = self._live.get(job_id)
            if on_progress is not None and job.status == JobStatus.running and (job.progress, job.message) != last_sent:
                last_sent = (job.progress, job.message)
                await on_progress(job.progress, job.message)
            if job.status.terminal:
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return job
            if live is not None:
                live.changed.clear()
                try:
                    await asyncio.wait_for(live.changed.wait(), timeout=min(remaining, 1.0))
                except TimeoutError:
                    pass
                job = await self.get(owner, job_id)
            else:
                # Running in another replica (shared MongoDB): poll storage.
                await asyncio.sleep(min(remaining, 0.5))
                job = await self.get(owner, job_id)

    async def cancel(self, owner: str, job_id: str) -> JobRecord:
        job = await self.get(owner, job_id)
        if job.status.terminal:
            return job
        live = self._live.get(job_id)
        if live is not None:
            live.cancel.set()
        updated = await self.store.set_status(owner, job_id, JobStatus.cancelled, expect=ACTIVE_STATUSES,
                                              message="cancelled by request")
        if live is not None:
            live.changed.set()
        await self.app.notify_resource_updated(f"echotune://jobs/{job_id}")
        return updated or await self.get(owner, job_id)

    async def list(
        self, owner: str, *, status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        where: dict[str, Any] = {}
        if status:
            try:
                where["status"] = JobStatus(status).value
            except ValueError:
                raise BadInput("status", f"{status!r} is not a job status", [s.value for s in JobStatus]) from None
        return await self.store.find(owner, where, limit=limit, cursor=cursor)
