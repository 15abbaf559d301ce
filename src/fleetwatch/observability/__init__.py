"""Observability: Prometheus metrics for every fleetwatch server."""

from fleetwatch.observability._metrics import (
    AgentMetrics,
    GatewayMetrics,
    HealthMetrics,
    RegistryMetrics,
    TaskMetrics,
    metrics_route,
)

__all__ = [
    "AgentMetrics",
    "GatewayMetrics",
    "HealthMetrics",
    "RegistryMetrics",
    "TaskMetrics",
    "metrics_route",
]
