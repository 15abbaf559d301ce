"""The seed's integrated LLM service, as fleetwatch runs it: ``serve_llm_app``.

A FastAPI app with an OpenAI-style ``/v1/chat/completions`` (streamed or not) and a ``/slow``
endpoint, registered with a fleetwatch registry, health-checked, drained on SIGTERM without
dropping a request. With ``--llm URL`` it forwards generations to a real OpenAI-compatible
server (``fleetwatch demo-llm`` gives one) and checks it; without, it answers "ok" tokens.

    FLEETWATCH_TOKEN=... python examples/llm_api.py --port 8000 --registry http://127.0.0.1:8760
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from fleetwatch import serve_llm_app
from fleetwatch.health import CheckSettings
from fleetwatch.health.checks import SystemCheck
from fleetwatch.llm import LlmServer, LlmServerSettings


def build_app(llm_url: str | None, token_delay: float) -> FastAPI:
    app = FastAPI(title="llm-api")
    upstream = httpx.AsyncClient(timeout=120) if llm_url else None

    async def fake_tokens(count: int) -> AsyncIterator[str]:
        for _ in range(count):
            await asyncio.sleep(token_delay)
            yield "ok "

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        if upstream is not None:
            reply = await upstream.post(f"{llm_url}/v1/chat/completions", json=body)
            return JSONResponse(reply.json(), status_code=reply.status_code)
        count = int(body.get("max_tokens", 4))
        if body.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                async for token in fake_tokens(count):
                    chunk = {"choices": [{"index": 0, "delta": {"content": token}}]}
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        text = "".join([t async for t in fake_tokens(count)])
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}

    @app.get("/slow")
    async def slow(seconds: float = 1.0, parts: int = 4) -> StreamingResponse:
        """A streamed reply that takes ``seconds``, in ``parts`` pieces."""

        async def pieces() -> AsyncIterator[bytes]:
            for n in range(parts):
                await asyncio.sleep(seconds / parts)
                yield f"part {n + 1}/{parts}\n".encode()

        return StreamingResponse(pieces(), media_type="text/plain")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--registry", default=None)
    parser.add_argument("--service", default="llm-api")
    parser.add_argument("--instance-id", default=None)
    parser.add_argument("--llm", default=None, help="an OpenAI-compatible server to forward to")
    parser.add_argument("--token-delay", type=float, default=0.01)
    parser.add_argument("--propagation-delay", type=float, default=2.0)
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    checks: list[Any] = [(SystemCheck(), CheckSettings("host", interval=5.0))]
    if args.llm:
        server = LlmServer(LlmServerSettings(base_url=args.llm, kind="openai"))
        checks += server.checks()
    report = asyncio.run(
        serve_llm_app(
            build_app(args.llm, args.token_delay),
            service=args.service,
            port=args.port,
            registry=args.registry,
            instance_id=args.instance_id,
            checks=checks,
            propagation_delay=args.propagation_delay,
            drain_timeout=args.drain_timeout,
        )
    )
    print(f"drained: {report}", flush=True)


if __name__ == "__main__":
    main()
