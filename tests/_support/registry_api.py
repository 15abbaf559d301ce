"""The registry API's test tokens, and what its fixture hands a test."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from fleetwatch.registry._registry import Registry

TEAM_A = {"Authorization": "Bearer secret-a"}
TEAM_B = {"Authorization": "Bearer secret-b"}
OPS = {"Authorization": "Bearer secret-ops"}


@dataclass
class Api:
    """The running API, a client for it, and the registry behind it."""

    client: httpx.AsyncClient
    registry: Registry
    url: str
