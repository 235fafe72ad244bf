"""export_my_data's work: every record of one principal, and their artifacts' files, in one zip.

The walk covers every collection the storage opened (so a collection added later is exported without a change
here), page by page, written into a zip in a private temp file as it goes: memory stays bounded by one page, not
by the size of a listening history. Listening events are read through their store, so sealed fields come out
opened; provider grants give their metadata only (the sealed token, nonce and ciphertext never leave);
principal data keys are never exported. Format ``echotune-export/1``:

- ``manifest.json``: format, principal, when, counts per collection, artifact files, what was left out and why
- ``records/<collection>.jsonl``: one JSON document per line
- ``artifacts/<artifact id>/<name>``: each artifact's bytes
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..private_files import private_dir

if TYPE_CHECKING:
    from ..app import App

FORMAT = "echotune-export/1"
PAGE = 500
TOKEN_FIELDS = ("id", "provider", "source", "expires_at", "scope", "has_refresh_token", "created_at", "updated_at")
NEVER_EXPORTED = {"principal_keys": "the principal's data key (wrapped by the server key); useless outside this "
                                    "server and a secret"}
REDACTED = {"tokens": "provider grants: metadata only (provider, scope, expiry, source); the sealed token itself "
                      "is a secret and never exported"}
Progress = Callable[[float, str], Awaitable[None]]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:120] or "file"


async def _pages(app: App, name: str, owner: str):
    """The owner's documents of one collection, a page at a time (listening events opened by their store)."""
    cursor = None
    while True:
        if name == "listening_events":
            records, cursor = await app.storage.listening.find(owner, limit=PAGE, cursor=cursor)
            docs = [r.model_dump(mode="json") for r in records]
        else:
            page = await app.storage.collection(name).find(owner, limit=PAGE, cursor=cursor)
            docs, cursor = page.items, page.next_cursor
            if name == "tokens":
                docs = [{k: d.get(k) for k in TOKEN_FIELDS} for d in docs]
        yield docs
        if not cursor:
            return


async def build_export(app: App, owner: str, progress: Progress) -> tuple[Path, dict[str, Any]]:
    """Write the owner's export zip to a private temp file; its path and the manifest. The caller removes it."""
    tmp_dir = private_dir(app.settings.data_dir / "tmp", ours=True)
    fd, name = tempfile.mkstemp(prefix="export-", suffix=".zip", dir=tmp_dir)
    os.close(fd)
    path = Path(name)
    os.chmod(path, 0o600)
    zf = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
    counts: dict[str, int] = {}
    files: list[dict[str, Any]] = []
    try:
        names = [n for n in app.storage.collection_names() if n not in NEVER_EXPORTED]
        for i, coll in enumerate(names):
            await progress(i / (len(names) + 1), f"exporting {coll}")
            n = 0
            artifacts: list[dict[str, Any]] = []
            # zip64 from the start: the size is not known ahead, and a long history may pass 2 GiB
            handle = await anyio.to_thread.run_sync(
                lambda c=coll: zf.open(f"records/{c}.jsonl", "w", force_zip64=True))
            try:
                async for docs in _pages(app, coll, owner):
                    if not docs:
                        continue
                    blob = "".join(json.dumps(d, ensure_ascii=False, default=str) + "\n" for d in docs).encode()
                    await anyio.to_thread.run_sync(handle.write, blob)
                    n += len(docs)
                    if coll == "artifacts":  # the files go in once this entry is closed (one writer at a time)
                        artifacts.extend({"id": d["id"], "name": d.get("name"), "sha256": d["sha256"]} for d in docs)
            finally:
                await anyio.to_thread.run_sync(handle.close)
            for d in artifacts:
                files.append(await _add_artifact(app, zf, d))
            counts[coll] = n
        manifest = {
            "format": FORMAT,
            "principal": owner,
            "created_at": time.time(),
            "counts": counts,
            "artifact_files": files,
            "left_out": NEVER_EXPORTED,
            "redacted": REDACTED,
            "layout": {"records/<collection>.jsonl": "one JSON document per line",
                       "artifacts/<artifact id>/<name>": "the artifact's bytes"},
        }
        await anyio.to_thread.run_sync(zf.writestr, "manifest.json", json.dumps(manifest, indent=1))
    except BaseException:
        zf.close()
        path.unlink(missing_ok=True)
        raise
    await anyio.to_thread.run_sync(zf.close)
    return path, manifest


async def _add_artifact(app: App, zf: zipfile.ZipFile, doc: dict[str, Any]) -> dict[str, Any]:
    arcname = f"artifacts/{doc['id']}/{_safe_name(str(doc.get('name') or doc['id']))}"
    try:
        data = await app.storage.blobs.get(doc["sha256"])
    except Exception as exc:  # a missing blob is reported, not a failed export
        return {"artifact_id": doc["id"], "path": None, "missing": f"the bytes are gone from storage: {exc}"}
    await anyio.to_thread.run_sync(zf.writestr, arcname, data)
    return {"artifact_id": doc["id"], "path": arcname, "size": len(data), "sha256": doc["sha256"]}
