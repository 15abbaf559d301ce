"""The proxied OpenAI routes, as one ASGI app: every request runs inside one
:class:`Exchange`, from its body in to its last byte out.

For each request: authenticate the client, read the body, find the instances that may serve
it (the router's filters), take a slot on the one the router picks (a bounded queue when all
are full), and send it. Failures before anything reached the client (connection refused or
reset, 429/503 such as a draining instance's) go to another instance; a 429/503's
``Retry-After`` keeps new requests off that instance until then. A streamed reply is relayed
as it comes; when its server breaks after the first byte (reset, EOF without a final event,
an error event, no token within the inter-token timeout), a request that can be continued
goes on from what the client holds on another instance (:mod:`fleetwatch.gateway.recovery`);
any other ends with an SSE error event. A client that goes away cancels the upstream
request, so the server frees its slot.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fleetwatch.gateway._admission import Saturated, parse_retry_after
from fleetwatch.gateway._errors import error_response, sse_error
from fleetwatch.gateway._exchange import Exchange, client_sender
from fleetwatch.gateway._openapi import request_problem
from fleetwatch.gateway._usage import StreamUsage, merge, whole_usage
from fleetwatch.gateway.recovery import (
    CHAT,
    CONTINUABLE_KINDS,
    BrokenStream,
    ContinuationFailed,
    ContinuerBusy,
    OpenAIStreamReader,
    StreamPlan,
    Transcript,
    continue_stream,
    unrecoverable,
)
from fleetwatch.http1 import ConnectFailed, UpstreamError
from fleetwatch.http1 import Response as Upstream
from fleetwatch.registry._model import Instance
from fleetwatch.routing import RouteRequest, advertised_models, prompt_blocks, render_prompt
from fleetwatch.routing._filters import serves
from fleetwatch.security._auth import client_token

if TYPE_CHECKING:
    from fleetwatch.gateway._app import Gateway

log = logging.getLogger("fleetwatch.gateway")

#: Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)
#: Not sent upstream: the client's length (recomputed) and its gateway token.
REQUEST_SKIP = HOP_BY_HOP | {b"content-length", b"authorization"}


def model_label(instance: Instance, model: str | None) -> str:
    """A metric label for ``model``: only names the instance advertises (bounded), else other."""
    return model if model is not None and model in advertised_models(instance) else "other"


@dataclass(slots=True)
class _Outgoing:
    """What goes upstream, the same for every attempt, and the instances tried so far."""

    path: str
    body: bytes
    #: ``name: value\r\n`` for each header sent upstream (Host and length are the client's).
    headers: bytes
    #: The client did not ask for usage in its stream: remove what the gateway asked for.
    strip_usage: bool
    route: RouteRequest
    tried: list[tuple[str, str]]
    #: How to continue the stream if its server breaks; None: it cannot be (see ``why_not``).
    plan: StreamPlan | None = None
    why_not: str | None = None


class _Retry(Exception):
    """An attempt that failed before anything reached the client: try another instance."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


class Proxy:
    """POST /v1/chat/completions, /v1/completions and /v1/embeddings for one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.router = gateway.router
        self._hashes_prompts = self.router.scorer("prefix") is not None
        key = self.settings.upstream_api_key
        self._upstream_auth = b"authorization: Bearer %s\r\n" % key.encode() if key else b""
        self._session_header = (
            self.settings.router.session_header.lower().encode()
            if self.settings.router.session_header
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        send = client_sender(send)
        async with Exchange(self.gateway.exchanges, scope["path"]) as exchange:
            response = await self._serve(scope, receive, send, exchange)
            if response is not None:
                await response(scope, receive, send)

    # -- the request ------------------------------------------------------------------------

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, exchange: Exchange
    ) -> Response | None:
        if scope["method"] != "POST":
            return error_response(405, "use POST", "invalid_request_error", allow="POST")
        headers = dict(scope["headers"])
        token = client_token(
            headers.get(b"authorization", b"").decode("latin-1"), self.settings.client_tokens
        )
        if token is None:
            exchange.outcome = "unauthorized"
            return error_response(401, "missing or invalid gateway token", "authentication_error")
        body = await _read_body(receive)
        if body is None:
            exchange.outcome = "client_gone"
            return None
        payload = _payload(scope["path"], body)
        if isinstance(payload, Response):
            exchange.outcome = "invalid_request"
            return payload
        route = self._route_request(payload, headers, token if isinstance(token, str) else None)
        exchange.streaming = payload.get("stream") is True
        if exchange.streaming and self.settings.request_usage:
            body = _with_usage(payload, body)
        found = self._candidates(route, ())
        if not found:
            return self._nothing_to_route(exchange, route.model)
        exchange.watch_client(scope, receive)
        path = scope["path"]
        outgoing = _Outgoing(
            path, body, self._upstream_headers(scope), _strip_usage(payload), route, []
        )
        if exchange.streaming:
            outgoing.why_not = unrecoverable(path, payload, self.settings.recovery)
            if outgoing.why_not is None and not _continuable_fleet(found):
                outgoing.why_not = "no other instance could take a continuation (llama.cpp)"
            if outgoing.why_not is None:
                outgoing.plan = StreamPlan(
                    path, payload, Transcript(chat=path == CHAT), outgoing.strip_usage
                )
        return await self._attempts(send, exchange, route, outgoing, found)

    def _route_request(
        self, payload: dict[str, Any], headers: dict[bytes, bytes], token: str | None
    ) -> RouteRequest:
        model = payload.get("model") if isinstance(payload.get("model"), str) else None
        session = None
        if self._session_header is not None and self._session_header in headers:
            session = headers[self._session_header].decode("latin-1")
        elif token is not None and self.settings.router.session_by_token:
            session = hashlib.blake2b(token.encode(), digest_size=8).hexdigest()
        blocks: tuple[int, ...] = ()
        if self._hashes_prompts:
            blocks = prompt_blocks(render_prompt(payload), self.settings.router.block_chars)
        tenant = self.settings.tenants.get(token) if token is not None else None
        return RouteRequest(model=model, tenant=tenant, session=session, blocks=blocks)

    def _candidates(self, route: RouteRequest, tried: Sequence[tuple[str, str]]) -> list[Instance]:
        found = self.router.candidates(
            route, self.gateway.discovery.routable(self.settings.service)
        )
        return [i for i in found if i.key not in tried] if tried else found

    def _nothing_to_route(self, exchange: Exchange, model: str | None) -> Response:
        service = self.settings.service
        everything = self.gateway.discovery.cached(service)
        if model is not None and everything and not any(serves(i, model) for i in everything):
            exchange.outcome = "model_not_found"
            served = sorted({m for i in everything for m in advertised_models(i)})
            return error_response(
                404,
                f"no instance of {service!r} serves model {model!r} "
                f"(served: {', '.join(served) or 'none advertised'})",
                "invalid_request_error",
                "model_not_found",
            )
        exchange.outcome = "no_instance"
        return error_response(
            503,
            f"no available instance of {service!r}",
            "service_unavailable",
            "no_instance",
            **{"retry-after": "1"},
        )

    # -- attempts ---------------------------------------------------------------------------

    async def _attempts(
        self,
        send: Send,
        exchange: Exchange,
        route: RouteRequest,
        outgoing: _Outgoing,
        found: list[Instance],
    ) -> Response | None:
        deadline = exchange.loop.time() + self.settings.request_timeout
        tried = outgoing.tried
        last: Response | None = None
        fresh: list[Instance] | None = found  # the first look needs no second reading

        def candidates() -> list[Instance]:
            nonlocal fresh
            if fresh is not None:
                offered, fresh = fresh, None
                return offered
            return self._candidates(route, tried)

        for attempt in range(self.settings.attempts):
            if attempt and not self._candidates(route, tried):
                break
            try:
                instance = await exchange.admit(
                    candidates, lambda usable: self.router.choose(route, usable)
                )
            except Saturated as exc:
                if last is not None:
                    break
                exchange.outcome = "saturated"
                return error_response(
                    429,
                    f"{self.settings.service}: {exc}",
                    "rate_limit_error",
                    "saturated",
                    **{"retry-after": str(max(1, math.ceil(exc.retry_after)))},
                )
            tried.append(instance.key)
            exchange.model = model_label(instance, route.model)
            exchange.arm_deadline(deadline)
            try:
                return await self._attempt(send, exchange, instance, outgoing)
            except _Retry as retry:
                last = retry.response
            except asyncio.CancelledError:
                if not exchange.expired():
                    raise
                return await self._timed_out(send, exchange)
            finally:
                exchange.disarm_deadline()
        assert last is not None
        exchange.outcome = "failed_before_first_byte"
        return last

    async def _timed_out(self, send: Send, exchange: Exchange) -> Response | None:
        """The request's deadline passed: a 504, or an error event ending a started stream."""
        timeout = self.settings.request_timeout
        if exchange.attempting:
            exchange.end_attempt("timeout", fault=True, first_byte_s=exchange.first_byte_s)
        if not exchange.replying:
            exchange.outcome = "timeout"
            return error_response(504, f"no answer within {timeout:g}s", "timeout", "timeout")
        exchange.outcome = "failed_after_first_byte"
        message = (
            f"instance {exchange.instance_id} timed out mid-stream after {timeout:g}s; "
            "the reply is incomplete"
        )
        await send(
            {
                "type": "http.response.body",
                "body": sse_error(message, "upstream_failed_mid_stream"),
                "more_body": False,
            }
        )
        return None

    async def _attempt(
        self, send: Send, exchange: Exchange, instance: Instance, outgoing: _Outgoing
    ) -> Response | None:
        """Send to one instance; relay its reply, or raise :class:`_Retry` before any byte."""
        try:
            response = exchange.hold(
                await self.gateway.upstream.request(
                    instance.base_url, "POST", outgoing.path, outgoing.headers, outgoing.body
                )
            )
        except UpstreamError as exc:
            connect = isinstance(exc, ConnectFailed)
            exchange.end_attempt("unreachable", fault=True, connect_error=connect)
            raise _Retry(
                _bad_gateway(instance, f"failed: {type(exc).__name__}", "upstream_unreachable")
            ) from None
        if response.status in (429, 503):
            retry_after = parse_retry_after(response.header("retry-after"))
            self.gateway.admission.back_off(instance.key, retry_after)
            content = await _read_small(response)
            exchange.end_attempt("busy")  # busy or draining: not a fault of the instance
            raise _Retry(
                Response(
                    content,
                    status_code=response.status,
                    headers={"retry-after": str(max(1, math.ceil(retry_after)))},
                    media_type=response.header("content-type"),
                )
            )
        if not exchange.streaming:
            await self._whole(send, exchange, response)
            return None
        await self._stream(send, exchange, response, outgoing)
        return None

    async def _whole(self, send: Send, exchange: Exchange, response: Upstream) -> None:
        """A non-streamed reply, read whole before anything is sent: a failure while reading
        can still go to another instance."""
        instance = exchange.instance
        try:
            content = await response.read()
        except UpstreamError as exc:
            exchange.end_attempt("failed", fault=True)
            raise _Retry(
                _bad_gateway(
                    instance, f"failed while answering: {type(exc).__name__}", "upstream_failed"
                )
            ) from None
        exchange.first_byte_s = exchange.elapsed
        usage = whole_usage(content, response.header("content-type"))
        exchange.usage = merge(exchange.usage, usage)
        ok = response.status < 500
        exchange.replying = True
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": _reply_headers(response),
            }
        )
        await send({"type": "http.response.body", "body": content, "more_body": False})
        exchange.outcome = "ok" if ok else "upstream_5xx"
        exchange.end_attempt(exchange.outcome, fault=not ok, first_byte_s=exchange.first_byte_s)

    async def _stream(
        self, send: Send, exchange: Exchange, response: Upstream, outgoing: _Outgoing
    ) -> None:
        instance = exchange.instance
        headers = [
            *_reply_headers(response),
            (b"x-fleetwatch-instance", instance.instance_id.encode()),
        ]
        exchange.replying = True
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        ok = response.status < 500
        scanner = StreamUsage(strip=outgoing.strip_usage)
        plan = outgoing.plan if ok else None
        # A continuable stream is read event by event: to know what the client holds, and to
        # withhold error events.
        reader = OpenAIStreamReader(plan.transcript) if plan is not None else None
        broke: str | None = None
        try:
            async for chunk in response.chunks():
                if exchange.first_byte_s is None:
                    exchange.first_byte_s = exchange.elapsed
                    if plan is not None:  # from the first token on, a long pause is a hang
                        response.tighten(self.settings.recovery.inter_token_timeout)
                out = scanner.feed(chunk if reader is None else reader.feed(chunk))
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if reader is not None and reader.broken is not None:
                    broke = reader.broken
                    break
        except UpstreamError as exc:
            broke = _broken_by(exc)
        exchange.usage, exchange.events = scanner.usage, scanner.events
        ending = b""
        if plan is not None and plan.transcript.complete:
            # The reply ended (its finish reason went out): whatever came after, only the
            # stream's end may be missing, and the server did nothing wrong.
            broke, ending = None, b"" if plan.transcript.done else b"data: [DONE]\n\n"
        elif plan is not None and broke is None and not plan.transcript.done:
            broke = "closed the stream before its final event"
        if broke is None:
            body = scanner.flush() + ending
            await send({"type": "http.response.body", "body": body, "more_body": False})
            exchange.outcome = "ok" if ok else "upstream_5xx"
            exchange.end_attempt(exchange.outcome, fault=not ok, first_byte_s=exchange.first_byte_s)
            return
        exchange.end_attempt("failed_mid_stream", fault=True, first_byte_s=exchange.first_byte_s)
        why: str | None = outgoing.why_not or "the server answered an error status"
        if plan is not None:
            why = plan.transcript.unspliceable or await self._recover(
                send, exchange, outgoing, instance, plan
            )
            if why is None:
                exchange.outcome, exchange.recovery = "ok", "recovered"
                exchange.usage, exchange.events = plan.usage, plan.transcript.events
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
        if exchange.recovery is None:
            exchange.recovery = "not_recoverable"
        exchange.outcome = "failed_after_first_byte"
        message = (
            f"instance {instance.instance_id} {broke} mid-stream; the reply is incomplete "
            f"(not recovered: {why})"
        )
        await send(
            {
                "type": "http.response.body",
                "body": sse_error(message, "upstream_failed_mid_stream"),
                "more_body": False,
            }
        )

    async def _recover(
        self,
        send: Send,
        exchange: Exchange,
        outgoing: _Outgoing,
        broken: Instance,
        plan: StreamPlan,
    ) -> str | None:
        """Continue the stream on other instances, at most ``recovery.attempts`` of them;
        None once the client got a whole reply, else why not. The request's deadline runs.
        Sets ``exchange.recovery`` to failed, or not_recoverable when no instance could
        take the continuation at all."""
        loop = exchange.loop

        async def emit(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        def continuers() -> list[Instance]:
            # Only the same version: the same weights and tokenizer continue the same reply,
            # and the token ids already computed are theirs.
            return [
                i
                for i in self._candidates(outgoing.route, outgoing.tried)
                if i.metadata.get("kind") in CONTINUABLE_KINDS and i.version == broken.version
            ]

        if not continuers():
            return f"no other llama.cpp instance of version {broken.version} is routable"
        exchange.recovery = "failed"  # until a continuation ends the stream
        broke_at = loop.time()
        why = "every continuation failed"
        for _ in range(self.settings.recovery.attempts):
            if not continuers():
                return f"{why}, and no other instance is left to try"
            try:
                instance = await exchange.admit(
                    continuers, lambda usable: self.router.choose(outgoing.route, usable)
                )
            except Saturated:
                return "every instance that could continue it is saturated"
            outgoing.tried.append(instance.key)
            seams_before = len(exchange.seams_s)

            def first_text(before: int = seams_before, since: float = broke_at) -> None:
                if len(exchange.seams_s) == before:  # once per seam
                    exchange.seams_s.append(loop.time() - since)

            try:
                await continue_stream(
                    self.gateway.upstream,
                    instance.base_url,
                    self._upstream_auth,
                    plan,
                    emit,
                    inter_token_timeout=self.settings.recovery.inter_token_timeout,
                    hold=exchange.hold,
                    first_text=first_text,
                )
            except ContinuerBusy as exc:  # busy or draining: not a fault of the instance
                self.gateway.admission.back_off(instance.key, exc.retry_after)
                exchange.end_attempt("busy")
                why = f"{instance.instance_id}: {exc}"
                continue
            except ContinuationFailed as exc:  # it answered, and cannot take this one
                log.warning("%s refused a continuation: %s", instance.instance_id, exc)
                exchange.end_attempt("refused")
                why = f"{instance.instance_id}: {exc}"
                continue
            except (BrokenStream, UpstreamError) as exc:
                log.warning("continuing a stream on %s failed: %s", instance.instance_id, exc)
                exchange.end_attempt("failed_mid_stream", fault=True)
                why = f"{instance.instance_id}: {exc}"
                if len(exchange.seams_s) > seams_before:  # it sent text: a new seam begins
                    broke_at = loop.time()
                continue
            exchange.end_attempt("ok")
            return None
        return why

    def _upstream_headers(self, scope: Scope) -> bytes:
        skip = REQUEST_SKIP
        lines = [b"%s: %s\r\n" % (k, v) for k, v in scope["headers"] if k.lower() not in skip]
        lines.append(self._upstream_auth)
        return b"".join(lines)


def _payload(path: str, body: bytes) -> dict[str, Any] | Response:
    """The request's JSON object, or the 400 that says what is wrong with it."""
    try:
        # Decoded first: json.loads would sniff the encoding of bytes (UTF-16 and -32 too,
        # which no OpenAI client sends) on every request.
        payload = json.loads(body.decode() if body.isascii() else body)
    except ValueError:
        return error_response(400, "the request body is not JSON", "invalid_request_error")
    if not isinstance(payload, dict):
        return error_response(
            400, "the request body must be a JSON object", "invalid_request_error"
        )
    problem = request_problem(path, payload)
    if problem is not None:
        return error_response(400, problem, "invalid_request_error", "invalid_field")
    return payload


async def _read_body(receive: Receive) -> bytes | None:
    """The request body (its size is bounded by the gateway's BodySizeLimit); None: the
    client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _with_usage(payload: dict[str, Any], body: bytes) -> bytes:
    """The body with ``stream_options.include_usage`` on, so token counts always come back."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body
    merged = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return json.dumps({**payload, "stream_options": merged}).encode()


def _strip_usage(payload: dict[str, Any]) -> bool:
    """Whether the client's stream must not show usage (it did not ask for it)."""
    options = payload.get("stream_options")
    return not (isinstance(options, dict) and options.get("include_usage") is True)


def _continuable_fleet(found: Sequence[Instance]) -> bool:
    """Whether a stream to one of ``found`` could be continued on another: a second instance,
    and one of a kind the gateway continues on. Otherwise its stream is relayed unread."""
    return len(found) > 1 and any(i.metadata.get("kind") in CONTINUABLE_KINDS for i in found)


def _broken_by(error: UpstreamError) -> str:
    """How an upstream stream broke, for the client's error event."""
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"failed ({type(error).__name__}{': ' + str(error) if str(error) else ''})"


def _reply_headers(response: Upstream) -> list[tuple[bytes, bytes]]:
    """The upstream reply's headers to relay: not hop-by-hop, and no length on a stream."""
    skip = HOP_BY_HOP
    if "text/event-stream" in (response.header("content-type") or ""):
        skip = HOP_BY_HOP | {b"content-length"}
    return [(k, v) for k, v in response.headers if k.lower() not in skip]


def _bad_gateway(instance: Instance, what: str, code: str) -> Response:
    return error_response(502, f"instance {instance.instance_id} {what}", "upstream_error", code)


async def _read_small(response: Upstream, limit: int = 64 * 1024) -> bytes:
    """At most ``limit`` bytes of a reply."""
    try:
        return await response.read_some(limit)
    except UpstreamError:
        return b""
