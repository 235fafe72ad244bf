"""Who is calling: the owner stamped on every record and used to scope every read.

Over stdio the caller is the local user, ``local``. Over HTTP with auth configured (a later
issue) the SDK's auth middleware puts the verified access token in a context variable; its
subject (or client id) becomes the owner, so two users of one server never see each other's data.
"""

from __future__ import annotations

LOCAL = "local"


def current_principal() -> str:
    try:
        from mcp.server.auth.middleware.auth_context import get_access_token
    except ImportError:  # pragma: no cover - SDK layout changed
        return LOCAL
    token = get_access_token()
    if token is None:
        return LOCAL
    subject = getattr(token, "subject", None) or getattr(token, "client_id", None)
    return f"user:{subject}" if subject else LOCAL
