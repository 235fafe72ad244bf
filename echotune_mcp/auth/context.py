"""Who is calling, as one value: the principal that owns records, and what their token allows.

Over stdio (or unauthenticated loopback HTTP) the caller is the local user. Over HTTP with authorization the
HTTP layer (``auth.http``) verifies the bearer token and puts it in the SDK's auth context variable; the SDK
copies that variable into the task that runs the request, so ``current_caller()`` works inside every tool.

The principal of a token is ``user:`` + the first 32 hex digits of sha256(iss, sub): stable for one account of
one issuer, different for the same ``sub`` at another issuer, and free of raw e-mail addresses or user names in
stored records.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.provider import AccessToken

LOCAL = "local"


class VerifiedToken(AccessToken):
    """An access token our verifier accepted: the SDK's fields plus the claims policy decisions need."""

    issuer: str | None = None
    amr: list[str] = []


def principal_for(issuer: str | None, subject: str) -> str:
    """The owner id of (``iss``, ``sub``): ``user:`` + 32 hex digits; ``\\x1f`` keeps (a, bc) apart from (ab, c)."""
    digest = hashlib.sha256(f"{issuer or ''}\x1f{subject}".encode()).hexdigest()
    return f"user:{digest[:32]}"


@dataclass(frozen=True)
class Caller:
    principal: str
    issuer: str | None = None
    subject: str | None = None
    client_id: str | None = None
    scopes: frozenset[str] = frozenset()
    amr: frozenset[str] = frozenset()
    authenticated: bool = False

    @property
    def stepped_up(self) -> bool:
        """Whether the user proved a second factor for this token (RFC 8176 ``amr`` ``mfa`` or ``otp``)."""
        return "mfa" in self.amr or "otp" in self.amr


LOCAL_CALLER = Caller(principal=LOCAL)


def caller_from_token(token: AccessToken) -> Caller:
    """The caller a verified token stands for. A token without a subject is a client acting for itself
    (client-credentials); its client id is then the subject."""
    claims: dict[str, Any] = token.claims or {}
    issuer = getattr(token, "issuer", None) or (str(claims["iss"]) if claims.get("iss") is not None else None)
    subject = token.subject or (str(claims["sub"]) if claims.get("sub") is not None else None) or token.client_id
    raw_amr = getattr(token, "amr", None) or claims.get("amr") or []
    amr = frozenset(str(a) for a in raw_amr) if isinstance(raw_amr, (list, tuple, set, frozenset)) else frozenset()
    return Caller(principal=principal_for(issuer, subject), issuer=issuer, subject=subject,
                  client_id=token.client_id or None, scopes=frozenset(token.scopes), amr=amr, authenticated=True)


def current_caller() -> Caller:
    """The caller of the request being served; the local user when no verified token is in context."""
    from mcp.server.auth.middleware.auth_context import get_access_token

    token = get_access_token()
    return LOCAL_CALLER if token is None else caller_from_token(token)
