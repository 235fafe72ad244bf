"""Issue #13 item 6: jobs are fair and survive neighbours.

Fair: the per-client quota holds under concurrent submits (on both backends, across processes), a cancelled
job counts until its work has really stopped, and CPU-heavy work runs in its own bounded pool so it can
neither starve storage nor make a heavy resource read wait without bound. Neighbours: a second server on the
same data (a second client window, ``echotune-mcp jobs``, a MongoDB replica) leaves the first one's running
jobs and half-written blobs alone until the first one's lease has run out.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from mcp.shared.exceptions import MCPError

from echotune_mcp.app import App
from echotune_mcp.errors import Busy
from echotune_mcp.jobs import JobContext, JobWork
from echotune_mcp.storage.records import JobStatus


@pytest.fixture(params=["sqlite", "mongodb"])
def shared_settings(request, settings):
    """Settings two App instances can share: one data dir, or one MongoDB database."""
    if request.param == "mongodb":
        uri = request.getfixturevalue("mongo_uri")
        return replace(settings, mongodb_uri=uri, mongodb_db=f"t_{uuid.uuid4().hex[:10]}")
    return settings


async def _until(predicate, timeout: float = 5.0, step: float = 0.05):
    """Poll an async predicate until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


async def _thread_wait(event: threading.Event, timeout: float = 5.0) -> None:
    assert await asyncio.get_running_loop().run_in_executor(None, event.wait, timeout), "worker never started"


def _held() -> tuple[asyncio.Event, JobWork]:
    """(gate, work): a job whose work runs until the test sets the gate."""
    gate = asyncio.Event()

    async def hold(job: JobContext):
        await gate.wait()
        return {}

    return gate, hold


# -- fairness ---------------------------------------------------------------------------------------------------
async def test_quota_holds_under_concurrent_submits_from_two_processes(shared_settings):
    gate = asyncio.Event()

    async def wait_gate(job: JobContext):
        await gate.wait()
        return {}

    s = replace(shared_settings, max_jobs_per_owner=3)
    async with App(s) as first, App(s) as second:
        submits = [app.jobs.submit(owner="alice", tool="t", params={}, work=wait_gate)
                   for _ in range(12) for app in (first, second)]
        results = await asyncio.gather(*submits, return_exceptions=True)
        accepted = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, Busy)]
        assert len(accepted) == 3 and len(refused) == 21, results
        assert "limit 3" in str(refused[0])
        assert await first.storage.jobs.count("alice", {"status": ["queued", "running"]}) == 3
        # Another client has its own budget.
        bob = await second.jobs.submit(owner="bob", tool="t", params={}, work=wait_gate)
        gate.set()
        for job in [*accepted, bob]:  # waiting on either server works: the other one polls storage
            assert (await first.jobs.wait(job.owner, job.id, 5)).status == JobStatus.succeeded
        # The slots came back once the work ended.
        again = await asyncio.gather(*(first.jobs.submit(owner="alice", tool="t", params={}, work=wait_gate)
                                       for _ in range(3)))
        for job in again:
            assert (await first.jobs.wait("alice", job.id, 5)).status == JobStatus.succeeded


async def test_a_cancelled_job_counts_until_its_work_stops(settings):
    started, release = threading.Event(), threading.Event()

    def stubborn() -> None:  # CPU work that never looks at the cancel flag
        started.set()
        release.wait(20)

    async def work(job: JobContext):
        await job.run_in_thread(stubborn)
        return {"finished": True}

    async def quick(job: JobContext):
        return {}

    async with App(replace(settings, max_jobs_per_owner=1)) as app:
        job = await app.jobs.submit(owner="alice", tool="t", params={}, work=work)
        try:
            await _thread_wait(started)
            assert (await app.jobs.cancel("alice", job.id)).status == JobStatus.cancelled
            with pytest.raises(Busy, match="still stopping"):
                await app.jobs.submit(owner="alice", tool="t", params={}, work=quick)
        finally:
            release.set()

        async def submit_quick():
            try:
                return await app.jobs.submit(owner="alice", tool="t", params={}, work=quick)
            except Busy:
                return None

        nxt = await _until(submit_quick)
        assert (await app.jobs.wait("alice", nxt.id, 5)).status == JobStatus.succeeded
        # The late finish did not overwrite the cancel.
        late = await app.jobs.get("alice", job.id)
        assert late.status == JobStatus.cancelled and late.result is None


async def test_cancelled_work_waiting_for_the_pool_never_runs(settings):
    started, release = threading.Event(), threading.Event()
    ran = threading.Event()

    async def hog(job: JobContext):
        await job.run_in_thread(lambda: (started.set(), release.wait(20)))
        return {}

    async def queued(job: JobContext):
        await job.run_in_thread(ran.set)
        return {}

    async with App(replace(settings, cpu_workers=1)) as app:
        first = await app.jobs.submit(owner="a", tool="t", params={}, work=hog)
        try:
            await _thread_wait(started)
            second = await app.jobs.submit(owner="a", tool="t", params={}, work=queued)
            await asyncio.sleep(0.2)  # it is waiting for the pool's only thread
            assert not ran.is_set(), "CPU work did not wait for the bounded pool"
            await app.jobs.cancel("a", second.id)
        finally:
            release.set()
        assert (await app.jobs.wait("a", first.id, 5)).status == JobStatus.succeeded
        await _until(lambda: _const(second.id not in app.jobs._live))
        assert not ran.is_set(), "cancelled work still ran once the pool had room"
        assert (await app.jobs.get("a", second.id)).status == JobStatus.cancelled


async def _const(value):
    return value


async def test_saturating_cpu_work_leaves_storage_and_tools_answering(make_client):
    release = threading.Event()
    lock = threading.Lock()
    state = {"running": 0, "peak": 0, "names": set()}

    def heavy() -> None:
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
            state["names"].add(threading.current_thread().name)
        release.wait(30)
        with lock:
            state["running"] -= 1

    async def work(job: JobContext):
        await job.run_in_thread(heavy)
        return {}

    async with make_client(cpu_workers=2, max_jobs_per_owner=50) as (client, app):
        jobs = [await app.jobs.submit(owner="local", tool="t", params={}, work=work) for _ in range(45)]
        try:
            await _until(lambda: _const(state["running"] == 2))
            # More blocked work than the default thread pool has threads: storage and tools still answer.
            listed = await asyncio.wait_for(client.call_tool("list_jobs", {"limit": 100}), 5)
            assert not listed.is_error and len(listed.structured_content["jobs"]) == 45
            assert await asyncio.wait_for(app.storage.jobs.get("local", jobs[-1].id), 2) is not None
            assert state["peak"] == 2, "CPU work ran beyond its pool's size"
            assert all(name.startswith("echotune-cpu") for name in state["names"]), state["names"]
        finally:
            release.set()
        for job in jobs:
            assert (await app.jobs.wait("local", job.id, 10)).status == JobStatus.succeeded


def _wav(seconds: float = 1.0, sr: int = 22050) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


async def test_heavy_resource_reads_are_bounded(make_client):
    started, release = threading.Event(), threading.Event()

    async def hog(job: JobContext):
        await job.run_in_thread(lambda: (started.set(), release.wait(30)))
        return {}

    async with make_client(cpu_workers=1, max_wait_seconds=0.5) as (client, app):
        art = await app.artifacts.create(owner="local", data=_wav(), kind="upload", media_type="audio/wav",
                                         name="tone.wav")
        job = await app.jobs.submit(owner="local", tool="t", params={}, work=hog)
        try:
            await _thread_wait(started)
            for suffix in ("waveform.png", "analysis"):
                t0 = time.monotonic()
                with pytest.raises(MCPError) as err:
                    await asyncio.wait_for(client.read_resource(f"echotune://artifacts/{art.id}/{suffix}"), 10)
                assert time.monotonic() - t0 < 5, f"{suffix} waited {time.monotonic() - t0:.1f} s"
                assert "busy" in str(err.value).lower(), str(err.value)
            # A light call is not held up by the heavy queue.
            assert not (await asyncio.wait_for(client.call_tool("list_jobs", {}), 5)).is_error
        finally:
            release.set()
        assert (await app.jobs.wait("local", job.id, 5)).status == JobStatus.succeeded
        png = await client.read_resource(f"echotune://artifacts/{art.id}/waveform.png")
        assert base64.b64decode(png.contents[0].blob)[:8] == b"\x89PNG\r\n\x1a\n"
        analysis = json.loads((await client.read_resource(f"echotune://artifacts/{art.id}/analysis")).contents[0].text)
        assert analysis["sha256"] == art.sha256


# -- neighbours -------------------------------------------------------------------------------------------------
LEASE_S = 1.5  # short, so the test is quick; long enough that a loaded machine still renews in time
async def test_a_second_server_leaves_live_jobs_running_until_their_lease_runs_out(shared_settings):
    s = replace(shared_settings, job_lease_seconds=LEASE_S)
    gate = asyncio.Event()

    async def hold(job: JobContext):
        await job.progress(0.2, "working")
        await gate.wait()
        return {"done": True}

    async with App(s) as first:
        job = await first.jobs.submit(owner="local", tool="t", params={}, work=hold)
        await _until(lambda: _job_status(first, job.id, JobStatus.running))
        stored = await first.storage.jobs.get("local", job.id)
        assert stored.lease_owner == first.jobs.lease_id and stored.lease_expires_at > time.time()
        async with App(s) as second:
            assert second.interrupted_at_start == 0
            await asyncio.sleep(2.5 * LEASE_S)  # the first keeps renewing, the second keeps checking
            assert (await second.jobs.get("local", job.id)).status == JobStatus.running
            # The first server freezes (as if killed on another machine): its lease runs out, then the second
            # tells the truth about the job.
            first.jobs._heartbeat.cancel()
            await _until(lambda: _job_status(second, job.id, JobStatus.interrupted), timeout=4 * LEASE_S)
            gone = await second.jobs.get("local", job.id)
            assert "start it again" in gone.error
            gate.set()
            await _until(lambda: _const(job.id not in first.jobs._live))
            # The frozen server's late finish does not overwrite what the other one recorded.
            assert (await second.jobs.get("local", job.id)).status == JobStatus.interrupted


async def test_a_slow_look_at_the_neighbours_never_delays_this_servers_own_renewal(shared_settings, monkeypatch):
    """Each beat renews this process's lease and also looks for dead neighbours (reads every active job and
    lease). On a loaded database that look can take longer than a lease; if the renewal waited for it, a live
    server would lose its own running job to a neighbour (seen in CI: a replica took over a healthy one's job)."""
    s = replace(shared_settings, job_lease_seconds=LEASE_S)
    gate, hold = _held()
    async with App(s) as server:
        job = await server.jobs.submit(owner="local", tool="t", params={}, work=hold)
        await _until(lambda: _job_status(server, job.id, JobStatus.running))
        real_orphaned = server.jobs.store.orphaned
        looks = 0

        async def slow_orphaned(alive):
            nonlocal looks
            looks += 1
            await asyncio.sleep(3 * LEASE_S)  # one look at the neighbours outlasts the whole lease
            return await real_orphaned(alive)

        monkeypatch.setattr(server.jobs.store, "orphaned", slow_orphaned)
        try:
            deadline = time.monotonic() + 4 * LEASE_S
            while time.monotonic() < deadline:
                stored = await server.storage.jobs.get("local", job.id)
                lease = await server.storage.leases.get(server.jobs.lease_id)
                now = time.time()
                assert stored.lease_expires_at > now, f"the job's lease ran out {now - stored.lease_expires_at:.2f} s ago"
                assert lease is not None and lease.expires_at > now, "this server's own lease ran out"
                await asyncio.sleep(0.1)
            assert looks >= 1, "the neighbours were never looked at"
        finally:
            gate.set()
        assert (await server.jobs.wait("local", job.id, 5)).status == JobStatus.succeeded


async def _job_status(app: App, job_id: str, status: JobStatus) -> bool:
    return (await app.jobs.get("local", job_id)).status == status


async def test_a_second_server_leaves_live_temp_blobs_alone(settings):
    s = replace(settings, job_lease_seconds=LEASE_S)
    async with App(s) as first:
        folder = s.data_dir / "blobs" / "ab"
        folder.mkdir(parents=True, exist_ok=True)
        # Temp files carry their writer's lease: one being written by the first server, one a dead process left.
        live = folder / f".tmp-{first.jobs.lease_id}.x1y2z3"
        live.write_bytes(b"half a blob")
        dead = folder / ".tmp-lease_thisonedied.a1b2c3"
        dead.write_bytes(b"left behind")
        async with App(s) as second:
            assert live.exists(), "the second server swept a blob the first is still writing"
            assert not dead.exists()
            first.jobs._heartbeat.cancel()
            await _until(lambda: _const(not live.exists()), timeout=4 * LEASE_S)
        # A blob written whole leaves no temp file behind.
        sha = await first.storage.blobs.put(b"whole")
        assert first.storage.blobs.local_path(sha).read_bytes() == b"whole"
        assert not list((s.data_dir / "blobs").glob("*/.tmp-*"))


async def test_echotune_mcp_jobs_leaves_a_running_server_alone(settings):
    gate, hold = _held()
    async with App(settings) as server:
        job = await server.jobs.submit(owner="local", tool="t", params={}, work=hold)
        await _until(lambda: _job_status(server, job.id, JobStatus.running))
        env = {**os.environ, "ECHOTUNE_DATA_DIR": str(settings.data_dir), "ECHOTUNE_ALLOWED_ROOTS": str(settings.allowed_roots[0])}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "echotune_mcp", "jobs", env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        assert "running" in out.decode(), out.decode()
        assert (await server.jobs.get("local", job.id)).status == JobStatus.running
        gate.set()
        assert (await server.jobs.wait("local", job.id, 5)).status == JobStatus.succeeded


async def test_a_cancel_through_another_server_stops_the_work(shared_settings):
    s = replace(shared_settings, job_lease_seconds=LEASE_S, max_jobs_per_owner=1)
    stopped = asyncio.Event()

    async def loop(job: JobContext):
        try:
            while True:
                await job.progress(0.5, "working")  # raises JobCancelled once the cancel is seen
                await asyncio.sleep(0.02)
        finally:
            stopped.set()

    async with App(s) as first, App(s) as second:
        job = await first.jobs.submit(owner="local", tool="t", params={}, work=loop)
        await _until(lambda: _job_status(second, job.id, JobStatus.running))
        assert (await second.jobs.cancel("local", job.id)).status == JobStatus.cancelled
        # The first server hears of it on its next heartbeat and stops the work; the slot comes back.
        await asyncio.wait_for(stopped.wait(), 4 * LEASE_S)
        await _until(lambda: _const(job.id not in first.jobs._live))
        again = await second.jobs.submit(owner="local", tool="t", params={}, work=_quick)
        assert (await second.jobs.wait("local", again.id, 5)).status == JobStatus.succeeded


async def _quick(job: JobContext):
    return {}


async def test_an_older_data_dir_gains_the_lease_columns(settings):
    """A database written before leases existed: its tables gain the new columns, and a job it left running
    (no lease at all) is interrupted at start-up, while its finished jobs are untouched."""
    import sqlite3

    settings.data_dir.mkdir(parents=True)
    conn = sqlite3.connect(settings.data_dir / "echotune.sqlite3")
    conn.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at REAL NOT NULL, "
                 "status, tool, doc TEXT NOT NULL)")
    for id_, status in (("job_old_running", "running"), ("job_old_done", "succeeded")):
        doc = {"id": id_, "owner": "local", "tool": "t", "status": status, "created_at": 1.0, "updated_at": 1.0}
        conn.execute("INSERT INTO jobs VALUES (?, 'local', 1.0, ?, 't', ?)", (id_, status, json.dumps(doc)))
    conn.commit()
    conn.close()
    async with App(settings) as app:
        assert app.interrupted_at_start == 1
        assert (await app.jobs.get("local", "job_old_running")).status == JobStatus.interrupted
        assert (await app.jobs.get("local", "job_old_done")).status == JobStatus.succeeded
        job = await app.jobs.submit(owner="local", tool="t", params={}, work=_quick)
        assert (await app.jobs.wait("local", job.id, 5)).status == JobStatus.succeeded
