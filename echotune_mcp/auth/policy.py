"""What each tool call needs from the caller's token: a scope, maybe a second factor, and a cost class.

Derived from the tool's honest annotations, so a new tool is covered the day it is registered:
- ``echotune:read`` for read-only tools (and for resources and prompts),
- ``echotune:providers`` for tools that act on a provider account (open world, not read-only),
- ``echotune:write`` for tools that create or change our own records.
Step-up (RFC 9470, a token whose ``amr`` has ``mfa`` or ``otp``) guards what cannot be taken back: destructive
tools, every provider mutation, and the whole-account operations in ``ALWAYS_STEP_UP``. The open-world tools in
``PROVIDER_READS`` only read the provider account and write our own records (undone like any import), so they
need the providers scope but no second factor.
The cost class prices a call for the rate limits: a generation costs more than a read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mcp_types import ToolAnnotations

SCOPE_READ = "echotune:read"
SCOPE_WRITE = "echotune:write"
SCOPE_PROVIDERS = "echotune:providers"
ALL_SCOPES = (SCOPE_READ, SCOPE_WRITE, SCOPE_PROVIDERS)
ALWAYS_STEP_UP: frozenset[str] = frozenset({"export_my_data", "delete_my_data"})
PROVIDER_READS: frozenset[str] = frozenset({"sync_listening_history"})
TOOL_CLASSES = ("read", "write", "job", "generate", "provider")
# RFC 9470 acr_values asked for in a step-up challenge: a multi-factor login (the bundled server's TOTP login).
STEP_UP_ACR = "mfa"

# GPU/CPU-heavy jobs: model inference or DSP over whole pieces.
GENERATE_TOOLS = frozenset({"generate_music", "regenerate_stem", "add_stem", "separate_stems", "remix",
                            "transcribe_to_midi"})
# Other jobs: background work on our own records (analysis, fitting, imports, exports).
JOB_TOOLS = frozenset({"analyze_audio", "fit_recommender", "import_listening_history", "export_my_data",
                       "delete_my_data", "export_to_daw"})


@dataclass(frozen=True)
class ToolPolicy:
    tool: str
    scope: str
    step_up: bool
    cost_class: str


def tool_policy(name: str, annotations: ToolAnnotations | None) -> ToolPolicy:
    """The scope, step-up and cost class of one tool; no annotations counts as a write (the safe side)."""
    read_only = bool(annotations and annotations.read_only_hint)
    open_world = bool(annotations and annotations.open_world_hint)
    destructive = bool(annotations and annotations.destructive_hint) and not read_only
    if read_only:
        scope = SCOPE_READ
    elif open_world:
        scope = SCOPE_PROVIDERS
    else:
        scope = SCOPE_WRITE
    step_up = destructive or (open_world and not read_only and name not in PROVIDER_READS) or name in ALWAYS_STEP_UP
    if name in GENERATE_TOOLS:
        cost = "generate"
    elif open_world:
        cost = "provider"
    elif name in JOB_TOOLS:
        cost = "job"
    else:
        cost = "read" if read_only else "write"
    return ToolPolicy(tool=name, scope=scope, step_up=step_up, cost_class=cost)


def method_scope(method: str) -> str | None:
    """The scope a non-tool JSON-RPC method needs: reading resources or prompts needs read; the protocol's own
    methods (initialize, ping, tools/list, ...) only a valid token. A task is a job: reading one needs read, changing
    one (cancel, update) needs write, as get_job and cancel_job do."""
    if method in ("tasks/cancel", "tasks/update"):
        return SCOPE_WRITE
    if method.startswith(("resources/", "prompts/", "tasks/")):
        return SCOPE_READ
    return None


def tool_calls_in(body: bytes) -> list[tuple[str, str | None]]:
    """The JSON-RPC requests in an HTTP body (one or a batch): (method, tool name for tools/call else None).

    Malformed JSON gives ``[]``: the SDK answers it with its own parse error, and nothing runs.
    A tools/call without a string name gives (``tools/call``, ``""``), which no tool matches.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    items = data if isinstance(data, list) else [data]
    out: list[tuple[str, str | None]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("method"), str):
            continue  # responses and notifications without a method carry no call
        method = item["method"]
        if method == "tools/call":
            params = item.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            out.append((method, name if isinstance(name, str) else ""))
        else:
            out.append((method, None))
    return out
