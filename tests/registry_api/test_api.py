"""The registry API over real HTTP: registration, auth, validation, discovery, blocking, SSE."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fleetwatch.registry._model import InstanceStatus
from tests._support.registry_api import OPS, TEAM_A, TEAM_B, Api

URL = "/v1/services/llm/instances"


async def _snapshot(api: Api) -> list[dict[str, object]]:
    return [i.to_dict() for i in await api.registry.store.instances()]


async def test_smallest_body_registers_with_defaults(api: Api) -> None:
    """{"host", "port"} is enough: an HTTP check of /health, starting, owned by the caller."""
    reply = await api.client.put(
        f"{URL}/a", json={"host": "127.0.0.1", "port": 8080}, headers=TEAM_A
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["index"] == 1
    instance = body["instance"]
    assert instance["url"] == "http://127.0.0.1:8080"
    assert instance["status"] == "starting"
    assert instance["check"]["type"] == "http"
    assert instance["check"]["path"] == "/health"
    assert instance["owner"] == "team-a"
    listed = await api.client.get(URL, headers=TEAM_B)
    assert listed.headers["X-Fleetwatch-Index"] == "1"
    assert [i["instance_id"] for i in listed.json()["instances"]] == ["a"]


async def test_writes_need_a_token_and_reads_too_unless_opened(api: Api) -> None:
    """No token: 401 for writes and (by default) reads; a bad token is 401 too."""
    body = {"host": "127.0.0.1", "port": 8080}
    assert (await api.client.put(f"{URL}/a", json=body)).status_code == 401
    bad = await api.client.put(f"{URL}/a", json=body, headers={"Authorization": "Bearer nope"})
    assert (bad.status_code, bad.json()["error"]) == (401, "the bearer token is not valid")
    assert (await api.client.get(URL)).status_code == 401
    assert await _snapshot(api) == []


async def test_one_team_cannot_take_over_another_teams_instance(api: Api) -> None:
    """Team B cannot update, drain or delete team A's instance; ops (admin) can."""
    body = {"host": "127.0.0.1", "port": 8080}
    await api.client.put(f"{URL}/a", json=body, headers=TEAM_A)
    before = await _snapshot(api)
    hijack = await api.client.put(
        f"{URL}/a", json={"host": "10.0.0.66", "port": 80}, headers=TEAM_B
    )
    assert hijack.status_code == 403
    assert "registered by another token ('team-a')" in hijack.json()["error"]
    assert (await api.client.delete(f"{URL}/a", headers=TEAM_B)).status_code == 403
    status = await api.client.put(f"{URL}/a/status", json={"status": "draining"}, headers=TEAM_B)
    assert status.status_code == 403
    assert await _snapshot(api) == before
    ok = await api.client.put(f"{URL}/a/status", json={"status": "maintenance"}, headers=OPS)
    assert ok.status_code == 200


async def test_invalid_bodies_name_the_field_and_change_nothing(api: Api) -> None:
    """Bad ports, hosts, fields and sizes are refused with the field named; state is untouched."""
    await api.client.put(f"{URL}/a", json={"host": "127.0.0.1", "port": 8080}, headers=TEAM_A)
    before = await _snapshot(api)
    cases = [
        ({"host": "127.0.0.1", "port": 70000}, 422, "field 'port'"),
        ({"host": "http://x:80/", "port": 80}, 422, "field 'host'"),
        ({"host": "127.0.0.1", "port": 80, "colour": "red"}, 422, "field 'colour'"),
        ({"host": "127.0.0.1", "port": 80, "check": {"interval": "soon"}}, 422, "check.interval"),
        ({"host": "127.0.0.1", "port": 80, "tags": ["has space"]}, 422, "field 'tags'"),
        ({"port": 80}, 422, "field 'host'"),
    ]
    for body, code, named in cases:
        reply = await api.client.put(f"{URL}/a", json=body, headers=TEAM_A)
        assert reply.status_code == code, body
        assert named in reply.json()["error"], reply.json()
    bad_name = await api.client.put(
        "/v1/services/no%20spaces/instances/a", json={"host": "h", "port": 1}, headers=TEAM_A
    )
    assert bad_name.status_code == 422
    huge = {"host": "127.0.0.1", "port": 80, "metadata": {"k": "v" * 1000, "j": "w" * 4000}}
    too_big = await api.client.put(f"{URL}/a", content=json.dumps(huge), headers=TEAM_A)
    assert too_big.status_code == 413
    assert "larger than 4096 bytes" in too_big.json()["error"]
    assert await _snapshot(api) == before


async def test_heartbeat_unknown_is_404_and_operator_removal_is_410(api: Api) -> None:
    """404 tells an agent to register again; after an operator's removal, 410 tells it to stop."""
    missing = await api.client.put(f"{URL}/ghost/heartbeat", headers=TEAM_A)
    assert missing.status_code == 404
    assert "register again" in missing.json()["error"]
    await api.client.put(f"{URL}/a", json={"host": "127.0.0.1", "port": 8080}, headers=TEAM_A)
    assert (await api.client.put(f"{URL}/a/heartbeat", headers=TEAM_A)).status_code == 200
    assert (await api.client.delete(f"{URL}/a", headers=OPS)).json()["removed"] is True
    assert (await api.client.put(f"{URL}/a/heartbeat", headers=TEAM_A)).status_code == 410
    again = await api.client.put(
        f"{URL}/a", json={"host": "127.0.0.1", "port": 8080}, headers=TEAM_A
    )
    assert again.status_code == 410


async def test_leaving_on_ones_own_leaves_no_tombstone(api: Api) -> None:
    """tombstone=false (a shutdown) lets it come back at once; a plain DELETE does not."""
    body = {"host": "127.0.0.1", "port": 8080}
    await api.client.put(f"{URL}/a", json=body, headers=TEAM_A)
    left = await api.client.delete(f"{URL}/a?tombstone=false", headers=TEAM_A)
    assert left.status_code == 200
    assert (await api.client.put(f"{URL}/a", json=body, headers=TEAM_A)).status_code == 200
    assert (await api.client.delete(f"{URL}/a", headers=TEAM_A)).status_code == 200
    assert (await api.client.put(f"{URL}/a", json=body, headers=TEAM_A)).status_code == 410


async def test_refused_heartbeat_does_not_extend_the_lease(api: Api) -> None:
    """Team B's heartbeat for team A's instance is refused and leaves the lease as it was."""
    body = {"host": "127.0.0.1", "port": 8080, "ttl": 1}
    await api.client.put(f"{URL}/a", json=body, headers=TEAM_A)
    for _ in range(3):
        await asyncio.sleep(0.4)
        beat = await api.client.put(f"{URL}/a/heartbeat", headers=TEAM_B)
        assert beat.status_code == 403
    assert await api.registry.store.lapsed() == [("llm", "a")]


async def test_only_agent_held_instances_report_status(api: Api) -> None:
    """A monitor-checked instance cannot also be judged by heartbeat reports."""
    await api.client.put(f"{URL}/a", json={"host": "127.0.0.1", "port": 8080}, headers=TEAM_A)
    report = {"status": "available"}
    refused = await api.client.put(f"{URL}/a/heartbeat", json=report, headers=TEAM_A)
    assert refused.status_code == 409
    assert "only agent-held (ttl) instances report a status" in refused.json()["error"]
    agent = {"host": "127.0.0.1", "port": 8081, "check": {"type": "ttl"}}
    await api.client.put(f"{URL}/b", json=agent, headers=TEAM_A)
    accepted = await api.client.put(f"{URL}/b/heartbeat", json=report, headers=TEAM_A)
    assert accepted.json()["instance"]["status"] == "available"


async def test_discovery_filters(api: Api) -> None:
    """status (any of), tag (all of, repeatable) and passing (routable) filter instances."""
    for name, tags in (("a", ["gpu", "a100"]), ("b", ["gpu"]), ("c", [])):
        body = {"host": "127.0.0.1", "port": 8000, "tags": tags}
        await api.client.put(f"{URL}/{name}", json=body, headers=TEAM_A)
    await api.registry.store.set_status("llm", "a", InstanceStatus.AVAILABLE)
    await api.registry.store.set_status("llm", "b", InstanceStatus.DEGRADED)

    async def ids(query: str) -> list[str]:
        reply = await api.client.get(f"{URL}?{query}", headers=TEAM_A)
        return [i["instance_id"] for i in reply.json()["instances"]]

    assert await ids("tag=gpu") == ["a", "b"]
    assert await ids("tag=gpu&tag=a100") == ["a"]
    assert await ids("status=starting") == ["c"]
    assert await ids("status=available&status=degraded") == ["a", "b"]
    assert await ids("passing=true") == ["a", "b"]
    assert await ids("instance=b") == ["b"]
    assert await ids("instance=b&status=available") == []
    assert await ids("instance=nobody") == []
    assert await ids("instance=c&instance=a") == ["c", "a"]
    weights = {
        i["instance_id"]: i["effective_weight"]
        for i in (await api.client.get(URL, headers=TEAM_A)).json()["instances"]
    }
    assert weights == {"a": 1.0, "b": 0.1, "c": 0.0}
    services = (await api.client.get("/v1/services", headers=TEAM_A)).json()["services"]
    assert services == {"llm": {"available": 1, "degraded": 1, "starting": 1, "total": 3}}
    seed = (await api.client.get("/v1/discover/llm", headers=TEAM_A)).json()
    assert seed["instance"]["instance_id"] == "a"


async def test_blocking_query_returns_within_milliseconds_of_a_change(api: Api) -> None:
    """A query holding the current index waits, and answers as soon as the service changes."""
    await api.client.put(f"{URL}/a", json={"host": "127.0.0.1", "port": 8000}, headers=TEAM_A)
    index = int((await api.client.get(URL, headers=TEAM_A)).headers["X-Fleetwatch-Index"])
    changed_at = 0.0

    async def change() -> None:
        nonlocal changed_at
        await asyncio.sleep(0.3)
        changed_at = time.perf_counter()
        await api.registry.store.set_status("llm", "a", InstanceStatus.AVAILABLE)

    task = asyncio.create_task(change())
    reply = await api.client.get(f"{URL}?index={index}&wait=10s", headers=TEAM_A)
    answered_at = time.perf_counter()
    await task
    assert reply.json()["instances"][0]["status"] == "available"
    assert int(reply.headers["X-Fleetwatch-Index"]) > index
    assert answered_at - changed_at < 0.1


async def test_blocking_query_ignores_other_services_and_times_out(api: Api) -> None:
    """A change elsewhere does not wake a query whose answer is unchanged; wait bounds it."""
    await api.client.put(f"{URL}/a", json={"host": "127.0.0.1", "port": 8000}, headers=TEAM_A)
    index = int((await api.client.get(URL, headers=TEAM_A)).headers["X-Fleetwatch-Index"])

    async def elsewhere() -> None:
        await asyncio.sleep(0.1)
        body = {"host": "127.0.0.1", "port": 9000}
        await api.client.put("/v1/services/embed/instances/e", json=body, headers=TEAM_A)

    task = asyncio.create_task(elsewhere())
    started = time.perf_counter()
    reply = await api.client.get(f"{URL}?index={index}&wait=600ms", headers=TEAM_A)
    await task
    assert 0.55 < time.perf_counter() - started < 2.0
    assert [i["instance_id"] for i in reply.json()["instances"]] == ["a"]


async def test_a_query_for_one_draining_instance_sleeps_through_other_changes(api: Api) -> None:
    """What an agent asks (its own record, once draining): b and a changing leave it waiting;
    a set draining answers it at once."""
    for name in ("a", "b"):
        body = {"host": "127.0.0.1", "port": 8000}
        await api.client.put(f"{URL}/{name}", json=body, headers=TEAM_A)
    index = int((await api.client.get(URL, headers=TEAM_A)).headers["X-Fleetwatch-Index"])

    async def changes() -> None:
        await asyncio.sleep(0.1)
        await api.registry.store.set_status("llm", "b", InstanceStatus.AVAILABLE)
        await api.registry.store.set_status("llm", "a", InstanceStatus.AVAILABLE)
        await asyncio.sleep(0.4)
        await api.registry.store.set_status("llm", "a", InstanceStatus.DRAINING)

    task = asyncio.create_task(changes())
    started = time.perf_counter()
    query = f"{URL}?instance=a&status=draining&index={index}&wait=10s"
    reply = await api.client.get(query, headers=TEAM_A)
    await task
    assert 0.45 < time.perf_counter() - started < 2.0
    assert [i["instance_id"] for i in reply.json()["instances"]] == ["a"]


async def test_event_stream_replays_then_follows(api: Api) -> None:
    """/v1/events sends every change after the index, in order, then new ones as they happen."""
    for name in ("a", "b"):
        body = {"host": "127.0.0.1", "port": 8000}
        await api.client.put(f"{URL}/{name}", json=body, headers=TEAM_A)
    seen: list[tuple[str, str]] = []
    async with api.client.stream("GET", "/v1/events?index=0", headers=TEAM_A) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                seen.append((kind, json.loads(line[6:])["instance_id"]))
                if len(seen) == 2:
                    await api.registry.store.remove("llm", "a")
                if len(seen) == 3:
                    break
    assert seen == [("registered", "a"), ("registered", "b"), ("deregistered", "a")]


async def test_openapi_describes_every_route(api: Api) -> None:
    """The OpenAPI document lists the registry's routes with their error schemas."""
    spec = (await api.client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/v1/services",
        "/v1/services/{service}/instances",
        "/v1/services/{service}/instances/{instance_id}",
        "/v1/services/{service}/instances/{instance_id}/heartbeat",
        "/v1/services/{service}/instances/{instance_id}/status",
        "/v1/events",
        "/v1/discover/{service}",
        "/v1/admin/drain/{service}/{instance_id}",
    ):
        assert path in paths
    assert "403" in paths["/v1/services/{service}/instances/{instance_id}"]["put"]["responses"]


async def test_load_figures_do_not_wake_blocking_queries(api: Api) -> None:
    """PUT .../load stores figures readable at /load without bumping the change index."""
    await api.client.put(f"{URL}/a", json={"host": "127.0.0.1", "port": 8000}, headers=TEAM_A)
    index = (await api.client.get(URL, headers=TEAM_A)).headers["X-Fleetwatch-Index"]
    body = {"load": {"requests_waiting": 3, "kv_cache_usage": 0.42}}
    put = await api.client.put(f"{URL}/a/load", json=body, headers=TEAM_A)
    assert put.status_code == 200
    assert (await api.client.put(f"{URL}/a/load", json=body, headers=TEAM_B)).status_code == 403
    loads = (await api.client.get("/v1/services/llm/load", headers=TEAM_A)).json()
    assert loads == {
        "service": "llm",
        "load": {"a": {"requests_waiting": 3, "kv_cache_usage": 0.42}},
    }
    after = (await api.client.get(URL, headers=TEAM_A)).headers["X-Fleetwatch-Index"]
    assert after == index


async def test_chunked_oversized_body_is_413(api: Api) -> None:
    """A body sent in chunks without Content-Length is still refused with 413 past the limit."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"host": "127.0.0.1", "port": 80, "metadata": {"k": "'
        for _ in range(10):
            yield b"v" * 1000
        yield b'"}}'

    reply = await api.client.put(f"{URL}/a", content=chunks(), headers=TEAM_A)
    assert reply.status_code == 413
    assert "larger than 4096 bytes" in reply.json()["error"]
    assert await _snapshot(api) == []
