"""A small, fast OpenAI-compatible server whose behaviour a test or benchmark sets.

It speaks ``/v1/chat/completions`` (streamed or not), ``/v1/completions``, ``/v1/embeddings``,
``/v1/models``, ``/health`` and ``/metrics`` like a real server, in microseconds, and can be
told to misbehave in the ways real servers do: answer 429 with ``Retry-After`` (busy), 503
(draining), stall before the first byte (hung), or drop the connection after the first chunk
(crashed mid-stream), or fail with 500: every request, or only the non-streamed ones (a
regression that a streamed health probe cannot see, for canary tests). It counts requests,
and requests whose client went away.

In-process: :class:`OpenAIBackend` (an async context manager). As its own process:
``python -m fleetwatch_testing.openai_backend --port P [--model M] [--token-delay S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from fleetwatch.lifecycle._app_server import AppServer

#: die-mid-stream resets the connection after the first chunk; error-mid-stream sends an error
#: event and [DONE] after it; eof-mid-stream ends the stream there, without a final event;
#: reset-after-finish sends every chunk, the last with its finish_reason, then resets.
MODES = (
    "ok",
    "busy",
    "draining",
    "fail",
    "fail-unary",
    "hang",
    "die-mid-stream",
    "error-mid-stream",
    "eof-mid-stream",
    "reset-after-finish",
)


#: Modes in which a stream breaks after its first chunk, on purpose.
def stream_chunk(path: str, model: str) -> dict[str, Any]:
    """One streamed chunk of "ok ", as chat completions or completions send it."""
    if path.endswith("chat/completions"):
        return {
            "id": "chunk",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": {"content": "ok "}, "finish_reason": None}],
        }
    return {
        "id": "chunk",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": "ok ", "finish_reason": None}],
    }


#: The finish_reason of a stream's last chunk, by mode (None: none is sent).
LAST_FINISH = {"ok": "length", "reset-after-finish": "stop"}
BREAKING_MODES = frozenset(
    {"die-mid-stream", "error-mid-stream", "eof-mid-stream", "reset-after-finish"}
)


@dataclass
class BackendState:
    """What the backend does and what it saw."""

    model: str = "test-model"
    mode: str = "ok"
    tokens: int = 4
    token_delay: float = 0.0
    retry_after: float = 1.0
    requests: int = 0
    completed: int = 0
    cancelled: int = 0
    in_flight: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    last_headers: dict[str, str] = field(default_factory=dict)
    last_body: dict[str, Any] = field(default_factory=dict)


class _Handlers:
    """The routes, over one :class:`BackendState`."""

    def __init__(self, state: BackendState) -> None:
        self.state = state

    @staticmethod
    def failed() -> Response:
        return JSONResponse(
            {"error": {"message": "internal error (on purpose)", "type": "server_error"}},
            status_code=500,
        )

    def misbehaving(self) -> Response | None:
        if self.state.mode == "busy":
            return JSONResponse(
                {"error": {"message": "busy", "type": "rate_limit_error"}},
                status_code=429,
                headers={"retry-after": f"{self.state.retry_after:g}"},
            )
        if self.state.mode == "fail":
            return self.failed()
        if self.state.mode == "draining":
            return JSONResponse(
                {"error": {"message": "draining", "type": "unavailable"}},
                status_code=503,
                headers={"retry-after": "1"},
            )
        return None

    async def generate(self, request: Request) -> Response:
        self.state.requests += 1
        path = request.url.path
        self.state.by_path[path] = self.state.by_path.get(path, 0) + 1
        self.state.last_headers = dict(request.headers)
        try:
            body = await request.json()
        except ClientDisconnect:
            self.state.cancelled += 1
            return Response(status_code=499)
        refused = self.misbehaving()
        if refused is None and self.state.mode == "fail-unary" and body.get("stream") is not True:
            refused = self.failed()
        if refused is not None:
            return refused
        if self.state.mode == "hang":
            await asyncio.sleep(3600)
        if path == "/v1/embeddings":
            self.state.completed += 1
            return JSONResponse(
                {
                    "object": "list",
                    "model": self.state.model,
                    "data": [{"index": 0, "embedding": [0.1] * 8}],
                }
            )
        self.state.last_body = body
        if body.get("stream") is True:
            options = body.get("stream_options")
            counted = isinstance(options, dict) and options.get("include_usage") is True
            return StreamingResponse(self.stream(path, counted), media_type="text/event-stream")
        self.state.in_flight += 1
        try:
            # Like llama.cpp, notice a client that went away while generating.
            for _ in range(self.state.tokens):
                await asyncio.sleep(self.state.token_delay)
                if self.state.token_delay and await request.is_disconnected():
                    self.state.cancelled += 1
                    return Response(status_code=499)
        finally:
            self.state.in_flight -= 1
        self.state.completed += 1
        text = "ok " * self.state.tokens
        usage = {
            "prompt_tokens": 5,
            "completion_tokens": self.state.tokens,
            "total_tokens": 5 + self.state.tokens,
        }
        if path == "/v1/completions":
            choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": "length"}
        else:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length",
            }
        return JSONResponse(
            {
                "id": f"cmpl-{self.state.requests}",
                "object": "chat.completion"
                if path.endswith("chat/completions")
                else "text_completion",
                "created": int(time.time()),
                "model": self.state.model,
                "choices": [choice],
                "usage": usage,
            }
        )

    async def stream(self, path: str, usage: bool = False) -> AsyncIterator[bytes]:
        self.state.in_flight += 1
        finished = False
        try:
            for n in range(self.state.tokens):
                if self.state.token_delay:
                    await asyncio.sleep(self.state.token_delay)
                chunk = stream_chunk(path, self.state.model)
                last = n == self.state.tokens - 1
                if last:
                    # As a real server ends a stream (cut at max tokens, when "ok"): the openai
                    # SDK's clients (loadgen) count a stream without one as failed.
                    chunk["choices"][0]["finish_reason"] = LAST_FINISH.get(self.state.mode)
                if last and self.state.mode == "reset-after-finish":
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                    raise ConnectionAbortedError("the backend died after its last chunk")
                yield f"data: {json.dumps(chunk)}\n\n".encode()
                if n == 0 and self.state.mode == "die-mid-stream":
                    raise ConnectionAbortedError("the backend died mid-stream (on purpose)")
                if n == 0 and self.state.mode == "error-mid-stream":
                    error = {"error": {"message": "failed (on purpose)", "type": "server_error"}}
                    yield f"data: {json.dumps(error)}\n\ndata: [DONE]\n\n".encode()
                    return
                if n == 0 and self.state.mode == "eof-mid-stream":
                    return
            if usage:  # as OpenAI sends it: one last event, no choices
                counts = {"prompt_tokens": 5, "completion_tokens": self.state.tokens}
                final = {"id": "chunk", "model": self.state.model, "choices": [], "usage": counts}
                yield f"data: {json.dumps(final)}\n\n".encode()
            yield b"data: [DONE]\n\n"
            finished = True
        finally:
            self.state.in_flight -= 1
            if finished:
                self.state.completed += 1
            elif self.state.mode not in BREAKING_MODES:
                self.state.cancelled += 1  # the client went away mid-stream

    async def models(self, request: Request) -> Response:
        del request
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": self.state.model, "object": "model", "owned_by": "fleetwatch"}],
            }
        )

    async def health(self, request: Request) -> Response:
        del request
        if self.state.mode in ("draining",):
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        del request
        return Response(
            f"# TYPE test:requests_running gauge\ntest:requests_running {self.state.in_flight}\n",
            media_type="text/plain",
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.generate, methods=["POST"]),
                Route("/v1/completions", self.generate, methods=["POST"]),
                Route("/v1/embeddings", self.generate, methods=["POST"]),
                Route("/v1/models", self.models),
                Route("/health", self.health),
                Route("/metrics", self.metrics),
            ]
        )


def openai_app(state: BackendState) -> Starlette:
    """The ASGI app over ``state`` (change ``state.mode`` at any time)."""
    return _Handlers(state).app()


class OpenAIBackend(AppServer):
    """The backend served in this process on a free loopback port."""

    def __init__(self, *, model: str = "test-model", port: int = 0, **state: Any) -> None:
        self.state = BackendState(model=model, **state)
        # A test server owes a hung request nothing at shutdown: cancel it after a second
        # instead of AppServer's ten (a "hang" test otherwise spends 10 s in teardown).
        super().__init__(openai_app(self.state), port=port, timeout_graceful_shutdown=1)


def main() -> None:
    parser = argparse.ArgumentParser(description="a fast OpenAI-compatible test server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default="test-model")
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--mode", choices=MODES, default="ok")
    args = parser.parse_args()
    state = BackendState(
        model=args.model, tokens=args.tokens, token_delay=args.token_delay, mode=args.mode
    )
    uvicorn.run(
        openai_app(state), host=args.host, port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
