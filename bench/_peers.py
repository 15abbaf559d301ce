"""Peer routers the benchmarks compare fleetwatch with: sglang-router, vllm-router and the
LiteLLM proxy, each installed by pip into its own bench-only venv and run as a real process on
a free loopback port in front of a list of backend base URLs.

The venvs live under the fleetwatch cache (``$FLEETWATCH_CACHE_DIR``, else
``~/.cache/fleetwatch``) in ``bench-peers-venv/<peer>``, never in the project's own venv or its
lock file: these are measuring instruments, not dependencies. One venv per peer, because the
three pin different versions of the same libraries (pydantic, fastapi, aiohttp) and a conflict
between two of them must not take the third down. A second run finds each venv stamped with its
requirement and installs nothing.

A peer that cannot be installed or started raises :class:`PeerUnavailable` with the reason; the
benchmarks record it and go on.

What the peers need from a worker (checked against llama.cpp's ``llama-server`` and
``fleetwatch_testing.openai_backend``):

* sglang-router 0.3.x (``python -m sglang_router.launch_router``): ``GET /health`` for its
  health checks. At registration it also asks ``/server_info``, ``/get_server_info``,
  ``/model_info`` and ``/get_model_info``; a 404 there only logs a warning and the worker is
  registered under the model id ``unknown``, which serves every request.
* vllm-router 0.1.17 (``vllm-router``): ``GET /health``; it waits until every worker answers it
  before it listens. Its ``consistent_hash`` policy keys on the ``X-Session-ID`` header first
  (then ``X-User-ID``, ``X-Tenant-ID``, ``X-Request-ID``, ..., the body's ``user``, and lastly a
  hash of the whole body), so a session header needs no flag.
* LiteLLM proxy (``litellm --config``): only ``POST /v1/chat/completions`` (an ``openai/``
  model with ``api_base``); no health checks of its own unless configured.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import progress
from fleetwatch_testing import free_port
from fleetwatch_testing.llama_build import cache_root


@dataclass(frozen=True)
class PeerSpec:
    """A peer router: its pip requirement and the program that proves it installed."""

    name: str
    requirement: str
    #: A console script or module check run after the install (``bin/<program>``).
    program: str


#: Pinned versions. LiteLLM 1.106.12 is the newest whose ``[proxy]`` extra resolves from PyPI:
#: 1.108 and 1.109 pin ``litellm-proxy-extras`` releases that were never uploaded there, and
#: 1.110 needs a ``litellm-proxy`` package that is not on PyPI at all.
PEERS: dict[str, PeerSpec] = {
    spec.name: spec
    for spec in (
        PeerSpec("sglang-router", "sglang-router==0.3.2", "sglang-router"),
        PeerSpec("vllm-router", "vllm-router==0.1.17", "vllm-router"),
        PeerSpec("litellm", "litellm[proxy]==1.106.12", "litellm"),
    )
}

#: Longest a pip install of one peer may take (LiteLLM's proxy extra is the big one).
INSTALL_TIMEOUT = 900.0
#: Longest a started peer may take to answer (LiteLLM imports for about 10 s on 2 cores).
START_TIMEOUT = 90.0
STAMP = ".fleetwatch-requirement"


class PeerUnavailable(RuntimeError):
    """A peer could not be installed or started; the message says why."""


@dataclass(frozen=True)
class PeerInstall:
    """Where an installed peer lives."""

    spec: PeerSpec
    venv: Path

    @property
    def bin(self) -> Path:
        """The venv's ``bin`` folder."""
        return self.venv / "bin"


@dataclass(frozen=True)
class RunningPeer:
    """A started peer: its label, loopback port, process, log file, and the headers every
    client request must carry (LiteLLM's key)."""

    label: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"


def peers_root() -> Path:
    """The folder that holds one venv per peer."""
    return cache_root() / "bench-peers-venv"


def _tail(path: Path, lines: int = 5, width: int = 300) -> str:
    """The last lines of a log, for an error message."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line[:width] for line in text[-lines:])


def ensure_peer(name: str) -> PeerInstall:
    """The peer's venv with its pinned requirement installed (quick when it already is).

    Raises :class:`PeerUnavailable` with pip's last lines when the install fails.
    """
    spec = PEERS[name]
    venv = peers_root() / name
    install = PeerInstall(spec, venv)
    stamp = venv / STAMP
    stamped = stamp.is_file() and stamp.read_text().strip() == spec.requirement
    if stamped and (install.bin / spec.program).exists():
        return install
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / f"{name}-install.log"
    progress(f"installing {spec.requirement} into {venv} (log: {log})")
    started = time.monotonic()
    with log.open("wb") as out:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", spec.requirement],
        ]
        for argv in steps:
            try:
                done = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise PeerUnavailable(f"{spec.requirement}: install timed out ({exc})") from exc
            if done.returncode != 0:
                raise PeerUnavailable(
                    f"{spec.requirement}: {argv[2]} {argv[3]} failed ({done.returncode}): "
                    f"{_tail(log, 3)}"
                )
    stamp.write_text(spec.requirement + "\n")
    progress(f"installed {spec.requirement} in {time.monotonic() - started:.0f} s")
    return install


def ensure_peers(names: list[str]) -> dict[str, PeerInstall | str]:
    """Each named peer's install, or the reason it could not be installed (never raises)."""
    found: dict[str, PeerInstall | str] = {}
    for name in names:
        try:
            found[name] = ensure_peer(name)
        except PeerUnavailable as exc:
            progress(f"peer {name} unavailable: {exc}")
            found[name] = str(exc)
    return found


def installed_versions(installs: dict[str, PeerInstall | str]) -> dict[str, str]:
    """The requirement installed for each peer, or why it is missing (for the result)."""
    return {
        name: got.spec.requirement if isinstance(got, PeerInstall) else f"unavailable: {got}"
        for name, got in installs.items()
    }


def _get_json(url: str, headers: dict[str, str] | None = None, timeout: float = 2.0) -> Any:
    """``GET url`` as JSON, or None on any failure (for readiness probes)."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            return json.load(reply) if reply.status == 200 else None
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the peer's process group (LiteLLM and uvicorn may fork), SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def _serve(
    label: str,
    argv: list[str],
    port: int,
    ready: Callable[[str], bool],
    *,
    folder: Path,
    env: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[RunningPeer]:
    """Run ``argv`` (its output to a log in ``folder``) until ``ready(url)``; stop it after.

    Raises :class:`PeerUnavailable` if it exits or is not ready within START_TIMEOUT.
    """
    log = folder / "peer.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, so _stop reaches its children
        )
    peer = RunningPeer(label, port, process, log, headers or {})
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready(peer.url):
            if process.poll() is not None:
                raise PeerUnavailable(
                    f"{label} exited with code {process.returncode}: {_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise PeerUnavailable(f"{label} not ready in {START_TIMEOUT:g} s: {_tail(log)}")
            time.sleep(0.25)
        progress(f"{label} ready on {peer.url}")
        yield peer
    finally:
        _stop(process)


@contextlib.contextmanager
def sglang_router(backends: list[str], policy: str) -> Iterator[RunningPeer]:
    """sglang-router with ``policy`` (``cache_aware``, ``round_robin``, ...) over ``backends``.

    Ready once its ``/workers`` lists every backend as healthy: it listens before its
    registration workflow has added them, and answers 503 until then.
    """
    peer = ensure_peer("sglang-router")
    port = free_port()
    argv = [
        str(peer.bin / "python"), "-m", "sglang_router.launch_router",
        "--host", "127.0.0.1", "--port", str(port),
        "--worker-urls", *backends,
        "--policy", policy,
        # Its metrics server otherwise binds 0.0.0.0:29000, which two runs would share.
        "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
        "--log-level", "warn",
    ]  # fmt: skip

    def ready(url: str) -> bool:
        workers = _get_json(f"{url}/workers")
        if not isinstance(workers, dict):
            return False
        listed = workers.get("workers") or []
        return len(listed) == len(backends) and all(w.get("is_healthy") for w in listed)

    label = f"sglang-router {policy}"
    with (
        tempfile.TemporaryDirectory(prefix="fleetwatch-sglang-") as folder,
        _serve(label, argv, port, ready, folder=Path(folder)) as running,
    ):
        yield running


@contextlib.contextmanager
def vllm_router(backends: list[str], policy: str) -> Iterator[RunningPeer]:
    """vllm-router with ``policy`` (``cache_aware``, ``consistent_hash``, ``round_robin``, ...).

    It waits for every worker's ``/health`` before it listens, so an answer on ``/v1/models``
    means ready. ``consistent_hash`` keys on the ``X-Session-ID`` header by default.
    """
    peer = ensure_peer("vllm-router")
    port = free_port()
    argv = [
        str(peer.bin / "vllm-router"),
        "--host", "127.0.0.1", "--port", str(port),
        "--worker-urls", *backends,
        "--policy", policy,
        "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
        "--log-level", "warning",
    ]  # fmt: skip

    def ready(url: str) -> bool:
        return _get_json(f"{url}/v1/models") is not None

    label = f"vllm-router {policy}"
    with (
        tempfile.TemporaryDirectory(prefix="fleetwatch-vllm-router-") as folder,
        _serve(label, argv, port, ready, folder=Path(folder)) as running,
    ):
        yield running


def litellm_config(backends: list[str], model: str, strategy: str, master_key: str) -> str:
    """A LiteLLM proxy config: one ``model_list`` deployment per backend, all under ``model``.

    The proxy refuses to start without a master key (1.106 on), so clients send one.
    """
    deployments = "".join(
        textwrap.dedent(
            f"""\
              - model_name: {json.dumps(model)}
                litellm_params:
                  model: {json.dumps("openai/" + model)}
                  api_base: {json.dumps(base.rstrip("/") + "/v1")}
                  api_key: "none"
            """
        )
        for base in backends
    )
    return (
        "model_list:\n"
        + deployments
        + textwrap.dedent(
            f"""\
            router_settings:
              routing_strategy: {strategy}
            general_settings:
              master_key: {json.dumps(master_key)}
            litellm_settings:
              telemetry: false
            """
        )
    )


@contextlib.contextmanager
def litellm_proxy(
    backends: list[str], model: str, strategy: str = "least-busy"
) -> Iterator[RunningPeer]:
    """The LiteLLM proxy with ``router_settings.routing_strategy`` = ``strategy``
    (``least-busy``, ``simple-shuffle``, ...), one worker process.

    ``LITELLM_OFFLINE_MODE`` and ``LITELLM_LOCAL_MODEL_COST_MAP`` keep it from fetching its
    model cost map from the internet at start: only loopback traffic here.
    """
    peer = ensure_peer("litellm")
    port = free_port()
    key = "sk-" + secrets.token_urlsafe(24)  # a fresh one per start: not a known weak key
    headers = {"Authorization": f"Bearer {key}"}
    with tempfile.TemporaryDirectory(prefix="fleetwatch-litellm-") as folder:
        config = Path(folder) / "config.yaml"
        config.write_text(litellm_config(backends, model, strategy, key))
        argv = [
            str(peer.bin / "litellm"), "--config", str(config),
            "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1",
        ]  # fmt: skip
        env = {
            "LITELLM_OFFLINE_MODE": "true",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "PYTHONUNBUFFERED": "1",
        }

        def ready(url: str) -> bool:
            models = _get_json(f"{url}/v1/models", headers)
            return isinstance(models, dict) and bool(models.get("data"))

        label = f"litellm {strategy}"
        with _serve(
            label, argv, port, ready, folder=Path(folder), env=env, headers=headers
        ) as running:
            yield running


def main() -> None:
    """``python bench/_peers.py``: install every peer (or say why one cannot be)."""
    for name, got in installed_versions(ensure_peers(list(PEERS))).items():
        print(f"{name}: {got}")


if __name__ == "__main__":
    main()
