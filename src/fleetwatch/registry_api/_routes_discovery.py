"""Reads: services, instances (blocking queries), discover, and the event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from fleetwatch.errors import IndexReset, RegistryUnavailable
from fleetwatch.registry._model import InstanceStatus
from fleetwatch.registry._registry import Registry
from fleetwatch.registry._store import consistent_read
from fleetwatch.registry_api import _schemas as schemas
from fleetwatch.registry_api._blocking import blocking_read, parse_wait, unless_disconnected
from fleetwatch.registry_api._deps import NAME_PATTERN, Reader, RegistryDep
from fleetwatch.registry_api._errors import ERROR_RESPONSES

router = APIRouter(tags=["discovery"], responses=ERROR_RESPONSES)
Name = Annotated[str, Path(pattern=NAME_PATTERN)]
Index = Annotated[int | None, Query(ge=0, description="the X-Fleetwatch-Index you last saw")]
Wait = Annotated[
    str | None,
    Query(
        description="how long to block, e.g. 30s (max 10m)",
        pattern=r"^[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$",
    ),
]

INDEX_HEADER = "X-Fleetwatch-Index"
#: An idle event stream sends a comment this often, so proxies and clients see it is alive.
SSE_KEEPALIVE_S = 15.0


@router.get("/v1/services", response_model=schemas.ServicesReply)
async def services(
    *,
    request: Request,
    response: Response,
    who: Reader,
    registry: RegistryDep,
    index: Index = None,
    wait: Wait = None,
) -> schemas.ServicesReply:
    """Services with instance counts by status. A blocking query with ``index``/``wait``."""
    current, answer = await unless_disconnected(
        request, blocking_read(registry.store, index, parse_wait(wait), registry.services)
    )
    response.headers[INDEX_HEADER] = str(current)
    return schemas.ServicesReply(index=current, services=answer)


@router.get("/v1/services/{service}/instances", response_model=schemas.InstancesReply)
async def instances(
    *,
    service: Name,
    request: Request,
    response: Response,
    who: Reader,
    registry: RegistryDep,
    status: Annotated[list[InstanceStatus] | None, Query()] = None,
    tag: Annotated[list[str] | None, Query(description="repeatable: all must match")] = None,
    passing: bool = False,
    instance: Annotated[
        list[str] | None, Query(description="these instance ids only (repeatable)")
    ] = None,
    index: Index = None,
    wait: Wait = None,
) -> schemas.InstancesReply:
    """Discover a service's instances; filters combine. A blocking query with ``index``."""

    async def read() -> list[schemas.InstanceOut]:
        found = await registry.discover(
            service,
            status=status or (),
            tags=tag or (),
            passing=passing,
            instance_ids=instance or (),
        )
        return [schemas.InstanceOut.of(i) for i in found]

    only = set(instance or ())

    def concerns(key: tuple[str, str]) -> bool:
        return key[0] == service and (not only or key[1] in only)

    current, answer = await unless_disconnected(
        request, blocking_read(registry.store, index, parse_wait(wait), read, concerns=concerns)
    )
    response.headers[INDEX_HEADER] = str(current)
    return schemas.InstancesReply(service=service, index=current, instances=answer)


@router.get("/v1/services/{service}/load", response_model=schemas.LoadReply)
async def load(*, service: Name, who: Reader, registry: RegistryDep) -> schemas.LoadReply:
    """The latest load figures of a service's instances."""
    return schemas.LoadReply(service=service, load=await registry.store.loads(service))


@router.get("/v1/discover/{service}", response_model=schemas.DiscoverReply)
async def discover(
    *, service: Name, response: Response, who: Reader, registry: RegistryDep
) -> schemas.DiscoverReply:
    """``/discover/{service}``, the one-call discovery read: the healthiest routable instance,
    and all of them."""
    # The index read before the answer, never after: a change between the two would otherwise
    # be labelled as included, and a client waiting from that index would miss it.
    current, found = await consistent_read(
        registry.store, lambda: registry.discover(service, passing=True)
    )
    best = max(found, key=lambda i: (i.effective_weight, -i.consecutive_failures), default=None)
    response.headers[INDEX_HEADER] = str(current)
    return schemas.DiscoverReply(
        service=service,
        index=current,
        instance=schemas.InstanceOut.of(best) if best else None,
        instances=[schemas.InstanceOut.of(i) for i in found],
    )


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-sent events, one per change; `id` is the change index",
        }
    },
)
async def events(
    *,
    who: Reader,
    registry: RegistryDep,
    index: Annotated[int, Query(ge=0, description="stream the changes after this index")] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Every change after ``index`` (or ``Last-Event-ID``), as server-sent events.

    ``event: reset`` says the client's index is no longer valid (the store restarted, or the
    history moved on): fetch the full state again, then follow on from the index it carries.
    """
    start = int(last_event_id) if last_event_id and last_event_id.isdigit() else index
    return StreamingResponse(
        event_stream(registry, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def event_stream(registry: Registry, index: int) -> AsyncIterator[bytes]:
    """The SSE body: catch up from ``index``, then follow."""
    store = registry.store
    while True:
        try:
            events = await store.events_after(index, limit=500)
        except IndexReset as exc:
            index = await store.index()
            payload = json.dumps({"index": index, "reason": str(exc)})
            yield f"event: reset\nid: {index}\ndata: {payload}\n\n".encode()
            continue
        except RegistryUnavailable as exc:
            yield f"event: error\ndata: {json.dumps({'error': str(exc)})}\n\n".encode()
            await asyncio.sleep(1.0)
            continue
        for event in events:
            data = json.dumps(event.to_dict(), separators=(",", ":"))
            yield f"id: {event.index}\nevent: {event.type.value}\ndata: {data}\n\n".encode()
            index = event.index
        if not events:
            try:
                newer = await store.wait_for_change(index, SSE_KEEPALIVE_S)
            except RegistryUnavailable:
                newer = index
                await asyncio.sleep(1.0)
            if newer == index:
                yield b": keep-alive\n\n"
