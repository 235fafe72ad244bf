"""Ask the person before a destructive change: the elicitation round trip, or ``confirm=true``.

Removing tracks, reordering or deduping a playlist on someone's Spotify/YouTube Music account, appending to an
existing playlist, and deleting an artifact other artifacts were made from are changes an agent should not make
on its own say-so. Each such tool takes a ``Resolve`` dependency (``mcp.server.mcpserver.resolve``) whose
resolver works out exactly what the call would do (a *preview*) before anything is written, then:

- nothing would change, or the change is harmless (a leaf artifact): go ahead, nobody is asked;
- ``confirm=true`` was passed: go ahead. The agent states that the person asked for exactly this (a UI button,
  an explicit instruction), so they are not asked a second time, whatever the client supports;
- the client declared form elicitation: ask. On 2026-07-28 clients the tool answers ``InputRequiredResult``
  with one ``elicitation/create`` request and runs only on the retry that carries the answer (multi-round-trip,
  SEP-2322); on older clients that can take a server request mid-call the question is sent with ``ctx.elicit``,
  waiting at most ``ASK_TIMEOUT_S``. Only ``accept`` with ``confirmed: true`` goes ahead; decline, cancel, "no"
  or no answer change nothing and say so;
- otherwise: refuse with :class:`ConfirmationRequired`, which shows the preview and names ``confirm``.

The question's text is the preview, and the SDK pins an answer to the exact question it answered, so if the
playlist changed between the question and the retry the person is asked again about what would now happen.

``requestState`` (what the retry echoes) is sealed by the SDK's ``RequestStateBoundary`` (AES-256-GCM, bound to
the tool name, the exact arguments, the audience and our principal, 10 minutes). :func:`request_state_security`
gives it a key derived from the server's own key (``ECHOTUNE_SECRET_KEY`` stretched, or the data dir's key
file: the key that seals provider tokens), so replicas that share it accept each other's state and a restart
does not void a question in flight; a per-process random key would do neither.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit
from mcp.server.request_state import (
    AESGCMRequestStateCodec,
    InvalidRequestState,
    RequestStateSecurity,
)
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from .errors import EchoError
from .principal import current_principal

log = logging.getLogger(__name__)

# How long a pre-2026 client may take to answer a mid-call question before the call gives up (changing nothing).
ASK_TIMEOUT_S = 300.0
# How long a sealed requestState stays valid: the person has this long to answer a 2026-07-28 question.
STATE_TTL_S = 600.0
# At most this many items are listed in a question or refusal (the count is always exact).
MAX_LISTED = 15
_INPUT_REQUIRED_VERSION = "2026-07-28"
_MRTR_METHODS = ("tools/call", "prompts/get", "resources/read")  # where requestState and inputResponses ride

Confirm = Annotated[bool, Field(description=(
    "true: make the change without asking, because the person asked for exactly this change (a button in a "
    "UI, an explicit instruction). false (default): when the change is destructive the person is asked "
    "first if the client supports elicitation; otherwise nothing is changed and the answer describes what "
    "would happen, so you can ask them and call again with confirm=true"))]


class Confirmation(BaseModel):
    """What the person answers: one yes/no."""

    confirmed: bool = Field(title="Go ahead?", description="true makes the change; false changes nothing")


@dataclass(frozen=True)
class Preview:
    """What a destructive call would do, in words a person can judge."""

    action: str  # "remove 3 item(s) from spotify playlist 'Road trip' (37i9...)"
    items: Sequence[str] = ()  # one line per affected item; at most MAX_LISTED are shown
    undo: str = "This cannot be undone."

    def lines(self) -> list[str]:
        shown = [f"  - {i}" for i in self.items[:MAX_LISTED]]
        if len(self.items) > MAX_LISTED:
            shown.append(f"  ... and {len(self.items) - MAX_LISTED} more")
        return shown

    def question(self) -> str:
        return "\n".join([f"EchoTune will {self.action}.", *self.lines(), self.undo, "Go ahead?"])

    def text(self) -> str:
        return "\n".join([f"this call would {self.action}:" if self.items else f"this call would {self.action}.",
                          *self.lines(), self.undo])


@dataclass(frozen=True)
class Decision:
    """A resolver's outcome when no 2026-07-28 question is pending: go ahead, or not (and why)."""

    proceed: bool
    reason: str  # nothing-to-confirm | confirm-argument | user-confirmed | needs-confirm | declined | ...
    preview: Preview | None = field(default=None)


class ConfirmationRequired(EchoError):
    """The change is destructive, ``confirm`` was not true and the client cannot be asked."""

    def __init__(self, tool: str, preview: Preview):
        super().__init__(
            f"{tool} changed nothing: confirmation required. " + preview.text() +
            "\nThis client cannot be asked through elicitation, so ask the person; if they agree, call "
            f"{tool} again with the same arguments and confirm=true.")
        self.field = "confirm"


class NotConfirmed(EchoError):
    """The person declined, cancelled, answered no, or did not answer: nothing was changed."""

    def __init__(self, tool: str, how: str, preview: Preview | None = None):
        what = f" (it would {preview.action})" if preview else ""
        super().__init__(f"{tool} changed nothing: {how}{what}. Do not retry unless the person asks for it again.")


def can_elicit(ctx: Context) -> bool:
    """Whether this client can be asked now: it declared form elicitation (a bare ``elicitation: {}`` means
    form), and either speaks 2026-07-28 (the question rides the result) or keeps a channel open for a
    server request mid-call (stdio, stateful HTTP)."""
    caps = ctx.client_capabilities
    el = caps.elicitation if caps is not None else None
    if el is None or (el.form is None and el.url is not None):
        return False
    if _input_required(ctx):
        return True
    try:
        return bool(ctx.session.can_send_request)
    except Exception:  # no live request (a direct server.call_tool): nobody to ask
        return False


async def _ensure_state_key(ctx: Context) -> None:
    load = getattr(ctx.mcp_server, "_echotune_state_key", None)
    if load is not None:
        await load()


def _input_required(ctx: Context) -> bool:
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, _INPUT_REQUIRED_VERSION)


async def ask(ctx: Context, confirm: bool,
              preview_of: Callable[[], Awaitable[Preview | None]]) -> Elicit[Confirmation] | Decision:
    """The resolver's answer for one call; see the module docstring for the order of the rules.

    ``preview_of`` works out what the call would do (reading the playlist, the artifact's children) without
    changing anything; None means nothing destructive would happen. It is not run when ``confirm`` is true."""
    if confirm:
        return Decision(True, "confirm-argument")
    preview = await preview_of()
    if preview is None:
        return Decision(True, "nothing-to-confirm")
    if not can_elicit(ctx):
        return Decision(False, "needs-confirm", preview)
    if _input_required(ctx):
        await _ensure_state_key(ctx)  # the boundary seals the question's requestState with it
        return Elicit(preview.question(), Confirmation)
    # A pre-2026 client: ask mid-call, bounded, so a client that never answers cannot hold the call open.
    try:
        with anyio.fail_after(ASK_TIMEOUT_S):
            outcome = await ctx.elicit(preview.question(), Confirmation)
    except TimeoutError:
        return Decision(False, f"no answer within {ASK_TIMEOUT_S:g} s", preview)
    except ValueError:  # accepted with content that does not fit {confirmed: bool}
        return Decision(False, "the answer did not say confirmed true or false", preview)
    return _decided(outcome, preview)


def _decided(outcome: ElicitationResult[Any], preview: Preview | None) -> Decision:
    if isinstance(outcome, AcceptedElicitation):
        data = outcome.data
        if isinstance(data, Decision):
            return data
        if isinstance(data, Confirmation):
            return Decision(data.confirmed, "user-confirmed" if data.confirmed else "the person answered no", preview)
        return Decision(False, "the answer was not a yes/no confirmation", preview)
    return Decision(False, f"the person {'declined' if outcome.action == 'decline' else 'cancelled'}", preview)


def settle(tool: str, outcome: ElicitationResult[Any]) -> Decision:
    """In the tool body: the decision to go ahead, or the error that says nothing was changed."""
    decision = _decided(outcome, None)
    if decision.proceed:
        return decision
    if decision.reason == "needs-confirm":
        assert decision.preview is not None
        raise ConfirmationRequired(tool, decision.preview)
    raise NotConfirmed(tool, decision.reason, decision.preview)


def note(decision: Decision) -> str:
    """What a result's message says about how the change was authorised ("" when nothing needed it)."""
    return {"confirm-argument": " (confirm=true)", "user-confirmed": " (confirmed by the person)"}.get(
        decision.reason, "")


# -- requestState keys ------------------------------------------------------------------------------------


class ServerKeyCodec:
    """AES-256-GCM over the SDK's request-state envelope, keyed from the server key once it is known.

    The codec interface is synchronous, but the server key lives behind storage (a passphrase is stretched with
    the salt stored beside the provider tokens), so it is loaded (async) by :func:`ask` before a question is
    sealed and by the middleware of :func:`request_state_security` before an echoed state is opened.
    Without a key nothing is sealed or accepted (fail closed)."""

    def __init__(self) -> None:
        self._codec: AESGCMRequestStateCodec | None = None

    @property
    def ready(self) -> bool:
        return self._codec is not None

    def set_server_key(self, server_key: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"echotune-request-state/v1",
                       info=b"requestState").derive(server_key)
        self._codec = AESGCMRequestStateCodec([derived])

    def seal(self, payload: bytes) -> str:
        if self._codec is None:
            raise RuntimeError("the server key is not loaded; cannot seal requestState")
        return self._codec.seal(payload)

    def unseal(self, token: str) -> bytes:
        if self._codec is None:
            raise InvalidRequestState("no key")
        return self._codec.unseal(token)


def request_state_security(app: Any) -> tuple[RequestStateSecurity, Any]:
    """The policy for ``MCPServer(request_state_security=...)`` and the middleware that loads its key.

    State is bound to our principal (``user:...`` over authorized HTTP, ``local`` otherwise), so another
    principal's retry with it is refused even on a transport without tokens."""
    codec = ServerKeyCodec()
    lock = anyio.Lock()

    async def ensure_key() -> None:
        """Load the server key once, when a question is about to be sealed or an answer unsealed (not on every
        call: most calls never need it, and the key file is then not created before anything uses it)."""
        if codec.ready:
            return
        async with lock:
            if codec.ready:
                return
            try:
                from .providers.token_store import TokenKeyring

                keyring = TokenKeyring(app.settings.secret_key, app.settings.data_dir)
                codec.set_server_key(await keyring.key(app.storage.collection("tokens")))
            except Exception:  # confirmations then fail closed; every other call goes on
                log.warning("could not load the server key for requestState; confirmations by "
                            "elicitation are unavailable until it loads", exc_info=True)

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method not in _MRTR_METHODS:
            return await call_next(ctx)
        params = ctx.params if isinstance(ctx.params, dict) else {}
        if "inputResponses" in params and not isinstance(params["inputResponses"], dict):
            # The SDK reads an explicit null as "no answers"; it is a malformed retry, so say so (SEP-2322).
            raise MCPError(code=INVALID_PARAMS, message="inputResponses must be an object mapping each key of the "
                                                        "inputRequests to its response (omit it on a first call)")
        if params.get("requestState") is not None:
            await ensure_key()
        return await call_next(ctx)

    middleware.ensure_key = ensure_key  # type: ignore[attr-defined]  # for ask(), through the server

    security = RequestStateSecurity(codec=codec, ttl=STATE_TTL_S, bind_principal=lambda _ctx: current_principal())
    return security, middleware


def install_key_loader(server: Any, middleware: Any) -> None:
    """Put the key loader just outside the SDK's request-state boundary, so the key is there when it unseals."""
    from mcp.server.request_state import RequestStateBoundary

    chain = server.middleware
    at = next((i for i, m in enumerate(chain) if isinstance(m, RequestStateBoundary)), 0)
    chain.insert(at, middleware)
    server._echotune_state_key = middleware.ensure_key  # ask() loads it before a question is sealed
