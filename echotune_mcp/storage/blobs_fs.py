"""Content-addressed blobs on the local disk, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import anyio

from ..private_files import private_dir
from .base import BlobStore, StorageError


def _check_sha(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise StorageError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


class FileBlobStore(BlobStore):
    def __init__(self, root: Path):
        self.root = root

    def _path(self, sha256: str) -> Path:
        sha = _check_sha(sha256)
        return self.root / sha[:2] / sha[2:]

    def _put_sync(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        final = self._path(sha)
        if final.exists() and final.stat().st_size == len(data):
            return sha
        private_dir(final.parent, tighten=False)  # 0700 like the data dir; the blob files are 0600 (mkstemp)
        # The temp name carries the writer's lease, so another process on this data dir leaves it alone.
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f"{TEMP_PREFIX}{self.writer or 'unleased'}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    async def put(self, data: bytes) -> str:
        return await anyio.to_thread.run_sync(self._put_sync, data)

    async def get(self, sha256: str) -> bytes:
        path = self._path(sha256)
        try:
            return await anyio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError as exc:
            raise StorageError(f"blob {sha256} is missing from {self.root}") from exc

    async def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    async def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def local_path(self, sha256: str) -> Path | None:
        path = self._path(sha256)
        return path if path.exists() else None

    def temp_files(self) -> list[Path]:
        return list(self.root.glob(f"*/{TEMP_PREFIX}*")) if self.root.exists() else []

    def sweep_temp_files(self, files: list[Path], alive: set[str], grace_s: float) -> int:
        """Remove temp files a dead process left behind; they were never renamed, so nothing refers to them.

        A file is named ``.tmp-<writer lease>.<random>``; it is removed when that lease is not alive. A file
        without a lease in its name (an older version's) is removed once it is older than ``grace_s``.
        """
        removed = 0
        for tmp in files:
            writer = writer_of(tmp.name)
            if writer is not None and writer in alive:
                continue
            try:
                if writer is None and time.time() - tmp.stat().st_mtime < grace_s:
                    continue
                tmp.unlink()
                removed += 1
            except FileNotFoundError:  # renamed into place or removed meanwhile
                pass
        return removed


TEMP_PREFIX = ".tmp-"


def writer_of(name: str) -> str | None:
    """The lease id in a temp file's name (``.tmp-<lease>.<random>``), or None for an untagged one."""
    rest = name[len(TEMP_PREFIX):]
    if not name.startswith(TEMP_PREFIX) or "." not in rest:
        return None
    writer = rest.rsplit(".", 1)[0]
    return writer if writer.startswith("lease_") else None
