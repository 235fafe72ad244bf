"""The lineage graph: an artifact, its parents, their parents, ... as nodes and edges.

Parent links are stored on each artifact (``parents``), so the graph is always consistent with
the records; walking it breadth-first gives every ancestor at its shortest distance. A parent that
was deleted stays in the graph as a *missing* node, because a licence check must know that part
of the chain can no longer be seen.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..storage.records import ArtifactRecord


@dataclass
class Node:
    id: str
    depth: int
    record: ArtifactRecord | None  # None: the parent was deleted (or belongs to nobody we can see)
    unexpanded_parents: bool = False  # depth limit reached before its parents were read


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


async def walk(store: Any, owner: str, root: ArtifactRecord, *, max_depth: int, max_nodes: int = 500) -> Lineage:
    """Read ``root``'s ancestors up to ``max_depth`` generations (0 = the root alone).

    ``store`` is anything with ``async get(owner, id) -> ArtifactRecord | None`` (the ArtifactStore).
    Only the owner's artifacts are visible, the same scoping as every other read.
    """
    lineage = Lineage(root=root)
    lineage.nodes[root.id] = Node(id=root.id, depth=0, record=root)
    queue: deque[str] = deque([root.id])
    while queue:
        node = lineage.nodes[queue.popleft()]
        if node.record is None or not node.record.parents:
            continue
        if node.depth >= max_depth:
            node.unexpanded_parents = True
            continue
        for parent_id in node.record.parents:
            if parent_id not in lineage.nodes:
                if len(lineage.nodes) >= max_nodes:
                    lineage.truncated = True
                    node.unexpanded_parents = True
                    continue
                parent = await store.get(owner, parent_id)
                lineage.nodes[parent_id] = Node(id=parent_id, depth=node.depth + 1, record=parent)
                queue.append(parent_id)
            lineage.edges.append((node.id, parent_id))
    return lineage
