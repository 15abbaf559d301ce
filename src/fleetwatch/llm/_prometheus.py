"""Reading LLM servers' Prometheus ``/metrics`` with a real parser, safely.

``prometheus_client``'s text parser does the parsing. A server's reply is untrusted: it may be
huge, truncated mid-line (a timeout), or not Prometheus text at all. So the text is capped, and
when the whole fails to parse, each sample line is parsed on its own and the bad ones are
counted and skipped: a truncated last line costs one sample, not the whole reading.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

#: Far above any real server's metrics page (vLLM's is ~100 KB with many models).
MAX_METRICS_BYTES = 4 << 20
#: Far above any real server's series count; a page with more is not read further.
MAX_SAMPLES = 50_000


@dataclass(frozen=True, slots=True)
class Sample:
    """One series' value."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class MetricsPage:
    """Every sample of one ``/metrics`` reply, by name."""

    samples: Mapping[str, tuple[Sample, ...]] = field(default_factory=dict)
    #: Lines that were not valid Prometheus text (skipped).
    bad_lines: int = 0
    truncated: bool = False

    def values(self, name: str) -> list[float]:
        """Every finite value of ``name`` across its label sets."""
        return [s.value for s in self.samples.get(name, ()) if math.isfinite(s.value)]

    def total(self, *names: str) -> float | None:
        """The sum over label sets of the first of ``names`` present (counts, counters)."""
        for name in names:
            values = self.values(name)
            if values:
                return sum(values)
        return None

    def highest(self, *names: str) -> float | None:
        """The largest value of the first of ``names`` present (ratios across engines)."""
        for name in names:
            values = self.values(name)
            if values:
                return max(values)
        return None


def parse_metrics(text: str) -> MetricsPage:
    """Parse Prometheus text exposition; never raises on bad input."""
    truncated = len(text) > MAX_METRICS_BYTES
    if truncated:
        text = text[:MAX_METRICS_BYTES]
    try:
        return _page(_samples(text), 0, truncated)
    except (ValueError, TypeError, IndexError, KeyError):
        pass
    collected: list[Sample] = []
    bad = 0
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        try:
            collected.extend(_samples(line + "\n"))
        except (ValueError, TypeError, IndexError, KeyError):
            bad += 1
        if len(collected) >= MAX_SAMPLES:
            truncated = True
            break
    return _page(collected, bad, truncated)


def _samples(text: str) -> list[Sample]:
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.append(Sample(sample.name, dict(sample.labels), float(sample.value)))
            if len(out) >= MAX_SAMPLES:
                return out
    return out


def _page(samples: Iterable[Sample], bad: int, truncated: bool) -> MetricsPage:
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)
    return MetricsPage({k: tuple(v) for k, v in by_name.items()}, bad, truncated)
