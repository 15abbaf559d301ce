"""Request and response bodies of the hosts API: host reports, orders and their progress."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from fleetwatch.hosts._model import Host, Order
from fleetwatch.registry._model import NAME_PATTERN

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
#: What a label or parameter may hold: short, and printable.
ShortText = Annotated[str, Field(max_length=256)]
#: A label's or a parameter's name: any short text (JSON Schema cannot publish a pattern for an
#: object's keys that fuzzers and clients would honour, so none is imposed).
Key = Annotated[str, Field(min_length=1, max_length=64)]


class HostBody(BaseModel):
    """What a host daemon reports about itself (``PUT /v1/hosts/{host_id}``)."""

    model_config = ConfigDict(extra="forbid")

    address: Annotated[str, Field(min_length=1, max_length=255)]
    labels: Annotated[dict[Key, ShortText], Field(max_length=64)] = Field(default_factory=dict)
    capacity: Annotated[int, Field(ge=0, le=10_000)] = 1
    gpus: Annotated[int, Field(ge=0, le=1024)] = 0
    version: Annotated[str, Field(max_length=64)] = ""
    #: Instance id -> service, of what runs on the host now.
    instances: Annotated[dict[Key, Key], Field(max_length=10_000)] = Field(default_factory=dict)
    #: The report holds this long; the daemon reports every third of it.
    ttl: Annotated[float, Field(gt=0, le=3600)] = 10.0

    def host(self, host_id: str) -> Host:
        return Host(
            host_id=host_id,
            address=self.address,
            labels=self.labels,
            capacity=self.capacity,
            gpus=self.gpus,
            version=self.version,
            instances=self.instances,
        )


class HostOut(BaseModel):
    """A host as the registry holds it, and whether its daemon is up."""

    host_id: str
    address: str
    labels: dict[str, str]
    capacity: int
    gpus: int
    version: str
    instances: dict[str, str]
    cordoned: bool
    heartbeat_at: float
    expires_at: float
    alive: bool
    free_slots: int

    @classmethod
    def of(cls, host: Host, now: float) -> HostOut:
        return cls(**host.to_dict(), alive=host.alive(now), free_slots=host.free_slots)


class HostReply(BaseModel):
    host: HostOut


class HostsReply(BaseModel):
    hosts: list[HostOut]


class CordonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cordoned: bool = True


class StartOrderBody(BaseModel):
    """Start an instance of a launch profile of the host's configuration."""

    model_config = ConfigDict(extra="forbid")

    order_id: Name
    action: Literal["start"]
    service: Name
    profile: Name
    version: Annotated[str, Field(max_length=64)] = ""
    params: Annotated[dict[Key, ShortText], Field(max_length=64)] = Field(default_factory=dict)
    #: The instance id to start under (default: one derived from the order id).
    instance_id: Name | None = None

    def order(self, host_id: str) -> Order:
        fields = self.model_dump(exclude_none=True)
        fields.update(host_id=host_id, instance_id=self.instance_id or "")
        return Order.from_dict(fields)


class StopOrderBody(BaseModel):
    """Drain and stop one of the host's instances."""

    model_config = ConfigDict(extra="forbid")

    order_id: Name
    action: Literal["stop"]
    service: Name
    instance_id: Name

    def order(self, host_id: str) -> Order:
        return Order.from_dict({**self.model_dump(), "host_id": host_id})


#: A new order (``POST /v1/hosts/{host_id}/orders``), told apart by ``action``. Sending the
#: same order id again returns the order already stored: an order is carried out once.
OrderBody = Annotated[StartOrderBody | StopOrderBody, Field(discriminator="action")]


class OrderOut(BaseModel):
    order_id: str
    host_id: str
    action: str
    service: str
    profile: str
    version: str
    params: dict[str, str]
    instance_id: str
    state: str
    reason: str
    created_at: float
    updated_at: float
    index: int

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(**order.to_dict())


class OrderReply(BaseModel):
    order: OrderOut
    created: bool


class OrdersReply(BaseModel):
    """The host's feed index, and the orders changed after the index asked for."""

    index: int
    orders: list[OrderOut]


class ReportBody(BaseModel):
    """A host's progress on one of its orders."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["accepted", "started", "available", "stopping", "stopped", "failed", "refused"]
    reason: Annotated[str, Field(max_length=2000)] = ""
    instance_id: Name | None = None
