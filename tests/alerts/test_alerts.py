"""Alert rules, their validation, de-duplication of a flapping instance, and a real webhook."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fleetwatch.alerts import AlertEngine, AlertRule, NotifierSettings, WebhookNotifier
from fleetwatch.config._registry import ServeConfig, load_serve_config
from fleetwatch.discovery import RegistryClient
from fleetwatch.errors import ConfigError
from fleetwatch.lifecycle import AppServer
from fleetwatch.registry._model import Instance, InstanceStatus
from fleetwatch.registry_api._node import RegistryNode
from fleetwatch.security._auth import Scope, Token, TokenAuth
from fleetwatch_testing import BackendProcess, free_port
from tests._support.registry_node import TOKEN
from tests._support.waiting import poll_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, text: str) -> ServeConfig:
    path = tmp_path / "serve.toml"
    path.write_text(text)
    return load_serve_config(path)


def test_rules_are_validated_with_clear_errors(tmp_path: Path) -> None:
    """An unknown notifier, a capacity rule without `below`, an SLO rule without an SLO."""
    with pytest.raises(ConfigError, match=r"notifies pager, which no \[\[notifiers\]\] defines"):
        _config(tmp_path, '[[alerts]]\nname = "a"\nkind = "instance_status"\nnotify = ["pager"]\n')
    with pytest.raises(ConfigError, match="needs `below`"):
        _config(tmp_path, '[[alerts]]\nname = "a"\nkind = "service_capacity"\n')
    with pytest.raises(ConfigError, match=r"which no \[\[slos\]\] defines"):
        _config(tmp_path, '[[alerts]]\nname = "a"\nkind = "slo_burn"\nservice = "llm"\n')
    with pytest.raises(ConfigError, match="a webhook needs an http"):
        _config(tmp_path, '[[notifiers]]\nname = "n"\ntype = "webhook"\nurl = "ftp://x"\n')


class Recorder:
    """Collects what a notifier was given (stands in for one in engine-only tests)."""

    name = "recorder"

    def __init__(self) -> None:
        self.alerts: list[Any] = []

    def submit(self, alert: Any) -> None:
        self.alerts.append(alert)

    def tick(self) -> None:
        pass

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_a_condition_fires_after_for_and_resolves() -> None:
    """Pending for `for` seconds, then firing; resolved once the instance is back."""
    clock, recorder = Clock(), Recorder()
    status = {"value": InstanceStatus.UNAVAILABLE}

    async def instances() -> list[Instance]:
        return [Instance("llm", "a", "127.0.0.1", 9000, status=status["value"])]

    async def no_slos() -> list[Any]:
        return []

    rule = AlertRule(name="down", kind="instance_status", for_=30)
    engine = AlertEngine(
        [rule], {"recorder": recorder}, instances=instances, slos=no_slos, clock=clock
    )
    assert await engine.evaluate() == []
    clock.now += 29
    assert await engine.evaluate() == []
    clock.now += 1
    (fired,) = await engine.evaluate()
    assert (fired.state, fired.subject) == ("firing", "llm/a")
    status["value"] = InstanceStatus.AVAILABLE
    (resolved,) = await engine.evaluate()
    assert resolved.state == "resolved"
    assert [a.state for a in recorder.alerts] == ["firing", "resolved"]


async def test_a_flapping_instance_pages_once_and_resolves_once() -> None:
    """100 flaps within the flap window: one firing queued, then one resolution after it."""
    clock = Clock()
    settings = NotifierSettings(name="n", type="webhook", url="http://127.0.0.1:9/", flap_window=60)
    notifier = WebhookNotifier(settings, clock=clock)
    status = {"value": InstanceStatus.UNAVAILABLE}

    async def instances() -> list[Instance]:
        return [Instance("llm", "a", "127.0.0.1", 9000, status=status["value"])]

    async def no_slos() -> list[Any]:
        return []

    rule = AlertRule(name="down", kind="instance_status")
    engine = AlertEngine([rule], {"n": notifier}, instances=instances, slos=no_slos, clock=clock)
    for _ in range(100):
        status["value"] = InstanceStatus.UNAVAILABLE
        await engine.evaluate()
        clock.now += 1
        status["value"] = InstanceStatus.AVAILABLE
        await engine.evaluate()
        clock.now += 1
    assert notifier._queue.qsize() == 1  # the first firing
    clock.now += 61
    await engine.evaluate()
    assert notifier._queue.qsize() == 2  # and one resolution, once it stayed resolved


class Receiver:
    """A real HTTP webhook receiver; the first POST gets a 500 (to exercise retries)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.attempts = 0

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.attempts += 1
            if self.attempts == 1:
                return JSONResponse({"error": "try again"}, status_code=500)
            self.posts.append(await request.json())
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


async def test_a_real_webhook_gets_firing_then_resolved_with_retries() -> None:
    """An instance goes down and comes back: the receiver gets one firing POST (after a retry)
    and one resolved POST, each naming the rule, the instance and what was seen."""
    receiver = Receiver()
    async with AppServer(receiver.app()) as hook_server:
        config = ServeConfig.model_validate(
            {
                "notifiers": [
                    {
                        "name": "hook", "type": "webhook", "url": f"{hook_server.url}/hook",
                        "group_wait": 0.1, "retries": 2, "flap_window": 1, "timeout": 2,
                    }
                ],
                "alerts": [{"name": "down", "kind": "instance_status", "for": 0.5}],
            }
        )  # fmt: skip
        auth = TokenAuth([Token("tests", TOKEN, Scope.ALL)])
        node = RegistryNode(config, store_url="memory", auth=auth)
        port = free_port()
        with BackendProcess() as backend:
            async with (
                AppServer(node.app(), port=port) as server,
                RegistryClient(server.url, token=TOKEN) as api,
            ):
                body = {"host": "127.0.0.1", "port": backend.port, "check": {"interval": 0.2}}
                await api.register("llm", "a", body)
                await poll_until(lambda: _status(api), InstanceStatus.AVAILABLE, within=10)
                await asyncio.to_thread(backend.kill)
                await poll_until(lambda: _states(receiver), ["firing"], within=15)
                await asyncio.to_thread(backend.start)
                await poll_until(lambda: _states(receiver), ["firing", "resolved"], within=15)
    firing = receiver.posts[0]
    assert firing["rule"] == "down"
    assert firing["alerts"][0]["subject"] == "llm/a"
    assert "unavailable" in firing["alerts"][0]["summary"]
    assert receiver.attempts == 3  # the 500, its retry, the resolution


async def _status(api: RegistryClient) -> InstanceStatus | None:
    _, found = await api.instances("llm")
    return found[0].status if found else None


async def _states(receiver: Receiver) -> list[str]:
    return [alert["state"] for post in receiver.posts for alert in post["alerts"]]
