"""tools/bench_http.py at small scale: a real issuer, the real HTTP server in a subprocess with auth on, and MCP
clients of distinct principals. Checks that the run has no errors and the JSON line's shape (never timings), and
that an error (a call refused by the rate limit) is counted, not hidden."""

from __future__ import annotations

import json

from tools import bench_http

KEYS = {"bench", "clients", "calls", "errors", "p50_ms", "p99_ms", "reads", "jobs", "job_p50_ms", "job_p99_ms",
        "wall_s", "server_cpu_s", "clients_cpu_s", "rate_per_minute", "rate_burst"}


def _line(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # --json-only: the JSON line and nothing else
    return json.loads(out[0])


def test_small_run_has_no_errors_and_the_json_line(capsys):
    rc = bench_http.main(["--clients", "4", "--calls", "5", "--json-only"])
    line = _line(capsys)
    assert rc == 0, line
    assert set(line) == KEYS
    assert line["bench"] == "http" and line["clients"] == 4 and line["calls"] == 20 and line["errors"] == 0
    assert (line["reads"], line["jobs"]) == (16, 4)  # each client: one import job, then four reads
    for key in ("p50_ms", "p99_ms", "job_p50_ms", "job_p99_ms"):
        assert isinstance(line[key], float) and line[key] > 0, key
    assert line["p50_ms"] <= line["p99_ms"]
    assert line["rate_per_minute"] == 120 and line["rate_burst"] == 60  # the server's defaults allow this run


def test_refused_calls_are_counted_as_errors(capsys):
    """One client whose calls cost 30 units against a 20-unit bucket refilled at 1 a minute: the last jobs get
    429 and the run says so (exit 1)."""
    assert bench_http.plan_cost(10, 2) == 30
    rc = bench_http.main(["--clients", "1", "--calls", "10", "--job-every", "2", "--rate-burst", "20",
                          "--rate-per-minute", "1", "--json-only"])
    line = _line(capsys)
    assert rc == 1 and line["errors"] == 2, line  # 5 + 1 + 5 + 1 + 5 + 1 = 18 paid; the 4th and 5th jobs are not


def test_plan_starts_with_a_job_and_mixes_reads():
    assert bench_http.plan(6, 5) == ["import_listening_history", "list_artifacts", "list_jobs", "providers_status",
                                     "read_job_resource", "import_listening_history"]
    assert bench_http.plan(3, 0) == ["list_artifacts", "list_jobs", "providers_status"]


def test_a_server_that_does_not_start_is_reported_not_waited_for(capsys):
    """A burst below the dearest call's cost is refused by the server's settings: exit 2 with its reason."""
    assert bench_http.main(["--clients", "1", "--calls", "1", "--rate-burst", "10", "--json-only"]) == 2
    assert "ECHOTUNE_RATE_BURST is 10.0" in capsys.readouterr().err
