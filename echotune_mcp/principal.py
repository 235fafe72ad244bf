"""Who is calling: the owner stamped on every record and used to scope every read.

Over stdio the caller is the local user, ``local``. Over HTTP with authorization the verified access token
decides (``auth.context``): ``user:`` + a hash of its issuer and subject, so two users of one server never see
each other's data.
"""

from __future__ import annotations

from .auth.context import LOCAL, current_caller

__all__ = ["LOCAL", "current_principal"]


def current_principal() -> str:
    return current_caller().principal
