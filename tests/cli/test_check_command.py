"""``fleetwatch check`` as a user runs it: a real process, real config files, real servers."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import httpx

from fleetwatch_testing import HttpBackend, RedisServer, free_port, spawned
from tests._support.waiting import poll_until


async def _fleetwatch(*args: str) -> tuple[int, str, str]:
    async with spawned(
        sys.executable,
        "-m",
        "fleetwatch",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    ) as proc:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "checks.toml"
    path.write_text(body)
    return str(path)


async def test_passing_checks_exit_0_with_a_table(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """All checks pass: exit 0 and a table naming each check."""
    config = _config(
        tmp_path,
        f'[[checks]]\nname = "cache"\ntype = "redis"\nurl = "{redis_server.url}"\n'
        f'[[checks]]\nname = "port"\ntype = "tcp"\nhost = "127.0.0.1"\n'
        f"port = {redis_server.port}\n",
    )
    code, out, _ = await _fleetwatch("check", "--config", config)
    assert code == 0
    assert "cache" in out
    assert "port" in out
    assert "overall: healthy (pass)" in out


async def test_warn_exits_0_and_fail_exits_1(tmp_path: Path, backend: HttpBackend) -> None:
    """Degraded (429) keeps exit 0 for probes that must keep serving; a critical failure exits 1."""
    warn = _config(
        tmp_path, f'[[checks]]\nname = "api"\ntype = "http"\nurl = "{backend.url}/status/429"\n'
    )
    code, out, _ = await _fleetwatch("check", "--config", warn)
    assert code == 0
    assert "degraded" in out
    fail = _config(
        tmp_path,
        f'[[checks]]\nname = "db"\ntype = "tcp"\nhost = "127.0.0.1"\nport = {free_port()}\n'
        "critical = true\n",
    )
    code, out, _ = await _fleetwatch("check", "--config", fail)
    assert code == 1
    assert "ConnectionRefusedError" in out


async def test_json_output_is_health_json(tmp_path: Path, backend: HttpBackend) -> None:
    """--json prints the health+json document with every check."""
    config = _config(
        tmp_path, f'[[checks]]\nname = "api"\ntype = "http"\nurl = "{backend.url}/health"\n'
    )
    code, out, _ = await _fleetwatch("check", "--config", config, "--json")
    document = json.loads(out)
    assert code == 0
    assert document["status"] == "pass"
    assert document["checks"]["api:responseTime"][0]["observedUnit"] == "ms"


async def test_config_and_usage_errors_exit_64(tmp_path: Path) -> None:
    """A bad config or bad arguments exit 64 with a message naming the problem."""
    bad = _config(tmp_path, '[[checks]]\nname = "x"\ntype = "kafka"\n')
    code, _, err = await _fleetwatch("check", "--config", bad)
    assert code == 64
    assert "unknown check type 'kafka'; known types: http, tcp" in err
    code, _, err = await _fleetwatch("check")
    assert code == 64
    assert "--config" in err
    ok = _config(tmp_path, '[[checks]]\nname = "s"\ntype = "system"\n')
    code, _, err = await _fleetwatch("check", "--config", ok, "--serve", "nowhere")
    assert code == 64
    assert "HOST:PORT" in err


async def test_busy_port_is_a_clear_error(tmp_path: Path, backend: HttpBackend) -> None:
    """--serve on a port already in use exits 64 naming the address, not with a traceback."""
    ok = _config(tmp_path, '[[checks]]\nname = "s"\ntype = "system"\n')
    code, _, err = await _fleetwatch(
        "check", "--config", ok, "--serve", f"127.0.0.1:{backend.port}", "--no-live"
    )
    assert code == 64
    assert f"cannot listen on 127.0.0.1:{backend.port}" in err
    assert "Traceback" not in err


async def test_serve_keeps_checking_and_stops_on_sigterm(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """--serve answers probes from scheduled checks, follows a dependency down, exits on SIGTERM."""
    port = free_port()
    config = _config(
        tmp_path,
        f'[[checks]]\nname = "cache"\ntype = "redis"\nurl = "{own_redis.url}"\n'
        'critical = true\ninterval = "200ms"\ntimeout = "500ms"\nfall = 1\n',
    )
    async with spawned(
        sys.executable,
        "-m",
        "fleetwatch",
        "check",
        "--config",
        config,
        "--serve",
        f"127.0.0.1:{port}",
        "--no-live",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    ) as proc:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:

            async def readiness() -> int:
                try:
                    return (await client.get("/readyz")).status_code
                except httpx.TransportError:
                    return 0

            await poll_until(readiness, 200, within=20)
            await asyncio.to_thread(own_redis.stop)
            await poll_until(readiness, 503, within=5)
            verbose = (await client.get("/health?verbose")).json()
            assert verbose["checks"]["cache:responseTime"][0]["status"] == "fail"
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            code = await proc.wait()
        assert code == 0
