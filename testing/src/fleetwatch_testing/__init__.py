"""Throwaway real servers on loopback for tests, demos and benchmarks.

Each server runs as a child process on a free port with its data in a temporary directory,
and is stopped and cleaned up when you leave its ``with`` block. These are the real programs
(``redis-server``, PostgreSQL's ``initdb`` and ``postgres``), never mocks and never the system
services. ``stop()``/``start()`` keep the port and data, so tests can take a dependency away and
bring it back.
"""

from fleetwatch_testing.children import reap, spawned
from fleetwatch_testing.http_backend import BackendProcess, HttpBackend
from fleetwatch_testing.ports import free_port
from fleetwatch_testing.postgres import PostgresServer
from fleetwatch_testing.redis import RedisServer, SentinelServer

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
