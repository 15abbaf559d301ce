"""The canary's gates: the new version's figures at the gateway against the old version's.

The same gates ``fleetwatch rollout --canary`` applied before the controller ran rollouts:
an error rate above the old version's by more than ``max_error_increase``, too few requests
to say anything, or a p99 latency above ``max_latency_ratio`` times the old one's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from fleetwatch.deployments._model import CanaryStep
from fleetwatch.errors import RegistryUnavailable

#: The fewest canary requests that say anything about its error rate.
MIN_REQUESTS = 10
#: Failures that condemn a canary whatever its request count.
MIN_FAILURES = 3
#: One GET of the gateway's figures.
STATS_TIMEOUT_S = 5.0

#: The gateway's figures by version: ``await figures(gateway_url)``.
FiguresSource = Callable[[str], Awaitable[Mapping[str, Mapping[str, Any]]]]


async def gateway_figures(gateway_url: str) -> Mapping[str, Mapping[str, Any]]:
    """``GET {gateway_url}/v1/gateway/stats``'s figures by version; raises
    RegistryUnavailable (the controller then freezes this pass) when it cannot be read."""
    url = f"{gateway_url.rstrip('/')}/v1/gateway/stats"
    try:
        async with httpx.AsyncClient(timeout=STATS_TIMEOUT_S, trust_env=False) as client:
            reply = await client.get(url)
            reply.raise_for_status()
            versions: Mapping[str, Mapping[str, Any]] = reply.json()["versions"]
            return versions
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise RegistryUnavailable(f"the canary's gateway {url}: {exc!r}") from exc


def regression(mine: Mapping[str, Any], theirs: Mapping[str, Any], step: CanaryStep) -> str:
    """Why the canary (``mine``) fails against the old version (``theirs``); "" if it passes."""
    requests = int(mine.get("requests", 0))
    failures = int(mine.get("failures", 0))
    error_new = float(mine.get("error_rate", 0.0))
    error_old = float(theirs.get("error_rate", 0.0))
    worse = error_new > error_old + step.max_error_increase
    errors = f"error rate {error_new:.2%} against {error_old:.2%} for the old version"
    # A canary failing fast is ejected by the gateway and sees few requests: a few failures
    # already say enough.
    if failures >= MIN_FAILURES and worse:
        return errors
    if requests < MIN_REQUESTS:
        return f"only {requests} request(s) reached the canary; need {MIN_REQUESTS}"
    if worse:
        return errors
    p99_new, p99_old = mine.get("latency_p99_s"), theirs.get("latency_p99_s")
    if p99_new and p99_old and p99_new > p99_old * step.max_latency_ratio:
        return f"p99 latency {p99_new * 1000:.0f}ms against {p99_old * 1000:.0f}ms"
    return ""
