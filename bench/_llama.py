"""Fresh llama.cpp servers for the benchmarks that need a real LLM server."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import terminate
from fleetwatch_testing import free_port
from fleetwatch_testing.llama import llama_server_argv


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
    """GET (or POST ``body`` to) a loopback URL; the JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
        return json.load(reply)


def healthy(port: int) -> bool:
    """Whether the llama-server on ``port`` answers ``/health`` with ok (its model loaded)."""
    try:
        return bool(http_json(f"http://127.0.0.1:{port}/health", timeout=1.0)["status"] == "ok")
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return False


@dataclass(frozen=True)
class RunningLlama:
    """One started llama-server."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def llama_fleet(count: int, *, parallel: int, context: int) -> Iterator[list[RunningLlama]]:
    """``count`` fresh llama-servers (``parallel`` slots of ``context`` tokens, one thread),
    ready and warmed up; stopped on any exit."""
    ports = [free_port() for _ in range(count)]
    with (
        tempfile.TemporaryDirectory(prefix="fleetwatch-bench-llama-") as folder,
        contextlib.ExitStack() as stack,
    ):
        servers = []
        for port in ports:
            log = stack.enter_context((Path(folder) / f"llama-{port}.log").open("wb"))
            argv = llama_server_argv(port, threads=1, parallel=parallel, context=context)
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            stack.callback(terminate, process)
            servers.append(RunningLlama(port, process))
        deadline = time.monotonic() + 120
        for server in servers:
            while not healthy(server.port):
                if server.process.poll() is not None or time.monotonic() > deadline:
                    log_text = (Path(folder) / f"llama-{server.port}.log").read_text(
                        errors="replace"
                    )
                    raise RuntimeError(
                        f"llama-server on {server.port} did not start: {log_text[-500:]}"
                    )
                time.sleep(0.2)
        for server in servers:
            # One-time costs of a first request (allocations, page-in) are no router's doing.
            # A raw prompt, outside the chat template, leaves no prefix any turn could share.
            http_json(f"{server.url}/completion", {"prompt": "Hi", "n_predict": 1})
        yield servers
