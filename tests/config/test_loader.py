"""Configuration files: valid forms, environment overrides, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fleetwatch.config import load_config, parse_config, parse_duration
from fleetwatch.errors import ConfigError
from fleetwatch.health import Group, HealthStatus
from fleetwatch.health.checks import HttpCheck, LlmCheck, RedisCheck, SystemCheck, TcpCheck

FULL = """
[service]
id = "llm-api"
version = "1.4.2"

[aggregation]
healthy_threshold = 0.9
degraded_threshold = 0.6
parallel = false

[[checks]]
name = "cache"
type = "redis"
url = "redis://127.0.0.1:6379/0"
critical = true
interval = "2s"
timeout = "500ms"
rise = 1
fall = 2

[[checks]]
name = "api"
type = "http"
url = "http://127.0.0.1:8000/health"
expected_status = [200, "204", "3xx"]
weight = 2.5
slow_after = 0.75

[[checks]]
name = "db-port"
type = "tcp"
host = "127.0.0.1"
port = 5432

[[checks]]
name = "host"
type = "system"
groups = ["liveness"]
disk_threshold = 95

[[checks]]
name = "model"
type = "llm"
url = "http://127.0.0.1:8080"
model = "smollm2"
prompt = "Say OK"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "checks.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(2, 2.0), (0.5, 0.5), ("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0)],
)
def test_durations(value: object, seconds: float) -> None:
    """Numbers are seconds; strings may carry ms, s, m or h."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["fast", "10 parsecs", -1, 0, "0s", True, None])
def test_bad_durations_name_the_allowed_forms(value: object) -> None:
    """Anything else is refused with the forms that are allowed."""
    with pytest.raises(ValueError, match=r"duration"):
        parse_duration(value)


async def test_full_config_builds_every_check(tmp_path: Path) -> None:
    """Every type, every common field and both side tables load and build."""
    config = load_config(_write(tmp_path, FULL), environ={})
    assert config.service.id == "llm-api"
    assert config.aggregation.thresholds().healthy == 0.9
    assert config.aggregation.parallel is False
    async with httpx.AsyncClient() as http:
        built = config.build(http)
        kinds = [type(check) for check, _ in built]
        assert kinds == [RedisCheck, HttpCheck, TcpCheck, SystemCheck, LlmCheck]
        settings = {s.name: s for _, s in built}
        assert (settings["cache"].interval, settings["cache"].timeout) == (2.0, 0.5)
        assert (settings["cache"].rise, settings["cache"].fall, settings["cache"].critical) == (
            1,
            2,
            True,
        )
        assert settings["api"].weight == 2.5
        assert settings["host"].groups == frozenset({Group.LIVENESS})
        assert settings["db-port"].groups == frozenset({Group.READINESS, Group.STARTUP})
        assert settings["model"].interval == 30.0  # generation probes default to a longer interval
        for check, _ in built:
            close = getattr(check, "aclose", None)
            if close:
                await close()


def test_environment_overrides_fields(tmp_path: Path) -> None:
    """FLEETWATCH_CHECKS__<CHECK>__<FIELD> and FLEETWATCH_<TABLE>__<FIELD> override the file."""
    environ = {
        "FLEETWATCH_CHECKS__DB_PORT__PORT": "6543",
        "FLEETWATCH_CHECKS__CACHE__TIMEOUT": "1s",
        "FLEETWATCH_CHECKS__CACHE__CRITICAL": "false",
        "FLEETWATCH_SERVICE__VERSION": "2.0.0",
        "FLEETWATCH_AGGREGATION__PARALLEL": "true",
    }
    config = load_config(_write(tmp_path, FULL), environ=environ)
    by_name = {c.name: c for c in config.checks}
    assert getattr(by_name["db-port"], "port") == 6543  # noqa: B009
    assert by_name["cache"].timeout == 1.0
    assert by_name["cache"].critical is False
    assert config.service.version == "2.0.0"
    assert config.aggregation.parallel is True


def test_environment_override_of_unknown_check_is_refused(tmp_path: Path) -> None:
    """A typo in an override names the checks that exist instead of being ignored."""
    with pytest.raises(ConfigError, match=r"FLEETWATCH_CHECKS__CAHCE__TIMEOUT names no check"):
        load_config(_write(tmp_path, FULL), environ={"FLEETWATCH_CHECKS__CAHCE__TIMEOUT": "1"})


def test_bad_field_names_file_check_field_value_and_rule(tmp_path: Path) -> None:
    """A bad value is reported with the file, the check, the field, the value and the rule."""
    text = '[[checks]]\nname = "db-port"\ntype = "tcp"\nhost = "h"\nport = 70000\n'
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert message.startswith(f"{path}: check 'db-port': field 'port'")
    assert "less than or equal to 65535" in message
    assert "(got 70000)" in message
    assert (info.value.check, info.value.field) == ("db-port", "port")


def test_unknown_type_lists_known_types() -> None:
    """An unknown check type lists the known ones."""
    with pytest.raises(ConfigError) as info:
        parse_config({"checks": [{"name": "q", "type": "kafka"}]}, source="f.toml")
    assert str(info.value) == (
        "f.toml: check 'q': field 'type': unknown check type 'kafka'; "
        "known types: http, tcp, redis, postgres, system, llm, gpu"
    )


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"name": "a", "type": "tcp", "host": "h"}, "field 'port' is required"),
        (
            {"name": "a", "type": "tcp", "host": "h", "port": 1, "colour": 1},
            "unknown field 'colour'",
        ),
        ({"name": "a", "type": "http", "url": "ftp://x"}, "must be a URL starting with http://"),
        ({"name": "a", "type": "http", "url": "http://x", "expected_status": ["2yy"]}, "'2xx'"),
        ({"name": "a", "type": "redis", "url": "http://x"}, "redis:// or rediss://"),
        ({"name": "a", "type": "system", "path": "rel"}, "must be an absolute path"),
        ({"name": "a", "type": "system", "cpu_threshold": 120}, "less than or equal to 100"),
        ({"name": "a", "type": "system", "groups": ["wellness"]}, "'liveness', 'readiness'"),
        ({"name": "a b", "type": "system"}, "field 'name'"),
        ({"type": "system"}, "field 'name' is required"),
        ({"name": "a"}, "field 'type' is missing; known types"),
        ({"name": "a", "type": "llm", "url": "http://x", "max_tokens": 1000}, "max_tokens"),
        ({"name": "a", "type": "system", "rise": 0}, "field 'rise'"),
    ],
)
def test_invalid_check_tables(table: dict[str, object], expected: str) -> None:
    """Each kind of mistake in a check table gets a message that names it."""
    with pytest.raises(ConfigError, match=None) as info:
        parse_config({"checks": [table]})
    assert expected in str(info.value)


def test_duplicate_names_unknown_tables_and_bad_toml(tmp_path: Path) -> None:
    """Duplicate names, unknown top-level keys and broken TOML are all refused clearly."""
    twice = {"checks": [{"name": "a", "type": "system"}, {"name": "a", "type": "system"}]}
    with pytest.raises(ConfigError, match="duplicate check name 'a'"):
        parse_config(twice)
    with pytest.raises(ConfigError, match="unknown top-level key"):
        parse_config({"chekcs": []})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[[checks]\n"))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.toml")


def test_misordered_thresholds_are_refused() -> None:
    """degraded_threshold above healthy_threshold names both values."""
    with pytest.raises(ConfigError, match=r"degraded_threshold \(0.9\) must not exceed"):
        parse_config({"aggregation": {"healthy_threshold": 0.5, "degraded_threshold": 0.9}})


async def test_missing_secret_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret's environment variable that is not set is named when the checks are built."""
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    config = parse_config(
        {
            "checks": [
                {"name": "a", "type": "llm", "url": "http://x", "api_key_env": "NO_SUCH_SECRET"}
            ]
        },
        source="f.toml",
    )
    async with httpx.AsyncClient() as http:
        with pytest.raises(ConfigError, match="environment variable NO_SUCH_SECRET is not set"):
            config.build(http)


def test_prompt_without_model_is_refused() -> None:
    """A generation probe must say which model to ask; this is caught when the file is read."""
    table = {"name": "a", "type": "llm", "url": "http://x", "prompt": "hi"}
    with pytest.raises(ConfigError, match="needs `model` too"):
        parse_config({"checks": [table]})


def test_bad_override_names_its_variable(tmp_path: Path) -> None:
    """A bad value that came from the environment says which variable set it."""
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, FULL), environ={"FLEETWATCH_CHECKS__DB_PORT__PORT": "0"})
    assert "(set by environment variable FLEETWATCH_CHECKS__DB_PORT__PORT)" in str(info.value)


@pytest.mark.parametrize(
    "variable", ["FLEETWATCH_SERVICES__ID", "FLEETWATCH_CHECKS__CACHE", "FLEETWATCH_X__Y__Z"]
)
def test_unknown_override_forms_are_refused(tmp_path: Path, variable: str) -> None:
    """An override in no known form is an error, not silently ignored."""
    with pytest.raises(ConfigError, match="is not an override fleetwatch knows"):
        load_config(_write(tmp_path, FULL), environ={variable: "1"})


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            {"name": "a", "type": "http", "url": "http://x", "headers": {"Authorization": "t"}},
            "use headers_from_env",
        ),
        (
            {"name": "a", "type": "redis", "url": "redis://:pw@h:6379"},
            "must not contain a password",
        ),
        ({"name": "a", "type": "postgres", "dsn": "postgresql://u:pw@h/db"}, "password_env"),
        ({"name": "a", "type": "system", "timeout": float("inf")}, "finite"),
        ({"name": "a", "type": "system", "weight": float("inf")}, "field 'weight'"),
    ],
)
def test_secrets_and_infinities_are_refused(table: dict[str, object], expected: str) -> None:
    """Secrets never live in the file, and every limit is finite."""
    with pytest.raises(ConfigError) as info:
        parse_config({"checks": [table]})
    assert expected in str(info.value)


async def test_gpu_check_from_config_reports_unknown_without_nvml(tmp_path: Path) -> None:
    """``type = "gpu"`` builds the NVML check; on this GPU-less machine it says unknown."""
    text = '[[checks]]\nname = "gpus"\ntype = "gpu"\nindices = [0]\nmemory_warn = 0.9\n'
    config = load_config(_write(tmp_path, text), environ={})
    async with httpx.AsyncClient() as http:
        ((check, settings),) = config.build(http)
        observation = await check.check()
    assert settings.name == "gpus"
    assert check.memory_warn == 0.9  # type: ignore[attr-defined]
    if observation.output.startswith("NVML unavailable"):  # this machine: no NVIDIA driver
        assert observation.status is HealthStatus.UNKNOWN
    else:  # pragma: no cover - a GPU machine reads a real GPU
        assert observation.details is not None


def test_gpu_check_refuses_a_fail_temperature_below_the_warning(tmp_path: Path) -> None:
    """temperature_fail_c must exceed temperature_warn_c; the error names both."""
    text = (
        '[[checks]]\nname = "gpus"\ntype = "gpu"\n'
        "temperature_warn_c = 90\ntemperature_fail_c = 80\n"
    )
    with pytest.raises(ConfigError, match=r"temperature_fail_c \(80\) must be above"):
        load_config(_write(tmp_path, text), environ={})
