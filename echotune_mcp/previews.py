"""``echotune://artifacts/{id}/preview``: an audio artifact as a small Ogg file, cached per owner.

Encoding a 3-minute piece takes seconds of CPU, and a view reads the same preview again and again (the
player, the A/B switch, the mixer's stems), so the result is kept. The cache lives where the analysis cache
lives: the owner-scoped ``idempotency`` collection, with a TTL. That keeps it private to its owner (the
document is found only under the owner who read it, after the owner-scoped artifact lookup), shared by every
process of a MongoDB deployment, and erased by ``delete_my_data`` with the rest of the owner's documents,
which a side folder of files would not be. The key is the artifact's content hash plus the preview format
version, so identical bytes are encoded once per owner and a format change re-encodes.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import TYPE_CHECKING

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from .errors import Busy
from .music.audio_io import AudioError, decode_audio
from .music.preview import MEDIA_TYPE, PreviewError, make_preview

if TYPE_CHECKING:
    from .app import App
    from .storage.records import ArtifactRecord

log = logging.getLogger(__name__)
CACHE = "idempotency"  # owner-scoped, TTL'd documents (see toolsets/audio.py's analysis cache)
VERSION = 1
TTL_S = 30 * 24 * 3600

__all__ = ["MEDIA_TYPE", "preview_bytes"]


def _cache_id(sha256: str) -> str:
    return f"preview-v{VERSION}-{sha256}"


async def preview_bytes(app: App, rec: ArtifactRecord) -> bytes:
    """The preview of ``rec`` (already looked up for its owner), from the owner's cache or encoded now."""
    if not rec.media_type.startswith("audio/"):
        raise ResourceNotFoundError(f"artifact {rec.id} is {rec.media_type}, not audio; no preview "
                                    "(read .../content for its bytes)")
    coll = app.storage.collection(CACHE)
    doc = await coll.get(rec.owner, _cache_id(rec.sha256))  # expired documents are not returned
    if doc is not None:
        return base64.b64decode(doc["data_b64"])
    data = await app.artifacts.read(rec)

    def encode():
        audio = decode_audio(data, max_seconds=1e9, what=rec.name)
        return make_preview(audio.samples, audio.sample_rate)

    # Heavy: in the CPU pool, answered busy if no thread is free within the longest tool wait.
    try:
        preview = await app.cpu.run(encode, start_within=app.settings.max_wait_seconds)
    except Busy as exc:
        raise ResourceError(str(exc)) from None
    except (PreviewError, AudioError) as exc:
        raise ResourceError(f"no preview of artifact {rec.id}: {exc}") from None
    now = time.time()
    entry = {"id": _cache_id(rec.sha256), "owner": rec.owner, "key": f"preview:{rec.sha256}", "created_at": now,
             "expires_at": now + TTL_S, "artifact_id": rec.id, "codec": preview.codec,
             "bitrate_bps": preview.bitrate_bps, "channels": preview.channels, "duration_s": preview.duration_s,
             "data_b64": base64.b64encode(preview.data).decode()}
    try:
        await coll.insert(entry)
    except Exception:  # an expired entry not purged yet, or a concurrent read stored the same preview first
        try:
            await coll.delete_where(rec.owner, {"id": entry["id"]})
            await coll.insert(entry)
        except Exception:  # a cache write that fails costs a re-encode next time, never this answer
            log.warning("could not cache the preview of artifact %s", rec.id, exc_info=True)
    return preview.data
