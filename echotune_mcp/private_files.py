"""Folders and files only their owner can reach: the data directory is 0700, what we keep in it 0600.

The data directory holds the database (prompts, lineage, encrypted provider tokens), the token key
and the signing key; on a shared machine another account must not read any of it. ``mkdir`` and
SQLite honour the umask, which commonly leaves folders 0755 and files 0644, so modes are set
explicitly. An existing data directory left looser by an older version is tightened, but only when
it is recognisably ours (empty, or holding our files): pointing ``ECHOTUNE_DATA_DIR`` at a folder of
other things gets a warning, never a chmod of someone's folder.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
# Names the server creates at the top of its data directory: their presence makes a folder ours.
OURS = ("echotune.sqlite3", "token.key", "keys", "blobs", "weights", "auth-server")


def private_dir(path: Path, *, tighten: bool = True, ours: bool = False) -> Path:
    """Create ``path`` (and missing parents) as 0700; tighten an existing one we recognise as ours.

    ``ours``: the folder is EchoTune's by construction (``blobs/``, ``keys/``), so no need to look inside.
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another process made it a moment ago
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode passes through the umask; be exact
    if tighten and path not in missing:
        _tighten_dir(path, ours=ours)
    return path


def _tighten_dir(path: Path, *, ours: bool) -> None:
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    if st.st_uid != os.getuid() or not (ours or _looks_ours(path)):
        log.warning("data directory %s is readable by other users (mode %o) and holds files that are not "
                    "EchoTune's, so its mode was left alone; use a folder of its own, or chmod 700 it", path, mode)
        return
    log.warning("data directory %s was reachable by other users (mode %o); tightening to 0700", path, mode)
    os.chmod(path, DIR_MODE)


def _looks_ours(path: Path) -> bool:
    """Empty, or holding only what the server puts there (dotfiles and SQLite's side files included)."""
    for entry in path.iterdir():
        name = entry.name
        if not (name in OURS or name.startswith(("echotune.sqlite3-", "."))):
            return False
    return True


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists with mode 0600 (created so, or tightened if an older version left it looser)."""
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode != FILE_MODE and os.fstat(fd).st_uid == os.getuid():
            if mode & 0o077:
                log.warning("%s was reachable by other users (mode %o); tightening to 0600", path, mode)
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def tighten_file(path: Path) -> None:
    """Set an existing file we own to 0600 (SQLite's -wal/-shm from an older run); absent files are fine."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, FILE_MODE)
