"""Clients that keep sending chat completions through an OpenAI-compatible endpoint with the
official ``openai`` SDK, counting what failed and why (the demo's and benchmarks' traffic).

A request fails when the SDK raises, when a reply has no content, or when a stream ends
without its final chunk or carries an error event.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import openai
from openai.types.chat import ChatCompletionMessageParam

#: Failures kept in full.
MAX_SAMPLES = 5


@dataclass
class SdkTraffic:
    """``clients`` concurrent loops; ``streaming`` of them stream. Start, then ``await stop()``."""

    base_url: str
    model: str
    clients: int = 8
    streaming: int = 4
    max_tokens: int = 8
    api_key: str = "unused"
    sent: int = 0
    failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    #: The first few failures in full (kind, status and message): a count alone does not say
    #: which part failed.
    samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _client: openai.AsyncOpenAI | None = None

    def start(self) -> None:
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=60
        )
        self._tasks = [
            asyncio.create_task(self._loop(n < self.streaming), name=f"fleetwatch.traffic.{n}")
            for n in range(self.clients)
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()

    def snapshot(self) -> tuple[int, int]:
        """(sent, failed) so far."""
        return self.sent, self.failed

    async def _loop(self, streaming: bool) -> None:
        assert self._client is not None
        messages: list[ChatCompletionMessageParam] = [
            {"role": "user", "content": "Say something short."}
        ]
        while not self._stop.is_set():
            self.sent += 1
            started = time.perf_counter()
            detail = ""
            try:
                problem = await (self._stream(messages) if streaming else self._call(messages))
            except openai.OpenAIError as exc:
                problem, detail = type(exc).__name__, str(exc)
            if problem:
                self.failed += 1
                self.reasons[problem] = self.reasons.get(problem, 0) + 1
                if len(self.samples) < MAX_SAMPLES:
                    kind = "streamed" if streaming else "whole"
                    self.samples.append(f"{problem} ({kind}): {detail}"[:500])
            else:
                self.latencies.append(time.perf_counter() - started)

    async def _call(self, messages: list[ChatCompletionMessageParam]) -> str:
        assert self._client is not None
        reply = await self._client.chat.completions.create(
            model=self.model,
            messages=messages,
            max_tokens=self.max_tokens,
        )
        return "" if reply.choices and reply.choices[0].message.content else "empty reply"

    async def _stream(self, messages: list[ChatCompletionMessageParam]) -> str:
        assert self._client is not None
        stream = await self._client.chat.completions.create(
            model=self.model,
            messages=messages,
            max_tokens=self.max_tokens,
            stream=True,
        )
        finished = False
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].finish_reason:
                finished = True
        return "" if finished else "stream ended without a finish reason"
