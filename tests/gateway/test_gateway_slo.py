"""The gateway reports its requests to the registry for the service's request SLIs."""

from __future__ import annotations

from typing import Any

import httpx

from fleetwatch.config._registry import ServeConfig, SloSection
from fleetwatch.discovery import RegistryClient
from fleetwatch.gateway import Gateway, GatewaySettings
from fleetwatch.lifecycle import AppServer
from fleetwatch.registry_api._node import RegistryNode
from fleetwatch.security._auth import Scope, Token, TokenAuth
from tests._support.gateways import SERVICE, register
from tests._support.registry_node import TOKEN
from tests._support.waiting import poll_until

CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


async def test_gateway_requests_become_request_slis(backends: Any) -> None:
    """Ten requests through the gateway: the registry's SLO shows 10 requests, all good."""
    config = ServeConfig(slos=[SloSection(service=SERVICE, request_objective=0.99)])
    node = RegistryNode(config, store_url="memory", auth=TokenAuth([Token("t", TOKEN, Scope.ALL)]))
    backend = await backends(model="m1")
    async with (
        AppServer(node.app()) as registry,
        RegistryClient(registry.url, token=TOKEN) as api,
    ):
        await register(api, "b", backend.port, model="m1")
        settings = GatewaySettings(
            service=SERVICE, registry_url=registry.url, registry_token=TOKEN, slo_report_every=0.2
        )
        async with Gateway(settings) as gateway, gateway.server() as server:

            async def routable() -> int:
                return len(gateway.discovery.cached(SERVICE))

            await poll_until(routable, 1, within=10)
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                for _ in range(10):
                    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200

            async def reported() -> int:
                return int((await api.slos())[0].requests)

            await poll_until(reported, 10, within=5)
            (slo,) = await api.slos()
    assert slo.request_success == 1.0
    assert slo.latency_within_threshold == 1.0
