"""Stateless server replicas on one MongoDB (issue #18 item 3; docs/SCALE.md).

Real `echotune-mcp serve --transport http` processes on one SecantusDB wire server: a replica killed with
SIGKILL mid-job has the job taken over by the other (run again from its inputs, the retry on the job) or
marked interrupted, exactly once, with no artifact of the dead run left behind; a client on one replica sees
a job another runs finish; replicas refuse to start without shared key material.

Leases are the default 30 s here. A killed replica is still found within one beat (a third of the lease): on
one machine its process is gone, which a neighbour checks before waiting for the lease to run out. Shorter
leases made live replicas lose jobs in full CI runs (3 s, then 12 s: A's renewals stopped for longer than
the lease, B took over the job A was still running, and the "killed" run the test saw was already B's).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client

from tests.conftest import free_port, secantus_server, serve_until_healthy

LEASE_S = 30.0
SECRET = "replica test passphrase, shared by every replica"


@pytest.fixture(scope="module")
def mongo_uri() -> Iterator[str]:
    """This module's own secantusdb: the session's one holds every earlier test's data by now (GridFS blobs
    included), and replicas here share one database and race on leases, so they get a server to themselves."""
    with secantus_server() as uri:
        yield uri


def _command() -> list[str]:
    script = Path(sys.executable).parent / "echotune-mcp"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "echotune_mcp"]


def _signing_key(folder: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = folder / "signing.pem"
    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return path


@dataclass
class Replica:
    name: str
    url: str
    proc: subprocess.Popen
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def _env(base: Path, name: str, mongo_uri: str, db: str, key: Path | None, lease_s: float = LEASE_S,
         **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECHOTUNE_", "OTEL_"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ECHOTUNE_DATA_DIR=str(base / name / "data"),
               ECHOTUNE_ALLOWED_ROOTS=str(base), ECHOTUNE_MONGODB_URI=mongo_uri, ECHOTUNE_MONGODB_DB=db,
               ECHOTUNE_REPLICATED="on", ECHOTUNE_REPLICA_NAME=name, ECHOTUNE_SECRET_KEY=SECRET,
               ECHOTUNE_JOB_LEASE_SECONDS=str(lease_s), ECHOTUNE_REPLICA_POLL_SECONDS="0.5",
               ECHOTUNE_MAX_GENERATION_SECONDS="300", ECHOTUNE_CPU_WORKERS="1")
    if key is not None:
        env["ECHOTUNE_SIGNING_KEY_FILE"] = str(key)
    env.update(extra)
    return env


@contextmanager
def replicas(base: Path, mongo_uri: str, names: tuple[str, ...] = ("A", "B"),
             lease_s: float = LEASE_S) -> Iterator[dict[str, Replica]]:
    """Start one `serve --transport http` process per name on one database; stop the survivors after."""
    db = "replicas_" + base.name.replace("-", "_")[-40:]
    key = _signing_key(base)
    started: dict[str, Replica] = {}
    with ExitStack() as stack:  # each one up (/healthz answers) before the next starts; survivors stopped after
        for name in names:
            (base / name).mkdir()
            port = free_port()
            log = base / f"{name}.log"
            cmd = [*_command(), "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)]
            proc = stack.enter_context(serve_until_healthy(cmd, _env(base, name, mongo_uri, db, key, lease_s), base,
                                                           log, port))
            started[name] = Replica(name, f"http://127.0.0.1:{port}/mcp", proc, log)
        yield started


async def _call(url: str, tool: str, args: dict) -> dict:
    async with Client(url, raise_exceptions=True) as client:
        result = await client.call_tool(tool, args)
        assert not result.is_error, result.content
        return result.structured_content


async def _until(url: str, job_id: str, pred, timeout: float) -> dict:
    """Long-poll get_job on ``url`` (one session) until ``pred(job)``; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    async with Client(url, raise_exceptions=True) as client:
        while True:
            job = (await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 1})).structured_content
            if pred(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} never reached the expected state; last: {job}")
            await asyncio.sleep(0.05)


async def _artifact_bytes(url: str, artifact_id: str) -> bytes:
    async with Client(url, raise_exceptions=True) as client:
        contents = (await client.read_resource(f"echotune://artifacts/{artifact_id}/content")).contents
        blob = contents[0]
        return base64.b64decode(blob.blob) if hasattr(blob, "blob") else blob.text.encode()


async def _job_artifacts(url: str, job_id: str) -> list[dict]:
    page = await _call(url, "list_artifacts", {"job_id": job_id, "limit": 100})
    return page["artifacts"]


def _kill(rep: Replica) -> None:
    os.kill(rep.proc.pid, signal.SIGKILL)
    rep.proc.wait(timeout=10)


GENERATE = {"prompt": "calm piano ballad in A minor", "duration_s": 90, "seed": 1234, "backend": "composer",
            "wait_seconds": 0}


async def test_killed_replica_job_is_taken_over_once_and_leaves_no_artifact_behind(tmp_path, mongo_uri):
    with replicas(tmp_path, mongo_uri) as reps:
        a, b = reps["A"], reps["B"]
        job = await _call(a.url, "generate_music", GENERATE)
        job_id = job["job_id"]
        # Kill A once its run has stored artifacts (the arrangement and the preview) but before it finished.
        running = await _until(a.url, job_id, lambda j: j["status"] != "queued" and len(j["artifacts"]) >= 2, 40)
        assert running["status"] == "running", running
        assert running["attempt"] == 1, (running, a.tail(), b.tail())  # still A's own run, not already taken over
        first_run = {art["artifact_id"] for art in running["artifacts"]}
        killed_at = time.time()
        _kill(a)
        done = await _until(b.url, job_id, lambda j: j["status"] not in ("queued", "running"), 90)
        assert done["status"] == "succeeded", (done, b.tail())
        assert done["attempt"] == 2
        [takeover] = done["takeovers"]
        assert takeover["at"] >= killed_at, (takeover, a.tail(), b.tail())  # taken over because A died, not before
        assert takeover["from_replica"] == "A" and takeover["to_replica"] == "B"
        assert takeover["reason"] == "lease expired"
        assert first_run <= set(takeover["discarded_artifact_ids"])
        assert done["result"]["attempt"] == 2 and "taken over by replica B" in done["message"]
        # Only the second run's artifacts exist for the job (with their content-credential manifests, which
        # name the job but are not listed on it), each whole: its bytes match its sha256.
        listed = {art["artifact_id"] for art in done["artifacts"]}
        stored = await _job_artifacts(b.url, job_id)
        manifests = {art["artifact_id"] for art in stored if art["kind"] == "manifest"}
        assert {art["artifact_id"] for art in stored} - manifests == listed
        assert all(art["parents"][0] in listed for art in stored if art["kind"] == "manifest")
        assert not {art["artifact_id"] for art in stored} & set(takeover["discarded_artifact_ids"])
        for art in stored:
            data = await _artifact_bytes(b.url, art["artifact_id"])
            assert hashlib.sha256(data).hexdigest() == art["sha256"] and len(data) == art["size"]
        # Deterministic: the arrangement the dead run had made, the new run made byte for byte again (the audio
        # files differ only in the tags that name their own artifact ids).
        first = {art["kind"]: art["sha256"] for art in running["artifacts"]}
        assert first["arrangement"] == {art["kind"]: art["sha256"] for art in done["artifacts"]}["arrangement"]
        # Exactly once: it stays succeeded, attempt 2, through further heartbeats of B.
        await asyncio.sleep(LEASE_S / 2)  # at least one more heartbeat of B
        later = await _call(b.url, "get_job", {"job_id": job_id})
        assert (later["status"], later["attempt"], later["updated_at"]) == ("succeeded", 2, done["updated_at"])


async def test_killed_replica_job_that_cannot_be_repeated_ends_interrupted(tmp_path, mongo_uri):
    with replicas(tmp_path, mongo_uri) as reps:
        a, b = reps["A"], reps["B"]
        first = await _call(a.url, "generate_music", {**GENERATE, "duration_s": 60, "wait_seconds": 25})
        first = await _until(a.url, first["job_id"], lambda j: j["status"] == "succeeded", 55)
        mix = next(art for art in first["artifacts"] if art["kind"] == "audio")
        # The signing key is shared configuration: what A signed, B vouches for as its own.
        check = await _call(b.url, "verify_credentials", {"artifact": mix["artifact_id"]})
        assert check["valid"] and check["signed_by_this_server"], check
        # regenerate_stem has no rebuilder (its new arrangement is not in its params): it cannot be taken over.
        job = await _call(a.url, "regenerate_stem", {"artifact": mix["artifact_id"], "stem": "chords",
                                                      "instruction": "sparser", "seed": 5, "wait_seconds": 0})
        job_id = job["job_id"]
        await _until(a.url, job_id, lambda j: j["status"] != "queued", 30)
        _kill(a)
        done = await _until(b.url, job_id, lambda j: j["status"] not in ("queued", "running"), 30)
        if done["status"] == "succeeded":
            pytest.fail("regenerate_stem finished before the kill; the test needs a longer piece")
        assert done["status"] == "interrupted" and done["attempt"] == 1 and not done["takeovers"], done
        await asyncio.sleep(LEASE_S / 2)  # at least one more heartbeat of B
        later = await _call(b.url, "get_job", {"job_id": job_id})
        assert (later["status"], later["updated_at"]) == ("interrupted", done["updated_at"])


async def test_client_on_another_replica_sees_the_job_finish(tmp_path, mongo_uri):
    with replicas(tmp_path, mongo_uri) as reps:
        a, b = reps["A"], reps["B"]
        job = await _call(a.url, "generate_music", {**GENERATE, "duration_s": 30})
        uri = f"echotune://jobs/{job['job_id']}"
        async with Client(b.url, raise_exceptions=True) as client:
            async with client.listen(resource_subscriptions=[uri]) as events:
                event = await asyncio.wait_for(events.__anext__(), 30)
                assert getattr(event, "uri", None) == uri
            state = await client.call_tool("get_job", {"job_id": job["job_id"], "wait_seconds": 25})
            for _ in range(3):
                if state.structured_content["status"] == "succeeded":
                    break
                state = await client.call_tool("get_job", {"job_id": job["job_id"], "wait_seconds": 25})
        assert state.structured_content["status"] == "succeeded"
        # A finished it; B only watched. If not, say who took it over and why, with both replicas' logs.
        assert state.structured_content["attempt"] == 1, (state.structured_content.get("takeovers"),
                                                          a.tail(), b.tail())


def test_replica_refuses_to_start_without_shared_keys(tmp_path, mongo_uri):
    (tmp_path / "R").mkdir()
    cmd = [*_command(), "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(free_port())]
    env = _env(tmp_path, "R", mongo_uri, "replicas_nokeys", None)
    del env["ECHOTUNE_SECRET_KEY"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 2, out
    assert "ECHOTUNE_SECRET_KEY" in out.stderr and "ECHOTUNE_SIGNING_KEY_FILE" in out.stderr, out.stderr
    # A key file that is named but absent is refused too: a replica never makes its own.
    env = _env(tmp_path, "R", mongo_uri, "replicas_nokeys", tmp_path / "absent.pem")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "absent.pem" in out.stderr, out.stderr
    assert not (tmp_path / "absent.pem").exists()
    assert not (tmp_path / "R" / "data" / "keys").exists()


# -- in one process: several Apps on one database stand for replicas --------------------------------------------
@contextmanager
def _test_resumer(calls: list[str], gate: asyncio.Event | None = None):
    """A resumable test tool (``test_resumable``): its work waits for ``gate``, stores one artifact, returns ok."""
    from echotune_mcp import jobs

    def rebuild(app, record):
        async def work(job):
            calls.append(job.manager.replica)
            if gate is not None:
                await asyncio.wait_for(gate.wait(), 20)
            await job.add_artifact(data=f"{record.id} by {job.manager.replica}".encode(), kind="json",
                                   media_type="application/json", name="out.json")
            return {"ok": True, "by": job.manager.replica}
        return work

    jobs.RESUMERS["test_resumable"] = rebuild
    try:
        yield rebuild
    finally:
        jobs.RESUMERS.pop("test_resumable", None)


def _replica_settings(settings, mongo_uri: str, db: str, name: str):
    from dataclasses import replace

    return replace(settings, mongodb_uri=mongo_uri, mongodb_db=db, replica_name=name, job_lease_seconds=30.0,
                   replica_poll_seconds=0.2)


async def _terminal(app, owner: str, job_id: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        job = await app.storage.jobs.get(owner, job_id)
        if job.status.terminal:
            return job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)


async def test_orphaned_jobs_are_claimed_or_interrupted_by_exactly_one_replica(settings, mongo_uri):
    from echotune_mcp.app import App
    from echotune_mcp.storage.records import JobRecord, JobStatus

    calls: list[str] = []
    apps = [App(_replica_settings(settings, mongo_uri, "race_once", n)) for n in ("B", "C", "D")]
    with _test_resumer(calls):
        async with apps[0], apps[1], apps[2]:
            store = apps[0].storage.jobs
            orphans = [JobRecord(owner="local", tool="test_resumable", status=JobStatus.running, replica="A",
                                 lease_owner="lease_of_a_dead_replica", lease_expires_at=time.time() - 1)
                       for _ in range(6)]
            for job in orphans:
                await store.insert(job)
            # Two replicas take over while a third interrupts, all at once: each job goes one way only.
            claimed = await asyncio.gather(apps[0].jobs._take_over(), apps[1].jobs._take_over(),
                                           apps[2].jobs.store.interrupt_dead(apps[2].jobs.leases.alive_ids))
            assert sum(claimed) == len(orphans)
            ends = [await _terminal(apps[0], "local", job.id) for job in orphans]
            for end in ends:
                if end.status == JobStatus.succeeded:
                    assert end.attempt == 2 and len(end.takeovers) == 1 and end.result["by"] == end.replica
                    assert end.takeovers[0]["from_replica"] == "A"
                    assert end.takeovers[0]["to_replica"] == end.replica
                else:
                    assert end.status == JobStatus.interrupted and end.attempt == 1 and not end.takeovers
            assert len(calls) == sum(e.status == JobStatus.succeeded for e in ends) == claimed[0] + claimed[1]


@pytest.mark.parametrize("notices", ["on its next write", "on its next heartbeat"])
async def test_a_frozen_replica_that_lost_its_job_writes_nothing_more(settings, mongo_uri, notices):
    from echotune_mcp.app import App
    from echotune_mcp.storage.records import JobStatus

    calls: list[str] = []
    gate = asyncio.Event()
    db = "frozen_" + notices.split()[-1]
    a = App(_replica_settings(settings, mongo_uri, db, "A"))
    b = App(_replica_settings(settings, mongo_uri, db, "B"))
    with _test_resumer(calls, gate) as rebuild:
        async with a, b:
            job = await a.jobs.submit(owner="local", tool="test_resumable", params={}, work=rebuild(a, None))
            while not calls:
                await asyncio.sleep(0.02)
            # A "freezes": its lease and its job's lease run out without A noticing.
            await a.storage.leases.coll.update("system", a.jobs.lease_id, {"expires_at": time.time() - 1})
            await a.storage.jobs.update("local", job.id, {"lease_expires_at": time.time() - 1})
            assert await b.jobs._take_over() == 1
            if notices == "on its next heartbeat":
                await a.jobs._renew()  # A wakes up: the job is not its own any more, so its work is stopped
                assert a.jobs._live[job.id].lost and a.jobs._live[job.id].cancel.is_set()
            gate.set()  # both runs go on: A's must neither attach an artifact nor end the job
            for _ in range(200):
                if job.id not in a.jobs._live:
                    break
                await asyncio.sleep(0.05)
            assert job.id not in a.jobs._live
            end = await _terminal(b, "local", job.id)
            assert end.status == JobStatus.succeeded and end.attempt == 2 and end.result["by"] == "B"
            arts, _ = await b.storage.artifacts.find("local", {"job_id": job.id})
            assert [x.id for x in arts] == end.artifact_ids and len(arts) == 1
            assert (await b.artifacts.read(arts[0])).endswith(b"by B")


@pytest.mark.parametrize("mode", ["auto", "poll"])
async def test_a_replica_announces_jobs_another_replica_runs(settings, mongo_uri, mode):
    from echotune_mcp.app import App
    from echotune_mcp.replicas import ReplicaWatcher

    gate = asyncio.Event()
    a = App(_replica_settings(settings, mongo_uri, f"announce_{mode}", "A"))
    b = App(_replica_settings(settings, mongo_uri, f"announce_{mode}", "B"))
    heard: list[str] = []

    async def listener(uri: str) -> None:
        heard.append(uri)

    async with a, b:
        await b.watcher.stop()
        b.watcher = ReplicaWatcher(b, mode=mode)
        b.watcher.start()
        await asyncio.wait_for(b.watcher.ready.wait(), 10)
        assert b.watcher.mode == ("change-stream" if mode == "auto" else "polling")  # SecantusDB has them
        b.add_update_listener(listener)

        async def work(job):
            await job.progress(0.5, "half way")
            await asyncio.wait_for(gate.wait(), 20)
            return {"ok": True}

        job = await a.jobs.submit(owner="local", tool="announce_test", params={}, work=work)
        uri = f"echotune://jobs/{job.id}"
        deadline = time.monotonic() + 10
        while uri not in heard:
            assert time.monotonic() < deadline, "B never announced the job A runs"
            await asyncio.sleep(0.05)
        heard.clear()
        gate.set()
        deadline = time.monotonic() + 10
        while uri not in heard or not (await b.storage.jobs.get("local", job.id)).status.terminal:
            assert time.monotonic() < deadline, "B never announced that the job ended"
            await asyncio.sleep(0.05)


async def test_cancel_through_another_replica_stops_the_work(settings, mongo_uri):
    from echotune_mcp.app import App
    from echotune_mcp.storage.records import JobStatus

    stopped = asyncio.Event()
    a = App(_replica_settings(settings, mongo_uri, "cancel_across", "A"))
    b = App(_replica_settings(settings, mongo_uri, "cancel_across", "B"))

    async def work(job):
        try:
            while True:
                await job.progress(0.1, "working")  # raises JobCancelled once the cancel is seen
                await asyncio.sleep(0.05)
        finally:
            stopped.set()

    async with a, b:
        job = await a.jobs.submit(owner="local", tool="cancel_test", params={}, work=work)
        await asyncio.sleep(0.2)
        assert (await b.jobs.cancel("local", job.id)).status == JobStatus.cancelled
        await a.jobs._renew()  # A's next heartbeat reads the cancel B stored
        await asyncio.wait_for(stopped.wait(), 10)
        end = await _terminal(a, "local", job.id)
        assert end.status == JobStatus.cancelled and end.message == "cancelled by request"


@pytest.mark.parametrize("overrides,words", [
    ({"replicated": True}, ["ECHOTUNE_MONGODB_URI", "ECHOTUNE_SECRET_KEY", "ECHOTUNE_SIGNING_KEY_FILE"]),
    ({"replica_name": "a b"}, ["ECHOTUNE_REPLICA_NAME"]),
    ({"replica_poll_seconds": 0.0}, ["ECHOTUNE_REPLICA_POLL_SECONDS", "0.1 to 60"]),
])
def test_replica_settings_are_checked(settings, overrides, words):
    from dataclasses import replace

    with pytest.raises(ValueError) as exc:
        replace(settings, **overrides).validate()
    for word in words:
        assert word in str(exc.value)


async def test_a_job_that_took_down_its_replicas_three_times_is_interrupted(settings, mongo_uri):
    from echotune_mcp.app import App
    from echotune_mcp.jobs import MAX_ATTEMPTS
    from echotune_mcp.storage.records import JobRecord, JobStatus

    calls: list[str] = []
    with _test_resumer(calls):
        async with App(_replica_settings(settings, mongo_uri, "max_attempts", "B")) as b:
            job = JobRecord(owner="local", tool="test_resumable", status=JobStatus.running, replica="A",
                            attempt=MAX_ATTEMPTS, lease_owner="lease_gone", lease_expires_at=time.time() - 1)
            await b.storage.jobs.insert(job)
            await b.jobs._reap()
            end = await b.storage.jobs.get("local", job.id)
            assert end.status == JobStatus.interrupted and end.attempt == MAX_ATTEMPTS and not calls


async def test_a_database_without_change_streams_is_polled(settings, mongo_uri, monkeypatch):
    from pymongo.errors import OperationFailure

    from echotune_mcp.app import App
    from echotune_mcp.replicas import ReplicaWatcher

    async with App(_replica_settings(settings, mongo_uri, "no_streams", "B")) as b:
        await b.watcher.stop()
        raw = b.storage.collection("jobs").coll

        async def refuse(*_args, **_kwargs):  # what a standalone mongod answers
            raise OperationFailure("The $changeStream stage is only supported on replica sets", code=40573)

        monkeypatch.setattr(type(raw), "watch", refuse)
        b.watcher = ReplicaWatcher(b)
        b.watcher.start()
        await asyncio.wait_for(b.watcher.ready.wait(), 10)
        assert b.watcher.mode == "polling"
