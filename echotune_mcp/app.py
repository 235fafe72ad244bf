"""The application object: settings, storage, artifacts, jobs and the notification bus, started once.

Transports come and go (a stdio session, many stateless HTTP requests, in-memory test clients),
but jobs must outlive any one request. So the App is reference-counted: the first user opens
storage and recovers interrupted jobs, the last one closes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.subscriptions import ResourceUpdated

from .artifacts import ArtifactService, PathPolicy
from .config import Settings
from .jobs import JobManager
from .storage import Storage, open_storage

log = logging.getLogger(__name__)


class App:
    def __init__(self, settings: Settings):
        settings.validate()
        self.settings = settings
        self.bus = InMemorySubscriptionBus()
        self.paths = PathPolicy(settings.allowed_roots)
        self._users = 0
        self._lock = asyncio.Lock()
        self._storage: Storage | None = None
        self._artifacts: ArtifactService | None = None
        self._jobs: JobManager | None = None
        self.interrupted_at_start = 0
        self._update_listeners: list[Callable[[str], Awaitable[None]]] = []

    def add_update_listener(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """Also tell ``listener`` about resource updates (legacy ``resources/subscribe`` sessions)."""
        self._update_listeners.append(listener)

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError("the app is not started")
        return self._storage

    @property
    def artifacts(self) -> ArtifactService:
        assert self._artifacts is not None, "the app is not started"
        return self._artifacts

    @property
    def jobs(self) -> JobManager:
        assert self._jobs is not None, "the app is not started"
        return self._jobs

    async def __aenter__(self) -> App:
        async with self._lock:
            if self._users == 0:
                self._storage = await open_storage(self.settings)
                self._artifacts = ArtifactService(self._storage)
                from .licensing import install_hooks

                install_hooks(self)  # signed content-credential manifests for audio artifacts
                self._jobs = JobManager(self)
                self.interrupted_at_start = await self._jobs.recover()
                if self.interrupted_at_start:
                    log.warning("%d job(s) were interrupted by the previous shutdown", self.interrupted_at_start)
            self._users += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._lock:
            self._users -= 1
            if self._users == 0:
                if self._jobs is not None:
                    await self._jobs.shutdown()
                if self._storage is not None:
                    await self._storage.close()
                self._storage = self._artifacts = self._jobs = None

    async def notify_resource_updated(self, uri: str) -> None:
        """Tell ``subscriptions/listen`` clients that a resource (a job, an artifact) changed."""
        try:
            await self.bus.publish(ResourceUpdated(uri=uri))
            for listener in self._update_listeners:
                await listener(uri)
        except Exception:  # a notification must never fail the work that triggered it
            log.debug("resource-updated notification failed for %s", uri, exc_info=True)
