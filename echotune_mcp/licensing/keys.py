"""The server's Ed25519 signing key for content credentials.

Created on first use in the data dir with mode 0600 (created exclusively, then linked into place,
so two processes starting together end up with one key, never two half-written ones). When
``ECHOTUNE_SECRET_KEY`` is set the PEM is also encrypted with it, so a copied data dir alone
cannot forge manifests.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..private_files import private_dir

log = logging.getLogger(__name__)
KEY_FILENAME = "content-credentials-ed25519.pem"
_cache: dict[tuple[str, str | None], SigningKey] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    public: Ed25519PublicKey
    key_id: str  # first 16 hex digits of the SHA-256 of the raw public key
    path: Path

    @property
    def public_raw(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def key_path(data_dir: Path) -> Path:
    return Path(data_dir) / "keys" / KEY_FILENAME


def _create(path: Path, secret: str | None) -> None:
    private_dir(path.parent, ours=True)  # keys/ and, if missing, the data dir above it: 0700
    key = Ed25519PrivateKey.generate()
    enc = serialization.BestAvailableEncryption(secret.encode()) if secret else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created the key first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _load(path: Path, secret: str | None) -> Ed25519PrivateKey:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("signing key %s had mode %o; tightening to 0600", path, mode)
        os.chmod(path, 0o600)
    pem = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(pem, password=secret.encode() if secret else None)
    except TypeError:  # created before a secret was configured: the PEM is not encrypted
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as exc:
        raise RuntimeError(f"cannot open the content-credentials key {path}: ECHOTUNE_SECRET_KEY is missing or "
                           "differs from the one it was created with") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{path} is not an Ed25519 key")
    return key


def signing_key(data_dir: Path, secret: str | None = None) -> SigningKey:
    """The server's key, created on first call; cached per data dir."""
    path = key_path(data_dir)
    cache_key = (str(path), secret)
    with _lock:
        if cache_key in _cache and path.exists():
            return _cache[cache_key]
        if not path.exists():
            _create(path, secret)
        private = _load(path, secret)
        public = private.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        key = SigningKey(private=private, public=public, key_id=key_id_of(raw), path=path)
        _cache[cache_key] = key
        return key
