"""Launch profiles decide what a host runs: every order value is checked, none reaches a shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwatch.config._host import load_host_config
from fleetwatch.errors import ConfigError
from fleetwatch.hosts import LaunchProfile, OrderRefused, ParamRule
from fleetwatch.hosts._profiles import find_profile


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """/models-like folder with one model, and a file outside it."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "smol.gguf").write_text("model")
    (tmp_path / "secret.gguf").write_text("not yours")
    (folder / "escape.gguf").symlink_to(tmp_path / "secret.gguf")
    return folder


def llama(models: Path) -> LaunchProfile:
    return LaunchProfile(
        name="llama",
        command=("llama-server", "-m", "{model}", "-c", "{ctx}", "--port", "{port}"),
        kind="llamacpp",
        params={
            "model": ParamRule("model", path_under=str(models), suffix=".gguf"),
            "ctx": ParamRule("ctx", one_of=("2048", "4096"), default="2048"),
        },
    )


def test_a_valid_order_fills_the_argument_list(models: Path) -> None:
    """Values become whole arguments; {port} is left for the agent, {address} is the host's."""
    profile = LaunchProfile(
        name="p",
        command=("server", "--model={model}", "--host", "{address}", "--port", "{port}"),
        params={"model": ParamRule("model", path_under=str(models))},
    )
    command = profile.render({"model": "smol.gguf"}, address="10.0.0.7")
    assert command == (
        "server",
        f"--model={models / 'smol.gguf'}",
        "--host",
        "10.0.0.7",
        "--port",
        "{port}",
    )


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"model": "../secret.gguf"}, "outside"),
        ({"model": "escape.gguf"}, "outside"),
        ({"model": "smol.gguf;rm -rf /"}, "not allowed"),
        ({"model": "$(reboot)"}, "not allowed"),
        ({"model": "smol.gguf", "ctx": "999999"}, "not one of"),
        ({"model": "smol.gguf", "threads": "8"}, "has no parameter"),
        ({"model": "missing.gguf"}, "is not a file"),
        ({"model": "/etc/passwd"}, "outside"),
        ({"model": ""}, "not allowed"),
        ({"model": "."}, "does not end with"),
        ({}, "required"),
    ],
)
def test_values_outside_the_profile_are_refused(
    models: Path, params: dict[str, str], says: str
) -> None:
    """'..', a symlink pointing out, shell metacharacters, unknown values: each refused."""
    with pytest.raises(OrderRefused, match=says):
        llama(models).render(params, address="10.0.0.7")


def test_an_unknown_profile_is_refused_naming_those_allowed(models: Path) -> None:
    """An order cannot name a command: only a profile, and the error lists them."""
    with pytest.raises(OrderRefused, match=r"unknown launch profile 'bash'.*llama"):
        find_profile({"llama": llama(models)}, "bash")


def test_an_absolute_path_inside_the_folder_is_allowed(models: Path) -> None:
    """An absolute path is judged by where it really is, like a relative one."""
    command = llama(models).render({"model": str(models / "smol.gguf")}, address="a")
    assert str(models / "smol.gguf") in command


def test_integer_parameters_stay_in_range() -> None:
    """A whole number inside [min, max] passes; anything else is refused."""
    rule = ParamRule("threads", integer=(1, 16))
    assert rule.check("8") == "8"
    for bad in ("0", "17", "-1", "8.5"):
        with pytest.raises(OrderRefused):
            rule.check(bad)


def test_host_config_reads_profiles_and_names_bad_fields(tmp_path: Path, models: Path) -> None:
    """host.toml gives the profiles; a command using an undefined parameter is an error."""
    good = tmp_path / "host.toml"
    good.write_text(
        f"""
[host]
id = "h1"
address = "10.0.0.7"
capacity = 2
[[profiles]]
name = "llama"
command = ["llama-server", "-m", "{{model}}", "--port", "{{port}}"]
kind = "llamacpp"
[profiles.params]
model = {{ path_under = "{models}", suffix = ".gguf" }}
"""
    )
    config = load_host_config(good)
    assert config.host.capacity == 2
    assert list(config.launch_profiles()) == ["llama"]
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[host]\nid = "h1"\naddress = "a"\n[[profiles]]\nname = "x"\ncommand = ["run", "{what}"]\n'
    )
    with pytest.raises(ConfigError, match="what"):
        load_host_config(bad)
    port = tmp_path / "port.toml"
    port.write_text(
        '[host]\nid = "h1"\naddress = "a"\n[[profiles]]\nname = "x"\ncommand = ["run"]\n'
        '[profiles.params]\nport = { one_of = ["1"] }\n'
    )
    with pytest.raises(ConfigError, match="filled by the host"):
        load_host_config(port)
