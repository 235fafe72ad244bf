"""Errors the calling model should read: one place that words them consistently.

Tools raise ``ToolError`` (the SDK turns it into an ``isError`` result the model can act on);
domain code raises the subclasses below so it never depends on the MCP SDK.
"""

from __future__ import annotations

from collections.abc import Iterable

from mcp.server.mcpserver.exceptions import ToolError


class EchoError(ToolError):
    """Base for errors whose message is written for the agent."""


class NotFound(EchoError):
    def __init__(self, what: str, id_: str, how_to_list: str):
        super().__init__(f"{what} {id_!r} was not found for this client; {how_to_list}")
        self.id = id_


class BadInput(EchoError):
    """An argument is out of range or not one of the allowed values."""

    def __init__(self, field: str, problem: str, allowed: str | Iterable[str] | None = None):
        if allowed is not None and not isinstance(allowed, str):
            allowed = ", ".join(map(str, allowed))
        msg = f"invalid {field}: {problem}" + (f" (allowed: {allowed})" if allowed else "")
        super().__init__(msg)
        self.field = field


class Busy(EchoError):
    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s
