"""The deployment store that goes with a host store (the same store, the same leases)."""

from __future__ import annotations

from fleetwatch.deployments._store import DeploymentStore, MemoryDeploymentStore
from fleetwatch.errors import ConfigError
from fleetwatch.hosts._memory import MemoryHostStore
from fleetwatch.hosts._store import HostStore


def deployment_store_for(hosts: HostStore) -> DeploymentStore:
    """Deployments kept beside ``hosts``: in memory, or on its Redis."""
    if isinstance(hosts, MemoryHostStore):
        return MemoryDeploymentStore(hosts)
    # Imported here: redis-py is the `redis` extra.
    from fleetwatch.deployments._redis import RedisDeploymentStore  # noqa: PLC0415
    from fleetwatch.hosts._redis import RedisHostStore  # noqa: PLC0415

    if isinstance(hosts, RedisHostStore):
        return RedisDeploymentStore(hosts)
    raise ConfigError(f"no deployment store goes with {type(hosts).__name__}")
