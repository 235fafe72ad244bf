"""The lineage graph: an artifact, its parents, their parents, ... as nodes and edges.

Parent links are stored on each artifact (``parents``), so the graph is always consistent with
the records; walking it breadth-first gives every ancestor at its shortest distance. A parent that
was deleted stays in the graph as a *missing* node, because a licence check must know that part
of the chain can no longer be seen; its tombstone (the rights and parents it had, kept when it was
deleted) still counts, so deleting an upload cannot clear what was made from it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..storage.records import ArtifactRecord


@dataclass
class Node:
    id: str
    depth: int
    record: ArtifactRecord | None  # None: the parent was deleted (or belongs to nobody we can see)
    unexpanded_parents: bool = False  # depth limit reached before its parents were read
    tombstone: ArtifactRecord | None = None  # what a deleted parent left: rights, provenance, parents

    @property
    def known(self) -> ArtifactRecord | None:
        """The record, or for a deleted artifact its tombstone."""
        return self.record or self.tombstone


@dataclass
class Lineage:
    root: ArtifactRecord
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)  # (child, parent)
    truncated: bool = False  # the node cap stopped the walk

    @property
    def missing(self) -> list[str]:
        return [n.id for n in self.nodes.values() if n.record is None]

    def children_of(self, artifact_id: str) -> list[str]:
        return [c for c, p in self.edges if p == artifact_id]


Tombstones = Callable[[str, str], Awaitable[ArtifactRecord | None]]


async def walk(store: Any, owner: str, root: ArtifactRecord, *, max_depth: int, max_nodes: int = 500,
               tombstones: Tombstones | None = None) -> Lineage:
    """Read ``root``'s ancestors up to ``max_depth`` generations (0 = the root alone).

    ``store`` is anything with ``async get(owner, id) -> ArtifactRecord | None`` (the ArtifactStore);
    ``tombstones(owner, id)`` gives what a deleted artifact left, and the walk goes on through its
    parents. Only the owner's artifacts are visible, the same scoping as every other read.
    """
    lineage = Lineage(root=root)
    lineage.nodes[root.id] = Node(id=root.id, depth=0, record=root)
    queue: deque[str] = deque([root.id])
    while queue:
        node = lineage.nodes[queue.popleft()]
        known = node.known
        if known is None or not known.parents:
            continue
        if node.depth >= max_depth:
            node.unexpanded_parents = True
            continue
        for parent_id in known.parents:
            if parent_id not in lineage.nodes:
                if len(lineage.nodes) >= max_nodes:
                    lineage.truncated = True
                    node.unexpanded_parents = True
                    continue
                parent = await store.get(owner, parent_id)
                gone = await tombstones(owner, parent_id) if parent is None and tombstones is not None else None
                lineage.nodes[parent_id] = Node(id=parent_id, depth=node.depth + 1, record=parent, tombstone=gone)
                queue.append(parent_id)
            lineage.edges.append((node.id, parent_id))
    return lineage
