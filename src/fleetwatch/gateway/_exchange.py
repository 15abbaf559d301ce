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
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from starlette.types import Message, Receive, Scope, Send

from fleetwatch.discovery._client import RequestOutcome
from fleetwatch.gateway._report import AttemptReport, Listener, RequestReport, Usage
from fleetwatch.http1 import Response
from fleetwatch.registry._model import Instance

if TYPE_CHECKING:
    from fleetwatch.discovery import DiscoveryClient
    from fleetwatch.gateway._admission import Admission

log = logging.getLogger("fleetwatch.gateway")


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


@dataclass(slots=True)
class _Attempt:
    instance: Instance
    outcome: RequestOutcome
    started: float
    response: Response | None = None


@dataclass(slots=True)
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
    #: What became of a stream broken after its first byte (see RequestReport.recovery).
    recovery: str | None = None
    seams_s: list[float] = field(default_factory=list)
    _attempts: list[AttemptReport] = field(default_factory=list)
    _current: _Attempt | None = None
    _started: float = 0.0
    _unwatch: Callable[[], object] | None = None
    _client_gone: bool = False
    _closed: bool = False
    _loop: asyncio.AbstractEventLoop | None = None
    _deadline: asyncio.TimerHandle | None = None
    _expired: bool = False
    #: The task serving the request (cancelled for its deadline or a client gone).
    _task: asyncio.Task[Any] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "open the exchange first"
        return self._loop

    @property
    def elapsed(self) -> float:
        """Seconds since the exchange opened."""
        return self.loop.time() - self._started

    async def __aenter__(self) -> Exchange:
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._task = asyncio.current_task()
        return self

    # -- the request's deadline -------------------------------------------------------------

    def arm_deadline(self, at: float) -> None:
        """Cancel this request's task at loop time ``at``; :meth:`expired` then tells that
        cancellation from any other. A timer, not ``asyncio.timeout`` (a context manager
        per attempt, on the hot path). Disarm it as soon as the awaited work returns."""
        self._deadline = self.loop.call_at(at, self._expire, self._task)

    def _expire(self, task: asyncio.Task[Any] | None) -> None:
        self._expired = True
        if task is not None:
            task.cancel()

    def disarm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def expired(self) -> bool:
        """Whether the cancellation being handled is the deadline's (then it is absorbed)."""
        if not self._expired:
            return False
        self._expired = False
        if self._task is not None:
            self._task.uncancel()
        return True

    def watch_client(self, scope: Scope, receive: Receive) -> None:
        """From now on (the body read), a client that disconnects cancels this request: the
        upstream request is dropped and the server stops generating for nobody.

        fleetwatch's own server resolves a future when the client goes (no task needed);
        under any other ASGI server a task waits on ``receive`` for the disconnect."""
        task = self._task
        assert task is not None, "open the exchange first"
        gone_future = scope.get("extensions", {}).get("fleetwatch.client_gone")
        if gone_future is not None:

            def went(future: asyncio.Future[bool]) -> None:
                if not self._closed and not future.cancelled() and future.result():
                    self._client_gone = True
                    task.cancel()

            gone_future.add_done_callback(went)
            self._unwatch = lambda: gone_future.remove_done_callback(went)
            return

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

        watcher = asyncio.create_task(disconnected(), name="fleetwatch.gateway.client")
        watcher.add_done_callback(gone)
        self._unwatch = watcher.cancel

    # -- attempts ---------------------------------------------------------------------------

    async def admit(
        self,
        candidates: Callable[[], Sequence[Instance]],
        pick: Callable[[Sequence[Instance]], Instance],
    ) -> Instance:
        """A slot on one of ``candidates()``, chosen by ``pick``, held until this attempt ends
        (raises :class:`~fleetwatch.gateway._admission.Saturated`)."""
        assert self._current is None, "end the previous attempt first"
        instance = await self.context.admission.acquire(candidates, pick)
        # From the slot on, nothing awaits until the attempt is recorded: no cancellation can
        # fall between taking the slot and the attempt that gives it back.
        outcome = self.context.discovery.begin(instance)
        self._current = _Attempt(instance, outcome, self.loop.time())
        self.instance_id = instance.instance_id
        return instance

    def _release(self, attempt: _Attempt) -> None:
        """Everything the attempt holds: its reply (a reply read to its end frees its
        connection for reuse; any other is dropped, so the server stops generating), its
        request in the discovery client's figures, and its admission slot."""
        try:
            if attempt.response is not None:
                attempt.response.close()
        finally:
            try:
                self.context.discovery.finish(attempt.outcome)
            finally:
                self.context.admission.release(attempt.instance.key)

    @property
    def attempting(self) -> bool:
        """Whether an attempt is in progress."""
        return self._current is not None

    @property
    def instance(self) -> Instance:
        """The instance of the attempt in progress."""
        assert self._current is not None
        return self._current.instance

    def hold(self, response: Response) -> Response:
        """The upstream reply of the attempt in progress, closed with it."""
        assert self._current is not None
        self._current.response = response
        return response

    def since_attempt(self) -> float:
        """Seconds since the attempt in progress was admitted."""
        assert self._current is not None
        return self.loop.time() - self._current.started

    def end_attempt(
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
        self._release(attempt)

    # -- closing ----------------------------------------------------------------------------

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self._closed = True
        self.disarm_deadline()
        if self._unwatch is not None:
            self._unwatch()
        cancelled_for_client = self._client_gone and isinstance(error, asyncio.CancelledError)
        gone = cancelled_for_client or isinstance(error, ClientGone)
        if self._current is not None:
            if gone or isinstance(error, asyncio.CancelledError):
                self.end_attempt("cancelled")
            elif error is not None:
                self.end_attempt("failed", fault=True)
            else:
                self.end_attempt(self.outcome or "ok")
        if gone or (self.outcome is None and isinstance(error, asyncio.CancelledError)):
            self.outcome = "client_gone"
            if self.recovery == "failed":
                self.recovery = None  # the client left during a recovery: it did not fail
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
            recovery=self.recovery,
            seams_s=tuple(self.seams_s),
        )
        for listener in self.context.listeners:
            try:
                listener(report)
            except Exception:  # one broken listener must not lose the others' figures
                log.exception("a request report listener failed")
