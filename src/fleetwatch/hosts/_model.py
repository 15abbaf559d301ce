"""Hosts and the orders they carry out: two kinds of registry record beside the instances.

A :class:`Host` is a machine running ``fleetwatch host``: where clients reach it, what it
offers (labels, instance slots, GPUs) and whether it is cordoned. An :class:`Order` asks one
host to start an instance of a launch profile, or to stop one; the host reports its progress
on the order itself, so whoever wrote it follows one record to its end.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from fleetwatch.registry._model import NAME_PATTERN

_NAME = re.compile(NAME_PATTERN)


class OrderAction(StrEnum):
    """What an order asks of a host."""

    START = "start"
    STOP = "stop"


class OrderState(StrEnum):
    """Where an order stands. A start order goes ``pending`` -> ``accepted`` -> ``started``
    -> ``available``; a stop order ``pending`` -> ``accepted`` -> ``stopping`` ->
    ``stopped``. ``refused`` (the host's configuration does not allow it) and ``failed`` (it
    was tried and did not work) end either, with the reason."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    STARTED = "started"
    AVAILABLE = "available"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    REFUSED = "refused"

    @property
    def finished(self) -> bool:
        """Whether nothing more happens to the order."""
        return self in FINISHED_STATES


#: The states an order ends in.
FINISHED_STATES = frozenset(
    {OrderState.AVAILABLE, OrderState.STOPPED, OrderState.FAILED, OrderState.REFUSED}
)


#: Instance metadata naming what made it: a fingerprint of profile, version and parameters.
TEMPLATE_META = "template"


def template_id(profile: str, version: str, params: Mapping[str, str]) -> str:
    """A short fingerprint of what an instance runs: a controller tells old from new by it."""
    text = json.dumps([profile, version, sorted(params.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def check_name(value: str, what: str) -> str:
    """``value`` if it is a valid name (as service names and instance ids are)."""
    if not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid name: 1 to 63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True, slots=True)
class Host:
    """A machine that launches instances on orders, as it last reported itself."""

    host_id: str
    #: The address clients and the registry reach its instances at.
    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    #: How many instances it runs at most.
    capacity: int = 1
    #: GPUs NVML found (0 where there is no NVIDIA driver).
    gpus: int = 0
    #: The fleetwatch version its daemon runs.
    version: str = ""
    #: The instances it runs now, by instance id, with their service.
    instances: Mapping[str, str] = field(default_factory=dict)
    #: Set by an operator: no new start order lands here.
    cordoned: bool = False
    #: When the daemon last reported, and until when that report holds (the store's clock).
    heartbeat_at: float = 0.0
    expires_at: float = 0.0

    def __post_init__(self) -> None:
        check_name(self.host_id, "host id")
        if self.capacity < 0:
            raise ValueError(f"host {self.host_id!r}: capacity must be 0 or more")

    def alive(self, now: float) -> bool:
        """Whether its daemon has reported within its lease."""
        return now < self.expires_at

    def heard_lately(self, now: float) -> bool:
        """Whether its daemon has reported within two of its leases. A daemon that missed one
        report (a busy store, a busy machine) most likely still runs what it ran, and its
        pending orders still stand: a controller keeps counting them for one more lease."""
        return now < self.expires_at + (self.expires_at - self.heartbeat_at)

    @property
    def free_slots(self) -> int:
        return max(0, self.capacity - len(self.instances))

    def with_changes(self, **changes: Any) -> Host:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = dict(self.labels)
        data["instances"] = dict(self.instances)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Host:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class Order:
    """One order to one host, and how far the host got with it."""

    order_id: str
    host_id: str
    action: OrderAction
    #: The service the instance serves (start), or belongs to (stop).
    service: str
    #: For a start order: the launch profile (from the host's own configuration), the version
    #: recorded in the registration, and the profile's parameters.
    profile: str = ""
    version: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    #: The instance to stop; for a start, the instance started (chosen by the host if empty).
    instance_id: str = ""
    state: OrderState = OrderState.PENDING
    reason: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    #: The host's order-feed index at this order's last change.
    index: int = 0

    def __post_init__(self) -> None:
        check_name(self.order_id, "order id")
        check_name(self.host_id, "host id")
        check_name(self.service, "service")
        if self.instance_id:
            check_name(self.instance_id, "instance id")
        if self.action is OrderAction.START and not self.profile:
            raise ValueError(f"order {self.order_id!r}: a start order names a launch profile")
        if self.action is OrderAction.STOP and not self.instance_id:
            raise ValueError(f"order {self.order_id!r}: a stop order names the instance to stop")

    @property
    def template(self) -> str:
        """The fingerprint of what a start order runs (see :func:`template_id`)."""
        return template_id(self.profile, self.version, self.params)

    def same_request(self, other: Order) -> bool:
        """Whether ``other`` asks for the same thing (a resent order, not a clash of ids)."""
        return (self.host_id, self.action, self.service, self.profile, self.version) == (
            other.host_id,
            other.action,
            other.service,
            other.profile,
            other.version,
        ) and dict(self.params) == dict(other.params)

    def with_changes(self, **changes: Any) -> Order:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["action"] = self.action.value
        data["state"] = self.state.value
        data["params"] = dict(self.params)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Order:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["action"] = OrderAction(values["action"])
        values["state"] = OrderState(values.get("state", OrderState.PENDING))
        return cls(**values)
