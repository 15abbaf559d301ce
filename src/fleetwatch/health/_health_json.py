"""Renders verdicts and check states as ``application/health+json``.

Format: IETF draft "Health Check Response Format for HTTP APIs" (draft-inadarei-api-health-check):
top-level ``status`` pass/warn/fail, ``output`` (for warn and fail only, as the draft asks),
``notes``, and ``checks`` keyed
``component:measurement``, each a list of measurements with ``componentId``, ``componentType``,
``observedValue``, ``observedUnit``, ``status``, ``time`` and ``output``. fleetwatch adds a few
fields the draft allows as extensions: ``critical``, ``weight``, ``groups``, ``durationMs``,
``executions``, ``pending``, ``metadata`` and, at the top, a ``summary``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fleetwatch.health._aggregate import Verdict
from fleetwatch.health._check import component_type, measurement
from fleetwatch.health._scheduler import CheckState
from fleetwatch.health._status import HealthStatus

MEDIA_TYPE = "application/health+json"


def check_key(state: CheckState) -> str:
    """The ``component:measurement`` key of a check, e.g. ``cache:responseTime``."""
    return f"{state.settings.name}:{measurement(state.check)}"


def render_check(state: CheckState) -> dict[str, Any]:
    """One check as a health+json measurement object."""
    result = state.result
    body: dict[str, Any] = {
        "componentId": state.settings.name,
        "componentType": component_type(state.check),
        "status": state.status.health_json,
        "fleetwatchStatus": state.status.value,
        "critical": state.settings.critical,
        "weight": state.settings.weight,
        "groups": sorted(g.value for g in state.settings.groups),
        "executions": state.executions,
    }
    if result is None:
        body["output"] = "no result yet"
        return body
    body.update(
        observedValue=result.observed_value,
        observedUnit=result.observed_unit,
        time=result.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        durationMs=round(result.duration_ms, 3),
    )
    if state.stale_for_s is not None:
        body["output"] = (
            f"stale: the last result is {state.stale_for_s:.1f}s old "
            f"(expected every {state.settings.interval:g}s): {result.output}"
        )
    elif state.status is not HealthStatus.HEALTHY or result.status is not HealthStatus.HEALTHY:
        # The draft: output is for warn and fail; it SHOULD be omitted for pass.
        body["output"] = result.output
    if result.status is not state.status:
        body["rawStatus"] = result.status.value
    if state.pending:
        body["pending"] = state.pending
    if result.metadata:
        body["metadata"] = dict(result.metadata)
    if result.details:
        body["details"] = dict(result.details)
    return body


def render(
    verdict: Verdict,
    states: list[CheckState],
    *,
    verbose: bool,
    notes: list[str] | None = None,
    service: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A whole health+json document for a verdict over ``states``."""
    doc: dict[str, Any] = {"status": verdict.status.health_json}
    if service:
        doc.update(service)
    if verdict.status is not HealthStatus.HEALTHY:
        doc["output"] = verdict.message
    if notes:
        doc["notes"] = notes
    if verbose:
        doc["fleetwatchStatus"] = verdict.status.value
        if verdict.score is not None:
            doc["score"] = round(verdict.score, 4)
        doc["summary"] = asdict(verdict.summary)
        doc["checks"] = {check_key(s): [render_check(s)] for s in states}
    return doc
