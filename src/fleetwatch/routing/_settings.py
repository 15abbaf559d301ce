"""How a router is told to route: a strategy, scorer weights and the scorers' settings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from fleetwatch.routing._request import DEFAULT_BLOCK_CHARS

#: About four characters of English a token: the block size in tokens is block_chars / 4.
CHARS_PER_TOKEN = 4
#: llama.cpp keeps each slot's last prompt, and (since 2025) more prompts in host memory;
#: vLLM and SGLang hold far more. An underestimate only forgets hits early.
DEFAULT_CACHE_TOKENS = 65_536


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """The ``[router]`` section of a gateway's configuration."""

    strategy: str = "prefix"
    #: Scorer weights by name, over the strategy's preset (0 drops one).
    weights: Mapping[str, float] = field(default_factory=dict)
    #: Characters per prompt block for the prefix scorer.
    block_chars: int = DEFAULT_BLOCK_CHARS
    #: An estimate of each instance's prompt cache, in tokens.
    cache_tokens: int = DEFAULT_CACHE_TOKENS
    #: Requests of load above the least loaded instance past which cache and session
    #: affinity give way to load.
    max_imbalance: float = 4.0
    #: A session may load its instance to this many times the average before it moves.
    load_factor: float = 1.25
    #: The request header whose value names a session (``x-session-id``); None: off.
    session_header: str | None = None
    #: Without a session header, pin by the client's token (one conversation per token).
    session_by_token: bool = False

    def __post_init__(self) -> None:
        if self.block_chars < 16:
            raise ValueError(f"block_chars must be >= 16, got {self.block_chars}")
        if self.cache_tokens < 1:
            raise ValueError(f"cache_tokens must be >= 1, got {self.cache_tokens}")
        if not (self.max_imbalance >= 0 and math.isfinite(self.max_imbalance)):
            raise ValueError(
                f"max_imbalance must be a finite number >= 0, got {self.max_imbalance}"
            )
        if not (self.load_factor >= 1 and math.isfinite(self.load_factor)):
            raise ValueError(f"load_factor must be a finite number >= 1, got {self.load_factor}")
        if self.session_header is not None and not self.session_header.strip():
            raise ValueError("session_header must be a header name, or unset")

    @property
    def cache_blocks(self) -> int:
        """The cache estimate in prompt blocks."""
        return max(1, self.cache_tokens * CHARS_PER_TOKEN // self.block_chars)
