"""The CLI a person uses: call any tool with key=value, list jobs, friendly errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from echotune_mcp.cli import parse_kv
from echotune_mcp.clientutil import jobs_table, progress_bar


def run_cli(*args, data_dir):
    env = {**os.environ, "ECHOTUNE_DATA_DIR": str(data_dir), "ECHOTUNE_TOOLSETS": "jobs,artifacts"}
    return subprocess.run([sys.executable, "-m", "echotune_mcp", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_parse_kv_reads_json_values():
    assert parse_kv(["limit=5", "status=running", "tags=[1,2]", "flag=true", "name=hello world"]) == {
        "limit": 5, "status": "running", "tags": [1, 2], "flag": True, "name": "hello world"}


def test_call_and_jobs_commands(tmp_path):
    ok = run_cli("call", "list_jobs", "limit=3", data_dir=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"next_cursor": None, "jobs": []}
    bad = run_cli("call", "get_job", "job_id=job_missing", data_dir=tmp_path)
    assert bad.returncode == 1 and "job_missing" in bad.stdout and "list_jobs" in bad.stdout
    jobs = run_cli("jobs", data_dir=tmp_path)
    assert jobs.returncode == 0 and jobs.stdout.strip() == "no jobs"


def test_table_and_progress_rendering():
    table = jobs_table([{"job_id": "job_1", "tool": "generate_music", "status": "running", "progress": 0.5,
                         "created_at": 0, "message": "rendering drums: chorus", "error": None}])
    assert "job_1" in table and "50%" in table and "rendering drums" in table
    assert progress_bar(0.5, "half").startswith("[" + "#" * 15 + "." * 15 + "]")
