"""The service registry: instances and their statuses, the rules on top of a store, the
stores (embedded memory, Redis), and the active monitor that checks every instance."""

from fleetwatch.registry._model import (
    CHECKED_STATUSES,
    NAME_PATTERN,
    OPERATOR_STATUSES,
    ROUTABLE_STATUSES,
    CheckSpec,
    CheckType,
    Event,
    EventType,
    Instance,
    InstanceStatus,
    Registration,
)
from fleetwatch.registry._monitor import Monitor, MonitorSettings
from fleetwatch.registry._open_store import open_store
from fleetwatch.registry._preservation import PreservationPolicy
from fleetwatch.registry._registry import Registry
from fleetwatch.registry._store import RegistryStore

__all__ = [
    "CHECKED_STATUSES",
    "NAME_PATTERN",
    "OPERATOR_STATUSES",
    "ROUTABLE_STATUSES",
    "CheckSpec",
    "CheckType",
    "Event",
    "EventType",
    "Instance",
    "InstanceStatus",
    "Monitor",
    "MonitorSettings",
    "PreservationPolicy",
    "Registration",
    "Registry",
    "RegistryStore",
    "open_store",
]
