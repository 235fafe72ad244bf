"""Provider tokens at rest: one encrypted document per (owner, provider) in the ``tokens`` collection.

The token JSON is sealed with AES-GCM; the associated data binds it to its owner and provider, so
a ciphertext copied onto another owner's record does not decrypt. The key comes from
``ECHOTUNE_SECRET_KEY`` (a passphrase, stretched with scrypt) or from a 0600 key file made on first
run in the data dir. Only non-secret metadata (provider, expiry, scope, source) is stored in clear.

A key-check record in the same collection (owner ``system:token-key``) holds the scrypt salt and
parameters and a value sealed with the key. It lives beside the tokens, not in a local file, so
every server sharing one MongoDB derives the same key from the same passphrase. At startup the key
is checked against it once: a changed or missing ``ECHOTUNE_SECRET_KEY`` is one clear error naming
the way out, instead of every later call quietly finding no token. Tokens sealed by older versions
(HKDF-derived passphrase key, or the key file) are re-sealed under the new key on first start; the
check record is written only after every token was read, so an interrupted migration resumes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

import anyio

from ..config import Settings
from ..private_files import private_dir
from .base import ProviderError
from ..storage.base import Collection, DuplicateKey, StorageError
from ..storage.records import now

log = logging.getLogger(__name__)

KEY_FILE_NAME = "token.key"


# scrypt (RFC 7914) for the passphrase: 2**15 x 8 x 128 bytes = 32 MiB and ~0.1 s per derivation, once per process
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
KEY_CHECK_OWNER = "system:token-key"  # not a principal: principals are "local" or "user:<subject>"
KEY_CHECK_ID = "tokkey_check_v2"
_CHECK_PLAIN = b"echotune provider-token key check v2"
_CHECK_AAD = b"echotune-token-key-check/v2"
RESET_HINT = ("or run `echotune-mcp auth reset --yes` to delete the stored provider tokens (everyone then "
              "reconnects with connect_provider)")


class SecretKeyError(ProviderError):
    """The configured key cannot open the stored provider tokens (changed, missing, or another key file)."""


def legacy_passphrase_key(secret: str) -> bytes:
    """How versions before issue #13 turned ECHOTUNE_SECRET_KEY into the token key (HKDF, no stretching)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"echotune-token-key/v1", info=b"tokens").derive(
        secret.encode())


def passphrase_key(secret: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret.encode())


def load_key(secret: str | None, data_dir: Path) -> bytes:
    """The key file's 32-byte key, read or created (0600) in ``data_dir``.

    ``secret`` is accepted for older callers only: a passphrase key needs its salt from the key-check
    record, so ``TokenKeyring`` derives it; passing one here gives the pre-#13 HKDF key.
    """
    if secret:
        return legacy_passphrase_key(secret)
    path = data_dir / KEY_FILE_NAME
    private_dir(data_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def _read_key_file(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); tightening to 0600", path, mode)
        path.chmod(0o600)
    key = path.read_bytes()
    if len(key) != 32:
        raise StorageError(f"{path} is not a 32-byte key; remove it to start over (stored tokens are then lost)")
    return key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _open(key: bytes, doc: dict[str, Any], aad: bytes) -> bytes | None:
    try:
        return AESGCM(key).decrypt(base64.b64decode(doc["nonce"]), base64.b64decode(doc["ciphertext"]), aad)
    except (InvalidTag, KeyError, ValueError, TypeError):
        return None


async def _token_docs(coll: Collection) -> AsyncIterator[dict[str, Any]]:
    cursor = None
    while True:
        page = await coll.find(None, limit=200, cursor=cursor)
        for doc in page.items:
            if doc.get("owner") != KEY_CHECK_OWNER and doc.get("ciphertext"):
                yield doc
        cursor = page.next_cursor
        if not cursor:
            return


class TokenKeyring:
    """Derives, checks and (once) migrates the token key; one per hub, opened on first use."""

    def __init__(self, secret: str | None, data_dir: Path):
        self.secret = secret or None
        self.data_dir = Path(data_dir)
        self._key: bytes | None = None

    async def key(self, coll: Collection) -> bytes:
        if self._key is None:
            for _ in range(3):  # another process may write the check record between our read and our insert
                try:
                    self._key = await self._open(coll)
                    break
                except DuplicateKey:
                    continue
            else:  # pragma: no cover - three lost races in a row
                raise SecretKeyError("could not agree on the provider-token key with another process; try again")
        return self._key

    def _old_keys(self) -> list[bytes]:
        """Keys older versions sealed tokens with: the HKDF passphrase key, the key file."""
        old = [legacy_passphrase_key(self.secret)] if self.secret else []
        if (self.data_dir / KEY_FILE_NAME).exists() or not self.secret:
            old.append(load_key(None, self.data_dir))
        return old

    async def _open(self, coll: Collection) -> bytes:
        check = await coll.get(KEY_CHECK_OWNER, KEY_CHECK_ID)
        if check is not None and check.get("source") == "passphrase":
            if not self.secret:
                raise SecretKeyError("stored provider tokens were encrypted with ECHOTUNE_SECRET_KEY, which is not "
                                     f"set now; set it again (environment or config file), {RESET_HINT}")
            key = await anyio.to_thread.run_sync(passphrase_key, self.secret, base64.b64decode(check["salt"]),
                                                 int(check["n"]), int(check["r"]), int(check["p"]))
            if _open(key, check, _CHECK_AAD) != _CHECK_PLAIN:
                raise SecretKeyError("stored provider tokens were encrypted with a different ECHOTUNE_SECRET_KEY; "
                                     f"restore the original value, {RESET_HINT}")
            if not check.get("migrated", True):  # a migration that was interrupted: finish it
                await self._reseal(coll, key, self._old_keys(), strict=False)
                await coll.update(KEY_CHECK_OWNER, KEY_CHECK_ID, {"migrated": True})
            return key
        key_file = self.data_dir / KEY_FILE_NAME
        if check is not None:  # sealed with a key file
            file_key = _read_key_file(key_file) if key_file.exists() else None
            if file_key is None or _open(file_key, check, _CHECK_AAD) != _CHECK_PLAIN:
                raise SecretKeyError(f"stored provider tokens were encrypted with the key file {key_file} of the "
                                     "server that stored them, which is missing or different here; restore that "
                                     "file (servers sharing one database should all set ECHOTUNE_SECRET_KEY "
                                     f"instead), {RESET_HINT}")
            if not self.secret:
                return file_key
            return await self._switch(coll, [file_key], replacing=True)
        # No check record: a fresh store, or tokens sealed by a version before the key check.
        return await self._switch(coll, self._old_keys(), replacing=False)

    async def _switch(self, coll: Collection, old_keys: list[bytes], *, replacing: bool) -> bytes:
        """Check every token opens with an old key (or fail, changing nothing), write the check, re-seal."""
        await self._reseal(coll, None, old_keys, strict=True)  # dry run: raises before anything is written
        if self.secret:
            salt = secrets.token_bytes(16)
            key = await anyio.to_thread.run_sync(passphrase_key, self.secret, salt)
            params: dict[str, Any] = {"source": "passphrase", "kdf": "scrypt", "salt": _b64(salt),
                                      "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
        else:
            key = old_keys[-1]
            params = {"source": "key_file"}
        nonce = secrets.token_bytes(12)
        record = {**params, "nonce": _b64(nonce), "migrated": False, "updated_at": now(),
                  "ciphertext": _b64(AESGCM(key).encrypt(nonce, _CHECK_PLAIN, _CHECK_AAD))}
        if replacing:
            await coll.update(KEY_CHECK_OWNER, KEY_CHECK_ID, record)
        else:  # DuplicateKey when another process wrote it first: the caller starts over with theirs
            await coll.insert({"id": KEY_CHECK_ID, "owner": KEY_CHECK_OWNER, "provider": "", "created_at": now(),
                               **record})
        moved = await self._reseal(coll, key, old_keys, strict=True)
        await coll.update(KEY_CHECK_OWNER, KEY_CHECK_ID, {"migrated": True})
        if moved:
            log.warning("re-sealed %d stored provider token(s) under the new token key", moved)
        return key

    async def _reseal(self, coll: Collection, key: bytes | None, old_keys: list[bytes], *, strict: bool) -> int:
        """Re-seal under ``key`` every token that only an old key opens (``key=None``: only check they open)."""
        moved = 0
        async for doc in _token_docs(coll):
            aad = TokenStore.aad(doc["owner"], doc.get("provider", ""))
            if key is not None and _open(key, doc, aad) is not None:
                continue
            plain = next((p for k in old_keys if (p := _open(k, doc, aad)) is not None), None)
            if plain is None:
                if strict:
                    raise SecretKeyError(
                        "stored provider tokens cannot be opened with the configured key: they were encrypted "
                        "with a different ECHOTUNE_SECRET_KEY (or without one, or with another server's key "
                        f"file); restore the original setting, {RESET_HINT}")
                log.warning("a stored %s token for %s opens with no known key; left as is",
                            doc.get("provider"), doc["owner"])
                continue
            if key is None or key in old_keys:
                continue
            nonce = secrets.token_bytes(12)
            await coll.update(doc["owner"], doc["id"], {"nonce": _b64(nonce),
                                                        "ciphertext": _b64(AESGCM(key).encrypt(nonce, plain, aad))})
            moved += 1
        return moved


async def check_token_key(coll: Collection, secret: str | None, data_dir: Path) -> None:
    """Startup check: raise ``SecretKeyError`` (one clear message) when the key cannot open the stored tokens."""
    await TokenKeyring(secret, data_dir).key(coll)


async def preflight_secrets(settings: Settings) -> None:
    """What ``echotune-mcp serve`` checks before it starts: the key opens the stored tokens and signing key.

    Raises ``SecretKeyError`` with the one message a person needs (what changed, how to restore or reset).
    """
    from ..licensing.keys import key_path, signing_key
    from ..storage import open_storage

    storage = await open_storage(settings)
    try:
        await check_token_key(storage.collection("tokens"), settings.secret_key, settings.data_dir)
    finally:
        await storage.close()
    if settings.signing_key_file is not None or key_path(settings.data_dir).exists():
        try:
            signing_key(settings.data_dir, settings.secret_key, settings.signing_key_file)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise SecretKeyError(f"{exc}; restore the original ECHOTUNE_SECRET_KEY, or move that file away to make "
                                 "a new signing key (manifests signed with the old key then no longer verify "
                                 "against this server's key)") from None


async def reset_tokens(coll: Collection) -> int:
    """Delete every stored provider token and the key check (``echotune-mcp auth reset``); returns how many."""
    docs = [doc async for doc in _token_docs(coll)]
    for doc in docs:
        await coll.delete(doc["owner"], doc["id"])
    await coll.delete(KEY_CHECK_OWNER, KEY_CHECK_ID)
    return len(docs)


def token_doc_id(owner: str, provider: str) -> str:
    """Deterministic, so the collection's primary key enforces one token per (owner, provider)."""
    return "tok_" + hashlib.sha256(f"{owner}\x00{provider}".encode()).hexdigest()[:40]


class TokenStore:
    """Save, load and delete provider tokens; callers never see ciphertext.

    With ``principal_keys`` (``privacy.keys.PrincipalKeys``) the token is first sealed with its owner's data key,
    then with the server key as before: deleting the owner's data key (delete_my_data) makes every copy of the
    grant unreadable, backups included. The server-key layer is what the keyring checks and migrates; it sees
    the inner layer as opaque bytes. Grants stored with one layer (older versions) still load, and get both
    layers on their next save (a token refresh).
    """

    def __init__(self, collection: Collection, key: bytes | TokenKeyring, principal_keys: Any = None):
        self._coll = collection
        self._key = key
        self._principal_keys = principal_keys

    async def _aead(self) -> AESGCM:
        key = self._key if isinstance(self._key, bytes) else await self._key.key(self._coll)
        return AESGCM(key)

    @staticmethod
    def aad(owner: str, provider: str) -> bytes:
        return f"echotune-token/v1|{owner}|{provider}".encode()

    _aad = aad

    async def save(self, owner: str, provider: str, token: dict[str, Any], *, source: str = "oauth") -> None:
        aead = await self._aead()
        nonce = secrets.token_bytes(12)
        id_ = token_doc_id(owner, provider)
        plain = json.dumps(dict(token)).encode()
        if self._principal_keys is not None:
            plain = (await self._principal_keys.get(owner)).seal(id_, {"token": dict(token)}).encode()
        sealed = aead.encrypt(nonce, plain, self._aad(owner, provider))
        fields = {
            "principal_sealed": self._principal_keys is not None,
            "provider": provider,
            "source": source,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(sealed).decode(),
            "expires_at": token.get("expires_at"),
            "scope": token.get("scope"),
            "has_refresh_token": bool(token.get("refresh_token")),
            "updated_at": now(),
        }
        if await self._coll.update(owner, id_, fields) is not None:
            return
        try:
            await self._coll.insert({"id": id_, "owner": owner, "created_at": now(), **fields})
        except StorageError:  # another request inserted it first: ours is the newer token
            await self._coll.update(owner, id_, fields)

    async def load(self, owner: str, provider: str) -> dict[str, Any] | None:
        aead = await self._aead()  # a key that cannot open the store fails here, clearly, before any record
        doc = await self._coll.get(owner, token_doc_id(owner, provider))
        if doc is None:
            return None
        try:
            plain = aead.decrypt(base64.b64decode(doc["nonce"]), base64.b64decode(doc["ciphertext"]),
                                 self._aad(owner, provider))
        except (InvalidTag, KeyError, ValueError, TypeError):  # a tampered or foreign record
            log.warning("stored %s token for %s cannot be decrypted (tampered, or copied from another owner)",
                        provider, owner)
            return None
        if not doc.get("principal_sealed"):
            return json.loads(plain)
        key = await self._principal_keys.get(owner, create=False) if self._principal_keys is not None else None
        inner = plain.decode()
        if key is None or not key.sealed_by_me(inner):  # the owner's data key was deleted: the grant is gone
            log.warning("stored %s token for %s was sealed with a data key that no longer exists", provider, owner)
            return None
        return key.open(doc["id"], inner)["token"]

    async def metadata(self, owner: str, provider: str) -> dict[str, Any] | None:
        """The clear-text fields only (for status): never the token itself."""
        await self._aead()
        doc = await self._coll.get(owner, token_doc_id(owner, provider))
        if doc is None:
            return None
        return {k: doc.get(k) for k in ("provider", "source", "expires_at", "scope", "has_refresh_token",
                                         "updated_at", "created_at")}

    async def delete(self, owner: str, provider: str) -> bool:
        return await self._coll.delete(owner, token_doc_id(owner, provider))
