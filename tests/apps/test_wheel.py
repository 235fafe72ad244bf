"""CI check of what pip users get: the wheel carries the built views, and its server serves them.

The wheel is built offline from this checkout (``pip wheel --no-build-isolation``; hatchling is in the dev
extra) and installed with ``--no-deps`` into a fresh venv. The fresh venv borrows the repo venv's installed
dependencies through a ``.pth`` line (a plain path entry: ``.pth`` files inside that folder, such as the
editable install's pointer to this checkout, are not processed), so nothing is downloaded and
``echotune_mcp`` resolves to the wheel's copy, which the test checks. Then ``echotune-mcp serve --transport
http`` of that venv, started from a temporary folder, serves each ``ui://`` view to an MCP client.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import anyio
import pytest

from echotune_mcp.ui_views import APP_MIME_TYPE, VIEWS
from tests.conftest import missing

REPO = Path(__file__).resolve().parents[2]
UI_DIST = REPO / "echotune_mcp" / "ui_dist"
LINKS = {"generate_music": "job", "separate_stems": "job", "remix": "player", "get_artifact": "player",
         "get_job": "job", "get_playlist": "playlist", "check_usage": "provenance"}


def run(cmd: list[str], *, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its ``echotune-mcp`` script."""
    if not all((UI_DIST / f"{v}.html").is_file() for v in VIEWS):
        missing("the in-chat views are not built (echotune_mcp/ui_dist/*.html)", "make ui")
    try:
        import hatchling  # noqa: F401
    except ImportError:
        missing("hatchling is not installed (the offline wheel build needs it)", "make test")
    base = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-q", "--no-build-isolation",
         "--no-deps", str(REPO), "-w", str(base / "dist")], cwd=base)
    [wheel] = (base / "dist").glob("echotune_mcp-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n for n in zf.namelist() if n.startswith("echotune_mcp/ui_dist/")}
    assert shipped == {f"echotune_mcp/ui_dist/{v}.html" for v in VIEWS}, shipped

    venv = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base)
    py = venv / "bin" / "python"
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=base).strip())
    (site / "zz_echotune_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "--python", str(py), "install",
         "--no-deps", "--no-index", str(wheel)], cwd=base)
    where = run([str(py), "-c", "import echotune_mcp; print(echotune_mcp.__file__)"], cwd=base).strip()
    assert Path(where).is_relative_to(site), f"echotune_mcp imported from {where}, not the wheel in {site}"
    script = venv / "bin" / "echotune-mcp"
    assert script.is_file()
    return script


def test_wheel_serves_the_views(installed, tmp_path, monkeypatch):
    import tests.node.conftest as node_conftest

    monkeypatch.setattr(node_conftest, "echotune_command", lambda: [str(installed)])
    site = installed.parent.parent / "lib"
    [wheel_dist] = site.glob("python3*/site-packages/echotune_mcp/ui_dist")
    servers = node_conftest._start_http_server(tmp_path)
    server = next(servers)
    try:
        async def check():
            from mcp import Client

            with anyio.fail_after(60):
                async with Client(server.url) as client:
                    caps = client.server_capabilities
                    assert caps.extensions and "io.modelcontextprotocol/ui" in caps.extensions
                    tools = {t.name: t for t in (await client.list_tools()).tools}
                    for name, view in LINKS.items():
                        assert tools[name].meta["ui"]["resourceUri"] == f"ui://echotune/{view}.html", name
                    served = {}
                    for view in VIEWS:
                        res = await client.read_resource(f"ui://echotune/{view}.html")
                        [content] = res.contents
                        assert content.mime_type == APP_MIME_TYPE
                        assert content.meta["ui"]["csp"]["connectDomains"] == []
                        served[view] = content.text
                    return served

        served = anyio.run(check)
    finally:
        servers.close()
    for view, text in served.items():
        assert text == (wheel_dist / f"{view}.html").read_text(encoding="utf-8") == \
            (UI_DIST / f"{view}.html").read_text(encoding="utf-8"), view
        assert text.lstrip().lower().startswith("<!doctype html")
        assert "<script" in text and len(text) > 10_000  # the bundle is inlined (single file)
        assert 'src="http' not in text and "src='http" not in text  # nothing loaded from outside
        assert view in text
        # One resources/read answer is one SSE event; the SDK client takes at most 1 MiB (the JSON escaping of
        # the HTML counts too). It was read above, so it fits; keep a margin for the bundle to grow.
        assert len(text.encode()) < 900 * 1024, f"{view}.html is {len(text.encode())} bytes, near the 1 MiB cap"
