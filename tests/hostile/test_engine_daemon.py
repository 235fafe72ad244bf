"""Issue #13 items 1 and 2: the engine daemon is not an open door, and a silent one never wedges a job.

A real daemon (``daemon.build_app`` under uvicorn, a tiny random MusicGen pulled from a folder) gets
hostile requests: foreign Host, any Origin, wrong token, oversized and malformed bodies; each is
refused with the status and field named, and a valid request afterwards still generates. Fake
daemons on raw sockets (127.0.0.1 only) accept and then stay silent, to show that RemoteEngine's
timeouts fail the job in a bounded time and that cancel_job ends it within 2 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from contextlib import contextmanager

import pytest


def _need(module: str):
    """Import a dependency; with CI set a missing one fails the test instead of skipping it."""
    if os.environ.get("CI"):
        return __import__(module)
    return pytest.importorskip(module)


_need("torch")
_need("transformers")
httpx = _need("httpx")

from echotune_mcp.engine import daemon  # noqa: E402
from echotune_mcp.engine.remote import RemoteEngine, audio_to_b64  # noqa: E402


# -- a fake daemon on a raw socket ---------------------------------------------------------------------------
class FakeDaemon:
    """Answers /v1/health like a daemon with musicgen-small; /v1/generate per ``mode``:
    "silent": accepts the connection and never answers; "accepted": sends the headers and the accepted
    line, then nothing. Records when the client closed the generate connection."""

    def __init__(self, mode: str):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.generating = threading.Event()  # a generate request arrived (and, in "accepted", was answered)
        self.closed = threading.Event()  # the client closed the generate connection
        self.closed_at = 0.0
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        if data.startswith(b"GET /v1/health"):
            body = json.dumps({"ok": True, "musicgen": ["musicgen-small"], "melody": []}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            conn.close()
            return
        if self.mode == "accepted":
            line = json.dumps({"kind": "accepted", "request_id": "r1", "info": {"model_id": "musicgen-small"}}) + "\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + f"{len(line):x}\r\n{line}\r\n".encode())
        self.generating.set()
        while True:  # read (and drop) the body, then wait for the client to hang up
            try:
                if not conn.recv(65536):
                    break
            except OSError:
                break
        self.closed_at = time.monotonic()
        self.closed.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@contextmanager
def fake_daemon(mode: str):
    fake = FakeDaemon(mode)
    try:
        yield fake
    finally:
        fake.close()


async def _wait(event: threading.Event, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not event.is_set():
        assert time.monotonic() < deadline, "timed out waiting for the fake daemon"
        await asyncio.sleep(0.02)


async def _terminal_job(client, job_id: str, timeout: float) -> tuple[dict, float]:
    start = time.monotonic()
    while True:
        job = (await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 1})).structured_content
        if job["status"] not in ("queued", "running"):
            return job, time.monotonic() - start
        assert time.monotonic() - start < timeout, f"the job is still {job['status']} after {timeout} s"


# -- item 1: a silent daemon never wedges a job --------------------------------------------------------------
def test_a_daemon_that_accepts_and_never_answers_fails_in_bounded_time():
    async def scenario():
        with fake_daemon("silent") as fake:
            engine = RemoteEngine(fake.url, read_timeout_s=0.5, connect_timeout_s=0.5)
            start = time.monotonic()
            with pytest.raises(RuntimeError, match="ECHOTUNE_ENGINE_READ_TIMEOUT_S"):
                await engine.generate(model_id="auto", prompt="x", duration_s=1.0)
            assert time.monotonic() - start < 3
            assert fake.generating.is_set()
            await _wait(fake.closed, 2)  # nothing left open
        with fake_daemon("accepted") as fake:  # accepted, then silence: the event stream ends in an error
            handle = await RemoteEngine(fake.url, read_timeout_s=0.5).generate(model_id="auto", prompt="x",
                                                                              duration_s=1.0)
            start = time.monotonic()
            events = [e async for e in handle.events()]
            assert time.monotonic() - start < 3
            assert [e.kind for e in events] == ["error"] and "sent nothing for 0.5 s" in events[0].message
            await _wait(fake.closed, 2)

    asyncio.run(scenario())


def test_a_silent_engine_fails_the_musicgen_job_in_bounded_time(make_client):
    async def scenario():
        with fake_daemon("accepted") as fake:
            async with make_client(engine_url=fake.url, engine_read_timeout_s=1.0) as (client, _app):
                started = await client.call_tool("generate_music", {"prompt": "ambient pad", "duration_s": 5,
                                                                    "backend": "musicgen", "wait_seconds": 0})
                assert not started.is_error, started.content
                job, took = await _terminal_job(client, started.structured_content["job_id"], timeout=15)
                assert job["status"] == "failed", job
                assert "sent nothing for 1 s" in job["error"] and "ECHOTUNE_ENGINE_READ_TIMEOUT_S" in job["error"]
                assert took < 6

    asyncio.run(scenario())


def test_cancel_job_ends_a_musicgen_job_within_2s_while_the_engine_sends_nothing(make_client):
    async def scenario():
        with fake_daemon("accepted") as fake:
            async with make_client(engine_url=fake.url, engine_read_timeout_s=120.0) as (client, app):
                started = await client.call_tool("generate_music", {"prompt": "ambient pad", "duration_s": 60,
                                                                    "backend": "musicgen", "wait_seconds": 0})
                job_id = started.structured_content["job_id"]
                await _wait(fake.generating, 20)
                await asyncio.sleep(0.3)  # the job is now waiting for an event that never comes
                task = app.jobs._live[job_id].task
                start = time.monotonic()
                res = await client.call_tool("cancel_job", {"job_id": job_id})
                assert not res.is_error
                while not (task.done() and fake.closed.is_set()):
                    assert time.monotonic() - start < 2, (
                        f"2 s after cancel_job: job work done={task.done()}, stream closed={fake.closed.is_set()}")
                    await asyncio.sleep(0.02)
                assert fake.closed_at - start < 2  # the daemon was told (its slot would be freed)
                job = (await client.call_tool("get_job", {"job_id": job_id})).structured_content
                assert job["status"] == "cancelled"

    asyncio.run(scenario())


# -- item 2: the real daemon refuses what it must --------------------------------------------------------------
@pytest.fixture
def live_daemon(settings, tmp_path):
    """``build_app`` under uvicorn on 127.0.0.1 in this process, with a tiny checkpoint and token ``s3cret``."""
    import uvicorn
    from dataclasses import replace

    from echotune_mcp.engine.model_manager import ModelManager
    from tests.engine.test_musicgen_tool import save_tiny_checkpoint

    src = tmp_path / "tiny-musicgen"
    save_tiny_checkpoint(src)
    ModelManager(settings).pull("musicgen-small", from_dir=src, log=lambda _m: None)
    local = replace(settings, engine_token="s3cret", max_generation_seconds=120.0)
    app = daemon.build_app(local)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the daemon did not start"
        time.sleep(0.05)
    port = sock.getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", port, app
    finally:
        server.should_exit = True
        thread.join(10)
        from echotune_mcp.engine.musicgen_backend import close_engines

        close_engines()


AUTH = {"Authorization": "Bearer s3cret"}


def _raw(port: int, head: bytes, body: bytes = b"", read_timeout: float = 5.0) -> bytes:
    """Send raw bytes and return what comes back before the server closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(head + body)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and b'"error"' in out:
                    break
        except TimeoutError:
            pass
        return out


def test_the_daemon_refuses_foreign_hosts_origins_and_missing_tokens(live_daemon):
    url, port, _app = live_daemon
    ok = httpx.get(f"{url}/v1/health", headers=AUTH, timeout=5)
    assert ok.status_code == 200 and ok.json()["musicgen"] == ["musicgen-small"]
    for host in ("localhost", f"localhost:{port}", f"[::1]:{port}", f"127.0.0.1:{port}"):
        assert httpx.get(f"{url}/v1/health", headers={**AUTH, "Host": host}, timeout=5).status_code == 200, host
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", f"127.0.0.2:{port}", "0.0.0.0",
                 f"localhost.:{port}", ""):
        bad = httpx.get(f"{url}/v1/health", headers={**AUTH, "Host": host}, timeout=5)
        assert bad.status_code == 403 and "127.0.0.1, localhost or [::1]" in bad.json()["error"], host
    for origin in (url, "null", "https://evil.example"):
        bad = httpx.post(f"{url}/v1/generate", headers={**AUTH, "Origin": origin}, timeout=5,
                         json={"prompt": "x", "duration_s": 0.1})
        assert bad.status_code == 403 and "web pages" in bad.json()["error"], origin
    bad = httpx.get(f"{url}/v1/health", headers={**AUTH, "Sec-Fetch-Site": "cross-site"}, timeout=5)
    assert bad.status_code == 403
    for headers in ({}, {"Authorization": "Bearer s3cre"}, {"Authorization": "Bearer s3cretX"},
                    {"Authorization": "s3cret"}, {"Authorization": "Basic czNjcmV0"}):
        for call in (lambda: httpx.get(f"{url}/v1/health", headers=headers, timeout=5),
                     lambda: httpx.post(f"{url}/v1/generate", headers=headers, json={"prompt": "x"}, timeout=5)):
            res = call()
            assert res.status_code == 401 and "ECHOTUNE_ENGINE_TOKEN" in res.json()["error"], headers
    # RemoteEngine carries the token; without it the daemon's checkpoints are invisible
    assert RemoteEngine(url, token="s3cret").downloaded() == ["musicgen-small"]
    assert RemoteEngine(url).downloaded() == []


def test_the_daemon_refuses_oversized_bodies_before_reading_them(live_daemon, monkeypatch):
    url, port, _app = live_daemon
    head = (f"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer s3cret\r\n"
            f"Content-Type: application/json\r\nContent-Length: {daemon.MAX_BODY_BYTES + 1}\r\n\r\n").encode()
    start = time.monotonic()
    answer = _raw(port, head)  # the headers alone: the answer must come without the body being sent
    assert answer.startswith(b"HTTP/1.1 413") and b"byte limit" in answer, answer[:300]
    assert time.monotonic() - start < 3
    monkeypatch.setattr(daemon, "MAX_BODY_BYTES", 4096)  # a chunked body (no Content-Length) is counted as it comes

    def chunks():
        for _ in range(64):
            yield b" " * 1024

    res = httpx.post(f"{url}/v1/generate", headers=AUTH, content=chunks(), timeout=10)
    assert res.status_code == 413 and "4096 byte limit" in res.json()["error"]


def _clip(seconds: float, sr: int = 16000, value: float = 0.1) -> dict:
    import numpy as np

    return {"audio_b64": audio_to_b64(np.full(int(seconds * sr), value, np.float32)), "sample_rate": sr}


BAD_BODIES = [
    ({"prompt": "x", "duration_s": 0}, "duration_s"),
    ({"prompt": "x", "duration_s": -1}, "duration_s"),
    ({"prompt": "x", "duration_s": 121}, "duration_s"),
    ({"prompt": "x", "duration_s": "long"}, "duration_s"),
    ({"prompt": "x", "duration_s": float("nan")}, "duration_s"),
    ({"prompt": "x", "duration_s": float("inf")}, "duration_s"),
    ({"prompt": "x" * 4001}, "prompt"),
    ({"prompt": ["x"]}, "prompt"),
    ({"model_id": "m" * 65}, "model_id"),
    ({"model_id": "../../etc"}, "model_id"),
    ({"model_id": "htdemucs"}, "model_id"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**31}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"temperature": 0}, "temperature"),
    ({"temperature": 1e9}, "temperature"),
    ({"top_k": -1}, "top_k"),
    ({"top_k": 10**9}, "top_k"),
    ({"top_p": 1.5}, "top_p"),
    ({"guidance_scale": -3}, "guidance_scale"),
    ({"priority": 10**12}, "priority"),
    ({"preview_every_s": -1}, "preview_every_s"),
    ({"bogus": 1}, "bogus"),
    ({"continuation": "AAAA"}, "continuation"),
    ({"continuation": {"audio_b64": "not base64!", "sample_rate": 16000}}, "continuation"),
    ({"continuation": {"audio_b64": "AAA=", "sample_rate": 16000}}, "continuation"),  # 2 bytes: not a sample
    ({"continuation": {"audio_b64": "AAAAAA==", "sample_rate": 0}}, "continuation.sample_rate"),
    ({"continuation": {"audio_b64": "AAAAAA==", "sample_rate": 10**9}}, "continuation.sample_rate"),
    ({"continuation": {**_clip(0.1), "extra": 1}}, "continuation.extra"),
    ({"continuation": _clip(0.1, value=float("nan"))}, "continuation"),
    ({"continuation": _clip(33.0, sr=8000)}, "continuation"),
    ({"melody": _clip(1.0)}, "melody"),  # no musicgen-melody weights here
]


def test_bad_fields_get_400_naming_the_field_and_the_worker_keeps_serving(live_daemon):
    url, _port, _app = live_daemon
    for body, field in BAD_BODIES:
        res = httpx.post(f"{url}/v1/generate", headers=AUTH, timeout=10,
                         content=json.dumps({"prompt": "x", "duration_s": 0.1, **body}))
        assert res.status_code == 400, (body, res.status_code, res.text[:300])
        assert res.json()["field"] == field and field in res.json()["error"], (body, res.json())
    for raw in (b"{", b"[]", b'"x"', b"\xff\xfe"):
        res = httpx.post(f"{url}/v1/generate", headers=AUTH, content=raw, timeout=10)
        assert res.status_code == 400 and res.json()["field"] == "body", raw

    async def valid():  # the same daemon, after all that: a real generation end to end
        engine = RemoteEngine(url, token="s3cret", read_timeout_s=30)
        handle = await engine.generate(model_id="auto", prompt="ambient pad", duration_s=0.3, seed=1,
                                       continuation=None, melody=None)
        events = [e async for e in handle.events()]
        assert events[-1].kind == "result", [(e.kind, e.message) for e in events]
        assert events[-1].audio is not None and abs(events[-1].audio.shape[1] / events[-1].sample_rate - 0.3) < 0.05
        assert handle.info["model_id"] == "musicgen-small"
        wrong = RemoteEngine(url, token="nope")
        with pytest.raises(ValueError, match="ECHOTUNE_ENGINE_TOKEN"):
            await wrong.generate(model_id="auto", prompt="x", duration_s=0.1)

    asyncio.run(valid())
    health = httpx.get(f"{url}/v1/health", headers=AUTH, timeout=5).json()
    assert health["load"]["musicgen-small"] == {"running": 0, "waiting": 0}


def test_heartbeats_keep_a_slow_but_live_daemon_within_the_read_timeout(live_daemon, monkeypatch):
    """Loading a model can take minutes; the heartbeat tells the client the daemon is alive meanwhile."""
    url, _port, app = live_daemon
    monkeypatch.setattr(daemon, "HEARTBEAT_S", 0.1)
    engine = app.state.engine
    real = engine.generate

    async def slow_generate(**kwargs):  # as if the model took 1.5 s to load
        await asyncio.sleep(1.5)
        return await real(**kwargs)

    monkeypatch.setattr(engine, "generate", slow_generate)

    async def scenario():
        handle = await RemoteEngine(url, token="s3cret", read_timeout_s=0.5).generate(
            model_id="auto", prompt="ambient pad", duration_s=0.2, seed=2)
        events = [e async for e in handle.events()]
        assert events[-1].kind == "result", [(e.kind, e.message) for e in events]

    asyncio.run(scenario())


@pytest.mark.parametrize("field", ["engine_connect_timeout_s", "engine_read_timeout_s"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan"), 1e9])
def test_engine_timeouts_must_be_bounded(field, value):
    from echotune_mcp.config import Settings

    with pytest.raises(ValueError, match=f"ECHOTUNE_ENGINE_{field.split('_')[1].upper()}_TIMEOUT_S"):
        Settings(**{field: value}).validate()
    Settings(**{field: 2.5}).validate()
