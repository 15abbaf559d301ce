"""fleetwatch's dev-only harness: throwaway real servers on loopback for tests, demos and
benchmarks, and (in submodules) fuzzers, the load generator, the llama.cpp build and the demo.

Each server runs as a child process on a free port with its data in a temporary directory,
and is stopped and cleaned up when you leave its ``with`` block. These are the real programs
(``redis-server``, PostgreSQL's ``initdb`` and ``postgres``), never mocks and never the system
services. ``stop()``/``start()`` keep the port and data, so tests can take a dependency away and
bring it back.

The names below are imported on first use: ``python -m fleetwatch_testing.llama_build`` runs
with the standard library alone (``make setup`` builds llama.cpp while the venv fills up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetwatch_testing.children import reap, spawned
    from fleetwatch_testing.http_backend import BackendProcess, HttpBackend
    from fleetwatch_testing.ports import free_port
    from fleetwatch_testing.postgres import PostgresServer
    from fleetwatch_testing.redis import RedisServer, SentinelServer

_WHERE = {
    "BackendProcess": "http_backend",
    "HttpBackend": "http_backend",
    "PostgresServer": "postgres",
    "RedisServer": "redis",
    "SentinelServer": "redis",
    "free_port": "ports",
    "reap": "children",
    "spawned": "children",
}

__all__ = [
    "BackendProcess",
    "HttpBackend",
    "PostgresServer",
    "RedisServer",
    "SentinelServer",
    "free_port",
    "reap",
    "spawned",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'fleetwatch_testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fleetwatch_testing.{_WHERE[name]}"), name)
