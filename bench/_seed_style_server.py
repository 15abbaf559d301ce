"""The seed lesson's design, for comparison: every /health request re-runs every check.

``python bench/_seed_style_server.py CONFIG PORT`` serves ``/health`` (runs all checks, then
answers) and ``/executions`` (how many check executions so far) until SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fleetwatch.config import load_config
from fleetwatch.health import HealthScheduler, evaluate
from fleetwatch.lifecycle import AppServer, wait_for_stop_signal


async def serve(config_path: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    config = load_config(config_path)
    async with httpx.AsyncClient(trust_env=False) as http:
        scheduler = HealthScheduler(config.build(http))

        async def health(request: Request) -> JSONResponse:
            verdict = evaluate(await scheduler.run_all(), None)
            return JSONResponse({"status": verdict.status.value})

        async def executions(request: Request) -> JSONResponse:
            return JSONResponse({"executions": scheduler.executions})

        app = Starlette(routes=[Route("/health", health), Route("/executions", executions)])
        async with AppServer(app, port=port):
            await wait_for_stop_signal()
        await scheduler.aclose()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
