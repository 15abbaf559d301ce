"""Discovery: a client-side view of services fed by the change feed, balancing strategies,
passive outlier ejection, and self-registration for Python services."""

from fleetwatch.discovery._balancer import LoadStats, Strategy, balancer_for
from fleetwatch.discovery._client import Change, DiscoveryClient, RequestOutcome
from fleetwatch.discovery._outlier import CircuitState, OutlierDetector, OutlierPolicy
from fleetwatch.discovery._registration import Registered, registration
from fleetwatch.discovery._registry_client import RegistryClient

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
