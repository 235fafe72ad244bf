"""Issue #13 item 11: with CI set, a test whose dependency or data is missing fails instead of skipping.

Runs small throwaway test files through pytest in a child process, with the project's tests/conftest.py loaded
as a plugin, once with CI set and once without.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKE_TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), flags=re.M))

PROBES = {
    "test_shared.py": "from tests.conftest import shared_path\n\n"
                      "def test_it():\n    shared_path('no-such-folder-for-this-probe')\n",
    "test_module.py": "import pytest\n\ndef test_it():\n    pytest.importorskip('no_such_module_for_this_probe')\n",
    "test_module_level.py": "import pytest\npytest.importorskip('no_such_module_for_this_probe')\n\n"
                            "def test_it():\n    pass\n",
    "test_missing.py": "from tests.conftest import missing\n\n"
                       "def test_it():\n    missing('FluidSynth is not installed', 'make system-deps')\n",
}


def _run(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    for name, body in PROBES.items():
        (tmp_path / name).write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-rsf", "--no-header",
                           "-p", "no:cacheprovider", "--continue-on-collection-errors", "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_missing_dependencies_fail_under_ci(tmp_path):
    out = _run(tmp_path, ci=True)
    summary = out.stdout.strip().splitlines()[-1]
    # the module-level importorskip fails at collection (an error), the others in the test
    assert "3 failed" in summary and "1 error" in summary and "skipped" not in summary, out.stdout[-3000:]
    assert "CI is set" in out.stdout


def test_missing_dependencies_skip_without_ci_and_say_how_to_get_them(tmp_path):
    out = _run(tmp_path, ci=False)
    summary = out.stdout.strip().splitlines()[-1]
    assert "4 skipped" in summary, out.stdout[-3000:]
    named = re.findall(r"`make ([a-z-]+)`", out.stdout)
    assert len(named) >= 4 and set(named) <= MAKE_TARGETS, (named, MAKE_TARGETS)


def test_every_skip_message_in_the_suite_names_a_command_that_exists():
    """A skip message once told people to run "make setup"; the Makefile has no such target."""
    bad = []
    for path in (REPO / "tests").rglob("*.py"):
        for target in re.findall(r"`make ([a-z][a-z-]*)`", path.read_text()):
            if target not in MAKE_TARGETS:
                bad.append(f"{path.relative_to(REPO)}: make {target}")
    assert bad == []


@pytest.mark.parametrize("conftest", ["tests/node/conftest.py", "tests/providers/conftest.py"])
def test_tool_fixtures_use_the_ci_aware_helper(conftest):
    source = (REPO / conftest).read_text()
    assert "pytest.skip(" not in source, f"{conftest} skips directly; use tests.conftest.missing"
