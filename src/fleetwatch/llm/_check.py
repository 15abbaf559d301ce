"""Health checks for one LLM server: readiness + load (fast, every second) and generation.

:class:`LlmServer` holds what the two checks share: the adapter for the server's family, one
HTTP client, the latest readiness and load, and the :class:`ProbeGovernor` that keeps the token
account. The readiness check is cheap (the family's own readiness endpoint and ``/metrics``) and
runs often, so a hung server is noticed within a couple of seconds. The generation check runs a
tiny streamed completion only when the governor allows it; otherwise it reports the latest
verdict, saying why it did not probe. While the server is still loading, the generation check
waits (up to its own interval) for the readiness check to see it ready, and probes at once: a
new instance becomes available about a second after its model is loaded, not up to one
generation interval later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from fleetwatch.health._check import CheckSettings, Group
from fleetwatch.health._result import Observation
from fleetwatch.health._status import HealthStatus
from fleetwatch.llm._adapters import LoadSignals, Phase, Readiness, ServerAdapter, adapter_for
from fleetwatch.llm._economy import (
    DEFAULT_EVIDENCE_WINDOW_S,
    DEFAULT_HOURLY_BUDGET,
    DEFAULT_MIN_INTERVAL_S,
    ProbeGovernor,
)
from fleetwatch.llm._probe import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_PROBE_PROMPT,
    MAX_TOKENS_CAP,
    NoFirstToken,
    ProbeReply,
    generate_probe,
)
from fleetwatch.llm._prometheus import MAX_METRICS_BYTES, parse_metrics

READY_CHECK = "llm-ready"
GENERATE_CHECK = "llm-generate"
#: How often the slot count is read from ``/slots`` (where load comes as busy slots).
SLOTS_REFRESH_S = 30.0
#: Prompt tokens of the probe's chat template, counted against the budget before it runs.
PROMPT_TOKEN_ESTIMATE = 32


#: How often readiness and load are read: a hung server is noticed within about 3 s.
DEFAULT_CHECK_EVERY_S = 1.0


#: How long one readiness check may take: a loaded server lists its models in milliseconds.
DEFAULT_CHECK_TIMEOUT_S = 0.75


@dataclass(frozen=True, slots=True)
class LlmServerSettings:
    """How to look at one LLM server. Defaults notice a hung server within about 3 s."""

    base_url: str
    kind: str = "openai"
    model: str | None = None
    api_key: str | None = None
    #: Readiness + load.
    interval: float = DEFAULT_CHECK_EVERY_S
    timeout: float = DEFAULT_CHECK_TIMEOUT_S
    rise: int = 2
    fall: int = 2
    #: Generation probes.
    probe_every: float = DEFAULT_MIN_INTERVAL_S
    probe_check_interval: float = 5.0
    evidence_window: float = DEFAULT_EVIDENCE_WINDOW_S
    hourly_token_budget: int = DEFAULT_HOURLY_BUDGET
    max_tokens: int = DEFAULT_MAX_TOKENS
    prompt: str = DEFAULT_PROBE_PROMPT
    first_token_timeout: float = 5.0
    slow_first_token: float = 2.0
    #: A model that is installed but not loaded (Ollama) gets this long for its first token.
    cold_first_token_timeout: float = 120.0

    def __post_init__(self) -> None:
        adapter_for(self.kind)  # raises naming the known kinds
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http(s) URL, got {self.base_url!r}")
        if self.evidence_window < 2 * self.interval:
            # Evidence is read once per interval; a shorter window lets probes slip in between.
            raise ValueError(
                f"evidence_window ({self.evidence_window:g}s) must be at least twice the check "
                f"interval ({self.interval:g}s)"
            )
        if not 1 <= self.max_tokens <= MAX_TOKENS_CAP:
            raise ValueError(f"max_tokens must be 1-{MAX_TOKENS_CAP}, got {self.max_tokens}")


class LlmServer:
    """One LLM server as fleetwatch sees it; owns the HTTP client the checks share."""

    def __init__(
        self,
        settings: LlmServerSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.adapter: ServerAdapter = adapter_for(settings.kind)
        self.headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(
            headers=self.headers,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
            trust_env=False,
        )
        governor_clock = {"clock": clock} if clock is not None else {}
        self.governor = ProbeGovernor(
            min_interval=settings.probe_every,
            evidence_window=settings.evidence_window,
            hourly_budget=settings.hourly_token_budget,
            **governor_clock,
        )
        self.readiness: Readiness | None = None
        #: Set while the latest readiness reading says ready (the generation check waits on it).
        self.ready = asyncio.Event()
        #: A first probe has generated (the first one is a warm-up, not judged for speed).
        self.warmed = False
        self.load = LoadSignals()
        self.load_error = ""
        self.last_probe: Observation | None = None
        self._slots: tuple[float, float] | None = None
        self._slots_read_at = 0.0

    def checks(self) -> list[tuple[Any, CheckSettings]]:
        """The two checks with their schedules, ready for a :class:`HealthScheduler`."""
        s = self.settings
        groups = frozenset({Group.READINESS, Group.STARTUP})
        return [
            (
                ReadinessCheck(self),
                CheckSettings(
                    READY_CHECK,
                    interval=s.interval,
                    timeout=s.timeout,
                    critical=True,
                    rise=s.rise,
                    fall=s.fall,
                    groups=groups | {Group.LIVENESS},
                ),
            ),
            (
                GenerationCheck(self),
                CheckSettings(
                    GENERATE_CHECK,
                    interval=s.probe_check_interval,
                    # It may first wait an interval for readiness, then probe a cold model.
                    timeout=s.probe_check_interval + s.cold_first_token_timeout + 5.0,
                    critical=True,
                    rise=1,
                    fall=1,
                    groups=groups,
                ),
            ),
        ]

    def note_success(self) -> None:
        """A request through fleetwatch succeeded: evidence the server generates."""
        self.governor.note_success()

    async def read_load(self) -> LoadSignals:
        """Load from the server's metrics (and ``/slots`` where that is how it tells)."""
        s = self.settings
        load = LoadSignals()
        path = self.adapter.metrics_path
        if path is not None:
            response = await self.client.get(self.base_url + path, timeout=s.timeout)
            response.raise_for_status()
            load = self.adapter.load(parse_metrics(response.text[:MAX_METRICS_BYTES]))
        if load.kv_cache_usage is None:
            # Busy slots instead of KV use (newer llama.cpp). The slot count rarely changes:
            # /slots is read now and then, and busy slots between reads are the running count.
            now = time.monotonic()
            if self._slots is None or now - self._slots_read_at > SLOTS_REFRESH_S:
                self._slots = await self.adapter.slots(self.client, self.base_url, s.timeout)
                self._slots_read_at = now
            elif load.running is not None:
                self._slots = (load.running, self._slots[1])
            if self._slots is not None:
                load = replace(load, busy_slots=self._slots[0], total_slots=self._slots[1])
        return load

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._own_client:
            await self.client.aclose()


class ReadinessCheck:
    """Loading, ready or dead from the server's own endpoints; load from its metrics."""

    component_type = "llm"
    measurement = "responseTime"

    def __init__(self, server: LlmServer) -> None:
        self.server = server

    async def check(self) -> Observation:
        try:
            return await self._read()
        except BaseException:
            # No answer (refused, timed out, cancelled at the check's deadline): not known to
            # be ready, so the generation check does not probe a server that may be hung.
            self.server.ready.clear()
            raise

    async def _read(self) -> Observation:
        server = self.server
        readiness = await server.adapter.readiness(
            server.client, server.base_url, server.settings.model, server.settings.timeout
        )
        server.readiness = readiness
        if readiness.phase is Phase.READY:
            server.ready.set()
        else:
            server.ready.clear()
        metadata: dict[str, Any] = {"phase": readiness.phase.value, "kind": server.adapter.kind}
        if readiness.models:
            metadata["models"] = list(readiness.models[:20])
        if readiness.phase is not Phase.READY:
            return Observation(HealthStatus.UNHEALTHY, readiness.detail, metadata=metadata)
        try:
            server.load = await server.read_load()
            server.load_error = ""
        except (httpx.HTTPError, ValueError) as exc:
            server.load_error = f"{type(exc).__name__}: {exc}"[:200]
            metadata["load_error"] = server.load_error
        server.governor.note_generated_counter(server.load.generated_tokens_total)
        metadata["load"] = server.load.as_load()
        in_flight = server.load.in_flight
        busy = "" if in_flight is None else f"; {in_flight:g} in flight"
        return Observation(HealthStatus.HEALTHY, f"{readiness.detail}{busy}", metadata=metadata)


class GenerationCheck:
    """A tiny streamed completion, run only when the token economy allows it."""

    component_type = "llm"
    measurement = "firstTokenTime"

    def __init__(self, server: LlmServer) -> None:
        self.server = server

    async def check(self) -> Observation:
        server, s = self.server, self.server.settings
        governor = server.governor
        if not server.ready.is_set():
            # Loading: probe as soon as readiness sees the model loaded, within this interval.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.probe_check_interval):
                    await server.ready.wait()
        readiness = server.readiness
        # ``ready`` is set only right after a READY reading, and cleared by any other outcome.
        if readiness is None or not server.ready.is_set():
            if readiness is None:
                detail = "no readiness reading yet"
            elif readiness.phase is Phase.READY:  # the last reading; the latest got no answer
                detail = "the readiness check got no answer"
            else:
                detail = readiness.detail
            return Observation(
                HealthStatus.UNKNOWN, f"not probed: {detail}", metadata=governor.account()
            )
        decision = governor.decide(s.max_tokens + PROMPT_TOKEN_ESTIMATE)
        if not decision.probe:
            return self._skipped(decision.reason)
        first_token_timeout = (
            s.cold_first_token_timeout if readiness.cold else s.first_token_timeout
        )
        try:
            reply = await generate_probe(
                server.client,
                server.base_url,
                model=s.model,
                first_token_timeout=first_token_timeout,
                total_timeout=first_token_timeout + 5.0,
                max_tokens=s.max_tokens,
                prompt=s.prompt,
            )
        except NoFirstToken as exc:
            governor.record_probe(PROMPT_TOKEN_ESTIMATE)  # the prompt was likely processed
            observation = Observation(HealthStatus.UNHEALTHY, f"alive but cannot generate: {exc}")
        else:
            governor.record_probe(reply.tokens_spent, reply.generated)
            observation = self._judged(reply)
        server.last_probe = observation
        return _with_account(observation, governor)

    def _judged(self, reply: ProbeReply) -> Observation:
        server, s = self.server, self.server.settings
        if server.warmed:
            return reply.judge(s.slow_first_token)
        # The first generation after a load pays one-time costs (buffers allocated, weights
        # paged in, kernels or graphs compiled): it must generate, within the first-token
        # timeout, but its latency is not held against the server.
        observation = reply.judge(s.first_token_timeout)
        server.warmed = observation.status is HealthStatus.HEALTHY
        return observation

    def _skipped(self, reason: str) -> Observation:
        last = self.server.last_probe
        if last is None:
            return _with_account(
                Observation(HealthStatus.HEALTHY, f"not probed: {reason}"), self.server.governor
            )
        return _with_account(
            Observation(
                last.status,
                f"not probed: {reason}; last probe: {last.output}",
                last.observed_value,
                last.observed_unit,
                last.metadata,
            ),
            self.server.governor,
        )


def _with_account(observation: Observation, governor: ProbeGovernor) -> Observation:
    """The observation with the probe account in its metadata."""
    return replace(observation, metadata={**observation.metadata, **governor.account()})
