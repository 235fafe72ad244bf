"""The authorization server's state: one SQLite file (0600, in a 0700 folder) with users, clients, login
transactions, authorization codes, refresh tokens, signing keys and recent login failures.

Secrets are never stored in the clear: passwords as argon2id hashes, codes and refresh tokens as SHA-256
digests (they are long random strings, so a digest is enough), and the TOTP seed and signing keys only in this
private file. Every write is one short transaction; every connection waits at most ``BUSY_TIMEOUT_S`` for a
lock, so a CLI command next to a running server never hangs.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ...private_files import private_dir, private_file, tighten_file

BUSY_TIMEOUT_S = 5.0
DB_NAME = "auth.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    subject TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    totp_secret TEXT,
    totp_last_step INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,                -- 'cimd' (a fetched Client ID Metadata Document) or 'dynamic' (RFC 7591)
    metadata TEXT NOT NULL,
    fetched_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS login_transactions (
    txn_id TEXT PRIMARY KEY,
    params TEXT NOT NULL,              -- the validated authorization request, as [[name, value], ...]
    csrf_hash TEXT NOT NULL,
    stage TEXT NOT NULL,               -- 'password' or 'otp'
    username TEXT,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    subject TEXT NOT NULL,
    username TEXT NOT NULL,
    amr TEXT NOT NULL,
    auth_time INTEGER NOT NULL,
    code_challenge TEXT NOT NULL,
    code_challenge_method TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    family_id TEXT
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    username TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    amr TEXT NOT NULL,
    auth_time INTEGER NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS refresh_family ON refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS refresh_subject ON refresh_tokens (subject);
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY,
    private_jwk TEXT NOT NULL,
    created_at REAL NOT NULL,
    retired_at REAL,                   -- no longer signs
    publish_until REAL                 -- stays in the JWKS until the last token it signed has expired
);
CREATE TABLE IF NOT EXISTS login_failures (
    key TEXT NOT NULL,                 -- sha256(username + client address)
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures (key, at);
"""


def digest(secret: str) -> str:
    """SHA-256 hex of a long random secret (codes, refresh tokens, CSRF tokens): what the database keeps."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Store:
    """Thin, synchronous access to the state file; callers on the event loop use a worker thread."""

    def __init__(self, state_dir: Path):
        self.dir = private_dir(Path(state_dir), ours=True)
        self.path = private_file(self.dir / DB_NAME)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        finally:
            db.close()
        for side in ("-wal", "-shm", "-journal"):
            tighten_file(self.path.with_name(DB_NAME + side))

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # -- users --------------------------------------------------------------------------------------
    def get_user(self, username: str) -> sqlite3.Row | None:
        with self.connect() as db:
            return db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()

    def list_users(self) -> list[sqlite3.Row]:
        with self.connect() as db:
            return db.execute("SELECT username, subject, totp_secret IS NOT NULL AS mfa, created_at FROM users "
                              "ORDER BY username").fetchall()

    def add_user(self, username: str, subject: str, password_hash: str, totp_secret: str | None) -> None:
        now = time.time()
        with self.connect() as db:
            db.execute("INSERT INTO users (username, subject, password_hash, totp_secret, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (username, subject, password_hash, totp_secret, now, now))

    def set_totp(self, username: str, totp_secret: str | None) -> bool:
        with self.connect() as db:
            cur = db.execute("UPDATE users SET totp_secret = ?, totp_last_step = 0, updated_at = ? WHERE username = ?",
                             (totp_secret, time.time(), username))
            return cur.rowcount == 1

    def set_password_hash(self, username: str, password_hash: str) -> None:
        with self.connect() as db:
            db.execute("UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?",
                       (password_hash, time.time(), username))

    def claim_totp_step(self, username: str, step: int) -> bool:
        """Record ``step`` as used; False when it (or a later one) was used already: a code works once."""
        with self.connect() as db:
            cur = db.execute("UPDATE users SET totp_last_step = ? WHERE username = ? AND totp_last_step < ?",
                             (step, username, step))
            return cur.rowcount == 1

    # -- clients ------------------------------------------------------------------------------------
    def get_client(self, client_id: str) -> sqlite3.Row | None:
        with self.connect() as db:
            return db.execute("SELECT * FROM clients WHERE client_id = ?", (client_id,)).fetchone()

    def put_client(self, client_id: str, kind: str, metadata: dict) -> None:
        with self.connect() as db:
            db.execute("INSERT INTO clients (client_id, kind, metadata, fetched_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT(client_id) DO UPDATE SET kind = excluded.kind, metadata = excluded.metadata, "
                       "fetched_at = excluded.fetched_at", (client_id, kind, json.dumps(metadata), time.time()))

    # -- login transactions -------------------------------------------------------------------------
    def put_transaction(self, txn_id: str, params: list[tuple[str, str]], csrf_hash: str, ttl_s: float) -> None:
        now = time.time()
        with self.connect() as db:
            db.execute("DELETE FROM login_transactions WHERE expires_at < ?", (now,))
            db.execute("INSERT INTO login_transactions (txn_id, params, csrf_hash, stage, expires_at) "
                       "VALUES (?, ?, ?, 'password', ?)", (txn_id, json.dumps(params), csrf_hash, now + ttl_s))

    def get_transaction(self, txn_id: str) -> sqlite3.Row | None:
        with self.connect() as db:
            return db.execute("SELECT * FROM login_transactions WHERE txn_id = ? AND expires_at >= ?",
                              (txn_id, time.time())).fetchone()

    def advance_transaction(self, txn_id: str, username: str) -> None:
        with self.connect() as db:
            db.execute("UPDATE login_transactions SET stage = 'otp', username = ? WHERE txn_id = ?",
                       (username, txn_id))

    def take_transaction(self, txn_id: str) -> bool:
        """Delete the transaction; True only for the one caller that removed it (a form posts once)."""
        with self.connect() as db:
            return db.execute("DELETE FROM login_transactions WHERE txn_id = ?", (txn_id,)).rowcount == 1

    # -- login failures (rate limit) ----------------------------------------------------------------
    def failures_since(self, key: str, since: float) -> list[float]:
        with self.connect() as db:
            db.execute("DELETE FROM login_failures WHERE at < ?", (since,))
            return [r["at"] for r in db.execute("SELECT at FROM login_failures WHERE key = ? ORDER BY at",
                                                (key,)).fetchall()]

    def add_failure(self, key: str) -> None:
        with self.connect() as db:
            db.execute("INSERT INTO login_failures (key, at) VALUES (?, ?)", (key, time.time()))

    def clear_failures(self, key: str) -> None:
        with self.connect() as db:
            db.execute("DELETE FROM login_failures WHERE key = ?", (key,))

    # -- authorization codes ------------------------------------------------------------------------
    def put_code(self, code: str, **fields: object) -> None:
        cols = ["code_hash", *fields]
        with self.connect() as db:
            db.execute("DELETE FROM codes WHERE expires_at < ?", (time.time() - 3600,))
            db.execute(f"INSERT INTO codes ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                       (digest(code), *fields.values()))

    def consume_code(self, code: str) -> tuple[sqlite3.Row | None, bool]:
        """(row, fresh): ``fresh`` only for the first caller; a second use revokes what the first one got."""
        code_hash = digest(code)
        with self.connect() as db:
            row = db.execute("SELECT * FROM codes WHERE code_hash = ?", (code_hash,)).fetchone()
            if row is None:
                return None, False
            if row["used_at"] is not None:
                if row["family_id"]:
                    db.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
                               (time.time(), row["family_id"]))
                return row, False
            db.execute("UPDATE codes SET used_at = ? WHERE code_hash = ?", (time.time(), code_hash))
            return row, True

    def bind_code_family(self, code_hash: str, family_id: str) -> None:
        with self.connect() as db:
            db.execute("UPDATE codes SET family_id = ? WHERE code_hash = ?", (family_id, code_hash))

    # -- refresh tokens -----------------------------------------------------------------------------
    def put_refresh_token(self, token: str, **fields: object) -> None:
        cols = ["token_hash", *fields]
        with self.connect() as db:
            db.execute("DELETE FROM refresh_tokens WHERE expires_at < ?", (time.time(),))
            db.execute(f"INSERT INTO refresh_tokens ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                       (digest(token), *fields.values()))

    def get_refresh_token(self, token: str) -> sqlite3.Row | None:
        with self.connect() as db:
            return db.execute("SELECT * FROM refresh_tokens WHERE token_hash = ?", (digest(token),)).fetchone()

    def use_refresh_token(self, token_hash: str) -> bool:
        """Mark a refresh token used. False when it was used or revoked already: then its whole family is
        revoked (RFC 9700 4.14.2: a reused refresh token means it leaked)."""
        now = time.time()
        with self.connect() as db:
            cur = db.execute("UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL "
                             "AND revoked_at IS NULL AND expires_at >= ?", (now, token_hash, now))
            if cur.rowcount == 1:
                return True
            row = db.execute("SELECT family_id FROM refresh_tokens WHERE token_hash = ?", (token_hash,)).fetchone()
            if row is not None:
                db.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
                           (now, row["family_id"]))
            return False

    def revoke_user_tokens(self, subject: str) -> int:
        with self.connect() as db:
            return db.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE subject = ? AND revoked_at IS NULL",
                              (time.time(), subject)).rowcount

    # -- signing keys -------------------------------------------------------------------------------
    def signing_keys(self) -> list[sqlite3.Row]:
        with self.connect() as db:
            return db.execute("SELECT * FROM signing_keys ORDER BY created_at").fetchall()

    def add_signing_key(self, kid: str, private_jwk: dict, publish_old_until: float) -> None:
        """Add the new active key; every key that was signing stops now and stays published until
        ``publish_old_until`` (the expiry of the last access token it can have signed)."""
        now = time.time()
        with self.connect() as db:
            db.execute("UPDATE signing_keys SET retired_at = ?, publish_until = ? WHERE retired_at IS NULL",
                       (now, publish_old_until))
            db.execute("INSERT INTO signing_keys (kid, private_jwk, created_at) VALUES (?, ?, ?)",
                       (kid, json.dumps(private_jwk), now))
            db.execute("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND publish_until < ?", (now,))
