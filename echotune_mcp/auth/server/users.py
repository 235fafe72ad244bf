"""Users of the bundled authorization server: argon2id password hashes and TOTP (RFC 6238) second factors."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .store import Store

MIN_PASSWORD_LEN = 10
MAX_PASSWORD_LEN = 1024
TOTP_ISSUER = "EchoTune MCP"

_hasher = PasswordHasher()  # argon2id with the library's current RFC 9106 defaults
# Verified when the user does not exist, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user command that cannot be done, with the reason for the operator."""


@dataclass(frozen=True)
class LoginResult:
    username: str
    subject: str
    needs_otp: bool


def check_username(username: str) -> str:
    name = username.strip()
    if not 1 <= len(name) <= 64 or any(c.isspace() or not c.isprintable() for c in name):
        raise UserError("a username is 1-64 printable characters without spaces")
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD_LEN <= len(password) <= MAX_PASSWORD_LEN:
        raise UserError(f"a password is {MIN_PASSWORD_LEN}-{MAX_PASSWORD_LEN} characters")
    return password


def add_user(store: Store, username: str, password: str, *, totp: bool) -> tuple[str, str | None]:
    """Create a user; returns (subject, otpauth URI or None). The subject is random and stable: tokens carry it
    as ``sub``, never the username, so renaming nothing leaks and the resource server sees an opaque id."""
    username = check_username(username)
    check_password(password)
    if store.get_user(username) is not None:
        raise UserError(f"user {username!r} exists already (use `user reset-mfa` or choose another name)")
    subject = secrets.token_hex(16)
    secret = pyotp.random_base32() if totp else None
    store.add_user(username, subject, _hasher.hash(password), secret)
    return subject, (otpauth_uri(username, secret) if secret else None)


def reset_mfa(store: Store, username: str, *, totp: bool) -> str | None:
    """Remove the user's TOTP seed (a lost phone) and, with ``totp``, enrol a new one. Every refresh token of the
    user is revoked: whoever held the old factor must sign in again. Returns the new otpauth URI, if any."""
    row = store.get_user(username)
    if row is None:
        raise UserError(f"no user {username!r}")
    secret = pyotp.random_base32() if totp else None
    store.set_totp(username, secret)
    store.revoke_user_tokens(row["subject"])
    return otpauth_uri(username, secret) if secret else None


def otpauth_uri(username: str, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)


def verify_password(store: Store, username: str, password: str) -> LoginResult | None:
    row = store.get_user(username) if 0 < len(username) <= 64 else None
    stored = row["password_hash"] if row is not None else _DUMMY_HASH
    try:
        ok = _hasher.verify(stored, password[:MAX_PASSWORD_LEN])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok or row is None:
        return None
    if _hasher.check_needs_rehash(stored):
        store.set_password_hash(username, _hasher.hash(password))
    return LoginResult(username=row["username"], subject=row["subject"], needs_otp=row["totp_secret"] is not None)


def verify_totp(store: Store, username: str, code: str) -> bool:
    """A 6-digit code of the current 30 s step or its neighbours, each step usable once (no replay)."""
    row = store.get_user(username)
    code = code.strip().replace(" ", "")
    if row is None or row["totp_secret"] is None or not (code.isdigit() and len(code) == 6):
        return False
    totp = pyotp.TOTP(row["totp_secret"])
    now = time.time()
    for offset in (0, -1, 1):
        at = now + offset * totp.interval
        if secrets.compare_digest(totp.at(at), code):
            return store.claim_totp_step(username, int(at // totp.interval))
    return False
