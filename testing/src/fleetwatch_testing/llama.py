"""A throwaway llama.cpp ``llama-server`` serving SmolLM2-135M on loopback.

The binary and the model come from :mod:`fleetwatch_testing.llama_build` (built and cached on first
use). The server runs with ``--metrics`` (its Prometheus series) and ``--slots``, on one CPU
thread per server so that several fit on a small machine.
"""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.request

from fleetwatch_testing._process import LocalServer
from fleetwatch_testing.llama_build import MODEL_NAME, ensure_llama_server, ensure_model
from fleetwatch_testing.ports import free_port

#: Enough for the probe's prompt and a short reply, small enough to start fast.
DEFAULT_CONTEXT = 512


def llama_server_template(
    *, threads: int = 1, parallel: int = 2, context: int = DEFAULT_CONTEXT
) -> str:
    """The llama-server command line with ``{port}`` left open (for ``fleetwatch rollout``)."""
    argv = llama_server_argv(0, threads=threads, parallel=parallel, context=context)
    argv[argv.index("--port") + 1] = "{port}"
    return shlex.join(argv)


def llama_server_argv(
    port: int,
    *,
    host: str = "127.0.0.1",
    threads: int = 1,
    parallel: int = 2,
    context: int = DEFAULT_CONTEXT,
) -> list[str]:
    """The command line that serves SmolLM2 with llama-server on ``host:port``."""
    return [
        str(ensure_llama_server()),
        "--model", str(ensure_model()),
        "--alias", MODEL_NAME,
        "--host", host,
        "--port", str(port),
        "--threads", str(threads),
        "--threads-http", "2",
        "--parallel", str(parallel),
        "--ctx-size", str(context * parallel),
        "--metrics",
        "--slots",
        "--no-webui",
    ]  # fmt: skip


class LlamaServer(LocalServer):
    """``with LlamaServer() as llm: llm.url`` gives a ready SmolLM2 server on a free port."""

    stop_grace = 5.0

    def __init__(self, *, port: int | None = None, threads: int = 1, parallel: int = 2) -> None:
        super().__init__(prefix="fleetwatch-llama-", log_name="llama-server.log")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._argv = llama_server_argv(self.port, threads=threads, parallel=parallel)
        self.model = MODEL_NAME

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0, *, wait_ready: bool = True) -> None:
        """Start serving; with ``wait_ready``, wait until ``/health`` says ok (model loaded)."""
        self._process.spawn(self._argv)
        if wait_ready:
            self.start_wait(timeout)

    def start_wait(self, timeout: float = 60.0) -> None:
        """Wait until the started server's ``/health`` says ok (its model is loaded)."""
        self._await_ready(self.healthy, timeout, f"llama-server on port {self.port}")

    def healthy(self) -> bool:
        """Whether ``GET /health`` answers 200 ``{"status": "ok"}``."""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1.0) as reply:  # noqa: S310
                return bool(json.load(reply).get("status") == "ok")
        except (OSError, ValueError, urllib.error.URLError):
            return False
