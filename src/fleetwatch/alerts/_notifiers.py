"""Where alerts go: the log, or a webhook (JSON POST) with retries, backoff, a timeout,
grouping and de-duplication.

Submitting never blocks: alerts wait in the notifier, which sends them from its own task.
Grouping: alerts of one rule that arrive within ``group_wait`` go out in one POST.
De-duplication: a firing alert is sent once per incident (again after ``repeat_interval``);
its resolution waits ``flap_window`` and is dropped if the alert fires again meanwhile, so a
flapping instance pages once, and resolves once, rather than a hundred times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import httpx

from fleetwatch._supervisor import Supervisor
from fleetwatch.alerts._rules import NotifierSettings

if TYPE_CHECKING:
    from fleetwatch.alerts._engine import Alert

log = logging.getLogger("fleetwatch.alerts")
BACKOFF_START_S = 0.5


class Notifier(Protocol):
    """Takes alert transitions; sends them on its own time."""

    name: str

    def submit(self, alert: Alert) -> None: ...

    def tick(self) -> None:
        """Send what has waited long enough (held resolutions); called every evaluation."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class _Dedup:
    """Which transitions are worth sending: one page per incident, one resolution after it.

    A firing alert already sent is not sent again (until ``repeat_interval``). A resolution is
    held for ``flap_window``: if the alert fires again meanwhile it is the same incident (a
    flapping instance) and nothing is sent; once it has stayed resolved that long, the
    resolution goes out.
    """

    def __init__(self, settings: NotifierSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._open: dict[tuple[str, str], float] = {}  # sent firing, not yet resolved: when
        self._held: dict[tuple[str, str], Alert] = {}  # resolutions waiting out flap_window
        self.suppressed = 0

    def firing(self, alert: Alert) -> bool:
        now = self._clock()
        key = alert.key
        if self._held.pop(key, None) is not None or key in self._open:
            sent = self._open.get(key, now)
            if now - sent < self.settings.repeat_interval:
                self.suppressed += 1
                return False
        self._open[key] = now
        return True

    def resolved(self, alert: Alert) -> None:
        if alert.key in self._open:
            self._held[alert.key] = alert

    def due(self) -> list[Alert]:
        """Resolutions that have waited out the flap window."""
        now = self._clock()
        ready = [a for a in self._held.values() if now - a.at >= self.settings.flap_window]
        for alert in ready:
            del self._held[alert.key]
            self._open.pop(alert.key, None)
        return ready


class LogNotifier:
    """Alerts as warning log lines."""

    def __init__(self, settings: NotifierSettings, clock: Callable[[], float] = time.time) -> None:
        self.name = settings.name
        self._dedup = _Dedup(settings, clock)

    def submit(self, alert: Alert) -> None:
        if alert.state == "resolved":
            self._dedup.resolved(alert)
        elif self._dedup.firing(alert):
            self._write(alert)

    def tick(self) -> None:
        for alert in self._dedup.due():
            self._write(alert)

    @staticmethod
    def _write(alert: Alert) -> None:
        log.warning(
            "alert.notify %s %s %s: %s", alert.state, alert.rule, alert.subject, alert.summary
        )

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class WebhookNotifier:
    """JSON POSTs: ``{"notifier", "rule", "alerts": [...]}``, one per rule and group."""

    def __init__(self, settings: NotifierSettings, clock: Callable[[], float] = time.time) -> None:
        assert settings.url is not None
        self.name = settings.name
        self.settings = settings
        self.url = settings.url
        self._dedup = _Dedup(settings, clock)
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=10_000)
        #: The sender loop; a crash is logged, counted and the loop restarted.
        self.loops = Supervisor("webhook", detail=settings.name)
        self._http: httpx.AsyncClient | None = None
        self.sent = 0
        self.failed = 0

    def submit(self, alert: Alert) -> None:
        if alert.state == "resolved":
            self._dedup.resolved(alert)
        elif self._dedup.firing(alert):
            self._enqueue(alert)

    def tick(self) -> None:
        for alert in self._dedup.due():
            self._enqueue(alert)

    def _enqueue(self, alert: Alert) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(alert)

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=self.settings.timeout, trust_env=False)
        self.loops.start("send", self._run)

    async def aclose(self) -> None:
        await self.loops.aclose()
        if self._http is not None:
            await self._http.aclose()

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            await asyncio.sleep(self.settings.group_wait)  # let the rest of the group arrive
            batch = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            by_rule: dict[str, list[Alert]] = {}
            for alert in batch:
                by_rule.setdefault(alert.rule, []).append(alert)
            for rule, alerts in by_rule.items():
                await self._post(
                    {"notifier": self.name, "rule": rule, "alerts": [a.as_dict() for a in alerts]}
                )

    async def _post(self, payload: dict[str, object]) -> None:
        assert self._http is not None
        delay = BACKOFF_START_S
        for attempt in range(self.settings.retries + 1):
            try:
                reply = await self._http.post(self.url, json=payload)
                if reply.status_code < 300:
                    self.sent += 1
                    return
                problem = f"HTTP {reply.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            log.warning("alert.webhook_failed %s try %d: %s", self.name, attempt + 1, problem)
            if attempt < self.settings.retries:
                await asyncio.sleep(delay)
                delay *= 2
        self.failed += 1


def notifier_for(settings: NotifierSettings) -> Notifier:
    """The notifier a ``[[notifiers]]`` table describes."""
    if settings.type == "webhook":
        return WebhookNotifier(settings)
    return LogNotifier(settings)
