"""Resolve an audio argument (artifact URI/id or allowed local path) into checked, decoded audio.

One function so every tool that takes audio applies the same rules: artifact ownership, the
allowed-roots policy (symlinks resolved first, nothing read outside), the size caps read from the
header before anything is decoded, and the format/length/NaN checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .artifacts import parse_artifact_uri
from .errors import BadInput
from .music.audio_io import Audio, AudioError, decode_audio

if TYPE_CHECKING:
    from .app import App
    from .storage.records import ArtifactRecord

ACCEPTED = "an echotune://artifacts/{id} URI (or artifact id), or an absolute path inside the allowed roots"


@dataclass
class AudioInput:
    audio: Audio
    data: bytes
    artifact: ArtifactRecord | None  # the source artifact, when the input was one
    source: dict[str, Any]  # for provenance: where it came from


def read_capped(path: Path, limit: int, field: str, shown: str) -> bytes:
    """At most ``limit`` bytes of ``path``: one bounded read, so a file that grows after a size check
    (or a device that never ends) cannot be read past the cap."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise BadInput(field, f"{shown} is larger than {limit} bytes", f"files up to {limit} bytes")
    return data


async def load_audio_input(app: App, owner: str, ref: str, *, field: str = "audio",
                           allow_paths: bool = True) -> AudioInput:
    """``ref`` as checked, decoded audio. ``allow_paths=False`` (resource URIs) accepts artifacts only:
    a URI's path segment must never name a local file."""
    ref = ref.strip()
    art_id = parse_artifact_uri(ref)
    if art_id is None and (ref.startswith("art_") or not allow_paths):
        art_id = ref
    record = None
    if art_id is not None:
        record = await app.artifacts.get(owner, art_id)
        if not (record.media_type.startswith("audio/") and record.media_type != "audio/midi"):
            raise BadInput(field, f"artifact {record.id} is {record.media_type}, not audio", ACCEPTED)
        data = await app.artifacts.read(record)
        source = {"type": "artifact", "artifact_id": record.id, "sha256": record.sha256}
        what = f"artifact {record.id}"
    elif ref.startswith(("/", "~")):
        try:
            path: Path = (await app.path_policy(owner)).check(ref)
        except BadInput as exc:
            raise BadInput(field, str(exc).removeprefix("invalid audio: ")) from None
        limit = app.settings.max_upload_bytes
        size = path.stat().st_size
        if size > limit:
            raise BadInput(field, f"{ref} is {size} bytes", f"files up to {limit} bytes")
        data = await anyio.to_thread.run_sync(lambda: read_capped(path, limit, field, ref))
        import hashlib

        source = {"type": "local_file", "path": str(path), "sha256": hashlib.sha256(data).hexdigest(),
                  "rights": "unknown"}
        what = str(path)
    else:
        raise BadInput(field, f"{ref!r} is neither an artifact nor an absolute path", ACCEPTED)
    try:
        # Decoding is CPU-heavy: it runs in the app's CPU pool, and waits a bounded time for a free worker.
        audio = await app.cpu.run(lambda: decode_audio(data, max_seconds=app.settings.max_audio_seconds, what=what),
                                  start_within=app.settings.max_wait_seconds)
    except AudioError as exc:
        raise BadInput(field, str(exc)) from None
    return AudioInput(audio=audio, data=data, artifact=record, source=source)
