"""Licensing and provenance for everything the server makes (issue #6).

* ``policy.toml`` — the licence catalogue, the intended uses and the rules, as data.
* ``factors`` / ``lineage`` / ``policy`` — licence facts per artifact, the ancestor graph, decisions.
* ``keys`` / ``credentials`` — the Ed25519 key and the signed C2PA-style manifest per audio artifact.
* ``provenance`` — summaries, file tags for ``encode_audio``, and the completeness check for tests.
* ``service.Licensing`` — the operations the ``licensing`` toolset and the created-hook share.

The app calls ``install_hooks(app)`` once its ArtifactService exists, so every audio artifact gets
its manifest as it is stored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .credentials import is_signable
from .provenance import assert_provenance_complete, complete_provenance, file_tags, provenance_gaps
from .service import Licensing

if TYPE_CHECKING:
    from ..app import App
    from ..artifacts import ArtifactService
    from ..storage.records import ArtifactRecord

log = logging.getLogger(__name__)

__all__ = ["Licensing", "assert_provenance_complete", "complete_provenance", "file_tags", "install_hooks",
           "provenance_gaps"]


def install_hooks(app: App) -> None:
    """Sign a content-credentials manifest for each audio artifact right after it is stored, and keep a
    tombstone of each artifact's rights before it is deleted.

    Idempotent per ArtifactService (a second call is a no-op), so wiring it in App and in a test
    never signs twice.
    """
    if getattr(app.artifacts, "_licensing_hooks", False):
        return
    app.artifacts._licensing_hooks = True  # type: ignore[attr-defined]
    licensing = Licensing(app)

    async def sign_new_artifact(service: ArtifactService, record: ArtifactRecord) -> None:
        if not is_signable(record):
            return
        try:
            await licensing.write_manifest(record, service)
        except Exception:
            log.exception("could not write content credentials for artifact %s", record.id)
            raise

    async def keep_tombstone(service: ArtifactService, record: ArtifactRecord) -> None:
        await licensing.keep_tombstone(record)

    app.artifacts.on_created(sign_new_artifact)
    app.artifacts.on_deleted(keep_tombstone)
