"""Idempotency keys for mutating curation tools: a retried call returns the first call's result.

An agent that times out and retries ``add_tracks`` must not add the tracks twice. The first call
claims the key (an insert that only one caller can win, since the document id is derived from
owner, tool and key), runs, and stores its result; later calls with the same key get that result.
A claim whose call failed is released so the retry can run for real. Keys live 24 hours.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import BadInput, Busy
from ..storage.base import Collection, StorageError
from ..storage.records import now

TTL_S = 24 * 3600


def _doc_id(owner: str, tool: str, key: str) -> str:
    return "idem_" + hashlib.sha256(f"{owner}\x00{tool}\x00{key}".encode()).hexdigest()[:40]


def fingerprint(args: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()


async def once(coll: Collection, owner: str, tool: str, key: str | None, args: dict[str, Any],
               run: Callable[[], Awaitable[dict[str, Any]]]) -> tuple[dict[str, Any], bool]:
    """Run ``run`` at most once per (owner, tool, key); returns (result, replayed)."""
    if not key:
        return await run(), False
    id_, fp = _doc_id(owner, tool, key), fingerprint(args)
    try:
        await coll.insert({"id": id_, "owner": owner, "created_at": now(), "key": key, "tool": tool,
                           "fingerprint": fp, "state": "running", "expires_at": now() + TTL_S})
    except StorageError:
        doc = await coll.get(owner, id_)
        if doc is None:  # expired between the insert and the read: run it as new
            return await once(coll, owner, tool, key, args, run)
        if doc.get("fingerprint") != fp:
            raise BadInput("idempotency_key", f"was already used for a different {tool} call",
                           "a new unique key for each distinct call") from None
        if doc.get("state") != "done":
            raise Busy(f"a {tool} call with this idempotency key is still running; call again in a few seconds",
                       retry_after_s=2) from None
        return doc["result"], True
    try:
        result = await run()
    except BaseException:
        await coll.delete(owner, id_)
        raise
    await coll.update(owner, id_, {"state": "done", "result": result})
    return result, False
