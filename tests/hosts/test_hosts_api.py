"""The hosts API on both stores: orders carried once, a host sees only its own, deploy writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from fleetwatch.errors import Conflict, Forbidden
from fleetwatch.hosts import Host, HostStore, MemoryHostStore, Order, OrderAction, OrderState
from fleetwatch.hosts._client import HostsClient
from fleetwatch.hosts._redis import RedisHostStore
from fleetwatch.lifecycle import AppServer
from fleetwatch.registry._registry import Registry
from fleetwatch.registry.stores import MemoryStore
from fleetwatch.registry_api import create_app
from fleetwatch.security._auth import Scope, Token, TokenAuth
from fleetwatch_testing import RedisServer

TOKENS = [
    Token("deployer", "s-deploy", frozenset({Scope.DEPLOY, Scope.READ})),
    Token("team", "s-team", frozenset({Scope.REGISTER, Scope.READ})),
    Token("h1", "s-h1", frozenset({Scope.HOST, Scope.REGISTER, Scope.READ}), host_id="h1"),
    Token("h2", "s-h2", frozenset({Scope.HOST, Scope.REGISTER, Scope.READ}), host_id="h2"),
]


@dataclass
class Api:
    url: str
    store: HostStore

    def client(self, secret: str) -> HostsClient:
        return HostsClient(self.url, token=secret)


@pytest.fixture(params=["memory", "redis"])
async def api(request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """A registry API with the hosts routes over a memory or a real Redis host store."""
    if request.param == "memory":
        store: HostStore = MemoryHostStore()
    else:
        redis: RedisServer = request.getfixturevalue("redis_server")
        store = RedisHostStore(redis.url, namespace=f"t-{uuid.uuid4().hex[:8]}")
    app = create_app(Registry(MemoryStore()), TokenAuth(TOKENS), hosts=store)
    try:
        async with AppServer(app) as server:
            yield Api(server.url, store)
    finally:
        await store.aclose()


def start_order(order_id: str, host: str = "h1", **changes: object) -> Order:
    return Order(
        order_id=order_id,
        host_id=host,
        action=OrderAction.START,
        service="llm",
        profile="llama",
        version="2",
        params={"ctx": "2048"},
    ).with_changes(**changes)


async def report_hosts(api: Api) -> None:
    for host in ("h1", "h2"):
        async with api.client(f"s-{host}") as client:
            await client.report_host(Host(host, f"10.0.0.{host[1]}", capacity=2), ttl=30)


async def test_the_same_order_id_twice_is_one_order(api: Api) -> None:
    """Resending an order returns the stored one; a different order under its id is a 409."""
    await report_hosts(api)
    async with api.client("s-deploy") as deploy:
        first, created = await deploy.add_order(start_order("o-1"))
        again, created_again = await deploy.add_order(start_order("o-1"))
        assert (created, created_again) == (True, False)
        assert again.created_at == first.created_at
        with pytest.raises(Conflict, match="taken by a different order"):
            await deploy.add_order(start_order("o-1", version="3"))
        _, orders = await deploy.orders("h1")
    assert [o.order_id for o in orders] == ["o-1"]


async def test_a_host_reads_and_reports_only_its_own_orders(api: Api) -> None:
    """Another host's token gets 403 reading h1's orders or reporting on them; h1's own works."""
    await report_hosts(api)
    async with api.client("s-deploy") as deploy:
        await deploy.add_order(start_order("o-1"))
    async with api.client("s-h2") as other:
        with pytest.raises(Forbidden, match="host 'h2', not 'h1'"):
            await other.orders("h1")
        with pytest.raises(Forbidden, match="host 'h2', not 'h1'"):
            await other.report("h1", "o-1", OrderState.ACCEPTED)
        with pytest.raises(Forbidden):
            await other.report_host(Host("h1", "10.9.9.9"), ttl=30)
    async with api.client("s-h1") as own:
        reported = await own.report("h1", "o-1", OrderState.STARTED, "pid 1", "llm-a")
    assert (reported.state, reported.instance_id) == (OrderState.STARTED, "llm-a")


async def test_orders_need_the_deploy_scope(api: Api) -> None:
    """A register-only token, and a host token, cannot write orders or cordon."""
    await report_hosts(api)
    for secret in ("s-team", "s-h1"):
        async with api.client(secret) as client:
            with pytest.raises(Forbidden, match="deploy"):
                await client.add_order(start_order("o-x"))
            with pytest.raises(Forbidden, match="deploy"):
                await client.cordon("h1")


async def test_a_cordoned_host_takes_no_new_start_order(api: Api) -> None:
    """Cordon refuses new starts (409) but keeps stops; uncordon lets starts in again."""
    await report_hosts(api)
    async with api.client("s-deploy") as deploy:
        assert (await deploy.cordon("h1")).cordoned
        with pytest.raises(Conflict, match="cordoned"):
            await deploy.add_order(start_order("o-2"))
        stop = Order("o-3", "h1", OrderAction.STOP, "llm", instance_id="llm-a")
        assert (await deploy.add_order(stop))[1]
        # The host's own report does not lift an operator's cordon.
        async with api.client("s-h1") as own:
            assert (await own.report_host(Host("h1", "10.0.0.1"), ttl=30)).cordoned
        await deploy.cordon("h1", False)
        assert (await deploy.add_order(start_order("o-2")))[1]


async def test_a_host_waiting_on_its_feed_wakes_for_its_order_only(api: Api) -> None:
    """A blocking query on h1's feed returns once an order for h1 lands, not one for h2."""
    await report_hosts(api)
    async with api.client("s-h1") as own, api.client("s-deploy") as deploy:
        index, _ = await own.orders("h1")
        waiting = asyncio.create_task(own.orders("h1", index=index, wait=10))
        await deploy.add_order(start_order("for-h2", host="h2"))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await deploy.add_order(start_order("for-h1"))
        async with asyncio.timeout(5):
            new_index, changed = await waiting
    assert new_index > index
    assert [o.order_id for o in changed] == ["for-h1"]


async def test_hosts_list_what_runs_and_their_capacity(api: Api) -> None:
    """The list shows each host's slots and instances, and whether its daemon is up."""
    async with api.client("s-h1") as own:
        await own.report_host(
            Host("h1", "10.0.0.1", labels={"gpu": "h100"}, capacity=4, instances={"a": "llm"}),
            ttl=0.5,
        )
    async with api.client("s-deploy") as deploy:
        [(host, alive)] = await deploy.hosts()
        assert (host.capacity, dict(host.instances), host.labels["gpu"], alive) == (
            4,
            {"a": "llm"},
            "h100",
            True,
        )
        await asyncio.sleep(0.7)
        [(_, alive)] = await deploy.hosts()
    assert not alive


def test_a_host_token_cannot_also_deploy() -> None:
    """A host token with deploy or admin could order every host: refused when configured."""
    with pytest.raises(ValueError, match="cannot also deploy"):
        Token("h1", "s", frozenset({Scope.HOST, Scope.DEPLOY}), host_id="h1")
    with pytest.raises(ValueError, match="bound to exactly one host"):
        Token("h1", "s", frozenset({Scope.HOST}))
