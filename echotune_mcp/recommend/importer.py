"""Import listening-history files into the owner's ``listening_events``: streamed, deduplicated, all or nothing.

Rows are parsed in a worker thread a batch at a time (``history.iter_rows``) and written as one
deduplicating batch (``insert_absent``), so memory stays bounded whatever the file's size. Every event
stored carries the import's id: if the import fails or is cancelled part-way, what it stored is deleted
again, so a file is never half-imported; plays that were already stored (an earlier import) stay.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import logging
import secrets
import time
import zipfile
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, Field

from ..errors import Busy
from ..storage.base import DuplicateKey
from ..storage.records import JobRecord, JobStatus, now
from ..storage.stores import ListeningEventStore
from .history import FORMATS, HEAD_BYTES, HistoryFileError, Row, candidates, event_id, iter_rows, resolve_format

if TYPE_CHECKING:
    from ..app import App
    from ..jobs import JobContext
    from ..storage import Storage

log = logging.getLogger(__name__)
TOOL = "import_listening_history"
SYNC_TOOL = "sync_listening_history"  # recommend/sync.py: the same store, the same undo, the same one-at-a-time
HISTORY_TOOLS = (TOOL, SYNC_TOOL)
LOCK_POLL_S = 0.25
UNDO_GRACE_S = 15.0  # how long a caller waits for an ended import (cancelled or failed) to finish undoing
BATCH = 1000  # events per write
EXAMPLES = 5  # malformed rows shown per file
SKIPPED_SHOWN = 50  # archive members not imported, listed
ZIP_MAGIC = b"PK\x03\x04"
MAX_ARCHIVE_MEMBERS = 5000
MAX_ARCHIVE_BYTES = 8 << 30  # unpacked, as the archive declares it (reading never goes past a member's size)
Run = Callable[..., Awaitable[Any]]  # runs a blocking function off the event loop: (fn, *args) -> result
Progress = Callable[[float, str], Awaitable[None]]


# -- the report ------------------------------------------------------------------------------------------
class SkippedFile(BaseModel):
    file: str = Field(description="archive/member")
    reason: str


class MalformedExample(BaseModel):
    where: str = Field(description="'line N' (text formats, 1-based) or 'element N' (JSON arrays, 0-based)")
    problem: str


class TimeRange(BaseModel):
    first: str = Field(description="earliest play, ISO 8601 UTC")
    last: str = Field(description="latest play, ISO 8601 UTC")


class Counts(BaseModel):
    read: int = Field(0, description="rows read (events + ignored + malformed)")
    imported: int = Field(0, description="new events stored")
    duplicates: int = Field(0, description="events already stored (an earlier import, or repeated in the file)")
    ignored: int = Field(0, description="well-formed rows that are not music plays (podcast episodes, ...)")
    malformed: int = Field(0, description="rows that could not be read; nothing of them is stored")


class FileReport(Counts):
    file: str = Field(description="the path, or the filename given with data_base64")
    format: str
    bytes: int
    ignored_reasons: dict[str, int] = Field(default_factory=dict)
    malformed_examples: list[MalformedExample] = Field(default_factory=list, description=f"the first {EXAMPLES}")
    time_range: TimeRange | None = None


class FormatCounts(Counts):
    files: int = 0


class ImportReport(Counts):
    import_id: str = Field(description="every event this import stored carries it")
    files: list[FileReport]
    skipped_files: int = Field(0, description="files inside archives that are not a history of a format we read")
    skipped: list[SkippedFile] = Field(default_factory=list, description=f"the first {SKIPPED_SHOWN}, and why")
    by_format: dict[str, FormatCounts]
    time_range: TimeRange | None = Field(None, description="of the events read (new and duplicate)")
    events_stored: int = Field(description="this owner's listening events in storage after the import")
    interrupted_imports_undone: int = Field(0, description="plays removed first that an earlier import, cut off "
                                                           "when its server stopped, had stored (run it again)")
    seconds: float


# -- sources ---------------------------------------------------------------------------------------------
@dataclass
class HistorySource:
    """One file to import: its name in reports, its size, how to open it, and its (resolved) format."""

    name: str
    size: int
    open: Callable[[], IO[bytes]]
    format: str


def path_source(path: Path, wanted: str | None, shown: str | None = None) -> HistorySource:
    """A local file, its format resolved from its first bytes (blocking: call it off the event loop)."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    fmt = resolve_format(head, path.name, wanted)
    return HistorySource(name=shown or str(path), size=path.stat().st_size, open=lambda: open(path, "rb"), format=fmt)


def bytes_source(data: bytes, filename: str, wanted: str | None) -> HistorySource:
    fmt = resolve_format(data[:HEAD_BYTES], filename, wanted)
    return HistorySource(name=filename, size=len(data), open=lambda: io.BytesIO(data), format=fmt)


def open_sources(target: Path | bytes, shown: str, wanted: str | None) -> tuple[list[HistorySource], list[SkippedFile]]:
    """The history files in a local file or upload: itself, or, for a ZIP archive (the way Spotify and
    ListenBrainz deliver exports), each member of a format we read; the other members are listed as skipped.
    Blocking: call it off the event loop."""
    if isinstance(target, Path):
        with open(target, "rb") as fh:
            magic = fh.read(4)
    else:
        magic = target[:4]
    if magic != ZIP_MAGIC:
        one = path_source(target, wanted, shown) if isinstance(target, Path) else bytes_source(target, shown, wanted)
        return [one], []
    return _archive_sources(target, shown, wanted)


def _zip(target: Path | bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(target if isinstance(target, Path) else io.BytesIO(target))


def _open_member(target: Path | bytes, member: str) -> IO[bytes]:
    # the member keeps the archive's file open until it is closed itself
    return _zip(target).open(member)


def _archive_sources(target: Path | bytes, shown: str, wanted: str | None) -> tuple[list[HistorySource],
                                                                                    list[SkippedFile]]:
    try:
        with _zip(target) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if len(infos) > MAX_ARCHIVE_MEMBERS:
                raise HistoryFileError(f"is a ZIP archive of {len(infos)} files; at most {MAX_ARCHIVE_MEMBERS}")
            total = sum(i.file_size for i in infos)
            if total > MAX_ARCHIVE_BYTES:
                raise HistoryFileError(f"is a ZIP archive of {total} bytes unpacked; at most {MAX_ARCHIVE_BYTES}")
            sources: list[HistorySource] = []
            skipped: list[SkippedFile] = []
            for info in sorted(infos, key=lambda i: i.filename):
                name = f"{shown}/{info.filename}"
                if info.flag_bits & 0x1:
                    skipped.append(SkippedFile(file=name, reason="encrypted"))
                    continue
                try:
                    with zf.open(info) as member:
                        head = member.read(HEAD_BYTES)
                except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, zlib.error) as exc:
                    skipped.append(SkippedFile(file=name, reason=f"cannot be unpacked ({exc})"))
                    continue
                try:
                    fmt = resolve_format(head, PurePosixPath(info.filename).name, wanted)
                except HistoryFileError:
                    _, looks = candidates(head)
                    skipped.append(SkippedFile(file=name, reason=f"not {wanted or 'a listening history'}: it looks "
                                                                 f"like {looks}"))
                    continue
                sources.append(HistorySource(name=name, size=info.file_size, format=fmt,
                                             open=functools.partial(_open_member, target, info.filename)))
    except zipfile.BadZipFile as exc:
        raise HistoryFileError(f"is a damaged ZIP archive ({exc})") from None
    if not sources:
        what = f"{wanted} file" if wanted else "listening history"
        shown_skips = "; ".join(f"{s.file.removeprefix(shown + '/')}: {s.reason}" for s in skipped[:5])
        raise HistoryFileError(f"is a ZIP archive with no {what} in it ({shown_skips or 'it is empty'})")
    return sources, skipped


# -- the import ------------------------------------------------------------------------------------------
@dataclass
class _Tally:
    report: FileReport
    first: float | None = None
    last: float | None = None
    done: bool = False
    ignored_reasons: dict[str, int] = field(default_factory=dict)

    def take(self, rows: Iterator[Row], owner: str, import_id: str, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` events as storage documents (runs in a worker thread)."""
        docs: list[dict[str, Any]] = []
        r = self.report
        now = time.time()
        for row in rows:
            r.read += 1
            if row.event is not None:
                ev = row.event
                played = ev["played_at"]
                if played is not None:
                    self.first = played if self.first is None else min(self.first, played)
                    self.last = played if self.last is None else max(self.last, played)
                docs.append({"id": event_id(owner, ev), "owner": owner, "created_at": now, "import_id": import_id,
                             **ev})
                if len(docs) >= limit:
                    return docs
            elif row.ignored is not None:
                r.ignored += 1
                self.ignored_reasons[row.ignored] = self.ignored_reasons.get(row.ignored, 0) + 1
            else:
                r.malformed += 1
                if len(r.malformed_examples) < EXAMPLES:
                    r.malformed_examples.append(MalformedExample(where=row.where, problem=row.malformed or "?"))
        self.done = True
        return docs


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _range(first: float | None, last: float | None) -> TimeRange | None:
    return TimeRange(first=_iso(first), last=_iso(last)) if first is not None and last is not None else None


async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return await anyio.to_thread.run_sync(fn, *args)


async def import_history(store: ListeningEventStore, owner: str, sources: list[HistorySource], import_id: str, *,
                         run: Run = _blocking, progress: Progress | None = None, batch_size: int = BATCH,
                         skipped: list[SkippedFile] | None = None) -> ImportReport:
    """Import ``sources`` for ``owner``; the report counts every row. On any failure (a broken file part-way,
    storage, cancellation) the events this import stored are deleted again and the error is raised."""
    t0 = time.monotonic()
    total = max(1, sum(s.size for s in sources))
    before = 0
    reports: list[FileReport] = []
    first: float | None = None
    last: float | None = None
    try:
        for n, src in enumerate(sources):
            tally = _Tally(FileReport(file=src.name, format=src.format, bytes=src.size))
            label = f"file {n + 1}/{len(sources)} ({FORMATS[src.format].name})"
            try:
                fh = await run(src.open)
            except (OSError, zipfile.BadZipFile) as exc:
                raise HistoryFileError(f"{src.name} cannot be opened any more ({exc})") from None
            rows = iter_rows(fh, src.format)
            try:
                while not tally.done:
                    try:
                        docs = await run(tally.take, rows, owner, import_id, batch_size)
                    except HistoryFileError as exc:
                        raise HistoryFileError(f"{src.name} {exc} (after {tally.report.read} rows)") from None
                    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # a file cut or changed
                        raise HistoryFileError(f"{src.name} could not be read to the end ({exc}; after "
                                               f"{tally.report.read} rows)") from None
                    if docs:
                        inserted = await store.insert_absent(docs)
                        tally.report.imported += inserted
                        tally.report.duplicates += len(docs) - inserted
                    if progress is not None:
                        pos = fh.tell()
                        r = tally.report
                        await progress(min(0.99, (before + min(pos, src.size)) / total),
                                       f"{label}: {r.read} rows, {r.imported} new, {r.duplicates} already stored")
            finally:
                rows.close()  # the parser lets go of the file first (it runs in no thread now)
                fh.close()
            tally.report.ignored_reasons = tally.ignored_reasons
            tally.report.time_range = _range(tally.first, tally.last)
            reports.append(tally.report)
            before += src.size
            if tally.first is not None:
                first = tally.first if first is None else min(first, tally.first)
                last = tally.last if last is None else max(last, tally.last)  # type: ignore[type-var]
    except BaseException:
        with anyio.CancelScope(shield=True):
            try:
                removed = await store.delete_import(owner, import_id)
                log.info("import %s stopped; removed the %d events it had stored", import_id, removed)
            except Exception:
                log.warning("import %s stopped and its events could not be removed", import_id, exc_info=True)
        raise
    by_format: dict[str, FormatCounts] = {}
    totals = Counts()
    for r in reports:
        fc = by_format.setdefault(r.format, FormatCounts())
        fc.files += 1
        for name in Counts.model_fields:
            setattr(fc, name, getattr(fc, name) + getattr(r, name))
            setattr(totals, name, getattr(totals, name) + getattr(r, name))
    skipped = skipped or []
    return ImportReport(import_id=import_id, files=reports, by_format=by_format, time_range=_range(first, last),
                        skipped_files=len(skipped), skipped=skipped[:SKIPPED_SHOWN],
                        events_stored=await store.count(owner), seconds=round(time.monotonic() - t0, 3),
                        **totals.model_dump())


# -- as a job ----------------------------------------------------------------------------------------------
async def undo_interrupted(storage: Storage, owner: str) -> int:
    """Remove what imports cut off by a stopped server had stored (each once), so no import stays half done.

    Runs first in every import, and imports run one at a time, so no later import can have counted those
    plays as already stored.
    """
    removed_total = 0
    cursor = None
    while True:
        jobs, cursor = await storage.jobs.find(owner, {"tool": list(HISTORY_TOOLS),
                                                       "status": JobStatus.interrupted.value},
                                               limit=100, cursor=cursor)
        for job in jobs:
            if (job.result or {}).get("undone"):
                continue
            removed = await storage.listening.delete_import(owner, job.id)
            await storage.jobs.update(owner, job.id, {
                "result": {"undone": True, "removed_events": removed},
                "message": f"cut off; the {removed} plays it had stored were removed; run the import again"})
            removed_total += removed
        if cursor is None:
            return removed_total


async def submit_import(app: App, owner: str, sources: list[HistorySource], params: dict[str, Any],
                        skipped: list[SkippedFile] | None = None, *, wait_s: float = 0.0) -> JobRecord:
    """Start the import job (the tool and the CLI both do it this way); one import per owner at a time, since a
    failed import's undo must not remove plays that a neighbour counted as already stored."""
    async def work(job: JobContext, undone: int) -> dict[str, Any]:
        report = await import_history(app.storage.listening, owner, sources, job.job.id, run=job.run_in_thread,
                                      progress=job.progress, skipped=skipped)
        report.interrupted_imports_undone = undone
        return report.model_dump(mode="json")

    return await submit_exclusive(app, owner, TOOL, params, work, wait_s=wait_s)


ExclusiveWork = Callable[["JobContext", int], Awaitable[dict[str, Any]]]


async def submit_exclusive(app: App, owner: str, tool: str, params: dict[str, Any], work: ExclusiveWork, *,
                           wait_s: float = 0.0) -> JobRecord:
    """Submit a job that writes the owner's listening events, holding the owner's import lock (``ImportLock``)
    from before the job exists until its work, undo included, has stopped. ``work(job, undone)`` runs after
    the plays of interrupted imports were removed (``undone`` of them). Busy, naming the running job, when
    another import or sync holds the lock for longer than ``wait_s``."""
    lock = ImportLock(app, owner)
    await lock.acquire(wait_s)

    async def guarded(job: JobContext) -> dict[str, Any]:
        try:
            undone = await undo_interrupted(app.storage, owner)
            return await work(job, undone)
        finally:
            await lock.release(job.job.id)

    try:
        job = await app.jobs.submit(owner=owner, tool=tool, params=params, work=guarded)
    except BaseException:
        await lock.release()
        raise
    await lock.bind(job.id)
    return job


class ImportLock:
    """One import or sync of listening history per owner at a time, across every process sharing the data.

    A document with a fixed id per owner in the job-slot collection: taking it is an insert only one caller
    can win (SQLite or MongoDB, any number of processes: the CLI and running servers alike). It names the
    job holding it and the holder's process lease; the job heartbeat renews it with the job's quota slot
    while the work runs. It is given back when the work (and its undo) has stopped. A lock whose process is
    dead (its lease gone or run out) or whose job ended without ever starting is stale and taken over; the
    plays of an import cut off that way are removed by the next import (``undo_interrupted``).
    """

    def __init__(self, app: App, owner: str):
        self.app = app
        self.owner = owner
        self.slots = app.storage.jobs.slots
        self.id = f"implock_{hashlib.sha256(owner.encode()).hexdigest()[:32]}"
        self.pending = f"pending_{secrets.token_hex(8)}"  # who holds it until the job exists
        self.holder = self.pending  # the job id once the job exists (``bind``)
        self.held = False

    def _doc(self) -> dict[str, Any]:
        return {"id": self.id, "owner": self.owner, "created_at": now(), "job_id": self.holder,
                "lease_owner": self.app.jobs.lease_id,
                "lease_expires_at": time.time() + self.app.settings.job_lease_seconds}

    async def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait_s`` (and up to UNDO_GRACE_S for a holder whose job has ended and
        is only undoing); else Busy naming the job that holds it."""
        deadline = time.monotonic() + max(0.0, wait_s)
        graced = False
        while True:
            try:
                await self.slots.insert(self._doc())
                self.held = True
                return
            except DuplicateKey:
                pass
            doc = await self.slots.get(self.owner, self.id)
            if doc is None:
                continue  # given back meanwhile
            state, job = await self._judge(doc)
            if state == "stale" and await self._take_over(doc):
                return
            if state == "ending" and not graced:
                graced = True
                deadline = max(deadline, time.monotonic() + UNDO_GRACE_S)
            if time.monotonic() >= deadline:
                raise Busy(self._busy_message(doc, job), retry_after_s=5)
            await asyncio.sleep(LOCK_POLL_S)

    async def _judge(self, doc: dict[str, Any]) -> tuple[str, JobRecord | None]:
        """'stale' (its holder is gone), 'ending' (its job ended, its undo is finishing) or 'held'."""
        alive = await self.app.storage.leases.alive_ids()
        if doc.get("lease_owner") not in alive or (doc.get("lease_expires_at") or 0) <= time.time():
            return "stale", None
        job_id = str(doc.get("job_id") or "")
        if job_id.startswith("pending_"):
            return "held", None  # being submitted right now
        job = await self.app.storage.jobs.get(self.owner, job_id)
        if job is None or (job.status.terminal and job.started_at is None):
            return "stale", job  # its job never ran (cancelled while queued): nothing of it to undo
        return ("ending" if job.status.terminal else "held"), job

    async def _take_over(self, doc: dict[str, Any]) -> bool:
        fresh = self._doc()
        taken = await self.slots.update(
            self.owner, self.id, {k: fresh[k] for k in ("job_id", "lease_owner", "lease_expires_at", "created_at")},
            expect={"job_id": doc.get("job_id"), "lease_owner": doc.get("lease_owner"),
                    "lease_expires_at": doc.get("lease_expires_at")})
        if taken is None:
            return False
        self.held = True
        log.warning("took over the listening-history import lock of %s from job %s (its process is gone or "
                    "the job never ran)",
                    self.owner, doc.get("job_id"))
        # its job is marked interrupted now, so this import's undo_interrupted removes what it stored
        await self.app.storage.jobs.interrupt_dead(self.app.storage.leases.alive_ids)
        return True

    def _busy_message(self, doc: dict[str, Any], job: JobRecord | None) -> str:
        job_id = str(doc.get("job_id") or "")
        if job_id.startswith("pending_"):
            return ("an import or sync of your listening history is starting right now; wait a few seconds and "
                    "try again (list_jobs shows it)")
        what = "an import" if job is None or job.tool == TOOL else "a sync"
        state = "is still removing what it stored" if job is not None and job.status.terminal else "is already running"
        return (f"{what} of your listening history {state} for you (job {job_id}); only one runs at a time. Wait "
                f"for it with get_job(job_id='{job_id}', wait_seconds=20), then try again")

    async def bind(self, job_id: str) -> None:
        """Name the job in the lock (the heartbeat renews it from now on, with the job's quota slot)."""
        if await self.slots.update(self.owner, self.id, {"job_id": job_id}, expect={"job_id": self.holder}):
            self.holder = job_id
        elif self.held:  # the work already ended and gave the lock back
            self.held = False

    async def release(self, job_id: str | None = None) -> None:
        """Give the lock back if this holder (before or after ``bind``) still holds it."""
        if not self.held:
            return
        with anyio.CancelScope(shield=True):
            try:
                holders = [self.pending] + ([job_id] if job_id else [])
                await self.slots.delete(self.owner, self.id, expect={"job_id": holders})
                self.held = False
            except Exception:  # no longer renewed: stale after one lease length, then taken over
                log.warning("could not give back the listening-history import lock of job %s", self.holder,
                            exc_info=True)
