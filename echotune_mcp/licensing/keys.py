"""The server's Ed25519 signing key for content credentials.

Created on first use in the data dir with mode 0600 (created exclusively, then linked into place,
so two processes starting together end up with one key, never two half-written ones). When
``ECHOTUNE_SECRET_KEY`` is set the PEM is also encrypted with it, so a copied data dir alone
cannot forge manifests. The passphrase is stretched with scrypt first (salt in ``keys/``, 0600):
PKCS#8's own PBKDF2 runs only 2,048 rounds. A PEM an older version encrypted with the bare
passphrase still opens, and is re-encrypted under the stretched one on first use.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def salt_path(path: Path) -> Path:
    return path.with_name(path.stem + ".salt")


def _stretched(path: Path, secret: str, *, create: bool) -> bytes | None:
    """scrypt(passphrase, this key's salt) as the PEM password; None when no salt was made (an older PEM)."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    salt_file = salt_path(path)
    if create and not salt_file.exists():
        try:
            fd = os.open(salt_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process starting at the same moment made it
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(16))
    if not salt_file.exists():
        return None
    derived = Scrypt(salt=salt_file.read_bytes(), length=32, n=2**15, r=8, p=1).derive(secret.encode())
    return derived.hex().encode()


def _pem(key: Ed25519PrivateKey, password: bytes | None) -> bytes:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _create(path: Path, secret: str | None) -> None:
    private_dir(path.parent, ours=True)  # keys/ and, if missing, the data dir above it: 0700
    key = Ed25519PrivateKey.generate()
    pem = _pem(key, _stretched(path, secret, create=True) if secret else None)
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
        try:
            os.chmod(path, 0o600)
        except OSError:  # a mounted shared key (a Kubernetes secret: read-only, group-readable by design)
            log.warning("could not tighten %s (a read-only mount?); make it readable by this user only", path)
    pem = path.read_bytes()
    stretched = _stretched(path, secret, create=False) if secret else None
    try:
        key = serialization.load_pem_private_key(pem, password=stretched or (secret.encode() if secret else None))
    except TypeError:  # created before a secret was configured: the PEM is not encrypted
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as exc:
        raise RuntimeError(f"cannot open the content-credentials key {path}: ECHOTUNE_SECRET_KEY is missing or "
                           "differs from the one it was created with") from exc
    else:
        if secret and stretched is None and b"ENCRYPTED" in pem:  # an older PEM under the bare passphrase
            _rewrite(path, key, _stretched(path, secret, create=True))
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{path} is not an Ed25519 key")
    return key


def _rewrite(path: Path, key: Any, password: bytes | None) -> None:
    """Replace the PEM atomically (temp file, fsync, rename), keeping mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, _pem(key, password))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    log.warning("re-encrypted the content-credentials key %s under the scrypt-stretched ECHOTUNE_SECRET_KEY", path)


def signing_key(data_dir: Path, secret: str | None = None, configured: Path | None = None) -> SigningKey:
    """The server's key, created on first call; cached per data dir.

    ``configured`` (ECHOTUNE_SIGNING_KEY_FILE) is a key every replica shares: it is read, never created, so
    replicas on one database cannot each sign with a key of their own."""
    path = Path(configured) if configured is not None else key_path(data_dir)
    cache_key = (str(path), secret)
    with _lock:
        if cache_key in _cache and path.exists():
            return _cache[cache_key]
        if not path.exists():
            if configured is not None:
                raise RuntimeError(f"the content-credentials key ECHOTUNE_SIGNING_KEY_FILE={path} does not exist; "
                                   "mount the key all replicas share there")
            _create(path, secret)
        private = _load(path, secret)
        public = private.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        key = SigningKey(private=private, public=public, key_id=key_id_of(raw), path=path)
        _cache[cache_key] = key
        return key
