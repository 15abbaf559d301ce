"""The gateway: OpenAI-compatible routes proxied to healthy instances of one service.

For each request: authenticate the client, read the body (bounded), pick the instances that
serve its ``model``, take a slot on one (least loaded by default; a bounded queue when all are
full), and send it. Failures before anything reached the client (connection refused or reset,
429/503 such as a draining instance's) go to another instance, once by default; a 429/503's
``Retry-After`` keeps new requests off that instance until then. The reply streams through
unbuffered; a backend failure after the first byte ends an SSE stream with an error event. A
client that goes away cancels the upstream request, so the server frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from fleetwatch import __version__
from fleetwatch.async_resource import AsyncResource
from fleetwatch.discovery import DiscoveryClient, RegistryClient
from fleetwatch.discovery.balancer import balancer_for
from fleetwatch.discovery.client import RequestOutcome
from fleetwatch.errors import Forbidden, InstanceNotFound, RegistryError, Unauthorized
from fleetwatch.gateway.admission import Admission, Saturated, parse_retry_after
from fleetwatch.gateway.errors import error_body, error_response, sse_error
from fleetwatch.gateway.openapi import openapi_document, request_problem
from fleetwatch.gateway.settings import CONNECT_TIMEOUT_S, GatewaySettings
from fleetwatch.gateway.stats import GatewayStats
from fleetwatch.lifecycle.http_limits import BodySizeLimit, HttpLimits
from fleetwatch.observability.metrics import GatewayMetrics, metrics_route
from fleetwatch.registry.model import Instance
from fleetwatch.security.tls import client_context

PROXIED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
#: Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
#: Not sent upstream: the client's length (recomputed) and its gateway token.
REQUEST_SKIP = HOP_BY_HOP | {"content-length", "authorization"}
#: Between two chunks of a reply, longer than this is a stalled backend.
IDLE_TIMEOUT_S = 60.0
MODELS_CACHE_S = 2.0
UPSTREAM_KEEPALIVE_S = 3.0


@dataclass
class _Retry:
    """An attempt that failed before anything reached the client: try another instance."""

    response: Response


def _advertised(instance: Instance) -> set[str]:
    return {
        name.strip()
        for key in ("model", "models")
        for name in instance.metadata.get(key, "").split(",")
        if name.strip()
    }


def model_label(instance: Instance, model: str | None) -> str:
    """A metric label for ``model``: only names the instance advertises (bounded), else other."""
    return model if model is not None and model in _advertised(instance) else "other"


def serves(instance: Instance, model: str | None) -> bool:
    """Whether ``instance`` advertises ``model`` (in metadata ``model`` or ``models``,
    comma-separated); an instance that advertises none is taken to serve any."""
    if model is None:
        return True
    advertised = _advertised(instance)
    return not advertised or model in advertised


class Gateway(AsyncResource):
    """One gateway for one service. ``async with Gateway(settings) as gw: gw.app()``."""

    def __init__(
        self, settings: GatewaySettings, *, discovery: DiscoveryClient | None = None
    ) -> None:
        self.settings = settings
        self.service = settings.service
        self._discovery_registry = RegistryClient(
            settings.registry_url, token=settings.registry_token, ca_bundle=settings.ca_bundle
        )
        self.discovery = discovery or DiscoveryClient(
            client=self._discovery_registry,
            strategy=settings.strategy,
            outliers=settings.outliers,
        )
        self._own_discovery = discovery is None
        self._registry = RegistryClient(
            settings.registry_url, token=settings.registry_token, ca_bundle=settings.ca_bundle
        )
        # aiohttp upstream: httpx's connection pool slowed down as concurrency grew
        # (bench/gateway_overhead.py measured 576 req/s at 1 connection, 367 at 32).
        self._http: aiohttp.ClientSession | None = None
        self.admission = Admission(
            per_instance=settings.per_instance_limit,
            queue_limit=settings.queue_limit,
            queue_timeout=settings.queue_timeout,
        )
        self.balancer = balancer_for(settings.strategy, self.discovery.stats)
        self.metrics_registry = CollectorRegistry()
        self.metrics = GatewayMetrics(self.metrics_registry)
        self.metrics.watch_circuits(self.discovery.outliers.snapshot)
        self.stats = GatewayStats(service=self.service, metrics=self.metrics)
        self._load_task: asyncio.Task[None] | None = None
        self._slo_task: asyncio.Task[None] | None = None
        self._models: tuple[float, list[dict[str, Any]]] = (-math.inf, [])

    @property
    def http(self) -> aiohttp.ClientSession:
        """The upstream client (made in :meth:`start`, inside the running loop)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                # Idle upstream connections are dropped before the servers' own keep-alive
                # timeouts (llama.cpp's and uvicorn's: 5 s), so a request never goes out on a
                # connection the server is closing at that moment.
                connector=aiohttp.TCPConnector(
                    limit=2000,
                    keepalive_timeout=UPSTREAM_KEEPALIVE_S,
                    ssl=client_context(self.settings.ca_bundle),
                ),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=IDLE_TIMEOUT_S
                ),
                auto_decompress=False,
                trust_env=False,
            )
        return self._http

    async def start(self) -> None:
        """Follow the service (waiting briefly for the first answer) and its load."""
        with contextlib.suppress(RegistryError):
            await self.discovery.instances(self.service)
        self._load_task = asyncio.create_task(self._poll_load(), name="fleetwatch.gateway.load")
        self._slo_task = asyncio.create_task(self._report_slo(), name="fleetwatch.gateway.slo")

    async def aclose(self) -> None:
        tasks = [t for t in (self._load_task, self._slo_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(RegistryError):
            await self._send_sli()  # what was counted since the last report
        if self._http is not None:
            await self._http.close()
        await self._registry.aclose()
        if self._own_discovery:
            await self.discovery.aclose()
        await self._discovery_registry.aclose()

    def app(self) -> ASGIApp:
        """The ASGI app: the OpenAI routes, ``/v1/models``, probes and the gateway's figures."""
        routes = [Route(path, self._proxy, methods=["POST"]) for path in PROXIED_PATHS]
        routes += [
            Route("/v1/models", self._list_models, methods=["GET"]),
            Route("/v1/gateway/stats", self._stats, methods=["GET"]),
            Route("/livez", self._livez, methods=["GET"]),
            Route("/readyz", self._readyz, methods=["GET"]),
            Route("/openapi.json", self._openapi, methods=["GET"]),
            metrics_route(self.metrics_registry, refresh=self._refresh_metrics),
        ]
        return BodySizeLimit(
            Starlette(routes=routes),
            self.settings.max_body_bytes,
            lambda message: error_body(message, "invalid_request_error"),
        )

    def http_limits(self) -> HttpLimits:
        """The server limits to serve :meth:`app` with: the defaults, less the body limit,
        which :meth:`app` enforces itself (at the gateway's size, with OpenAI-style errors)."""
        return HttpLimits(max_body_bytes=None)

    async def _refresh_metrics(self) -> None:
        self.metrics.count_ejections()

    # -- helpers ---------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        tokens = self.settings.client_tokens
        if not tokens:
            return True
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        # Compare against every token, always, in constant time per token.
        return any([hmac.compare_digest(presented.encode(), token.encode()) for token in tokens])

    def candidates(self, model: str | None, exclude: set[tuple[str, str]]) -> list[Instance]:
        """Routable instances serving ``model``, their circuits allowing (panic: all)."""
        serving = [i for i in self.discovery.cached(self.service) if serves(i, model)]
        allowed, _panic = self.discovery.outliers.routable(serving, lambda i: i.key)
        return [i for i in allowed if i.key not in exclude]

    def _upstream_headers(self, request: Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in REQUEST_SKIP}
        if self.settings.upstream_api_key:
            headers["authorization"] = f"Bearer {self.settings.upstream_api_key}"
        return headers

    async def _report_slo(self) -> None:
        """Send the request counts for the service's SLO to the registry, every report
        interval; learn the latency threshold from the objective."""
        while True:
            await asyncio.sleep(self.settings.slo_report_every)
            with contextlib.suppress(RegistryError):
                for slo in await self._registry.slos():
                    if slo["service"] == self.service and slo.get("latency_threshold_s"):
                        self.stats.latency_threshold_s = float(slo["latency_threshold_s"])
                await self._send_sli()

    async def _send_sli(self) -> None:
        total, ok, fast = self.stats.take_sli()
        if not total:
            return
        try:
            await self._registry.report_requests(self.service, total, ok, fast)
        except (InstanceNotFound, Forbidden, Unauthorized):
            pass  # no objective for this service, or no right to report: nothing to keep
        except RegistryError:
            self.stats.sli = [a + b for a, b in zip(self.stats.sli, (total, ok, fast), strict=True)]
            raise

    async def _poll_load(self) -> None:
        """Copy the registry's load channel into the balancer's view, every ``load_every``."""
        stats = self.discovery.stats
        while True:
            try:
                figures = await self._registry.load(self.service)
                for instance_id, load in figures.items():
                    stats.reported[(self.service, instance_id)] = dict(load)
            except RegistryError:
                pass  # keep the last figures; the balancer also counts its own requests
            await asyncio.sleep(self.settings.load_every)

    # -- routes ----------------------------------------------------------------------------

    async def _livez(self, request: Request) -> Response:
        del request
        return JSONResponse({"status": "pass"})

    async def _readyz(self, request: Request) -> Response:
        del request
        routable = len(self.discovery.cached(self.service))
        status = 200 if routable else 503
        return JSONResponse(
            {"status": "pass" if routable else "fail", "routable_instances": routable},
            status_code=status,
        )

    async def _openapi(self, request: Request) -> Response:
        del request
        return JSONResponse(openapi_document(__version__))

    async def _stats(self, request: Request) -> Response:
        del request
        return JSONResponse(
            {
                **self.stats.snapshot(),
                "in_flight": {f"{s}/{i}": n for (s, i), n in self.admission.in_flight.items()},
                "queued": self.admission.waiting,
                "circuits": self.discovery.outliers.snapshot(),
            }
        )

    async def _list_models(self, request: Request) -> Response:
        """The union of ``/v1/models`` across the healthy instances (cached for 2 s)."""
        if not self._authorized(request):
            return error_response(401, "missing or invalid gateway token", "authentication_error")
        now = time.monotonic()
        fetched_at, models = self._models
        if now - fetched_at > MODELS_CACHE_S:
            instances = self.discovery.cached(self.service)
            replies = await asyncio.gather(
                *(self._models_of(i) for i in instances), return_exceptions=True
            )
            union: dict[str, dict[str, Any]] = {}
            for reply in replies:
                if isinstance(reply, list):
                    for model in reply:
                        union.setdefault(str(model["id"]), model)
            models = sorted(union.values(), key=lambda m: str(m["id"]))
            self._models = (now, models)
        return JSONResponse({"object": "list", "data": models})

    async def _models_of(self, instance: Instance) -> list[dict[str, Any]]:
        async with self.http.get(
            f"{instance.base_url}/v1/models",
            headers=self._upstream_headers_plain(),
            timeout=aiohttp.ClientTimeout(total=2.0),
        ) as response:
            data = (await response.json(content_type=None)).get("data", [])
        return [
            {"id": str(m["id"]), "object": "model", "owned_by": str(m.get("owned_by", ""))}
            for m in data
            if isinstance(m, dict) and "id" in m
        ]

    def _upstream_headers_plain(self) -> dict[str, str]:
        key = self.settings.upstream_api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    async def _parse(self, request: Request) -> tuple[bytes, dict[str, Any]] | Response:
        """The body and its JSON object, or the error reply."""
        if not self._authorized(request):
            self.stats.outcome("unauthorized")
            return error_response(401, "missing or invalid gateway token", "authentication_error")
        body = await request.body()  # its size is bounded by app()'s BodySizeLimit
        try:
            payload = json.loads(body)
        except ValueError:
            return error_response(400, "the request body is not JSON", "invalid_request_error")
        if not isinstance(payload, dict):
            return error_response(
                400, "the request body must be a JSON object", "invalid_request_error"
            )
        return body, payload

    async def _proxy(self, request: Request) -> Response:
        parsed = await self._parse(request)
        if isinstance(parsed, Response):
            return parsed
        body, payload = parsed
        problem = request_problem(request.url.path, payload)
        if problem is not None:
            self.stats.outcome("invalid_request")
            return error_response(400, problem, "invalid_request_error", "invalid_field")
        model = payload.get("model") if isinstance(payload.get("model"), str) else None
        streaming = payload.get("stream") is True
        if not self.candidates(model, set()):
            return self._nothing_to_route(model)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout
        tried: set[tuple[str, str]] = set()
        last: Response | None = None
        for attempt in range(self.settings.attempts):
            if attempt and not self.candidates(model, tried):
                break
            try:
                instance = await self.admission.acquire(
                    lambda: self.candidates(model, tried), self.balancer.pick
                )
            except Saturated as exc:
                if last is not None:
                    break
                return self._give_up(
                    "saturated",
                    error_response(
                        429,
                        f"{self.service}: {exc}",
                        "rate_limit_error",
                        "saturated",
                        **{"retry-after": str(max(1, math.ceil(exc.retry_after)))},
                    ),
                )
            tried.add(instance.key)
            result = await self._attempt(
                request, instance, body, model=model, streaming=streaming, deadline=deadline
            )
            if isinstance(result, _Retry):
                last = result.response
                if attempt + 1 < self.settings.attempts:
                    self.stats.retried()
                continue
            return result
        assert last is not None
        return self._give_up("failed_before_first_byte", last)

    def _give_up(self, outcome: str, response: Response) -> Response:
        """Answer a client request that was not served, counting it as failed."""
        self.stats.outcome(outcome)
        self.stats.request_done(ok=False, first_byte_s=None)
        return response

    def _nothing_to_route(self, model: str | None) -> Response:
        everything = self.discovery.cached(self.service)
        if model is not None and everything and not any(serves(i, model) for i in everything):
            self.stats.outcome("model_not_found")
            served = sorted({m for i in everything for m in _advertised(i)})
            return error_response(
                404,
                f"no instance of {self.service!r} serves model {model!r} "
                f"(served: {', '.join(served) or 'none advertised'})",
                "invalid_request_error",
                "model_not_found",
            )
        return self._give_up(
            "no_instance",
            error_response(
                503,
                f"no available instance of {self.service!r}",
                "service_unavailable",
                "no_instance",
                **{"retry-after": "1"},
            ),
        )

    async def _attempt(
        self,
        request: Request,
        instance: Instance,
        body: bytes,
        *,
        model: str | None,
        streaming: bool,
        deadline: float,
    ) -> Response | _Retry:
        """Send to one instance. Returns the client's response, or a retry before any byte."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        stack = contextlib.AsyncExitStack()
        outcome = await stack.enter_async_context(self.discovery.request(instance))
        sending = asyncio.ensure_future(
            self.http.post(
                f"{instance.base_url}{request.url.path}",
                data=body,
                headers=self._upstream_headers(request),
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            )
        )
        gone = asyncio.ensure_future(_client_gone(request))
        try:
            done, _ = await asyncio.wait(
                {sending, gone}, timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
        finally:
            gone.cancel()
        if sending not in done:
            sending.cancel()
            with contextlib.suppress(BaseException):
                await sending
            outcome.cancelled = gone in done
            await self._finish(instance, stack)
            if gone in done:  # nobody to answer; the upstream request was cancelled
                self.stats.outcome("client_gone")
                return Response(status_code=499)
            self.stats.record(instance.version, ok=False)
            return self._give_up(
                "timeout",
                error_response(
                    504,
                    f"no answer within {self.settings.request_timeout:g}s",
                    "timeout",
                    "timeout",
                ),
            )
        try:
            response = sending.result()
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome.failed(connect_error=isinstance(exc, aiohttp.ClientConnectorError))
            return await self._failed(
                instance, stack, f"failed: {type(exc).__name__}", "upstream_unreachable"
            )
        if response.status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            self.admission.back_off(instance.key, retry_after)
            content = await _read_small(response)
            outcome.cancelled = True  # busy or draining: not a fault of the instance
            await self._finish(instance, stack)
            return _Retry(
                Response(
                    content,
                    status_code=response.status,
                    headers={"retry-after": str(max(1, math.ceil(retry_after)))},
                    media_type=response.headers.get("content-type"),
                )
            )
        if response.status >= 500:
            outcome.failed()
        headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
        if not streaming:
            return await self._whole(
                response,
                instance,
                stack=stack,
                outcome=outcome,
                headers=headers,
                started=started,
                deadline=deadline,
            )
        headers["x-fleetwatch-instance"] = instance.instance_id
        return StreamingResponse(
            self._relay(
                response,
                instance,
                stack=stack,
                outcome=outcome,
                streaming=streaming,
                started=started,
                deadline=deadline,
                model=model_label(instance, model),
            ),
            status_code=response.status,
            headers=headers,
        )

    async def _whole(
        self,
        response: aiohttp.ClientResponse,
        instance: Instance,
        *,
        stack: contextlib.AsyncExitStack,
        outcome: RequestOutcome,
        headers: dict[str, str],
        started: float,
        deadline: float,
    ) -> Response | _Retry:
        """A non-streamed reply, read whole before anything is sent: a failure while reading
        can still go to another instance."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                content = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            response.close()
            outcome.failed()
            return await self._failed(
                instance,
                stack,
                f"failed while answering: {type(exc).__name__}",
                "upstream_failed",
            )
        finally:
            response.release()
        elapsed = loop.time() - started
        ok = response.status < 500
        self.stats.record(instance.version, ok=ok, latency_s=elapsed, first_byte_s=elapsed)
        self.stats.outcome("ok" if ok else "upstream_5xx")
        self.stats.request_done(ok=ok, first_byte_s=elapsed)
        await self._finish(instance, stack)
        return Response(content, status_code=response.status, headers=headers)

    async def _relay(
        self,
        response: aiohttp.ClientResponse,
        instance: Instance,
        *,
        stack: contextlib.AsyncExitStack,
        outcome: RequestOutcome,
        streaming: bool,
        started: float,
        deadline: float,
        model: str,
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        first_byte: float | None = None
        events = 0
        ok = response.status < 500
        complete = False
        try:
            async with asyncio.timeout_at(deadline):
                async for chunk in response.content.iter_any():
                    if first_byte is None:
                        first_byte = loop.time() - started
                    events += chunk.count(b"data: ")
                    yield chunk
            complete = True
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok = False
            outcome.failed()
            self.stats.outcome("failed_after_first_byte")
            if streaming:
                what = (
                    "timed out"
                    if isinstance(exc, TimeoutError)
                    else f"failed ({type(exc).__name__})"
                )
                yield sse_error(
                    f"instance {instance.instance_id} {what} mid-stream; the reply is incomplete",
                    "upstream_failed_mid_stream",
                )
        except (asyncio.CancelledError, GeneratorExit):
            outcome.cancelled = True  # the client went away: the upstream request is dropped
            self.stats.outcome("client_gone")
            raise
        else:
            self.stats.outcome("ok" if ok else "upstream_5xx")
        finally:
            if complete:
                response.release()  # the connection goes back to the pool
            else:
                response.close()  # drops the connection: the server stops generating
            total = loop.time() - started
            self.stats.record(instance.version, ok=ok, latency_s=total, first_byte_s=first_byte)
            if not outcome.cancelled:
                self.stats.request_done(ok=ok, first_byte_s=first_byte)
            if streaming and ok:
                chunks = max(0, events - 1)  # the last event is [DONE]
                self.metrics.streamed(
                    self.service, model, first=first_byte, chunks=chunks, total=total
                )
            await self._finish(instance, stack)

    async def _failed(
        self, instance: Instance, stack: contextlib.AsyncExitStack, what: str, code: str
    ) -> _Retry:
        """An attempt that failed before any byte reached the client."""
        await self._finish(instance, stack)
        self.stats.record(instance.version, ok=False)
        return _Retry(
            error_response(502, f"instance {instance.instance_id} {what}", "upstream_error", code)
        )

    async def _finish(self, instance: Instance, stack: contextlib.AsyncExitStack) -> None:
        await self.admission.release(instance.key)
        await stack.aclose()


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _read_small(response: aiohttp.ClientResponse, limit: int = 64 * 1024) -> bytes:
    """At most ``limit`` bytes of a reply, then close it."""
    try:
        return await response.content.read(limit)
    except (aiohttp.ClientError, TimeoutError):
        return b""
    finally:
        response.close()
