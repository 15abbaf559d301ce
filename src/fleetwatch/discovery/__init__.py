"""Discovery: a client-side view of services fed by the change feed, balancing strategies,
passive outlier ejection, and self-registration for Python services."""

from fleetwatch.discovery.balancer import LoadStats, Strategy, balancer_for
from fleetwatch.discovery.client import Change, DiscoveryClient, RequestOutcome
from fleetwatch.discovery.outlier import CircuitState, OutlierDetector, OutlierPolicy
from fleetwatch.discovery.registration import Registered, registration
from fleetwatch.discovery.registry_client import RegistryClient

__all__ = [
    "Change",
    "CircuitState",
    "DiscoveryClient",
    "LoadStats",
    "OutlierDetector",
    "OutlierPolicy",
    "Registered",
    "RegistryClient",
    "RequestOutcome",
    "Strategy",
    "balancer_for",
    "registration",
]
