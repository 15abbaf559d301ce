"""Instances for routing tests."""

from __future__ import annotations

from fleetwatch.registry._model import Instance, InstanceStatus


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
