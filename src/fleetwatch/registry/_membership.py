"""Which registry node checks which instance.

Several nodes on one store split the fleet: each heartbeats its name into the store every
``NODE_BEAT_S`` and checks the instances that rendezvous hashing (highest random weight)
gives it among the live nodes, so every instance is checked by exactly one node. A node that
stops heartbeating drops out after ``NODE_TTL_S`` and the others take its instances over.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import uuid

from fleetwatch.registry._model import Instance
from fleetwatch.registry._store import RegistryStore

log = logging.getLogger("fleetwatch.registry")

#: Registry nodes heartbeat this often and count as gone this long after their last beat.
NODE_BEAT_S = 1.0
NODE_TTL_S = 3.0


def _weight(node: str, name: str) -> int:
    digest = hashlib.blake2b(f"{node}|{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Membership:
    """This node's name, the live nodes, and the share of the fleet that is this node's."""

    def __init__(self, store: RegistryStore, node_id: str | None = None) -> None:
        self.store = store
        self.node_id = node_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.nodes: list[str] = [self.node_id]

    def owns(self, instance: Instance) -> bool:
        """Whether this node checks ``instance``."""
        if len(self.nodes) <= 1:
            return True
        name = f"{instance.service}/{instance.instance_id}"
        return max(self.nodes, key=lambda node: _weight(node, name)) == self.node_id

    async def beat(self) -> bool:
        """Heartbeat this node; whether the set of live nodes changed (ownership moved)."""
        nodes = await self.store.node_heartbeat(self.node_id, NODE_TTL_S)
        if nodes == self.nodes:
            return False
        log.info("registry.nodes %s: %s", self.node_id, ", ".join(nodes))
        self.nodes = nodes or [self.node_id]
        return True

    async def leave(self) -> None:
        """Take this node out of the live nodes (on close)."""
        await self.store.node_leave(self.node_id)
