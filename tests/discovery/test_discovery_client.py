"""The discovery client against a real registry: views, propagation, watches, outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from fleetwatch.discovery import Change, DiscoveryClient, RegistryClient
from fleetwatch.errors import RegistryUnavailable
from fleetwatch.registry._model import InstanceStatus
from fleetwatch_testing import HttpBackend, free_port
from tests._support.registry_node import TOKEN, RunningRegistry


async def _register(api: RegistryClient, name: str, port: int, **body: object) -> None:
    check = {"interval": 0.2, "timeout": 0.2, "rise": 1, "fall": 1}
    await api.register("llm", name, {"host": "127.0.0.1", "port": port, "check": check, **body})


async def _wait_for(predicate: Callable[[], Awaitable[bool]], within: float) -> None:
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - the client updates on its own
            await asyncio.sleep(0.01)


async def test_discovers_routable_instances_and_follows_changes(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """Healthy instances appear once available; a drained one leaves the routable view."""
    async with DiscoveryClient(registry.url, token=TOKEN) as client:
        await _register(api, "a", backend.port)
        await _register(api, "b", backend.port)

        async def both() -> bool:
            return {i.instance_id for i in await client.instances("llm")} == {"a", "b"}

        await _wait_for(both, 5)
        await api.set_status("llm", "b", "draining")

        async def only_a() -> bool:
            return [i.instance_id for i in await client.instances("llm")] == ["a"]

        await _wait_for(only_a, 2)
        everything = await client.instances("llm", passing=False)
        assert {i.instance_id: i.status for i in everything}["b"] is InstanceStatus.DRAINING
        assert not client.is_stale("llm")


async def test_status_change_reaches_the_client_within_milliseconds(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """The view follows a blocking query: a change lands in the cache almost at once."""
    async with DiscoveryClient(registry.url, token=TOKEN) as client:
        await _register(api, "a", backend.port)

        async def available() -> bool:
            return len(await client.instances("llm")) == 1

        await _wait_for(available, 5)
        delays = []
        for status in ("maintenance", "active") * 3:
            started = time.perf_counter()
            await api.set_status("llm", "a", status)
            expected = InstanceStatus.MAINTENANCE if status == "maintenance" else None

            async def arrived(expected: InstanceStatus | None = expected) -> bool:
                [instance] = await client.instances("llm", passing=False)
                return (
                    instance.status is expected
                    if expected
                    else instance.status is not InstanceStatus.MAINTENANCE
                )

            await _wait_for(arrived, 2)
            delays.append(time.perf_counter() - started)
    assert max(delays) < 0.25


async def test_watch_reports_each_kind_of_change(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """A watcher hears registered, status_changed and deregistered, in order."""
    seen: list[tuple[str, str]] = []
    async with DiscoveryClient(registry.url, token=TOKEN) as client:
        stop = client.watch("llm", lambda c: seen.append((c.kind, c.instance.instance_id)))
        await client.follow("llm")
        await asyncio.sleep(0.2)
        await _register(api, "a", backend.port)
        await _wait_for(lambda: _has(seen, ("status_changed", "a")), 5)
        await api.deregister("llm", "a")
        await _wait_for(lambda: _has(seen, ("deregistered", "a")), 2)
        stop()
    assert seen[0] == ("registered", "a")
    assert seen[-1] == ("deregistered", "a")


async def _has(seen: list[tuple[str, str]], item: tuple[str, str]) -> bool:
    return item in seen


async def test_registry_outage_keeps_last_known_good(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """With the registry down the client serves its last view, flagged stale, then recovers."""
    async with DiscoveryClient(registry.url, token=TOKEN, wait=1.0) as client:
        await _register(api, "a", backend.port)

        async def ready() -> bool:
            return len(await client.instances("llm")) == 1

        await _wait_for(ready, 5)
        await registry.stop()

        async def stale() -> bool:
            return client.is_stale("llm")

        await _wait_for(stale, 5)
        assert [i.instance_id for i in await client.instances("llm")] == ["a"]
        await registry.start()
        await _register(api, "b", backend.port)

        async def recovered() -> bool:
            return (
                not client.is_stale("llm")
                and len(await client.instances("llm")) == 1
                and ((await client.instances("llm"))[0].instance_id == "b")
            )

        await _wait_for(recovered, 10)


async def test_static_fallback_when_nothing_was_ever_fetched() -> None:
    """No registry at all: static instances serve; without them, a clear error."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    static = {"llm": ["http://10.1.2.3:8000", "https://llm.internal"]}
    async with DiscoveryClient(
        nowhere, token=TOKEN, static=static, first_fetch_timeout=0.3
    ) as client:
        found = await client.instances("llm")
        assert [(i.host, i.port, i.scheme) for i in found] == [
            ("10.1.2.3", 8000, "http"),
            ("llm.internal", 443, "https"),
        ]
        assert client.is_stale("llm")
        with pytest.raises(RegistryUnavailable, match="no static fallback for it"):
            await client.instances("embeddings")


async def test_bypass_invalidate_and_metadata_merge(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """fresh=True asks now; invalidate forgets; update_status merges metadata."""
    async with DiscoveryClient(registry.url, token=TOKEN) as client:
        await _register(api, "a", backend.port, metadata={"zone": "eu"})
        [fresh] = await client.instances("llm", passing=False, fresh=True)
        assert fresh.metadata == {"zone": "eu"}
        await client.update_status("llm", "a", "maintenance", metadata={"reason": "upgrade"})
        client.invalidate("llm")
        [after] = await client.instances("llm", passing=False, fresh=True)
    assert after.metadata == {"zone": "eu", "reason": "upgrade"}
    assert after.status is InstanceStatus.MAINTENANCE


async def test_get_instance_skips_an_ejected_instance(
    registry: RunningRegistry, api: RegistryClient, backend: HttpBackend
) -> None:
    """A connect error reported through request() ejects the instance for the next picks."""
    async with DiscoveryClient(registry.url, token=TOKEN) as client:
        for name in ("a", "b", "c"):
            await _register(api, name, backend.port)

        async def three() -> bool:
            return len(await client.instances("llm")) == 3

        await _wait_for(three, 5)
        bad = next(i for i in await client.instances("llm") if i.instance_id == "b")
        async with client.request(bad) as outcome:
            outcome.failed(connect_error=True)
        picks = {(await client.get_instance("llm")).instance_id for _ in range(30)}  # type: ignore[union-attr]
    assert picks == {"a", "c"}


def test_change_is_a_value() -> None:
    """Changes compare by value (callbacks can be tested easily)."""
    assert Change.__dataclass_params__.frozen  # type: ignore[attr-defined]
