"""A small client of the registry API, used by discovery, self-registration and the CLI."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import httpx

from fleetwatch._async_resource import AsyncResource
from fleetwatch.errors import (
    REGISTRY_ERRORS_BY_STATUS,
    RegistryError,
    RegistryUnavailable,
)
from fleetwatch.registry._model import (
    OPERATOR_STATUSES,
    Instance,
    InstanceStatus,
    Registration,
)
from fleetwatch.security._auth import TOKEN_ENV
from fleetwatch.security._tls import client_context
from fleetwatch.slo._tracker import SloReport

REGISTRY_ENV = "FLEETWATCH_REGISTRY"
DEFAULT_REGISTRY = "http://127.0.0.1:8760"
#: Every request is bounded; blocking queries get their wait on top of this.
REQUEST_TIMEOUT_S = 5.0
_API_ONLY = ("url", "routable", "effective_weight")


def instance_from_api(data: Mapping[str, Any]) -> Instance:
    """An :class:`Instance` from the API's JSON (which adds a few derived fields)."""
    return Instance.from_dict({k: v for k, v in data.items() if k not in _API_ONLY})


class RegistryClient(AsyncResource):
    """The registry's HTTP API. Errors come back as fleetwatch's own exceptions."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        client: httpx.AsyncClient | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        self.url = (url or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY).rstrip("/")
        secret = token if token is not None else os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._own_client = client is None
        self._http = client or httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT_S,
            verify=client_context(ca_bundle),  # verified; a private CA from $FLEETWATCH_CA_BUNDLE
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            trust_env=False,
        )
        self._headers = headers

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own_client:
            await self._http.aclose()

    async def _call(
        self, method: str, path: str, *, timeout: float = REQUEST_TIMEOUT_S, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method, self.url + path, headers=self._headers, timeout=timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(
                f"registry at {self.url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 400:
            try:
                reply = response.json()
                message = str(reply.get("error", response.text))
            except (ValueError, AttributeError):
                reply, message = {}, response.text[:200]
            kind = REGISTRY_ERRORS_BY_STATUS.get(response.status_code)
            if kind is None:
                kind = RegistryUnavailable if response.status_code >= 500 else RegistryError
            raise kind(
                f"{method} {path}: HTTP {response.status_code}: {message}",
                service=reply.get("service"),
                instance_id=reply.get("instance_id"),
            )
        return response

    async def register(
        self, service: str, instance_id: str, registration: Registration | Mapping[str, Any]
    ) -> Instance:
        """PUT a registration; returns the stored instance.

        A mapping is sent as the raw JSON body, as the HTTP API takes it (so a field the
        API refuses comes back as its error).
        """
        body = (
            registration.as_body() if isinstance(registration, Registration) else dict(registration)
        )
        response = await self._call(
            "PUT", f"/v1/services/{service}/instances/{instance_id}", json=body
        )
        return instance_from_api(response.json()["instance"])

    async def heartbeat(
        self,
        service: str,
        instance_id: str,
        *,
        status: InstanceStatus | None = None,
        output: str = "",
    ) -> Instance:
        """Renew the lease (raises InstanceNotFound: register again; InstanceGone: stop).

        ``status``: an agent-held instance's own verdict, with ``output`` saying why.
        """
        body = {"status": InstanceStatus(status).value, "output": output} if status else None
        response = await self._call(
            "PUT", f"/v1/services/{service}/instances/{instance_id}/heartbeat", json=body
        )
        return instance_from_api(response.json()["instance"])

    async def put_load(self, service: str, instance_id: str, load: Mapping[str, float]) -> None:
        """Publish load figures (waiting, running, KV-cache use...) on the load channel."""
        await self._call(
            "PUT",
            f"/v1/services/{service}/instances/{instance_id}/load",
            json={"load": dict(load)},
        )

    async def load(self, service: str) -> dict[str, dict[str, float]]:
        """The latest load figures of a service's instances, by instance id."""
        response = await self._call("GET", f"/v1/services/{service}/load")
        return dict(response.json()["load"])

    async def set_status(
        self, service: str, instance_id: str, status: InstanceStatus | Literal["active"]
    ) -> None:
        """An operator's status: ``DRAINING`` or ``MAINTENANCE``, or ``"active"`` to hand the
        instance back to its checks."""
        if status != "active" and InstanceStatus(status) not in OPERATOR_STATUSES:
            raise ValueError(f"an operator sets draining, maintenance or active, not {status!r}")
        await self._call(
            "PUT",
            f"/v1/services/{service}/instances/{instance_id}/status",
            json={"status": str(status)},
        )

    async def deregister(self, service: str, instance_id: str, *, tombstone: bool = True) -> bool:
        """DELETE; whether something was removed. ``tombstone=False``: leaving on one's own."""
        response = await self._call(
            "DELETE",
            f"/v1/services/{service}/instances/{instance_id}",
            params={"tombstone": "true" if tombstone else "false"},
        )
        return bool(response.json().get("removed"))

    async def instances(
        self,
        service: str,
        *,
        index: int | None = None,
        wait: float | None = None,
        status: Iterable[InstanceStatus] = (),
        tags: Iterable[str] = (),
        passing: bool = False,
        instance_ids: Iterable[str] = (),
    ) -> tuple[int, list[Instance]]:
        """(index, instances); with ``index`` and ``wait``, a blocking query. Filters combine;
        ``instance_ids``: those instances only."""
        params: list[tuple[str, str]] = [("status", s.value) for s in status]
        params += [("tag", t) for t in tags]
        if passing:
            params.append(("passing", "true"))
        params += [("instance", i) for i in instance_ids]
        timeout = REQUEST_TIMEOUT_S
        if index is not None:
            params.append(("index", str(index)))
            if wait is not None:
                params.append(("wait", f"{wait:g}s"))
                timeout += wait * 17 / 16
        response = await self._call(
            "GET", f"/v1/services/{service}/instances", params=params, timeout=timeout
        )
        body = response.json()
        return int(body["index"]), [instance_from_api(i) for i in body["instances"]]

    async def services(
        self, *, index: int | None = None, wait: float | None = None
    ) -> tuple[int, dict[str, dict[str, int]]]:
        """(index, {service: counts by status})."""
        params = {}
        timeout = REQUEST_TIMEOUT_S
        if index is not None:
            params["index"] = str(index)
            if wait is not None:
                params["wait"] = f"{wait:g}s"
                timeout += wait * 17 / 16
        response = await self._call("GET", "/v1/services", params=params, timeout=timeout)
        body = response.json()
        return int(body["index"]), dict(body["services"])

    async def slos(self) -> list[SloReport]:
        """Every service-level objective, judged now."""
        response = await self._call("GET", "/v1/slo")
        return [SloReport.from_dict(one) for one in response.json()["slos"]]

    async def report_requests(self, service: str, total: int, ok: int, fast: int) -> None:
        """Requests a gateway served for ``service`` (for its request SLIs)."""
        await self._call(
            "POST",
            f"/v1/slo/{service}/requests",
            json={"total": total, "ok": ok, "fast": fast},
        )

    async def monitor(self) -> dict[str, Any]:
        """The monitor's counters and self-preservation state."""
        response = await self._call("GET", "/v1/monitor")
        body: dict[str, Any] = response.json()
        return body
