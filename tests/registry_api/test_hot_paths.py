"""Heartbeats and load reports answered without the framework answer exactly as through it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from fleetwatch.lifecycle import AppServer
from fleetwatch.registry._registry import Registry
from fleetwatch.registry.stores import MemoryStore
from fleetwatch.registry_api import create_app
from fleetwatch.registry_api._hot_paths import HotPaths
from fleetwatch.security._auth import Scope, Token, TokenAuth
from tests._support.registry_api import OPS, TEAM_A, TEAM_B

URL = "/v1/services/llm/instances"
A_JSON = {**TEAM_A, "Content-Type": "application/json"}
B_JSON = {**TEAM_B, "Content-Type": "application/json"}
PATCH_JSON = {**TEAM_A, "Content-Type": "application/merge-patch+json; charset=utf-8"}
#: Fields that hold the moment a request was served: they differ between any two runs.
MOMENTS = ("registered_at", "status_since", "last_check_at")

#: (method, path, headers, body): every answer a heartbeat or load report can get.
REQUESTS: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("PUT", f"{URL}/ghost/heartbeat", TEAM_A, None),  # 404: register again
    ("PUT", f"{URL}/a", A_JSON, b'{"host": "127.0.0.1", "port": 8080}'),
    ("PUT", f"{URL}/b", A_JSON, b'{"host": "127.0.0.1", "port": 8081, "check": {"type": "ttl"}}'),
    ("PUT", f"{URL}/a/heartbeat", TEAM_A, None),  # 200, no body
    ("PUT", f"{URL}/a/heartbeat", A_JSON, b"{}"),  # 200, empty report
    ("PUT", f"{URL}/a/heartbeat", A_JSON, b'{"status": "available"}'),  # 409: monitor-checked
    ("PUT", f"{URL}/b/heartbeat", A_JSON, b'{"status": "available", "output": "ok"}'),
    ("PUT", f"{URL}/b/heartbeat", PATCH_JSON, b'{"status": "degraded"}'),  # +json is JSON
    ("PUT", f"{URL}/b/heartbeat", TEAM_B, None),  # 403: another team's instance
    ("PUT", f"{URL}/b/heartbeat", {}, None),  # 401: no token
    ("PUT", f"{URL}/b/heartbeat", {"Authorization": "Bearer wrong"}, None),  # 401
    ("PUT", f"{URL}/b/heartbeat", {"Authorization": "Basic x"}, None),  # 401: not bearer
    ("PUT", f"{URL}/b/heartbeat", A_JSON, b'{"status": "great"}'),  # 422: no such status
    ("PUT", f"{URL}/b/heartbeat", A_JSON, b'{"extra": 1}'),  # 422: unknown field
    ("PUT", f"{URL}/b/heartbeat", A_JSON, b"{not json"),  # 422: malformed
    ("PUT", f"{URL}/b/heartbeat", A_JSON, b"null"),
    ("PUT", f"{URL}/b/heartbeat", A_JSON, b"  "),
    ("PUT", f"{URL}/b/heartbeat", {**TEAM_A, "Content-Type": "text/plain"}, b"{}"),
    ("PUT", f"{URL}/b/heartbeat", TEAM_A, b"{}"),  # 422: a body needs a JSON content type
    ("PUT", f"{URL}/b/heartbeat", A_JSON, b'{"output": "' + b"x" * 2000 + b'"}'),  # 422: long
    ("PUT", f"{URL}/b/load", A_JSON, b'{"load": {"requests_waiting": 3, "kv": 0.5}}'),
    ("PUT", f"{URL}/b/load", A_JSON, b'{"load": {"requests_waiting": "3"}}'),  # 422: strict
    ("PUT", f"{URL}/b/load", TEAM_A, None),  # 422: the body is required
    ("PUT", f"{URL}/b/load", B_JSON, b'{"load": {"q": 1}}'),  # 403
    ("PUT", f"{URL}/ghost/load", A_JSON, b'{"load": {"q": 1}}'),  # 404
    ("GET", "/v1/services/llm/load", TEAM_A, None),
    ("PUT", "/v1/services/-bad/instances/b/heartbeat", TEAM_A, None),  # 422: bad name
    ("PUT", f"{URL}/b/heartbeat/", TEAM_A, None),  # a trailing slash: the app's own answer
    ("POST", f"{URL}/b/heartbeat", TEAM_A, None),  # 405
    ("DELETE", f"{URL}/a", OPS, None),
    ("PUT", f"{URL}/a/heartbeat", TEAM_A, None),  # 410: an operator removed it
    ("PUT", f"{URL}/a/load", A_JSON, b'{"load": {"q": 1}}'),
]


@contextlib.asynccontextmanager
async def _api(*, hot_paths: bool) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    auth = TokenAuth(
        [
            Token("team-a", "secret-a", frozenset({Scope.REGISTER, Scope.READ})),
            Token("team-b", "secret-b", frozenset({Scope.REGISTER, Scope.READ})),
            Token("ops", "secret-ops", Scope.ALL),
        ]
    )
    app = create_app(Registry(MemoryStore(), tombstone_s=30), auth, hot_paths=hot_paths)
    async with AppServer(app) as server, httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        yield c, app


async def _answers(client: httpx.AsyncClient) -> list[tuple[int, str | None, Any]]:
    answers = []
    for method, path, headers, body in REQUESTS:
        reply = await client.request(method, path, headers=headers, content=body)
        content = reply.json() if reply.content else None
        if isinstance(content, dict) and isinstance(content.get("instance"), dict):
            for moment in MOMENTS:  # the same shape, not the same clock
                if content["instance"][moment] is not None:
                    content["instance"][moment] = "a moment"
        answers.append((reply.status_code, reply.headers.get("content-type"), content))
    return answers


async def test_hot_paths_answer_exactly_as_the_framework() -> None:
    """Every status, body and content type of a heartbeat or load report is the same with the
    hot paths as without, and the hot paths did answer the well-formed ones."""
    async with _api(hot_paths=False) as (client, _):
        through_framework = await _answers(client)
    async with _api(hot_paths=True) as (client, app):
        direct = await _answers(client)
    hot = app.app
    assert isinstance(hot, HotPaths)
    for request, slow, fast in zip(REQUESTS, through_framework, direct, strict=True):
        assert fast == slow, request[:2]
    statuses = {status for status, _, _ in direct}
    assert {200, 401, 403, 404, 405, 409, 410, 422} <= statuses  # every kind of answer seen
    # The well-formed heartbeats and load reports, whatever the registry answered to them.
    assert hot.answered == 15
