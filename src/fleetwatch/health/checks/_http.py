"""``http`` check: GET a URL and judge the status code, body and latency."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx

from fleetwatch.health._result import Observation
from fleetwatch.health._status import HealthStatus
from fleetwatch.health.checks._latency import timed_observation


@dataclass(frozen=True, slots=True)
class StatusRange:
    """An inclusive range of HTTP status codes (``2xx`` is 200-299)."""

    low: int
    high: int

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and self.low <= code <= self.high

    def __str__(self) -> str:
        if self.low == self.high:
            return str(self.low)
        if self.low % 100 == 0 and self.high == self.low + 99:
            return f"{self.low // 100}xx"
        return f"{self.low}-{self.high}"


SUCCESS = (StatusRange(200, 299),)
#: How much of a body ``body_contains`` searches; the rest is never downloaded.
MAX_BODY_BYTES = 64 * 1024


def parse_status_spec(spec: int | str) -> StatusRange:
    """Parse ``200``, ``"204"``, ``"2xx"`` or ``"200-204"`` into a :class:`StatusRange`."""
    text = str(spec).strip().lower()
    if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
        base = int(text[0]) * 100
        return StatusRange(base, base + 99)
    low_text, _, high_text = text.partition("-")
    try:
        low, high = int(low_text), int(high_text or low_text)
    except ValueError:
        raise ValueError(
            f"invalid HTTP status {spec!r}: use a code like 200, a class like '2xx', or a "
            "range like '200-204'"
        ) from None
    if not 100 <= low <= high <= 599:
        raise ValueError(f"invalid HTTP status {spec!r}: codes run from 100 to 599")
    return StatusRange(low, high)


class HttpCheck:
    """GET ``url`` through a shared, pooled ``httpx.AsyncClient``.

    Expected statuses pass (default any 2xx). 429 Too Many Requests is degraded, as in Consul:
    the dependency is alive but shedding load. Any other status, a missing ``body_contains``
    substring (searched in the first 64 KiB; a larger body is never downloaded whole, and its
    connection is dropped rather than reused) or a connection error fails. Slower than
    ``slow_after`` is degraded.
    """

    component_type = "http"
    measurement = "responseTime"

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient,
        timeout: float = 5.0,
        expected_status: Iterable[StatusRange] = SUCCESS,
        headers: Mapping[str, str] | None = None,
        body_contains: str | None = None,
        slow_after: float | None = None,
    ) -> None:
        self.url = url
        self._client = client
        self._timeout = timeout
        self._expected = tuple(expected_status)
        self._headers = dict(headers or {})
        self._body_contains = body_contains
        self._slow_after = slow_after

    async def check(self) -> Observation:
        started = time.perf_counter()
        async with self._client.stream(
            "GET", self.url, headers=self._headers, timeout=self._timeout
        ) as response:
            # Read the (small) body even when not searching it: only a fully read response
            # leaves its connection in the pool for the next check to reuse.
            body = await self._read_some(response)
        elapsed = time.perf_counter() - started
        code = response.status_code
        metadata = {"status_code": code, "url": self.url}
        ms = round(elapsed * 1000, 3)
        if not any(code in r for r in self._expected):
            expected = ", ".join(map(str, self._expected))
            status = HealthStatus.DEGRADED if code == 429 else HealthStatus.UNHEALTHY
            return Observation(
                status, f"HTTP {code} from {self.url} (expected {expected})", ms, "ms", metadata
            )
        if self._body_contains is not None and self._body_contains.encode() not in body:
            return Observation(
                HealthStatus.UNHEALTHY,
                f"HTTP {code} but the first {len(body)} bytes of the body lack "
                f"{self._body_contains!r}",
                ms,
                "ms",
                metadata,
            )
        return timed_observation(f"HTTP {code}", elapsed, self._slow_after, metadata)

    @staticmethod
    async def _read_some(response: httpx.Response) -> bytes:
        """At most MAX_BODY_BYTES of the body: a health endpoint cannot make us download a file."""
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY_BYTES:
                break
        return b"".join(chunks)[:MAX_BODY_BYTES]
