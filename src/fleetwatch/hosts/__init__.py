"""Host agents: ``fleetwatch host`` on each machine launches and stops instances on orders,
only as its own configuration allows, and adopts them again after its own restart."""

from fleetwatch.hosts._memory import MemoryHostStore
from fleetwatch.hosts._model import (
    FINISHED_STATES,
    Host,
    Order,
    OrderAction,
    OrderState,
)
from fleetwatch.hosts._open import open_host_store
from fleetwatch.hosts._profiles import LaunchProfile, OrderRefused, ParamRule
from fleetwatch.hosts._store import HostStore

__all__ = [
    "FINISHED_STATES",
    "Host",
    "HostStore",
    "LaunchProfile",
    "MemoryHostStore",
    "Order",
    "OrderAction",
    "OrderRefused",
    "OrderState",
    "ParamRule",
    "open_host_store",
]
