"""From the agent's check states to the status it reports to the registry."""

from __future__ import annotations

from collections.abc import Mapping

from fleetwatch.health._scheduler import CheckState
from fleetwatch.health._status import HealthStatus
from fleetwatch.llm._adapters import Phase
from fleetwatch.llm._check import GENERATE_CHECK, READY_CHECK
from fleetwatch.registry._model import InstanceStatus


def instance_status(
    states: Mapping[str, CheckState], *, ever_available: bool
) -> tuple[InstanceStatus, str]:
    """``starting`` while the server loads and until its first generation probe has an
    answer, then ``available``, ``degraded`` (slow or empty generation) or ``unavailable``,
    with the reason."""
    ready = states.get(READY_CHECK)
    if ready is None or ready.result is None:
        return InstanceStatus.STARTING, "no check result yet"
    phase = ready.result.metadata.get("phase")
    if not ready.status.passing:
        if not ever_available and phase in (Phase.LOADING.value, None):
            return InstanceStatus.STARTING, ready.result.output
        return InstanceStatus.UNAVAILABLE, ready.result.output
    generate = states.get(GENERATE_CHECK)
    probe = generate.result if generate is not None else None
    if generate is not None and probe is not None and generate.status is not HealthStatus.UNKNOWN:
        return _BY_GENERATION[generate.status], probe.output
    if generate is not None and not ever_available:
        # Loaded is not serving: the first generation probe has the last word.
        return InstanceStatus.STARTING, f"{ready.result.output}; first generation probe"
    return InstanceStatus.AVAILABLE, ready.result.output


_BY_GENERATION = {
    HealthStatus.HEALTHY: InstanceStatus.AVAILABLE,
    HealthStatus.DEGRADED: InstanceStatus.DEGRADED,
    HealthStatus.UNHEALTHY: InstanceStatus.UNAVAILABLE,
}
