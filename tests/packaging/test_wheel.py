"""What the built wheel holds, and the core running from it in a venv without any extra."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What only tests, demos and benchmarks use; none of it may ship.
HARNESS_WORDS = ("sandbox", "fuzz", "loadgen", "llama_build", "artifacts", "demo", "testing")
EXTRAS = {"redis", "postgres", "gateway", "gpu", "fast", "all", "dev"}
PIP = ["-m", "pip", "--disable-pip-version-check", "--quiet"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fleetwatch's wheel, built from this checkout as a user would (pip, build isolation)."""
    out = tmp_path_factory.mktemp("wheel")
    # From a copy of what the build reads: setuptools keeps a build/ folder in the tree it
    # builds, and files left there by an older layout would end up in the wheel.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    subprocess.run(
        [sys.executable, *PIP, "wheel", "--no-deps", str(source), "-w", str(out)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("fleetwatch-*.whl")
    return built


@pytest.fixture(scope="module")
def core_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding the wheel and its core dependencies (pinned by the lock), no extra."""
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), *PIP, "install", "-c", str(ROOT / "requirements.lock"), str(wheel)],
        check=True,
        timeout=600,
    )
    return python


def test_the_wheel_ships_the_product_and_no_harness(wheel: Path) -> None:
    """Every file in the wheel is fleetwatch's package or its metadata; no test server,
    fuzzer, load generator, llama.cpp build or demo is among them; the extras are declared
    and the openai SDK is not a dependency."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert all(n.startswith(("fleetwatch/", "fleetwatch-0.1.0.dist-info/")) for n in names)
    assert [n for n in names if any(word in n for word in HARNESS_WORDS)] == []
    for part in ("health", "registry", "discovery", "agent", "gateway", "cli"):
        assert f"fleetwatch/{part}/__init__.py" in names
    assert "fleetwatch/registry_api/ui/index.html" in names
    lines = metadata.decode().splitlines()
    assert {line.split(": ", 1)[1] for line in lines if line.startswith("Provides-Extra")} == EXTRAS
    required = [line for line in lines if line.startswith("Requires-Dist")]
    assert not [line for line in required if "openai" in line and "extra == " not in line]
    assert not [line for line in required if "redis" in line and "extra == " not in line]


@pytest.mark.serial
def test_the_core_runs_without_any_extra(core_venv: Path) -> None:
    """In a venv with the core only: the registry (memory store), self-registration, discovery
    and a health check work, and no optional package is installed."""
    done = subprocess.run(
        [str(core_venv), str(Path(__file__).with_name("core_scenario.py"))],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["discovered"] == ["core-1"]
    assert seen["health"] == "healthy"
    assert seen["importable"] == []


@pytest.mark.serial
@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["serve", "--store", "redis://127.0.0.1:1/0", "--port", "0"], "redis"),
        (["gateway", "--registry", "http://127.0.0.1:1", "--service", "llm"], "gateway"),
    ],
)
def test_a_missing_extra_names_the_extra_to_install(
    core_venv: Path, argv: list[str], extra: str
) -> None:
    """A feature whose extra is not installed exits 64 with one line naming the extra and the
    pip command that adds it."""
    done = subprocess.run(
        [str(core_venv), "-m", "fleetwatch", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"FLEETWATCH_TOKEN": "t", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 64
    assert f"pip install 'fleetwatch[{extra}]'" in done.stderr
    assert f"pip install '.[{extra}]'" in done.stderr
    assert done.stderr.count("error:") == 1


@pytest.mark.serial
def test_help_works_in_a_core_install_and_names_what_needs_an_extra(core_venv: Path) -> None:
    """``fleetwatch --help`` without extras lists every command and exits 0; the gateway's
    line says which extra it needs."""
    done = subprocess.run(
        [str(core_venv), "-m", "fleetwatch", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    for name in ("agent", "check", "gateway", "rollout", "serve", "status"):
        assert f" {name} " in done.stdout
    gateway_line = next(line for line in done.stdout.splitlines() if " gateway " in line)
    assert "needs the 'gateway' extra" in gateway_line
