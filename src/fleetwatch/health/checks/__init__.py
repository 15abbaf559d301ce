"""Built-in checks: http, tcp, redis, postgres (DSN and pool), system and llm."""

from fleetwatch.health.checks._http import HttpCheck, StatusRange, parse_status_spec
from fleetwatch.health.checks._llm import LlmCheck
from fleetwatch.health.checks._postgres import PostgresCheck, PostgresPoolCheck
from fleetwatch.health.checks._redis import RedisCheck
from fleetwatch.health.checks._system import CgroupLimits, SystemCheck
from fleetwatch.health.checks._tcp import TcpCheck

__all__ = [
    "CgroupLimits",
    "HttpCheck",
    "LlmCheck",
    "PostgresCheck",
    "PostgresPoolCheck",
    "RedisCheck",
    "StatusRange",
    "SystemCheck",
    "TcpCheck",
    "parse_status_spec",
]
