"""Built-in checks: http, tcp, redis, postgres (DSN and pool), system and llm."""

from fleetwatch.health.checks.http import HttpCheck, StatusRange, parse_status_spec
from fleetwatch.health.checks.llm import LlmCheck
from fleetwatch.health.checks.postgres import PostgresCheck, PostgresPoolCheck
from fleetwatch.health.checks.redis import RedisCheck
from fleetwatch.health.checks.system import CgroupLimits, SystemCheck
from fleetwatch.health.checks.tcp import TcpCheck

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
