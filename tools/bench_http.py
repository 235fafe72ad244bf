"""Load on the HTTP transport with authorization on: N concurrent MCP clients, each its own principal, M calls each.

Starts a JWKS issuer of its own on 127.0.0.1 (tools/jwks_issuer.py: an RSA key generated at start, RFC 8414
metadata and a JWKS) and the real server (``echotune-mcp serve --transport http`` in a subprocess, a temporary data
dir, authorization configured against that issuer). Every client gets one token (its own ``sub``, scopes
``echotune:read echotune:write``) and makes its calls through the MCP Python client over streamable HTTP, one after
another: every ``--job-every``-th call a small job (an import of a three-play listening history of its own, sent as
``data_base64``: a job through the queue, the per-principal data key and the store, in milliseconds of CPU), the
others reads (``list_artifacts``, ``list_jobs``, ``providers_status`` and a read of the client's own job resource,
in turn). A call counts as an error when it raises, answers ``isError``, or (a job) does not end ``succeeded`` with
its three plays imported. (A composer piece is not a small job: a 2 s one took seconds with 4 clients.)

Rate limits are on, at a stated deployment value: ``ECHOTUNE_RATE_PER_MINUTE`` (default the server's own 120) and
``ECHOTUNE_RATE_BURST`` (default: the server's 60, raised to 1.25x what one client's calls cost when that is more,
so a client that makes its calls in a burst is not refused); both are printed.

Prints a table (read latencies per tool, job latencies per kind: a job's latency is from its call until it has
finished, polls included) and one JSON line ``{"bench": "http", "clients": 50, "calls": 1000, "errors": 0,
"p50_ms": ..., "p99_ms": ...}`` whose p50/p99 are of the reads. Every wait is bounded (``--timeout`` for the whole
run); the server and the issuer are always stopped.
Usage: .venv/bin/python tools/bench_http.py [--clients 50] [--calls 20] [--json-only]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: tools/ is on the path, the repository root is not
    sys.path.insert(0, str(ROOT))

from tools.jwks_issuer import Issuer  # noqa: E402

SCOPES = ("echotune:read", "echotune:write")
TOOLSETS = "jobs,artifacts,compose,listening,curation"
READS = ("list_artifacts", "list_jobs", "providers_status", "read_job_resource")
JOBS = ("import_listening_history",)
PLAYS_PER_JOB = 3
# The server's default costs (config.RATE_COST_DEFAULTS) of what the clients call: a read 1, a job 5.
COSTS = {"list_artifacts": 1.0, "list_jobs": 1.0, "providers_status": 1.0, "read_job_resource": 1.0, "get_job": 1.0,
         "import_listening_history": 5.0}
DEFAULT_RATE_PER_MINUTE = 120.0
DEFAULT_RATE_BURST = 60.0
CALL_TIMEOUT_S = 60.0  # one call's bound; a job's whole life (call + polls) gets JOB_TIMEOUT_S
JOB_TIMEOUT_S = 120.0


def plan(calls: int, job_every: int) -> list[str]:
    """One client's calls in order: a job first (so the job resource read has a job of this client's to read),
    then every ``job_every``-th call a job; reads in turn in between."""
    out, jobs, reads = [], 0, 0
    for i in range(calls):
        if job_every > 0 and i % job_every == 0:
            out.append(JOBS[jobs % len(JOBS)])
            jobs += 1
        else:
            out.append(READS[reads % len(READS)])
            reads += 1
    return out


def plan_cost(calls: int, job_every: int) -> float:
    return sum(COSTS[c] for c in plan(calls, job_every))


def history_b64(client: int, call: int) -> str:
    """A tiny listening history in the tsv format (user, item, weight, timestamp), new plays for every call."""
    rows = "".join(f"me\tartist {client} - track {call}.{k}\t1\t{1_700_000_000 + 3600 * call + 60 * k}\n"
                   for k in range(PLAYS_PER_JOB))
    return base64.b64encode(("user\titem\tweight\ttimestamp\n" + rows).encode()).decode()


@dataclass
class Sample:
    name: str
    ms: float
    ok: bool
    error: str = ""


@dataclass
class ClientResult:
    samples: list[Sample] = field(default_factory=list)
    polls: int = 0


# -- the server ---------------------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, issuer: Issuer, rate_per_minute: float, rate_burst: float,
                 timeout_s: float = 90.0) -> tuple[subprocess.Popen[bytes], str, Path]:
    """``echotune-mcp serve --transport http`` on a free loopback port with a fresh data dir and auth against
    ``issuer``; no ECHOTUNE_* setting of the caller's environment leaks in. Returns (process, base URL, log)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOTUNE_") and k != "OTEL_EXPORTER_OTLP_ENDPOINT"}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ECHOTUNE_DATA_DIR": str(tmp / "data"),
                "ECHOTUNE_CONFIG": str(tmp / "absent.toml"), "ECHOTUNE_TOOLSETS": TOOLSETS,
                "ECHOTUNE_AUTH_ISSUER": issuer.url, "ECHOTUNE_RATE_PER_MINUTE": f"{rate_per_minute:g}",
                "ECHOTUNE_RATE_BURST": f"{rate_burst:g}"})
    log = tmp / "server.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "echotune_mcp", "serve", "--transport", "http", "--port",
                                 str(port)], env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not answer /healthz in {timeout_s:g} s:\n{tail(log)}")
            time.sleep(0.2)
    except BaseException:
        stop_server(proc)
        raise
    return proc, url, log


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s; always reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else ""


# -- the clients --------------------------------------------------------------------------------------------
def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in (result.content or []))[:300]


async def run_client(idx: int, mcp_url: str, token: str, calls: list[str], start: StartLine) -> ClientResult:
    """One principal's session: connect, wait for every client to be connected, then make ``calls`` in order."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    out = ClientResult()
    job_id: str | None = None
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"},
                                  timeout=httpx2.Timeout(CALL_TIMEOUT_S)) as http:
        async with Client(streamable_http_client(mcp_url, http_client=http)) as client:
            await start.arrive()
            for n, name in enumerate(calls):
                t0 = time.perf_counter()
                try:
                    if name == "read_job_resource":
                        if job_id is None:
                            raise RuntimeError("no job of this client to read (its first job failed)")
                        res = await asyncio.wait_for(client.read_resource(f"echotune://jobs/{job_id}"),
                                                     CALL_TIMEOUT_S)
                        body = json.loads(res.contents[0].text)
                        ok, err = body.get("job_id") == job_id, "" if body.get("job_id") == job_id else str(body)[:300]
                    elif name in JOBS:
                        args = {"data_base64": history_b64(idx, n), "filename": f"history-{idx}-{n}.tsv",
                                "format": "tsv", "wait_seconds": 20}
                        ok, err, jid, polls = await asyncio.wait_for(_job(client, name, args), JOB_TIMEOUT_S)
                        out.polls += polls
                        if jid is not None:
                            job_id = jid
                    else:
                        res = await asyncio.wait_for(client.call_tool(name, {}), CALL_TIMEOUT_S)
                        ok, err = not res.is_error, _text(res) if res.is_error else ""
                except Exception as exc:  # noqa: BLE001  (every failure is counted and shown, none stops the run)
                    ok, err = False, f"{type(exc).__name__}: {exc}"[:300]
                out.samples.append(Sample(name, (time.perf_counter() - t0) * 1000.0, ok, err))
    return out


async def _job(client: Any, name: str, args: dict[str, Any]) -> tuple[bool, str, str | None, int]:
    """Start a job and follow it to its end: (succeeded, error, job id, polls)."""
    res = await client.call_tool(name, args)
    if res.is_error:
        return False, _text(res), None, 0
    view = res.structured_content or {}
    job_id, polls = view.get("job_id"), 0
    while view.get("status") in ("queued", "running"):
        polls += 1
        res = await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 20})
        if res.is_error:
            return False, _text(res), job_id, polls
        view = res.structured_content or {}
    if view.get("status") != "succeeded":
        return False, f"job {job_id} ended {view.get('status')}: {view.get('error')}", job_id, polls
    imported = (view.get("result") or {}).get("imported")
    if imported != PLAYS_PER_JOB:
        return False, f"job {job_id} imported {imported} of {PLAYS_PER_JOB} plays: {view.get('result')}", job_id, polls
    return True, "", job_id, polls


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


class StartLine:
    """Clients connect first (initialize is not what is measured) and wait here; then all start at once."""

    def __init__(self) -> None:
        self.connected = 0
        self.go = asyncio.Event()

    async def arrive(self) -> None:
        self.connected += 1
        await self.go.wait()


async def bench(clients: int, calls: int, job_every: int, rate_per_minute: float, rate_burst: float,
                timeout_s: float, log_lines: list[str]) -> dict[str, Any]:
    issuer = Issuer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-http-") as tmpdir:
            proc, url, log = await asyncio.to_thread(start_server, Path(tmpdir), issuer, rate_per_minute, rate_burst)
            try:
                issuer.audience = f"{url}/mcp"
                results, wall, failures, cpu = await _drive(issuer, f"{url}/mcp", clients, plan(calls, job_every),
                                                            timeout_s, proc.pid)
            finally:
                await asyncio.to_thread(stop_server, proc)
            server_log = tail(log, 2000)
    finally:
        issuer.stop()
    samples = [s for r in results for s in r.samples]
    missing = clients * calls - len(samples)  # calls never made (a session that failed or did not finish)
    errors = sum(not s.ok for s in samples) + missing
    for s in samples:
        if not s.ok and len(failures) < 10:
            failures.append(f"{s.name}: {s.error}")
    if errors and server_log:
        log_lines.append("server log (end):\n" + server_log)
    log_lines.extend(failures)
    read_ms = [s.ms for s in samples if s.name in READS]
    job_ms = [s.ms for s in samples if s.name in JOBS]
    rows = []
    for name in (*READS, *JOBS):
        mine = [s for s in samples if s.name == name]
        ms = [s.ms for s in mine]
        if ms:
            rows.append((name, "read" if name in READS else "job", len(ms), sum(not s.ok for s in mine),
                         percentile(ms, 50), percentile(ms, 90), percentile(ms, 99), max(ms)))
    return {"rows": rows, "wall_s": wall, "polls": sum(r.polls for r in results), "cpu": cpu,
            "line": {"bench": "http", "clients": clients, "calls": clients * calls, "errors": errors,
                     "p50_ms": _ms(percentile(read_ms, 50)), "p99_ms": _ms(percentile(read_ms, 99)),
                     "reads": len(read_ms), "jobs": len(job_ms),
                     "job_p50_ms": _ms(percentile(job_ms, 50)), "job_p99_ms": _ms(percentile(job_ms, 99)),
                     "wall_s": round(wall, 2), "server_cpu_s": _ms(cpu["server_cpu_s"]),
                     "clients_cpu_s": _ms(cpu["clients_cpu_s"]), "rate_per_minute": rate_per_minute,
                     "rate_burst": rate_burst}}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _cpu_s(pid: int | None = None) -> float | None:
    """CPU seconds (user + system) of this process, or of process ``pid`` (Linux /proc; None elsewhere)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


async def _drive(issuer: Issuer, mcp_url: str, clients: int, calls: list[str], timeout_s: float,
                 server_pid: int) -> tuple[list[ClientResult], float, list[str], dict[str, float | None]]:
    """Run the clients: connect all (at most 120 s), start them together, wait at most ``timeout_s``. Also
    returns the CPU seconds the server and this process (the clients) spent while the calls ran."""
    start = StartLine()
    tasks = [asyncio.create_task(run_client(i, mcp_url, issuer.token(f"bench-user-{i}", SCOPES), calls, start))
             for i in range(clients)]
    connect_deadline = time.monotonic() + 120.0
    while start.connected + sum(t.done() for t in tasks) < clients and time.monotonic() < connect_deadline:
        await asyncio.sleep(0.05)
    cpu0 = (_cpu_s(server_pid), _cpu_s())
    start.go.set()
    t0 = time.perf_counter()
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    wall = time.perf_counter() - t0
    cpu1 = (_cpu_s(server_pid), _cpu_s())
    cpu = {"server_cpu_s": None if None in (cpu0[0], cpu1[0]) else cpu1[0] - cpu0[0],  # type: ignore[operator]
           "clients_cpu_s": cpu1[1] - cpu0[1]}  # type: ignore[operator]
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=15)
    results: list[ClientResult] = []
    failures: list[str] = []
    for t in tasks:
        if t in pending:
            failures.append(f"a client did not finish in {timeout_s:g} s")
            results.append(ClientResult())
        elif t.exception() is not None:
            exc = t.exception()
            failures.append(f"a client's session failed: {type(exc).__name__}: {exc}"[:500])
            results.append(ClientResult())
        else:
            results.append(t.result())
    return results, wall, failures, cpu


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=50, help="concurrent clients, each its own principal (1-500)")
    p.add_argument("--calls", type=int, default=20, help="calls per client (1-1000)")
    p.add_argument("--job-every", type=int, default=5, help="every n-th call of a client is a small job (0: none)")
    p.add_argument("--rate-per-minute", type=float, default=DEFAULT_RATE_PER_MINUTE,
                   help="ECHOTUNE_RATE_PER_MINUTE for the server (default its own, 120)")
    p.add_argument("--rate-burst", type=float, default=None,
                   help="ECHOTUNE_RATE_BURST for the server (default 60, or one client's plan cost if higher)")
    p.add_argument("--timeout", type=float, default=600.0, help="bound on the whole run, seconds")
    p.add_argument("--json-only", action="store_true", help="print only the JSON line")
    a = p.parse_args(argv)
    if not 1 <= a.clients <= 500 or not 1 <= a.calls <= 1000 or a.job_every < 0 or a.timeout <= 0:
        p.error("--clients 1-500, --calls 1-1000, --job-every 0 or more, --timeout above 0")
    cost = plan_cost(a.calls, a.job_every)
    burst = a.rate_burst if a.rate_burst is not None else max(DEFAULT_RATE_BURST, math.ceil(cost * 1.25))
    log_lines: list[str] = []
    try:
        out = asyncio.run(bench(a.clients, a.calls, a.job_every, a.rate_per_minute, burst, a.timeout, log_lines))
    except (RuntimeError, TimeoutError) as exc:  # the server did not start (its log's end is in the message)
        print(f"bench_http: {exc}", file=sys.stderr)
        return 2
    line = out["line"]
    if not a.json_only:
        print(f"# {a.clients} clients x {a.calls} calls over streamable HTTP, auth on (RS256 tokens of a local "
              f"JWKS issuer), {platform.python_version()}, {os.cpu_count()} CPUs")
        print(f"# rate limits: ECHOTUNE_RATE_PER_MINUTE={a.rate_per_minute:g} ECHOTUNE_RATE_BURST={burst:g} "
              f"(default costs: read 1, job 5; one client's {a.calls} calls cost {cost:g} units, "
              f"plus 1 per job poll)")
        cpu = out["cpu"]
        server_cpu = "?" if cpu["server_cpu_s"] is None else f"{cpu['server_cpu_s']:.1f}"
        print(f"# wall {out['wall_s']:.2f} s; CPU while the calls ran: server {server_cpu} s, clients (this process, "
              f"one event loop) {cpu['clients_cpu_s']:.1f} s; {out['polls']} job polls (get_job) on top of the calls")
        print(f"| {'call':<26} | kind | {'n':>5} | errors | {'p50 ms':>8} | {'p90 ms':>8} | {'p99 ms':>8} | "
              f"{'max ms':>8} |")
        print(f"|{'-' * 28}|------|{'-' * 7}|--------|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
        for name, kind, n, err, p50, p90, p99, mx in out["rows"]:
            print(f"| {name:<26} | {kind:<4} | {n:>5} | {err:>6} | {p50:>8.1f} | {p90:>8.1f} | {p99:>8.1f} | "
                  f"{mx:>8.1f} |")
    for ln in log_lines:  # what went wrong, if anything (stderr, also with --json-only)
        print(ln, file=sys.stderr)
    print(json.dumps(line))
    sys.stdout.flush()
    return 0 if line["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
