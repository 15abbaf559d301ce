"""Deployments across the fleet: the stored record of what a service should run (revisions,
surge and unavailability limits, deadlines, a canary step) and where its instances go."""

from fleetwatch.deployments._model import (
    DEFAULT_HISTORY,
    CanaryStep,
    Deployment,
    DeploymentSpec,
    Phase,
    Progress,
    resolve_amount,
)
from fleetwatch.deployments._placement import Candidate, candidates, place, retire_order

__all__ = [
    "DEFAULT_HISTORY",
    "CanaryStep",
    "Candidate",
    "Deployment",
    "DeploymentSpec",
    "Phase",
    "Progress",
    "candidates",
    "place",
    "resolve_amount",
    "retire_order",
]
