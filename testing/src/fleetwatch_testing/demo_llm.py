"""``fleetwatch demo-llm``: serve SmolLM2-135M with llama.cpp, for trying fleetwatch out."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from fleetwatch_testing.llama import llama_server_argv
from fleetwatch_testing.llama_build import ArtifactError, ensure_llama_server, ensure_model


def demo_llm_command(
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    threads: Annotated[int, typer.Option(help="CPU threads for generation.", min=1)] = 2,
    parallel: Annotated[int, typer.Option(help="Requests served at once (slots).", min=1)] = 2,
) -> None:
    """Serve SmolLM2-135M-Instruct with llama.cpp's llama-server (built and cached on first use).

    An OpenAI-compatible server with /health and /metrics, for trying the agent and the checks
    without an LLM server of your own.
    """
    try:
        ensure_model()
        ensure_llama_server()
    except ArtifactError as exc:
        raise typer.Exit(_fail(str(exc))) from None
    argv = llama_server_argv(port, host=host, threads=threads, parallel=parallel)
    print(f"==> serving SmolLM2-135M on http://{host}:{port} (Ctrl-C stops)", file=sys.stderr)
    sys.stdout.flush()
    os.execv(argv[0], argv)  # noqa: S606 - the server replaces us: signals reach it directly


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1
