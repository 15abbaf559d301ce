"""The simulated fleet of :mod:`fleetwatch_testing.fleet`, for the host and deployment tests."""

from fleetwatch_testing.fleet import (
    FAST,
    FLEET_TOKEN,
    LLAMA,
    STATIC,
    Fleet,
    controller_lease,
    fleet_gateway,
    host_token,
    hosts_up,
    running_fleet,
    start_node,
    wait_for_leader,
)

__all__ = [
    "FAST",
    "FLEET_TOKEN",
    "LLAMA",
    "STATIC",
    "Fleet",
    "controller_lease",
    "fleet_gateway",
    "host_token",
    "hosts_up",
    "running_fleet",
    "start_node",
    "wait_for_leader",
]
