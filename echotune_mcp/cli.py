"""The ``echotune-mcp`` command: serve, demo, call any tool, list jobs, manage models and engine.

``call`` and ``jobs`` run the server in-process (quick answers for a person at a terminal);
``demo`` runs it as a child over stdio exactly as an MCP client would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from .config import ALL_TOOLSETS, Settings, is_loopback
from .recommend.history import FORMAT_NAMES as HISTORY_FORMATS


def _settings_from_args(args: argparse.Namespace) -> Settings:
    """``Settings.from_env`` (environment, then config file) with the command-line flags winning."""
    toolsets = tuple(t.strip() for t in args.toolsets.split(",") if t.strip()) if getattr(args, "toolsets", None) else None
    settings = Settings.from_env(
        toolsets=toolsets,
        read_only=True if getattr(args, "read_only", False) else None,
        data_dir=Path(args.data_dir).expanduser() if getattr(args, "data_dir", None) else None,
        transport=getattr(args, "transport", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )
    settings.validate()
    return settings


# -- serve ----------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from .telemetry import setup_telemetry

    try:
        settings = _settings_from_args(args)
    except ValueError as exc:
        print(f"echotune-mcp: {exc}", file=sys.stderr)
        return 2
    if settings.transport == "http" and not is_loopback(settings.host) and not settings.auth_enabled:
        # Without authorization anyone who can reach the port would act as the local user (their jobs, artifacts,
        # provider grants). No switch turns this off: configure an issuer (then every caller needs its access
        # token) or keep the bind on loopback.
        print(
            f"refusing to bind {settings.host}: with no authorization configured anyone on the network could use "
            "this server as you. Set ECHOTUNE_AUTH_ISSUER (an OAuth issuer whose access tokens callers must present; "
            "`echotune-mcp auth-server` is one), or bind a loopback address (127.0.0.1, the default, or ::1).",
            file=sys.stderr,
        )
        return 2
    from .providers.token_store import SecretKeyError, preflight_secrets

    try:  # a changed or missing ECHOTUNE_SECRET_KEY stops the start with one message, not failures per call
        asyncio.run(preflight_secrets(settings))
    except SecretKeyError as exc:
        print(f"echotune-mcp: {exc}", file=sys.stderr)
        return 2
    setup_telemetry(settings)
    from .app import App
    from .server import build_server

    app = App(settings)
    server = build_server(app)
    if settings.transport == "stdio":
        server.run("stdio")
        return 0
    asyncio.run(_serve_http(app, server, settings))
    return 0


async def _serve_http(app: Any, server: Any, settings: Settings) -> None:
    import uvicorn

    from .auth.http import build_http_app
    from .auth.limits import auth_failure_layer, rate_limit_layer

    # Outermost the slow-down of clients that keep sending bad tokens; inside the auth layer the rate limits.
    starlette_app = auth_failure_layer(app)(build_http_app(app, server, settings,
                                                           extra_middleware=[rate_limit_layer(app, server)]))
    # h11, whatever else is installed: uvicorn prefers httptools when present (ray[serve] brings it), and httptools
    # keeps the whitespace around header values that RFC 9110 says to drop, so "Mcp-Name:  generate_music  " would
    # no longer match its body (the conformance suite checks exactly that). h11 is also what BENCHMARKS measured.
    config = uvicorn.Config(starlette_app, host=settings.host, port=settings.port, log_level="warning",
                            lifespan="on", http="h11")
    # Hold the App for the server's whole life: stateless requests come and go, jobs must not.
    async with app:
        auth = (f"; access tokens of {settings.auth_issuer} for {settings.resource_url}" if settings.auth_enabled
                else "; no authorization (loopback only, as the local user)")
        print(f"echotune-mcp listening on http://{settings.host}:{settings.port}/mcp{auth}", file=sys.stderr,
              flush=True)
        await uvicorn.Server(config).serve()


# -- call / jobs ----------------------------------------------------------------------------------
def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_kv(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"argument {pair!r} is not key=value")
        key, value = pair.split("=", 1)
        out[key] = _parse_value(value)
    return out


def _print_result(result: Any) -> None:
    from .clientutil import render_result

    print(render_result(result))


async def _in_process_call(settings: Settings, tool: str, arguments: dict[str, Any], *, as_table: bool = False) -> int:
    from mcp import Client

    from .app import App
    from .clientutil import jobs_table, progress_bar
    from .server import build_server

    app = App(settings)
    shown = {"line": ""}

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        line = progress_bar(progress / (total or 1.0), message or "")
        if line != shown["line"] and sys.stderr.isatty():
            shown["line"] = line
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)

    async with app, Client(build_server(app, log_level="WARNING")) as client:
        result = await client.call_tool(tool, arguments, progress_callback=on_progress)
        if shown["line"]:
            print(file=sys.stderr)
        if as_table and not result.is_error:
            print(jobs_table(result.structured_content["jobs"]))
        else:
            _print_result(result)
        return 1 if result.is_error else 0


def cmd_call(args: argparse.Namespace) -> int:
    return asyncio.run(_in_process_call(_settings_from_args(args), args.tool, parse_kv(args.arguments)))


def cmd_jobs(args: argparse.Namespace) -> int:
    arguments: dict[str, Any] = {"limit": args.limit}
    if args.status:
        arguments["status"] = args.status
    return asyncio.run(_in_process_call(_settings_from_args(args), "list_jobs", arguments, as_table=True))


def _wait_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds (allowed: 0 to 3600)") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range (allowed: 0 to 3600)")
    return value


def cmd_history_import(args: argparse.Namespace) -> int:
    """Import history files as the local user (the owner the stdio server uses); prints the import report."""
    return asyncio.run(_history_import(_settings_from_args(args), args.files, args.format, args.wait))


async def _history_import(settings: Settings, files: list[str], fmt: str, wait_s: float = 60.0) -> int:
    """The same job the tool starts (so `echotune-mcp jobs` lists it, and one import runs at a time, here and in
    any server on the same data: it waits up to ``wait_s`` for one running there), waited for."""
    from .app import App
    from .clientutil import progress_bar
    from .errors import Busy
    from .principal import LOCAL
    from .recommend.history import HistoryFileError
    from .recommend.importer import open_sources, submit_import
    from .storage.records import JobStatus

    sources, skipped = [], []
    for raw in files:
        path = Path(raw).expanduser().resolve()
        try:
            if not path.is_file():
                raise HistoryFileError("is not a file")
            found, skips = open_sources(path, raw, None if fmt == "auto" else fmt)
            sources += found
            skipped += skips
        except (HistoryFileError, OSError) as exc:
            print(f"echotune-mcp: {raw} {exc}" if isinstance(exc, HistoryFileError) else f"echotune-mcp: {exc}",
                  file=sys.stderr)
            return 2
    tty = sys.stderr.isatty()

    async def on_progress(fraction: float, message: str) -> None:
        if tty:
            print("\r" + progress_bar(fraction, message).ljust(100), end="", file=sys.stderr, flush=True)

    params = {"files": [{"file": s.name, "format": s.format, "bytes": s.size} for s in sources[:50]],
              "file_count": len(sources), "format": fmt, "upload": False, "via": "cli"}
    async with App(settings) as app:
        try:
            job = await submit_import(app, LOCAL, sources, params, skipped, wait_s=wait_s)
        except Busy as exc:
            print(f"echotune-mcp: {exc}", file=sys.stderr)
            return 1
        while not job.status.terminal:
            job = await app.jobs.wait(LOCAL, job.id, settings.max_wait_seconds, on_progress)
    if tty:
        print(file=sys.stderr)
    if job.status != JobStatus.succeeded or job.result is None:
        print(f"echotune-mcp: import {job.id} {job.status.value}: {job.error or job.message}; nothing of it was "
              "kept", file=sys.stderr)
        return 1
    report = job.result
    print(json.dumps(report, indent=2))
    print(f"read {report['read']}, imported {report['imported']}, duplicates {report['duplicates']}, ignored "
          f"{report['ignored']}, malformed {report['malformed']}; {report['events_stored']} plays stored "
          f"(job {job.id})", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(out_dir=Path(args.out), prompt=args.prompt, duration_s=args.duration,
                                data_dir=args.data_dir))


def _delegate(module: str, func: str, argv: list[str]) -> int:
    import importlib

    mod = importlib.import_module(module, __package__)
    return int(getattr(mod, func)(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="echotune-mcp", description="EchoTune MCP server and tools")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--toolsets", default=None,
                        help=f"comma-separated toolsets to expose (default all: {','.join(ALL_TOOLSETS)})")
        sp.add_argument("--read-only", action="store_true", help="expose only read-only tools (ECHOTUNE_READ_ONLY)")
        sp.add_argument("--data-dir", default=None, help="where jobs, artifacts and blobs live (ECHOTUNE_DATA_DIR)")

    s = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    common(s)
    s.add_argument("--transport", choices=["stdio", "http"], default=None, help="stdio (default) or http "
                   "(ECHOTUNE_TRANSPORT)")
    s.add_argument("--host", default=None, help="HTTP bind address (ECHOTUNE_HOST, default 127.0.0.1); a "
                   "non-loopback one only with ECHOTUNE_AUTH_ISSUER set")
    s.add_argument("--port", type=int, default=None, help="HTTP port (ECHOTUNE_PORT, default 8770)")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="start the server over stdio, generate a track, save it to ./out")
    d.add_argument("--out", default="out")
    d.add_argument("--prompt", default="uplifting lofi hip hop with warm piano and soft drums, 84 bpm in D minor")
    d.add_argument("--duration", type=float, default=30.0)
    d.add_argument("--data-dir", default=None)
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("call", help="call any tool: echotune-mcp call TOOL key=value ...")
    common(c)
    c.add_argument("tool")
    c.add_argument("arguments", nargs="*", help="key=value; values are JSON when they parse as JSON")
    c.set_defaults(func=cmd_call)

    j = sub.add_parser("jobs", help="list recent jobs")
    common(j)
    j.add_argument("--status", default=None)
    j.add_argument("--limit", type=int, default=20)
    j.set_defaults(func=cmd_jobs)

    h = sub.add_parser("history", help="your listening history: history import FILE... [--format F]")
    hsub = h.add_subparsers(dest="history_command", required=True)
    hi = hsub.add_parser("import", help="import Spotify / ListenBrainz / Last.fm exports or a user,item,weight TSV; "
                                        "re-importing adds only what is new")
    hi.add_argument("files", nargs="+", help="history files (several files of one export at once are fine)")
    hi.add_argument("--format", default="auto", choices=["auto", *HISTORY_FORMATS],
                    help="auto (default): detected from the content; naming one refuses a file of another format")
    hi.add_argument("--data-dir", default=None, help="where jobs, artifacts and blobs live (ECHOTUNE_DATA_DIR)")
    hi.add_argument("--wait", type=_wait_seconds, default=60.0, metavar="SECONDS",
                    help="how long to wait for an import or sync already running for you (in a server on the "
                         "same data) before giving up (0-3600, default 60)")
    hi.set_defaults(func=cmd_history_import)

    for name, module, func, help_ in (
        ("models", ".engine.cli", "models_main", "list | pull | verify model weights"),
        ("engine", ".engine.cli", "engine_main", "serve: the engine as a local daemon | deploy: on Ray Serve"),
        ("auth", ".providers.cli", "auth_main", "connect a music provider account (e.g. auth spotify)"),
        ("auth-server", ".auth.server.cli", "auth_server_main",
         "serve | user add | user reset-mfa | keys rotate: the bundled OAuth authorization server"),
        ("principals", ".auth.tenants", "principals_main",
         "grant-roots | revoke-roots | set | list: local folders and quotas per authenticated user"),
        ("recommend", ".recommend.cli", "recommend_main",
         "batch | evaluate | corpus | fit: offline recommendation, corpora, the served model"),
    ):
        sp = sub.add_parser(name, help=help_, add_help=False)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
        sp.set_defaults(func=lambda a, m=module, f=func: _delegate(m, f, a.rest))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
