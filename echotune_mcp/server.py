"""Builds the one MCPServer: toolsets (filtered by configuration), resources, prompts, middleware."""

from __future__ import annotations

import importlib
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer

from . import __version__
from .app import App
from .artifacts import parse_artifact_uri
from .config import ALL_TOOLSETS, Settings
from .principal import current_principal
from .prompt_files import load_prompts
from .tasks_ext import TasksExtension
from .ui_views import ui_extension

INSTRUCTIONS = """\
EchoTune makes, takes apart and curates music.

How the pieces fit:
- Long work (generate_music, regenerate_stem, add_stem, separate_stems, remix, export_to_daw) runs
  as a job. Each job-starting tool waits up to wait_seconds (max 25) and returns either the finished
  result or a handle {job_id, status, progress, resource_uri}. Then call get_job(job_id, wait_seconds=20) until
  the status is terminal; no sleeping or busy-looping is needed. Progress notifications are sent
  if you pass a progress token. cancel_job stops a job.
- Every file made or imported is an artifact with an id and a URI: echotune://artifacts/{id} is its
  metadata, .../content its bytes, .../waveform.png a picture of audio, .../preview a small Ogg
  copy to listen to. Pass artifact URIs (or ids) to other tools as audio input; results link
  files, they never inline them.
- Audio input is an echotune://artifacts/... URI, an absolute local path inside the allowed roots,
  or an upload through import_audio.
- Before publishing anything, call check_usage on the artifact: it traces licences through the
  lineage (model weights, soundfont, inputs) and says what is allowed.
- To take a piece into a DAW, call export_to_daw on its mix, stem-set or job id with format
  dawproject (Bitwig, Studio One, Cubase), reaper, or stems (aligned WAVs + MIDI + tempo map).
- Playlist tools (search_tracks, create_playlist, ...) need connect_provider first.
- Destructive changes (remove_tracks, reorder_playlist, dedupe_playlist, transfer_playlist into an
  existing playlist, delete_artifact of something others were made from) ask the person first when
  your client supports elicitation; otherwise they change nothing and describe what would happen:
  ask the person, then call again with confirm=true. Pass confirm=true only when the person asked
  for exactly that change.
"""


def _content_mime_middleware(app: App):
    """``.../content`` is one template for every artifact; stamp each response with its real mime type."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "resources/read" or result is None:
            return result
        uri = str((ctx.params or {}).get("uri", ""))
        art_id = parse_artifact_uri(uri)
        if art_id is None or not uri.endswith("/content"):
            return result
        rec = await app.storage.artifacts.get(current_principal(), art_id)
        if rec is None:
            return result
        contents = result.get("contents") if isinstance(result, dict) else getattr(result, "contents", None)
        for item in contents or []:
            if isinstance(item, dict):
                item["mimeType"] = rec.media_type
            else:
                item.mime_type = rec.media_type
        return result

    return middleware


def _bind_app_middleware(app: App):
    """Bind ``app`` (``toolsets.base.current_app``) for the whole handling of every request, so the tools and
    resources reach it, and so does code the SDK runs before a tool's own function (a ``Resolve(...)``
    confirmation resolver). Work a tool starts (jobs, tasks) copies the context and keeps it."""
    from .toolsets.base import using_app

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        with using_app(app):
            return await call_next(ctx)

    return middleware


def _known_arguments_middleware(server: MCPServer):
    """Refuse a tool argument the tool does not have, and say so in every tool's schema.

    The SDK's argument models drop unknown keys silently, so a misspelt ``duraton_s`` would run with the
    default and the agent would never learn its control was ignored. Here the call is refused instead, naming
    the argument and listing the ones the tool takes; ``tools/list`` advertises ``additionalProperties: false``.
    """
    known: dict[str, frozenset[str]] = {}

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params if isinstance(ctx.params, dict) else {}
        name, arguments = params.get("name"), params.get("arguments")
        if ctx.method == "tools/call" and isinstance(name, str) and isinstance(arguments, dict):
            if not known:
                known.update({t.name: frozenset(t.input_schema.get("properties", {})) for t in await server.list_tools()})
            allowed = known.get(name)
            unknown = sorted(set(arguments) - allowed) if allowed is not None else []
            if unknown:
                text = (f"1 validation error for {name}: unknown argument(s) {', '.join(map(repr, unknown))}; "
                        f"{name} takes {', '.join(sorted(allowed)) or 'no arguments'}")
                return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
        result = await call_next(ctx)
        if ctx.method == "tools/list":
            tools = result.get("tools") if isinstance(result, dict) else getattr(result, "tools", None)
            for tool in tools or []:
                if isinstance(tool, dict):
                    tool["inputSchema"] = {**tool["inputSchema"], "additionalProperties": False}
                else:
                    tool.input_schema = {**tool.input_schema, "additionalProperties": False}
        return result

    return middleware


def _prompt_arguments_middleware(server: MCPServer):
    """An unknown prompt or a missing required argument is the caller's mistake: ``-32602`` naming what is allowed.

    The SDK turns both into an internal error (``-32603``) with a traceback in the log, which tells a client
    nothing it can fix.
    """

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params if isinstance(ctx.params, dict) else {}
        if ctx.method == "prompts/get" and isinstance(params.get("name"), str):
            from mcp.shared.exceptions import MCPError
            from mcp_types.jsonrpc import INVALID_PARAMS

            prompts = {p.name: p for p in await server.list_prompts()}
            name = params["name"]
            prompt = prompts.get(name)
            if prompt is None:
                raise MCPError(code=INVALID_PARAMS, message=f"unknown prompt {name!r}; prompts are: "
                                                            f"{', '.join(sorted(prompts))}")
            given = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
            missing = [a.name for a in prompt.arguments or [] if a.required and a.name not in given]
            if missing:
                raise MCPError(code=INVALID_PARAMS, message=f"prompt {name!r} needs the argument(s) "
                                                            f"{', '.join(map(repr, missing))}")
        return await call_next(ctx)

    return middleware


def _connection_of(ctx: ServerRequestContext[Any, Any]) -> Any:
    """The long-lived connection behind a request (the per-request session wrapper dies with the request)."""
    return getattr(ctx.session, "_connection", ctx.session)


class LegacySubscriptions:
    """``resources/subscribe`` for pre-2026 clients: they are told when a job or artifact they watch changes.

    2026-07-28 clients use ``subscriptions/listen``, served by the SDK from the App's bus.
    Sessions are held weakly, so a client that disconnects simply drops out.
    """

    def __init__(self) -> None:
        self._subs: dict[str, weakref.WeakSet[Any]] = defaultdict(weakref.WeakSet)

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        self._subs[str(params.uri)].add(_connection_of(ctx))
        return types.EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        self._subs.get(str(params.uri), weakref.WeakSet()).discard(_connection_of(ctx))
        return types.EmptyResult()

    async def notify(self, uri: str) -> None:
        for session in list(self._subs.get(uri, ())):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # the client went away; forget it
                self._subs[uri].discard(session)


def build_server(app: App, *, log_level: str = "INFO") -> MCPServer:
    """One server per App. The App is entered by the lifespan so in-memory and stdio use just work."""
    settings: Settings = app.settings

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[App]:
        async with app:
            yield app

    tasks = TasksExtension(app)  # native tasks (SEP-2663) over our jobs (tasks_ext.py)
    from .confirm import install_key_loader, request_state_security

    state_security, load_state_key = request_state_security(app)  # sealed requestState (confirm.py)
    server: MCPServer = MCPServer(
        name="echotune-mcp",
        title="EchoTune",
        description="Co-create music: generate, separate, remix, analyse, curate playlists, track licences.",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        subscriptions=app.bus,
        extensions=[ui_extension(), tasks],  # MCP Apps: the in-chat views (ui_views.py); native tasks
        middleware=[_bind_app_middleware(app), _content_mime_middleware(app)],
        log_level=log_level,  # type: ignore[arg-type]
        request_state_security=state_security,
    )
    install_key_loader(server, load_state_key)
    tasks.bind(server)
    legacy = LegacySubscriptions()
    server._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, legacy.subscribe)
    server._lowlevel_server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams,
                                                legacy.unsubscribe)
    app.add_update_listener(legacy.notify)
    server.middleware.append(_known_arguments_middleware(server))
    server.middleware.append(_prompt_arguments_middleware(server))
    from .auth.limits import tool_limits_middleware

    server.middleware.append(tool_limits_middleware(app, server))  # rate limits (stdio), audit of deletions
    registered: dict[str, list[str]] = {}
    for name in ALL_TOOLSETS:
        if name not in settings.toolsets:
            continue
        module = importlib.import_module(f".toolsets.{name}", __package__)
        registered[name] = module.toolset.register(server, read_only_mode=settings.read_only)
    for prompt in load_prompts():
        server.add_prompt(prompt)
    server.echotune_toolsets = registered  # type: ignore[attr-defined]
    return server
