"""What the router knows of one request: its model, tenant, session key and prompt blocks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Characters per prompt block (about 64 tokens of English text at ~4 characters a token).
DEFAULT_BLOCK_CHARS = 256


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """The routing-relevant parts of a request (nothing here is sent anywhere)."""

    model: str | None = None
    tenant: str | None = None
    #: Pins a conversation to an instance (a session header's value, or the client's token).
    session: str | None = None
    #: Chained hashes of the rendered prompt's blocks (see :func:`prompt_blocks`).
    blocks: tuple[int, ...] = ()


def render_prompt(payload: Mapping[str, Any]) -> str:
    """The prompt as the server will see it, in order: each chat message's role and text, or
    a completion's ``prompt``. Only the order and content matter, not the chat template."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        for message in messages:
            if not isinstance(message, dict):
                continue
            parts.append(str(message.get("role", "")))
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):  # content parts: text kept, images by reference
                parts.extend(
                    str(p.get("text") or p.get("image_url") or "")
                    for p in content
                    if isinstance(p, dict)
                )
        return "\x1e".join(parts)
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\x1e".join(prompt)
    return ""


def prompt_blocks(text: str, block_chars: int = DEFAULT_BLOCK_CHARS) -> tuple[int, ...]:
    """Chained hashes of ``text``'s full blocks: block *n*'s hash covers blocks 0..n, so two
    prompts share block *n*'s hash only if they share everything up to its end (as llm-d's
    and vLLM's prefix caches key their KV blocks). A trailing partial block is left out: the
    server cannot have cached a block that this request is the first to complete."""
    hashes: list[int] = []
    previous = 0
    for start in range(0, len(text) - block_chars + 1, block_chars):
        previous = hash((previous, text[start : start + block_chars]))
        hashes.append(previous)
    return tuple(hashes)
