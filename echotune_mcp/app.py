"""The application object: settings, storage, artifacts, jobs and the notification bus, started once.

Transports come and go (a stdio session, many stateless HTTP requests, in-memory test clients),
but jobs must outlive any one request. So the App is reference-counted: the first user opens
storage, takes this process's job lease (interrupting only what dead processes left running) and
starts the CPU pool; the last one closes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.subscriptions import ResourceUpdated

from .artifacts import ArtifactService, PathPolicy
from .config import Settings
from .jobs import CpuPool, JobManager
from .storage import Storage, open_storage

if TYPE_CHECKING:
    from .providers.hub import ProviderHub

log = logging.getLogger(__name__)


class App:
    def __init__(self, settings: Settings):
        settings.validate()
        self.settings = settings
        self.bus = InMemorySubscriptionBus()
        self._users = 0
        self._lock = asyncio.Lock()
        self._storage: Storage | None = None
        self._artifacts: ArtifactService | None = None
        self._jobs: JobManager | None = None
        self._cpu: CpuPool | None = None
        self._sealing: asyncio.Task[None] | None = None
        self.interrupted_at_start = 0
        self.watcher = None  # replicas.ReplicaWatcher on MongoDB
        self._providers: ProviderHub | None = None
        self._update_listeners: list[Callable[[str], Awaitable[None]]] = []

    def add_update_listener(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """Also tell ``listener`` about resource updates (legacy ``resources/subscribe`` sessions)."""
        self._update_listeners.append(listener)

    async def path_policy(self, principal: str) -> PathPolicy:
        """The local files ``principal`` may read: ECHOTUNE_ALLOWED_ROOTS for the local user; for anyone else only
        the folders an operator granted it (none by default; auth/tenants.py)."""
        from .auth.tenants import path_policy

        return await path_policy(self, principal)

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

    @property
    def providers(self) -> ProviderHub:
        """This App's one provider hub (providers/hub.py): OAuth connections in progress, tokens, adapters.

        One per App, so a connection started by one tool is seen by every other; built on first use, and its
        callback listeners and pending connections close with the App."""
        if self._providers is None:
            from .providers.hub import ProviderHub

            self._providers = ProviderHub(self)
        return self._providers

    @property
    def cpu(self) -> CpuPool:
        """Where CPU-heavy work runs (job work through ``JobContext.run_in_thread``, heavy resource reads)."""
        assert self._cpu is not None, "the app is not started"
        return self._cpu

    async def __aenter__(self) -> App:
        async with self._lock:
            if self._users == 0:
                self._storage = await open_storage(self.settings)
                self._artifacts = ArtifactService(self._storage)
                from .auth.tenants import check_storage

                self._artifacts.on_admission(lambda owner, size, kind: check_storage(self, owner, size, kind))
                from .licensing import install_hooks

                install_hooks(self)  # signed content-credential manifests for audio artifacts
                self._cpu = CpuPool(self.settings.cpu_workers)
                self._jobs = JobManager(self)
                self.interrupted_at_start = await self._jobs.start()
                if self._storage.backend.name == "mongodb":  # replicas: hear about the others' jobs (replicas.py)
                    from .replicas import ReplicaWatcher

                    self.watcher = ReplicaWatcher(self)
                    self.watcher.start()
                self._sealing = asyncio.create_task(self._seal_stored(), name="seal stored listening events")
            self._users += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._lock:
            self._users -= 1
            if self._users == 0:
                if self.watcher is not None:
                    await self.watcher.stop()
                    self.watcher = None
                if self._providers is not None:
                    await self._providers.aclose()
                    self._providers = None
                if self._sealing is not None:
                    self._sealing.cancel()
                    await asyncio.wait({self._sealing}, timeout=5)
                    self._sealing = None
                if self._jobs is not None:
                    await self._jobs.shutdown()
                if self._cpu is not None:
                    self._cpu.shutdown()
                if self._storage is not None:
                    await self._storage.close()
                self._storage = self._artifacts = self._jobs = self._cpu = None

    async def _seal_stored(self) -> None:
        """Listening events stored in clear by an older version get sealed with their owner's key, in the
        background, once per store (privacy/keys.py; docs/PRIVACY.md)."""
        try:
            keys = self.storage.principal_keys
            rewrapped = await keys.rewrap_all() if keys is not None else 0
            if rewrapped:
                log.warning("re-wrapped %d principal data key(s) under the new server key", rewrapped)
            sealed = await self.storage.listening.seal_stored()
        except asyncio.CancelledError:
            raise
        except Exception:  # storage unreachable: the next start tries again; reads handle clear events meanwhile
            log.warning("sealing stored listening events failed; the next start tries again", exc_info=True)
            return
        if sealed:
            log.warning("sealed %d listening event(s) stored in clear by an older version", sealed)

    async def notify_resource_updated(self, uri: str) -> None:
        """Tell ``subscriptions/listen`` clients that a resource (a job, an artifact) changed."""
        try:
            await self.bus.publish(ResourceUpdated(uri=uri))
            for listener in self._update_listeners:
                await listener(uri)
        except Exception:  # a notification must never fail the work that triggered it
            log.debug("resource-updated notification failed for %s", uri, exc_info=True)
