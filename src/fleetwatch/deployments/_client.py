"""The deployments API, as the CLI calls it."""

from __future__ import annotations

from typing import Any

from fleetwatch.deployments._model import Deployment, DeploymentSpec
from fleetwatch.discovery._registry_client import REQUEST_TIMEOUT_S, RegistryClient


class DeploymentsClient(RegistryClient):
    """:class:`~fleetwatch.discovery.RegistryClient` with the deployments API."""

    async def apply(self, spec: DeploymentSpec) -> Deployment:
        """Write ``spec`` as the service's next revision (needs the deploy scope)."""
        body: dict[str, Any] = spec.to_dict()
        del body["service"]
        if body["canary"] is None:
            del body["canary"]
        reply = await self._call("PUT", f"/v1/deployments/{spec.service}", json=body)
        return Deployment.from_dict(reply.json())

    async def deployment(self, service: str) -> Deployment:
        reply = await self._call("GET", f"/v1/deployments/{service}")
        return Deployment.from_dict(reply.json())

    async def deployments(
        self, *, index: int | None = None, wait: float = 30.0
    ) -> tuple[int, list[Deployment], dict[str, Any] | None]:
        """(feed index, every deployment, the leading controller); with ``index``, waits up
        to ``wait`` seconds for a change."""
        params: dict[str, str | int] = {}
        timeout = REQUEST_TIMEOUT_S
        if index is not None:
            params = {"index": index, "wait": f"{wait:g}s"}
            timeout += wait * 1.1
        reply = await self._call("GET", "/v1/deployments", params=params, timeout=timeout)
        data = reply.json()
        found = [Deployment.from_dict(d) for d in data["deployments"]]
        return int(data["index"]), found, data.get("controller")

    async def pause(self, service: str, paused: bool = True) -> Deployment:
        reply = await self._call("PUT", f"/v1/deployments/{service}/pause", json={"paused": paused})
        return Deployment.from_dict(reply.json())

    async def undo(self, service: str, to_revision: int | None = None) -> Deployment:
        body = {"to_revision": to_revision} if to_revision is not None else {}
        reply = await self._call("POST", f"/v1/deployments/{service}/undo", json=body)
        return Deployment.from_dict(reply.json())
