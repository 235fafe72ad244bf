"""Issue #13 item 10: every setting goes through config.py, and a non-loopback HTTP bind is refused outright."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from echotune_mcp import cli
from echotune_mcp.config import Settings

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "echotune_mcp"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No developer settings leak in; the config file is one the test writes (or none)."""
    import os

    for name in list(os.environ):
        if name.startswith("ECHOTUNE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ECHOTUNE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("ECHOTUNE_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


@pytest.fixture
def served(monkeypatch):
    """Record whether cmd_serve got as far as serving HTTP, without ever binding a socket."""
    calls: list[tuple[str, int]] = []

    async def fake_serve_http(app, server, settings):
        calls.append((settings.host, settings.port))

    monkeypatch.setattr(cli, "_serve_http", fake_serve_http)
    monkeypatch.setattr("echotune_mcp.telemetry.setup_telemetry", lambda *a, **k: False)
    return calls


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_non_loopback_bind_is_refused_even_with_echotune_auth(clean_env, served, capsys, host):
    clean_env.setenv("ECHOTUNE_AUTH", "1")  # the old bare switch must not open the door
    rc = cli.main(["serve", "--transport", "http", "--host", host])
    err = capsys.readouterr().err
    assert rc == 2 and served == []
    assert f"refusing to bind {host}" in err and "127.0.0.1" in err
    assert not re.search(r"ECHOTUNE_AUTH(?!_ISSUER)", err)  # no advice to flip a switch that authorizes nothing
    assert "ECHOTUNE_AUTH_ISSUER" in err  # the one thing that does: callers then need the issuer's tokens


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_non_loopback_bind_serves_with_an_issuer_configured(clean_env, served, host):
    clean_env.setenv("ECHOTUNE_AUTH_ISSUER", "https://login.example")
    assert cli.main(["serve", "--transport", "http", "--host", host, "--port", "8799"]) == 0
    assert served == [(host, 8799)]


def test_auth_settings_are_checked(clean_env, served, capsys):
    clean_env.setenv("ECHOTUNE_AUTH_ISSUER", "http://login.example")  # plain http off loopback: tokens in clear
    assert cli.main(["serve", "--transport", "http"]) == 2 and served == []
    assert "ECHOTUNE_AUTH_ISSUER" in capsys.readouterr().err
    clean_env.delenv("ECHOTUNE_AUTH_ISSUER")
    clean_env.setenv("ECHOTUNE_AUTH_AUDIENCE", "https://music.example/mcp")
    assert cli.main(["serve", "--transport", "http"]) == 2 and served == []
    assert "ECHOTUNE_AUTH_ISSUER is not" in capsys.readouterr().err


def test_loopback_bind_serves(clean_env, served):
    assert cli.main(["serve", "--transport", "http", "--host", "127.0.0.1", "--port", "8799"]) == 0
    assert served == [("127.0.0.1", 8799)]


def test_host_port_transport_come_from_env_and_config_file(clean_env, served, capsys, tmp_path):
    """ECHOTUNE_HOST / _PORT / _TRANSPORT are settings: the config file sets them, the environment wins."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('transport = "http"\nhost = "0.0.0.0"\nport = 8801\n')
    clean_env.setenv("ECHOTUNE_CONFIG", str(cfg))
    assert cli.main(["serve"]) == 2 and served == []
    assert "refusing to bind 0.0.0.0" in capsys.readouterr().err
    clean_env.setenv("ECHOTUNE_HOST", "127.0.0.1")
    assert cli.main(["serve"]) == 0 and served == [("127.0.0.1", 8801)]
    assert cli.main(["serve", "--port", "8802"]) == 0 and served[-1] == ("127.0.0.1", 8802)  # the flag wins


def test_config_file_key_sets_a_variable(clean_env, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("max_jobs_per_client = 7\nread_only = true\n")
    clean_env.setenv("ECHOTUNE_CONFIG", str(cfg))
    settings = Settings.from_env()
    assert settings.max_jobs_per_owner == 7 and settings.read_only is True
    clean_env.setenv("ECHOTUNE_MAX_JOBS_PER_CLIENT", "3")  # the environment wins over the file
    assert Settings.from_env().max_jobs_per_owner == 3


def test_echotune_auth_is_not_a_setting():
    assert not hasattr(Settings(), "auth_configured")


@pytest.mark.parametrize(("name", "value", "needle"), [
    ("ECHOTUNE_PORT", "eighty", "ECHOTUNE_PORT"),
    ("ECHOTUNE_PORT", "70000", "ECHOTUNE_PORT"),
    ("ECHOTUNE_TRANSPORT", "carrier-pigeon", "ECHOTUNE_TRANSPORT"),
])
def test_bad_values_fail_loudly_naming_the_variable(clean_env, name, value, needle):
    clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=needle):
        Settings.from_env().validate()


def test_broken_config_file_names_the_file(clean_env, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("this is = = not toml\n")
    clean_env.setenv("ECHOTUNE_CONFIG", str(cfg))
    with pytest.raises(ValueError, match=re.escape(str(cfg))):
        Settings.from_env()


def _environ_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls like ``os.environ.get("X")``, ``os.getenv("X")`` and subscripts ``os.environ["X"]``."""
    found = []
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if (f.attr == "get" and isinstance(f.value, ast.Attribute) and f.value.attr == "environ") or f.attr == "getenv":
                target = node.args[0] if node.args else None
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "environ":
            if isinstance(node.ctx, ast.Load):
                target = node.slice
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            found.append((node.lineno, target.value))
    return found


def test_no_module_reads_echotune_variables_around_config():
    """Settings are parsed in one place, so the config file works for every one of them."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "config.py" and path.parent == PACKAGE:
            continue
        for line, name in _environ_reads(ast.parse(path.read_text())):
            if name.startswith(("ECHOTUNE_", "OTEL_")):
                offenders.append(f"{path.relative_to(REPO)}:{line} reads {name}")
    assert offenders == []


def test_every_variable_config_reads_is_in_the_readme():
    source = (PACKAGE / "config.py").read_text()
    names = set(re.findall(r'(?<![a-z])_env(?:_int|_float|_bool|_list)?\(\s*"([A-Z0-9_]+)"', source))
    names |= {"CONFIG"}
    standard = set(re.findall(r'_standard_env\(\s*"([A-Z0-9_]+)"', source))
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Configuration"):]
    table = table[:table.index("\n## ", 3)]
    documented = set(re.findall(r"`ECHOTUNE_([A-Z0-9_]+)`", table))
    # a row like `ECHOTUNE_SPOTIFY_CLIENT_ID` / `_CLIENT_SECRET` documents ECHOTUNE_SPOTIFY_CLIENT_SECRET too
    for row in table.splitlines():
        first = re.search(r"`ECHOTUNE_([A-Z]+)_[A-Z0-9_]+`", row)
        if first:
            documented |= {f"{first.group(1)}{suffix}" for suffix in re.findall(r"`(_[A-Z0-9_]+)`", row)}
    assert sorted(names - documented) == []
    assert standard and sorted(n for n in standard if f"`{n}" not in table) == []
