"""Per-principal data keys: personal data at rest is sealed with a key only its owner's records use.

Each principal gets a random 256-bit data key the first time something of theirs is sealed. It is stored in the
``principal_keys`` collection wrapped (AES-GCM) by a wrapping key derived (HKDF) from the server key that already
seals provider tokens (``providers/token_store.TokenKeyring``: ``ECHOTUNE_SECRET_KEY`` or the data dir's key
file), with the owner as associated data, so a wrapped key copied onto another owner's record does not open.

Fields are sealed with AES-GCM under the data key with ``owner|record id`` as associated data: a sealed value
moved onto another record (or another owner) fails to open. Deleting the principal's key (``shred``) makes every
copy of their sealed fields unreadable, including those a backup still holds (crypto-shredding).

Deterministic lookups (the listening store's ``item_key`` filter) use a keyed hash (HMAC-SHA256 under a key
derived from the data key), so equality queries keep working without the clear value being stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..storage.base import Collection, DuplicateKey
from ..storage.records import now

KEY_FORMAT = "pkey/v1"


class KeyShredded(Exception):
    """The principal's data key is gone (their data was deleted): sealed values can never be opened again."""


def key_doc_id(owner: str) -> str:
    return "pkey_" + hashlib.sha256(owner.encode()).hexdigest()[:32]


def _wrap_aad(owner: str, kid: str) -> bytes:
    return f"echotune-principal-key/v1|{owner}|{kid}".encode()


def field_aad(owner: str, record_id: str) -> bytes:
    return f"echotune-sealed/v1|{owner}|{record_id}".encode()


class DataKey:
    """One principal's key: seal/open values bound to a record, and a keyed hash for equality lookups.

    A sealed value starts with the key's id (``kid``), so a value sealed under a key that was since deleted (a
    restored backup row) is recognised as shredded, while a value of this key that fails to open is tampering.
    """

    def __init__(self, owner: str, key: bytes, kid: str):
        self.owner = owner
        self.kid = kid
        self._aead = AESGCM(key)
        self._mac = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"echotune lookup hash v1").derive(key)

    def seal(self, record_id: str, value: dict[str, Any]) -> str:
        nonce = secrets.token_bytes(12)
        ct = self._aead.encrypt(nonce, json.dumps(value, separators=(",", ":")).encode(),
                                field_aad(self.owner, record_id))
        return f"{self.kid}:{base64.b64encode(nonce + ct).decode()}"

    def sealed_by_me(self, sealed: str) -> bool:
        return sealed.split(":", 1)[0] == self.kid

    def open(self, record_id: str, sealed: str) -> dict[str, Any]:
        """The value; ``KeyShredded`` when another (deleted) key sealed it; ValueError when it was tampered."""
        kid, _, body = sealed.partition(":")
        if kid != self.kid:
            raise KeyShredded(f"record {record_id} was sealed with a data key of {self.owner} that was deleted")
        raw = base64.b64decode(body)
        try:
            plain = self._aead.decrypt(raw[:12], raw[12:], field_aad(self.owner, record_id))
        except InvalidTag:
            raise ValueError(f"a sealed value of record {record_id} does not open with its owner's key "
                             "(tampered, or copied from another record)") from None
        return json.loads(plain)

    def lookup(self, value: str) -> str:
        return "h:" + hmac.new(self._mac, value.encode(), hashlib.sha256).hexdigest()[:40]


class PrincipalKeys:
    """Get, create and shred principal data keys; unwrapped keys are cached in this process."""

    def __init__(self, collection: Collection, server_key: Any, old_server_keys: Any = None):
        """``server_key``: async callable returning the 32-byte server key (the token keyring's key);
        ``old_server_keys``: callable returning keys it replaced (the key file before ECHOTUNE_SECRET_KEY was
        set), whose wrapped data keys are re-wrapped under the current one when met."""
        self.coll = collection
        self._server_key = server_key
        self._old_server_keys = old_server_keys or (lambda: [])
        self._cache: dict[str, DataKey] = {}
        self._lock = threading.Lock()
        self._wrap: AESGCM | None = None

    @staticmethod
    def _wrapping(server: bytes) -> AESGCM:
        return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=b"echotune-principal-keys/v1",
                           info=b"wrap").derive(server))

    async def _wrapper(self) -> AESGCM:
        if self._wrap is None:
            self._wrap = self._wrapping(await self._server_key())
        return self._wrap

    async def _unwrap(self, wrap: AESGCM, doc: dict[str, Any]) -> bytes:
        """The data key in ``doc``; one wrapped under a server key since replaced is re-wrapped under the
        current one (the token keyring moved the tokens the same way)."""
        owner, kid = doc["owner"], str(doc["kid"])
        raw = base64.b64decode(doc["wrapped"])
        try:
            return wrap.decrypt(raw[:12], raw[12:], _wrap_aad(owner, kid))
        except InvalidTag:
            pass
        for old in self._old_server_keys():
            try:
                key = self._wrapping(old).decrypt(raw[:12], raw[12:], _wrap_aad(owner, kid))
            except InvalidTag:
                continue
            nonce = secrets.token_bytes(12)
            await self.coll.update(owner, doc["id"], {"wrapped": base64.b64encode(
                nonce + wrap.encrypt(nonce, key, _wrap_aad(owner, kid))).decode()}, expect={"kid": kid})
            return key
        raise ValueError(f"the stored data key of {owner} does not open with this server's key "
                         "(ECHOTUNE_SECRET_KEY or the key file changed)")

    async def rewrap_all(self) -> int:
        """Re-wrap every data key still wrapped under a replaced server key (at start); how many were."""
        wrap = await self._wrapper()
        moved, cursor = 0, None
        while True:
            page = await self.coll.find(None, limit=500, cursor=cursor)
            for doc in page.items:
                if "wrapped" not in doc:
                    continue
                before = doc["wrapped"]
                try:
                    await self._unwrap(wrap, doc)
                except ValueError:
                    continue  # reported when that principal's data is read
                moved += (await self.coll.get(doc["owner"], doc["id"]) or {}).get("wrapped") != before
            cursor = page.next_cursor
            if not cursor:
                return moved

    async def get(self, owner: str, *, create: bool = True) -> DataKey | None:
        """The owner's key; created on first use when ``create`` (else None when they have none)."""
        with self._lock:
            hit = self._cache.get(owner)
        if hit is not None:
            return hit
        wrap = await self._wrapper()
        doc = await self.coll.get(owner, key_doc_id(owner))
        if doc is None:
            if not create:
                return None
            key = secrets.token_bytes(32)
            kid = secrets.token_hex(8)
            nonce = secrets.token_bytes(12)
            wrapped = base64.b64encode(nonce + wrap.encrypt(nonce, key, _wrap_aad(owner, kid))).decode()
            record = {"id": key_doc_id(owner), "owner": owner, "created_at": now(), "format": KEY_FORMAT,
                      "kid": kid, "wrapped": wrapped}
            try:
                await self.coll.insert(record)
            except DuplicateKey:  # another request created it first: use theirs
                doc = await self.coll.get(owner, key_doc_id(owner))
                if doc is None:
                    raise KeyShredded(f"the data key of {owner} was deleted while it was being created") from None
        if doc is not None:
            kid = str(doc["kid"])
            key = await self._unwrap(wrap, doc)
        data_key = DataKey(owner, key, kid)
        with self._lock:
            self._cache[owner] = data_key
        return data_key

    async def shred(self, owner: str) -> bool:
        """Delete the owner's key: what was sealed with it (here or in any backup) can no longer be opened."""
        with self._lock:
            self._cache.pop(owner, None)
        return await self.coll.delete(owner, key_doc_id(owner))

    @staticmethod
    async def reset(coll: Collection) -> int:
        """Delete every principal's data key (``echotune-mcp auth reset``: the server key that wrapped them is
        gone); what they sealed then reads as gone, and new data gets new keys. How many were deleted."""
        deleted = 0
        while True:
            page = await coll.find(None, limit=500)
            docs = [d for d in page.items if "wrapped" in d]
            if not docs:
                return deleted
            for doc in docs:
                deleted += await coll.delete(doc["owner"], doc["id"])

    def forget(self, owner: str) -> None:
        with self._lock:
            self._cache.pop(owner, None)
