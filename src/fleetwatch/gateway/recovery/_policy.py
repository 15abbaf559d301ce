"""Which streamed requests the gateway may continue on another instance, and with what bounds.

A continuation is the same reply only when the first instance would have produced it too:
greedy decoding (temperature 0, or top_k 1) on the same model. A sampled request continued
elsewhere gets a plausible reply, not the one it would have had, so it is recovered only on
the routes configured for it. Requests whose reply the gateway cannot splice token by token
(tool calls, structured output, log-probabilities, several choices, images) are never
continued: they end with the error event, as before, and are counted as not recoverable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
#: Routes whose streams can be continued.
ROUTES = frozenset({CHAT, COMPLETIONS})
#: Server kinds the gateway knows how to continue a generation on (instance metadata
#: ``kind``, which fleetwatch's agent registers): llama.cpp takes a prompt of token ids on
#: ``/completion`` and renders chat templates on ``/apply-template``.
CONTINUABLE_KINDS = frozenset({"llamacpp"})
DEFAULT_ATTEMPTS = 2
#: After the first token, no token for this long is a hung server. A CPU llama.cpp busy
#: with another slot's long prompt can pause a stream for seconds; a GPU server far less.
DEFAULT_INTER_TOKEN_TIMEOUT_S = 15.0

#: Request fields that make a reply impossible to continue faithfully, with why.
_BLOCKING_FIELDS = (
    ("tools", "tool calls"),
    ("tool_choice", "tool calls"),
    ("functions", "tool calls"),
    ("function_call", "tool calls"),
    ("grammar", "a grammar"),
    ("json_schema", "a JSON schema"),
    ("logprobs", "logprobs"),
    ("top_logprobs", "logprobs"),
    ("n_probs", "logprobs"),
    ("echo", "echo"),
    ("suffix", "a suffix (fill-in-the-middle)"),
)


@dataclass(frozen=True, slots=True)
class RecoverySettings:
    """How the gateway continues streams whose server broke after the first token."""

    enabled: bool = True
    #: Continuations per request, each on another instance (the first try is not counted).
    attempts: int = DEFAULT_ATTEMPTS
    inter_token_timeout: float = DEFAULT_INTER_TOKEN_TIMEOUT_S
    #: Routes on which sampled (temperature > 0) requests are continued too.
    sampled_routes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0 <= self.attempts <= 5:
            raise ValueError(f"recovery attempts must be 0-5, got {self.attempts}")
        if not self.inter_token_timeout > 0:
            raise ValueError(
                f"inter_token_timeout must be > 0 seconds, got {self.inter_token_timeout}"
            )
        unknown = sorted(self.sampled_routes - ROUTES)
        if unknown:
            raise ValueError(
                f"sampled_routes: {unknown[0]!r} is not a route that streams text; "
                f"allowed: {', '.join(sorted(ROUTES))}"
            )


#: Penalties on what was generated, and their neutral values: the continuing server does
#: not count the tokens before the seam, so its reply would differ.
_PENALTIES = (
    ("presence_penalty", 0),
    ("frequency_penalty", 0),
    ("repeat_penalty", 1),
    ("dry_multiplier", 0),
)


def greedy(payload: Mapping[str, Any]) -> bool:
    """Whether the request decodes greedily with no penalty on what it generated: every
    instance of a model continues it with the text one instance would have produced."""
    for name, neutral in _PENALTIES:
        if payload.get(name) not in (None, neutral):
            return False
    temperature, top_k = payload.get("temperature"), payload.get("top_k")
    number = temperature if isinstance(temperature, int | float) else None
    if number is not None and not isinstance(number, bool) and number <= 0:
        return True
    return isinstance(top_k, int) and not isinstance(top_k, bool) and top_k == 1


def unrecoverable(path: str, payload: Mapping[str, Any], settings: RecoverySettings) -> str | None:
    """Why this request's stream cannot be continued elsewhere; None when it can."""
    if not settings.enabled or settings.attempts == 0:
        return "recovery is off"
    if path not in ROUTES:
        return f"{path} replies are not continued"
    problem = _shape_problem(path, payload)
    if problem is not None:
        return problem
    if not greedy(payload) and path not in settings.sampled_routes:
        return (
            "the request is sampled (temperature > 0) or penalizes repetition, and this route "
            "recovers greedy ones"
        )
    return None


def _shape_problem(path: str, payload: Mapping[str, Any]) -> str | None:
    """What in the request keeps its reply from being spliced token by token."""
    for name, why in _BLOCKING_FIELDS:
        value = payload.get(name)
        if value not in (None, False, [], 0):
            return f"the request asks for {why}"
    response_format = payload.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") not in (None, "text"):
        return "the request asks for structured output (response_format)"
    for name in ("n", "best_of"):
        count = payload.get(name)
        if isinstance(count, int) and count > 1:
            return f"the request asks for several choices ({name}={count})"
    if path == CHAT and not _plain_messages(payload.get("messages")):
        return "the messages carry more than text (images, audio or tool results)"
    if path == COMPLETIONS and not _single_prompt(payload.get("prompt")):
        return "the request carries several prompts"
    return None


def _plain_messages(messages: Any) -> bool:
    if not isinstance(messages, list) or not messages:
        return False
    for message in messages:
        if not isinstance(message, Mapping) or message.get("role") == "tool":
            return False
        content = message.get("content")
        if isinstance(content, list):
            if not all(isinstance(p, Mapping) and p.get("type") == "text" for p in content):
                return False
        elif not isinstance(content, str):
            return False
    return True


def _single_prompt(prompt: Any) -> bool:
    if isinstance(prompt, str):
        return True
    return (
        isinstance(prompt, list)
        and bool(prompt)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    )
