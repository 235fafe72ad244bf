"""Jobs: lifecycle, bounded waits with progress, cancel, per-client limits, crash recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from echotune_mcp.app import App
from echotune_mcp.errors import Busy, NotFound
from echotune_mcp.jobs import JobContext, JobFailed
from echotune_mcp.storage.records import JobStatus


async def _quick(job: JobContext):
    for i in range(5):
        await job.progress(i / 5, f"step {i}")
        await asyncio.sleep(0.01)
    art = await job.add_artifact(data=b"hello", kind="json", media_type="application/json", name="r.json")
    return {"artifact": art.id}


async def test_job_runs_to_success_with_artifacts(settings):
    async with App(settings) as app:
        job = await app.jobs.submit(owner="local", tool="t", params={}, work=_quick)
        seen = []

        async def on_progress(f, m):
            seen.append((f, m))

        done = await app.jobs.wait("local", job.id, 5, on_progress)
        assert done.status == JobStatus.succeeded
        assert done.result["artifact"] == done.artifact_ids[0]
        assert done.progress == 1.0 and done.finished_at >= done.started_at
        assert seen, "progress was not forwarded to the waiter"
        assert all(0 <= f <= 1 for f, _ in seen)


async def test_wait_is_bounded_and_returns_a_handle(settings):
    release = asyncio.Event()

    async def slow(job: JobContext):
        await job.progress(0.5, "halfway")
        await release.wait()
        return {}

    async with App(settings) as app:
        job = await app.jobs.submit(owner="local", tool="t", params={}, work=slow)
        t0 = asyncio.get_running_loop().time()
        state = await app.jobs.wait("local", job.id, 0.3)
        assert asyncio.get_running_loop().time() - t0 < 2
        assert state.status == JobStatus.running and state.progress == 0.5 and state.message == "halfway"
        release.set()
        assert (await app.jobs.wait("local", job.id, 5)).status == JobStatus.succeeded


async def test_failure_is_readable_and_crash_is_not_leaked(settings):
    async def expected(job):
        raise JobFailed("the melody artifact is 3 s long; at least 5 s is needed")

    async def crash(job):
        raise KeyError("secret internal detail")

    async with App(settings) as app:
        a = await app.jobs.submit(owner="local", tool="t", params={}, work=expected)
        b = await app.jobs.submit(owner="local", tool="t", params={}, work=crash)
        ra, rb = await app.jobs.wait("local", a.id, 5), await app.jobs.wait("local", b.id, 5)
        assert ra.status == JobStatus.failed and "at least 5 s" in ra.error
        assert rb.status == JobStatus.failed and "secret" not in rb.error and "internal error" in rb.error


async def test_cancel_stops_a_running_job(settings):
    async def forever(job: JobContext):
        while True:
            await job.progress(0.1, "working")
            await asyncio.sleep(0.02)

    async with App(settings) as app:
        job = await app.jobs.submit(owner="local", tool="t", params={}, work=forever)
        await asyncio.sleep(0.1)
        cancelled = await app.jobs.cancel("local", job.id)
        assert cancelled.status == JobStatus.cancelled
        await asyncio.sleep(0.2)
        assert (await app.jobs.get("local", job.id)).status == JobStatus.cancelled
        # Cancelling a finished job is a no-op that reports its state.
        assert (await app.jobs.cancel("local", job.id)).status == JobStatus.cancelled


async def test_threaded_work_sees_cancel(settings):
    import threading

    started = threading.Event()

    def cpu_loop(job: JobContext):
        started.set()
        while True:
            job.progress_threadsafe(0.2, "crunching")  # raises JobCancelled once cancelled
            threading.Event().wait(0.01)

    async def work(job: JobContext):
        return await job.run_in_thread(cpu_loop, job)

    async with App(settings) as app:
        job = await app.jobs.submit(owner="local", tool="t", params={}, work=work)
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        await app.jobs.cancel("local", job.id)
        for _ in range(100):
            if job.id not in app.jobs._live:
                break
            await asyncio.sleep(0.02)
        assert job.id not in app.jobs._live, "the worker thread did not stop after cancel"
        assert (await app.jobs.get("local", job.id)).status == JobStatus.cancelled


async def test_per_client_limit_and_scoping(settings):
    from dataclasses import replace

    gate = asyncio.Event()

    async def wait_gate(job):
        await gate.wait()
        return {}

    async with App(replace(settings, max_jobs_per_owner=2)) as app:
        j1 = await app.jobs.submit(owner="alice", tool="t", params={}, work=wait_gate)
        await app.jobs.submit(owner="alice", tool="t", params={}, work=wait_gate)
        with pytest.raises(Busy, match="limit 2"):
            await app.jobs.submit(owner="alice", tool="t", params={}, work=wait_gate)
        await app.jobs.submit(owner="bob", tool="t", params={}, work=wait_gate)  # bob has his own budget
        with pytest.raises(NotFound, match="list_jobs"):
            await app.jobs.get("bob", j1.id)
        gate.set()
        await app.jobs.wait("alice", j1.id, 5)


CRASHER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from echotune_mcp.app import App
    from echotune_mcp.config import Settings

    async def main():
        settings = Settings(data_dir=Path(sys.argv[1]))
        async with App(settings) as app:
            async def finished(job):
                art = await job.add_artifact(data=b"x" * 100_000, kind="json", media_type="application/json",
                                             name="kept.json")
                return {"artifact": art.id}
            async def hang(job):
                await job.progress(0.3, "rendering")
                print("READY", flush=True)
                await asyncio.sleep(3600)
            done = await app.jobs.submit(owner="local", tool="t", params={}, work=finished)
            await app.jobs.wait("local", done.id, 10)
            print("DONE", done.id, flush=True)
            await app.jobs.submit(owner="local", tool="t", params={}, work=hang)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_kill_minus_9_marks_running_jobs_interrupted_and_keeps_finished_output(settings, tmp_path):
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    proc = subprocess.Popen([sys.executable, str(script), str(settings.data_dir)], stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.split())
            if line.startswith("READY"):
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    done_id = next(parts[1] for parts in lines if parts[0] == "DONE")
    async with App(settings) as app:
        assert app.interrupted_at_start == 1
        jobs, _ = await app.jobs.list("local")
        by_status = {j.status for j in jobs}
        assert by_status == {JobStatus.succeeded, JobStatus.interrupted}
        interrupted = next(j for j in jobs if j.status == JobStatus.interrupted)
        assert "start it again" in interrupted.error
        finished = await app.jobs.get("local", done_id)
        art = await app.artifacts.get("local", finished.result["artifact"])
        assert await app.artifacts.read(art) == b"x" * 100_000
    assert not list(Path(settings.data_dir, "blobs").glob("*/.tmp-*"))


async def test_clean_shutdown_records_running_jobs_as_interrupted(settings):
    async def forever(job: JobContext):
        await job.progress(0.1, "working")
        await asyncio.sleep(3600)

    async with App(settings) as app:
        job = await app.jobs.submit(owner="local", tool="t", params={}, work=forever)
        await asyncio.sleep(0.1)
    async with App(settings) as app:
        state = await app.jobs.get("local", job.id)
        assert state.status == JobStatus.interrupted and "start it again" in state.error
        assert app.interrupted_at_start == 0
