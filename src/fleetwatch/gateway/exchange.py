"""An exchange owns one client request: its admission slot, each upstream request and
response, the client's disconnect, and its outcome, from the moment it is opened to the
moment it is closed.

Everything an attempt holds is released by closing the exchange, however the request ends
(an answer, an error, a retry, a cancellation at any await, a client gone), so nothing can
leak by an exit path forgetting it. Closing emits one :class:`RequestReport` to the
listeners (statistics, metrics, SLIs), and only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp
from starlette.types import Message, Receive, Send

from fleetwatch.discovery.client import RequestOutcome
from fleetwatch.gateway.report import AttemptReport, Listener, RequestReport, Usage
from fleetwatch.registry.model import Instance

if TYPE_CHECKING:
    from fleetwatch.discovery import DiscoveryClient
    from fleetwatch.gateway.admission import Admission

log = logging.getLogger(__name__)


class ClientGone(Exception):
    """Sending to the client failed: it went away (the ASGI server raised OSError)."""


def client_sender(send: Send) -> Send:
    """``send``, raising :class:`ClientGone` when the client is gone."""

    async def to_client(message: Message) -> None:
        try:
            await send(message)
        except OSError as exc:
            raise ClientGone(str(exc)) from exc

    return to_client


@dataclass(frozen=True)
class ExchangeContext:
    """What every exchange of one gateway shares."""

    service: str
    admission: Admission
    discovery: DiscoveryClient
    listeners: Sequence[Listener]


@dataclass
class _Attempt:
    instance: Instance
    stack: contextlib.AsyncExitStack
    outcome: RequestOutcome
    started: float
    response: aiohttp.ClientResponse | None = None
    #: The reply was read to its end: its connection may go back to the pool.
    complete: bool = False


@dataclass
class Exchange:
    """``async with Exchange(context, path) as exchange:`` for one client request."""

    context: ExchangeContext
    path: str
    streaming: bool = False
    model: str = "other"
    outcome: str | None = None
    usage: Usage = field(default_factory=Usage)
    events: int = 0
    first_byte_s: float | None = None
    #: The reply's status line went out: no other answer can be given now.
    replying: bool = False
    #: The instance of the last attempt (kept for messages after it ended).
    instance_id: str = ""
    _attempts: list[AttemptReport] = field(default_factory=list)
    _current: _Attempt | None = None
    _started: float = 0.0
    _watcher: asyncio.Task[None] | None = None
    _client_gone: bool = False
    _closed: bool = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    @property
    def elapsed(self) -> float:
        """Seconds since the exchange opened."""
        return self.loop.time() - self._started

    async def __aenter__(self) -> Exchange:
        self._started = self.loop.time()
        return self

    def watch_client(self, receive: Receive) -> None:
        """From now on (the body read), a client that disconnects cancels this request: the
        upstream request is dropped and the server stops generating for nobody."""
        task = asyncio.current_task()
        assert task is not None

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        def gone(watcher: asyncio.Task[None]) -> None:
            if watcher.cancelled() or self._closed:
                return
            if watcher.exception() is None:
                self._client_gone = True
                task.cancel()
            else:  # a receive() that failed: seen in the log, the request goes on
                log.error("watching the client failed", exc_info=watcher.exception())

        self._watcher = asyncio.create_task(disconnected(), name="fleetwatch.gateway.client")
        self._watcher.add_done_callback(gone)

    # -- attempts ---------------------------------------------------------------------------

    async def admit(
        self,
        candidates: Callable[[], Sequence[Instance]],
        pick: Callable[[Sequence[Instance]], Instance],
    ) -> Instance:
        """A slot on one of ``candidates()``, chosen by ``pick``, held until this attempt ends
        (raises :class:`~fleetwatch.gateway.admission.Saturated`)."""
        assert self._current is None, "end the previous attempt first"
        admission = self.context.admission
        instance = await admission.acquire(candidates, pick)
        stack = contextlib.AsyncExitStack()
        stack.push_async_callback(admission.release, instance.key)
        try:
            outcome = await stack.enter_async_context(self.context.discovery.request(instance))
        except BaseException:
            await stack.aclose()
            raise
        self._current = _Attempt(instance, stack, outcome, self.loop.time())
        self.instance_id = instance.instance_id
        stack.callback(self._drop_upstream, self._current)
        return instance

    @staticmethod
    def _drop_upstream(attempt: _Attempt) -> None:
        if attempt.response is None:
            return
        if attempt.complete:
            attempt.response.release()  # the connection goes back to the pool
        else:
            attempt.response.close()  # drops the connection: the server stops generating

    @property
    def attempting(self) -> bool:
        """Whether an attempt is in progress."""
        return self._current is not None

    @property
    def instance(self) -> Instance:
        """The instance of the attempt in progress."""
        assert self._current is not None
        return self._current.instance

    def hold(self, response: aiohttp.ClientResponse) -> aiohttp.ClientResponse:
        """The upstream reply of the attempt in progress, closed with it."""
        assert self._current is not None
        self._current.response = response
        return response

    def read_to_end(self) -> None:
        """The upstream reply was read whole: its connection can be reused."""
        assert self._current is not None
        self._current.complete = True

    def since_attempt(self) -> float:
        """Seconds since the attempt in progress was admitted."""
        assert self._current is not None
        return self.loop.time() - self._current.started

    async def end_attempt(
        self,
        outcome: str,
        *,
        fault: bool = False,
        connect_error: bool = False,
        first_byte_s: float | None = None,
    ) -> None:
        """The attempt in progress ended with ``outcome``; ``fault`` counts it against the
        instance (its circuit); an outcome that is not ``ok`` nor a fault says nothing of it."""
        attempt, self._current = self._current, None
        assert attempt is not None
        if fault:
            attempt.outcome.failed(connect_error=connect_error)
        elif outcome != "ok":
            attempt.outcome.cancelled = True
        latency = self.loop.time() - attempt.started
        self._attempts.append(
            AttemptReport(
                attempt.instance.instance_id,
                attempt.instance.version,
                outcome,
                latency_s=latency
                if outcome in ("ok", "upstream_5xx", "failed_mid_stream")
                else None,
                first_byte_s=first_byte_s,
            )
        )
        await attempt.stack.aclose()

    # -- closing ----------------------------------------------------------------------------

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
        cancelled_for_client = self._client_gone and isinstance(error, asyncio.CancelledError)
        gone = cancelled_for_client or isinstance(error, ClientGone)
        if self._current is not None:
            if gone or isinstance(error, asyncio.CancelledError):
                await self.end_attempt("cancelled")
            elif error is not None:
                await self.end_attempt("failed", fault=True)
            else:
                await self.end_attempt(self.outcome or "ok")
        if gone or (self.outcome is None and isinstance(error, asyncio.CancelledError)):
            self.outcome = "client_gone"
        elif self.outcome is None:
            self.outcome = "error" if error is not None else "ok"
        self._emit()
        if cancelled_for_client:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # our own cancellation, for a client that left: handled
        return gone

    def _emit(self) -> None:
        report = RequestReport(
            service=self.context.service,
            path=self.path,
            model=self.model,
            streaming=self.streaming,
            outcome=self.outcome or "ok",
            attempts=tuple(self._attempts),
            elapsed_s=self.elapsed,
            first_byte_s=self.first_byte_s,
            events=self.events,
            usage=self.usage,
        )
        for listener in self.context.listeners:
            try:
                listener(report)
            except Exception:  # one broken listener must not lose the others' figures
                log.exception("a request report listener failed")
