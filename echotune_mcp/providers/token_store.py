"""Provider tokens at rest: one encrypted document per (owner, provider) in the ``tokens`` collection.

The token JSON is sealed with AES-GCM; the associated data binds it to its owner and provider, so
a ciphertext copied onto another owner's record does not decrypt. The key comes from
``ECHOTUNE_SECRET_KEY`` (any string, stretched with HKDF) or from a 0600 key file made on first
run in the data dir. Only non-secret metadata (provider, expiry, scope, source) is stored in clear.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..private_files import private_dir
from ..storage.base import Collection, StorageError
from ..storage.records import now

log = logging.getLogger(__name__)

KEY_FILE_NAME = "token.key"


def load_key(secret: str | None, data_dir: Path) -> bytes:
    """The 32-byte token key: derived from the configured secret, else read or created in ``data_dir``."""
    if secret:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"echotune-token-key/v1", info=b"tokens").derive(
            secret.encode())
    path = data_dir / KEY_FILE_NAME
    private_dir(data_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s was readable by others (mode %o); tightening to 0600", path, mode)
            path.chmod(0o600)
        key = path.read_bytes()
        if len(key) != 32:
            raise StorageError(f"{path} is not a 32-byte key; remove it to start over (stored tokens are then lost)")
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def token_doc_id(owner: str, provider: str) -> str:
    """Deterministic, so the collection's primary key enforces one token per (owner, provider)."""
    return "tok_" + hashlib.sha256(f"{owner}\x00{provider}".encode()).hexdigest()[:40]


class TokenStore:
    """Save, load and delete provider tokens; callers never see ciphertext."""

    def __init__(self, collection: Collection, key: bytes):
        self._coll = collection
        self._aead = AESGCM(key)

    @staticmethod
    def _aad(owner: str, provider: str) -> bytes:
        return f"echotune-token/v1|{owner}|{provider}".encode()

    async def save(self, owner: str, provider: str, token: dict[str, Any], *, source: str = "oauth") -> None:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, json.dumps(dict(token)).encode(), self._aad(owner, provider))
        fields = {
            "provider": provider,
            "source": source,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(sealed).decode(),
            "expires_at": token.get("expires_at"),
            "scope": token.get("scope"),
            "has_refresh_token": bool(token.get("refresh_token")),
            "updated_at": now(),
        }
        id_ = token_doc_id(owner, provider)
        if await self._coll.update(owner, id_, fields) is not None:
            return
        try:
            await self._coll.insert({"id": id_, "owner": owner, "created_at": now(), **fields})
        except StorageError:  # another request inserted it first: ours is the newer token
            await self._coll.update(owner, id_, fields)

    async def load(self, owner: str, provider: str) -> dict[str, Any] | None:
        doc = await self._coll.get(owner, token_doc_id(owner, provider))
        if doc is None:
            return None
        try:
            plain = self._aead.decrypt(base64.b64decode(doc["nonce"]), base64.b64decode(doc["ciphertext"]),
                                       self._aad(owner, provider))
        except (InvalidTag, KeyError, ValueError):  # wrong key (secret changed) or a tampered record
            log.warning("stored %s token for %s cannot be decrypted (secret key changed?)", provider, owner)
            return None
        return json.loads(plain)

    async def metadata(self, owner: str, provider: str) -> dict[str, Any] | None:
        """The clear-text fields only (for status): never the token itself."""
        doc = await self._coll.get(owner, token_doc_id(owner, provider))
        if doc is None:
            return None
        return {k: doc.get(k) for k in ("provider", "source", "expires_at", "scope", "has_refresh_token",
                                         "updated_at", "created_at")}

    async def delete(self, owner: str, provider: str) -> bool:
        return await self._coll.delete(owner, token_doc_id(owner, provider))
