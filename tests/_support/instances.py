"""Instances as the registry holds them, for tests that need no registry."""

from __future__ import annotations

from fleetwatch.registry._model import Instance, InstanceStatus


def instance(instance_id: str = "a", service: str = "llm", **changes: object) -> Instance:
    """A minimal instance on loopback."""
    base = Instance(service=service, instance_id=instance_id, host="127.0.0.1", port=8000)
    return base.with_changes(**changes) if changes else base


def fleet(count: int, **metadata: str) -> list[Instance]:
    """``count`` available instances i0, i1, ... of service llm."""
    return [
        Instance(
            service="llm",
            instance_id=f"i{n}",
            host="127.0.0.1",
            port=8000 + n,
            status=InstanceStatus.AVAILABLE,
            metadata=dict(metadata),
            registered_at=100.0,
        )
        for n in range(count)
    ]
