"""Multi-turn chat on real llama.cpp servers: how each router's choice of server shows in the
time to first token, through the servers' prompt caches, for fleetwatch and its peers.

Three ``llama-server`` processes serve SmolLM2-135M (2 slots of 2048 tokens each, one CPU
thread each), restarted fresh (cold KV and prompt caches) before each router. The workload is
seeded and the same for every router: conversations, each with its own 400-600-token system
prompt of pseudo-text, of 5 turns (a short user message each, the assistant's reply appended
to the history), run by 4 concurrent clients that take conversations from a shared queue; the
turns of one conversation are sequential. Every request carries ``x-session-id: <conversation
id>``, is streamed with ``stream_options.include_usage`` at temperature 0 and asks for 24
tokens. TTFT is measured client-side, to the first chunk with content.

A router that sends a conversation's later turns to the server that already holds its history
lets llama.cpp reuse that prefix (reported as ``usage.prompt_tokens_details.cached_tokens``);
one that does not makes the server evaluate the whole history again, which on one CPU thread
takes seconds. Routers: ``fleetwatch gateway`` with every balancing strategy it has, sglang-router
and vllm-router ``cache_aware``, vllm-router ``consistent_hash`` on the session header, the
LiteLLM proxy ``least-busy`` and HAProxy round robin. Everything shares this machine's cores, so
compare the routers with each other rather than with other machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx

from _common import (
    BENCH_TOKEN,
    emit,
    parser,
    percentile,
    progress,
    registry_process,
)
from _fleet import gateway, haproxy, register_all
from _llama import http_json, llama_fleet
from _peers import (
    PeerInstall,
    PeerUnavailable,
    ensure_peers,
    installed_versions,
    litellm_proxy,
    sglang_router,
    vllm_router,
)
from fleetwatch.discovery._balancer import Strategy
from fleetwatch_testing import free_port
from fleetwatch_testing.errors import SandboxError
from fleetwatch_testing.llama_build import MODEL_NAME

SEED = 20261201
SERVERS = 3
PARALLEL = 2
#: Tokens per slot (llama_server_argv multiplies by the slots): the longest conversation
#: (600-token system prompt, 5 turns of question and reply) stays well under it.
CONTEXT = 2048
CLIENTS = 4
MAX_TOKENS = 24
SESSION_HEADER = "x-session-id"
SYSTEM_TOKENS = (400, 600)
#: Longest one request may take (a cold 600-token prompt on a shared core takes ~10 s).
REQUEST_TIMEOUT = 180.0
#: Where the cached-token figure of a turn came from, best first.
USAGE_SOURCE = "usage.prompt_tokens_details.cached_tokens"
TIMINGS_SOURCE = "timings.cache_n"


# --- the workload -------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    """One seeded conversation: its id (the session header), system prompt and user turns."""

    cid: str
    system: str
    system_tokens: int
    user_turns: list[str]


_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
_QUESTIONS = [
    "What does {w} mean here?",
    "Say more about {w}, briefly.",
    "How is {w} related to {v}?",
    "Give one example of {w}.",
    "Is {w} better than {v}? One line.",
    "Summarize the point about {w}.",
]


def _word(rng: random.Random) -> str:
    """A pronounceable pseudo-word of one to three syllables."""
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))


def _pseudo_text(rng: random.Random, words: int) -> list[str]:
    """``words`` pseudo-words in sentences of 6-14 (capitalized, full stops)."""
    out: list[str] = []
    while len(out) < words:
        sentence = [_word(rng) for _ in range(rng.randint(6, 14))]
        sentence[0] = sentence[0].capitalize()
        sentence[-1] += "."
        out += sentence
    return out[:words]


def _fit_tokens(words: list[str], head: str, target: int, tokenize: Callable[[str], int]) -> str:
    """The shortest ``head`` + first words of ``words`` with at least ``target`` tokens (by
    bisection over the word count; the server's own tokenizer counts)."""
    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi) // 2
        if tokenize(head + " ".join(words[:mid])) >= target:
            hi = mid
        else:
            lo = mid + 1
    return head + " ".join(words[:lo])


def make_conversations(
    count: int, turns: int, tokenize: Callable[[str], int]
) -> list[Conversation]:
    """``count`` seeded conversations of ``turns`` user messages; system prompts sized with
    ``tokenize`` (a llama-server's ``/tokenize``) to 400-600 tokens each."""
    rng = random.Random(SEED)
    conversations = []
    for n in range(count):
        name = _word(rng).capitalize()
        words = _pseudo_text(rng, 900)
        head = f"{name} handbook. You are the assistant of the {name} team; answer briefly. "
        target = rng.randint(*SYSTEM_TOKENS)
        system = _fit_tokens(words, head, target, tokenize)
        questions = [
            f"{rng.choice(_QUESTIONS).format(w=rng.choice(words), v=rng.choice(words))}"
            for _ in range(turns)
        ]
        conversations.append(Conversation(f"conv-{n:02d}", system, tokenize(system), questions))
    return conversations


# --- llama.cpp servers --------------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    """A llama-server's ``llamacpp:*`` counters from ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r"^llamacpp:(\w+) (\S+)$", text, re.M)}


def tokenizer(port: int) -> Callable[[str], int]:
    """Token count of a text by the server's own ``/tokenize``."""

    def count(text: str) -> int:
        return len(http_json(f"http://127.0.0.1:{port}/tokenize", {"content": text})["tokens"])

    return count


# --- the client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A started router: its URL and the headers its clients send (LiteLLM's key)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    #: fleetwatch's registry, whose change feed tells whether a server's status moved.
    registry_url: str | None = None


@dataclass
class Turn:
    """What one request saw."""

    cid: str
    turn: int
    ttft_s: float | None = None
    total_s: float | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    cache_source: str | None = None
    completion_tokens: int | None = None
    reply: str = ""
    error: str | None = None
    #: The instance that served it, where the router says (fleetwatch: x-fleetwatch-instance).
    instance: str | None = None
    #: Seconds since the workload started, when it was sent.
    sent_at: float = 0.0


def _read_usage(turn: Turn, chunk: dict[str, Any]) -> None:
    """Take the prompt and cached token counts from a chunk's ``usage`` or ``timings``."""
    usage = chunk.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    if usage.get("prompt_tokens") is not None:
        turn.prompt_tokens = usage["prompt_tokens"]
        turn.completion_tokens = usage.get("completion_tokens")
    if details.get("cached_tokens") is not None:
        turn.cached_tokens, turn.cache_source = details["cached_tokens"], USAGE_SOURCE
    timings = chunk.get("timings") or {}
    if turn.cache_source is None and "cache_n" in timings:
        # llama.cpp's own figures, if a router dropped the usage details but kept these.
        turn.cached_tokens, turn.cache_source = timings["cache_n"], TIMINGS_SOURCE
        turn.prompt_tokens = timings["cache_n"] + timings.get("prompt_n", 0)


async def one_turn(
    http: httpx.AsyncClient, target: Target, cid: str, n: int, messages: list
) -> Turn:
    """POST one streamed chat completion; TTFT to the first chunk with content."""
    turn = Turn(cid, n, sent_at=time.perf_counter() - WORKLOAD_STARTED[0])
    body = {
        "model": MODEL_NAME,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
    }
    parts: list[str] = []
    started = time.perf_counter()
    try:
        async with http.stream(
            "POST",
            f"{target.url}/v1/chat/completions",
            json=body,
            headers={**target.headers, SESSION_HEADER: cid},
        ) as reply:
            turn.instance = reply.headers.get("x-fleetwatch-instance")
            if reply.status_code != 200:
                text = (await reply.aread()).decode(errors="replace")
                turn.error = f"HTTP {reply.status_code}: {text[:200]}"
                return turn
            async for line in reply.aiter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                chunk = json.loads(line[5:])
                for choice in chunk.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if turn.ttft_s is None:
                            turn.ttft_s = time.perf_counter() - started
                        parts.append(content)
                _read_usage(turn, chunk)
    except (httpx.HTTPError, ValueError) as exc:
        turn.error = f"{type(exc).__name__}: {exc}"[:200]
        return turn
    turn.total_s = time.perf_counter() - started
    turn.reply = "".join(parts)
    if turn.ttft_s is None:
        turn.error = "no content in the stream"
    return turn


#: When the running workload started (perf_counter), for each turn's send time.
WORKLOAD_STARTED = [0.0]


async def run_workload(target: Target, conversations: list[Conversation], turns: int) -> list[Turn]:
    """CLIENTS concurrent clients, each taking whole conversations from a shared queue."""
    WORKLOAD_STARTED[0] = time.perf_counter()
    queue: asyncio.Queue[Conversation] = asyncio.Queue()
    for conversation in conversations:
        queue.put_nowait(conversation)
    done: list[Turn] = []

    async def client() -> None:
        timeout = httpx.Timeout(REQUEST_TIMEOUT, connect=10.0)
        async with httpx.AsyncClient(timeout=timeout) as http:
            while not queue.empty():
                conversation = queue.get_nowait()
                messages: list[dict[str, str]] = [
                    {"role": "system", "content": conversation.system}
                ]
                for n, text in enumerate(conversation.user_turns[:turns], start=1):
                    messages.append({"role": "user", "content": text})
                    turn = await one_turn(http, target, conversation.cid, n, messages)
                    done.append(turn)
                    # A failed turn still leaves a reply, so that later turns stay comparable.
                    messages.append({"role": "assistant", "content": turn.reply or "(no reply)"})

    # Bound the whole run: a router that hangs must not stall the benchmark.
    bound = 60 + REQUEST_TIMEOUT * turns * len(conversations) / CLIENTS
    try:
        async with asyncio.timeout(bound):
            await asyncio.gather(*(client() for _ in range(CLIENTS)))
    except TimeoutError:
        progress(f"  workload stopped after {bound:.0f} s")
    return done


# --- the routers --------------------------------------------------------------------------


def wait_routable(url: str, timeout: float = 30.0) -> Target:
    """Until ``GET /v1/models`` answers 200 with models through the router; the router."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http_json(f"{url}/v1/models", timeout=2.0).get("data"):
                return Target(url)
        except (OSError, ValueError, AttributeError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}/v1/models did not list a model in {timeout:g} s")
        time.sleep(0.2)


def fleetwatch_strategies() -> list[str]:
    """Every balancing strategy of this checkout's gateway, read at run time."""
    return [s.value for s in Strategy]


def gateway_has_option(option: str) -> bool:
    """Whether ``fleetwatch gateway --help`` lists ``option`` (wide, so none is cut short)."""
    argv = [sys.executable, "-m", "fleetwatch", "gateway", "--help"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    return option in out.stdout


@contextlib.contextmanager
def fleetwatch_router(ports: list[int], strategy: str, session_header: bool) -> Iterator[Target]:
    """A registry with the servers registered, and ``fleetwatch gateway --strategy``."""
    registry_port, gateway_port = free_port(), free_port()
    registry_url = f"http://127.0.0.1:{registry_port}"
    extra = ["--strategy", strategy]
    if session_header:
        extra += ["--session-header", SESSION_HEADER]
    with registry_process(registry_port, log_level="warning"):
        asyncio.run(register_all(registry_url, ports, MODEL_NAME, kind="llamacpp"))
        with gateway(gateway_port, registry_url, extra=extra, log_level="warning"):
            target = wait_routable(f"http://127.0.0.1:{gateway_port}")
            yield Target(target.url, target.headers, registry_url)


@contextlib.contextmanager
def haproxy_router(ports: list[int]) -> Iterator[Target]:
    """HAProxy round robin (``bench/_fleet.haproxy``), once its checks let traffic through."""
    port = free_port()
    with haproxy(port, ports):
        yield wait_routable(f"http://127.0.0.1:{port}")


@contextlib.contextmanager
def peer_router(start: Callable[[list[str]], Any], ports: list[int]) -> Iterator[Target]:
    """A peer from ``_peers`` in front of the servers' base URLs (ready when it yields)."""
    with start([f"http://127.0.0.1:{p}" for p in ports]) as peer:
        yield Target(peer.url, peer.headers)


@dataclass(frozen=True)
class RouterCase:
    """A router to measure: its name, the peer it needs installed (if any), and how to start
    it in front of the servers' ports (a context manager giving its :class:`Target`)."""

    name: str
    start: Callable[[list[int]], contextlib.AbstractContextManager[Target]]
    peer: str | None = None


def router_cases(quick: bool) -> list[RouterCase]:
    """Every fleetwatch strategy, then the peers; with ``quick``, round-robin, one affinity
    strategy of fleetwatch's (if it has one) and sglang-router ``cache_aware``."""
    strategies = fleetwatch_strategies()
    session = gateway_has_option("--session-header")
    fleetwatch = {
        s: RouterCase(
            f"fleetwatch {s}", partial(fleetwatch_router, strategy=s, session_header=session)
        )
        for s in strategies
    }
    sglang = RouterCase(
        "sglang-router cache_aware",
        partial(peer_router, partial(sglang_router, policy="cache_aware")),
        "sglang-router",
    )
    if quick:
        affinity = [s for s in ("prefix", "session") if s in fleetwatch][:1]
        return [fleetwatch[s] for s in ["round-robin", *affinity] if s in fleetwatch] + [sglang]
    return [
        *fleetwatch.values(),
        sglang,
        RouterCase(
            "vllm-router cache_aware",
            partial(peer_router, partial(vllm_router, policy="cache_aware")),
            "vllm-router",
        ),
        RouterCase(
            "vllm-router consistent_hash",
            partial(peer_router, partial(vllm_router, policy="consistent_hash")),
            "vllm-router",
        ),
        RouterCase(
            "litellm least-busy",
            partial(peer_router, partial(litellm_proxy, model=MODEL_NAME, strategy="least-busy")),
            "litellm",
        ),
        RouterCase("haproxy roundrobin", haproxy_router),
    ]


# --- one router's run and its figures -----------------------------------------------------


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(sorted(values), q) * 1000, 1) if values else None


def _share(turns: list[Turn]) -> float | None:
    """Cached prompt tokens over all prompt tokens of the turns that reported both."""
    counted = [t for t in turns if t.prompt_tokens and t.cached_tokens is not None]
    total = sum(t.prompt_tokens or 0 for t in counted)
    return round(sum(t.cached_tokens or 0 for t in counted) / total, 3) if total else None


@dataclass
class Outcome:
    """A router's figures, or why it has none."""

    name: str
    available: bool = True
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def summarize(turns: list[Turn], expected: int, wall_s: float, servers: list[dict]) -> dict:
    """TTFT by turn group, cache shares, per-server tokens and errors of one router's run."""
    ok = [t for t in turns if t.error is None]
    first = [t.ttft_s for t in ok if t.turn == 1 and t.ttft_s is not None]
    later = [t.ttft_s for t in ok if t.turn > 1 and t.ttft_s is not None]
    cached = sum(s["prompt_tokens_cached_total"] for s in servers)
    evaluated = sum(s["prompt_tokens_total"] for s in servers)
    errors = Counter((t.error or "")[:80] for t in turns if t.error)
    return {
        "requests": expected,
        "completed": len(ok),
        "errors": expected - len(ok),
        "error_kinds": dict(errors),
        "wall_s": round(wall_s, 1),
        "ttft_turn1_ms": {"p50": _ms(first, 50), "p99": _ms(first, 99), "n": len(first)},
        "ttft_turns2plus_ms": {"p50": _ms(later, 50), "p99": _ms(later, 99), "n": len(later)},
        "cached_share_all": _share(ok),
        "cached_share_turns2plus": _share([t for t in ok if t.turn > 1]),
        "cache_source": dict(Counter(t.cache_source or "none" for t in ok)),
        # The servers' own view, whatever the router passed on: cached / (cached + evaluated).
        "server_cached_share": round(cached / (cached + evaluated), 3) if evaluated else None,
        "tokens_generated_per_server": [int(s["tokens_predicted_total"]) for s in servers],
        "prompt_tokens_evaluated_per_server": [int(s["prompt_tokens_total"]) for s in servers],
        **_placement(ok),
    }


def _placement(turns: list[Turn]) -> dict[str, Any]:
    """Where the router says it sent each turn (fleetwatch only): later turns served away
    from their conversation's previous instance, and the slowest later turns, to tell a
    cache miss (moved, little cached) from queueing (stayed, cached, still slow)."""
    if not any(t.instance for t in turns):
        return {}
    previous: dict[str, str | None] = {}
    moved = 0
    for turn in sorted(turns, key=lambda t: (t.cid, t.turn)):
        if turn.turn > 1 and previous.get(turn.cid) not in (None, turn.instance):
            moved += 1
        previous[turn.cid] = turn.instance
    later = sorted((t for t in turns if t.turn > 1 and t.ttft_s), key=lambda t: -(t.ttft_s or 0))
    slowest = [
        {
            "conversation": t.cid,
            "turn": t.turn,
            "instance": t.instance,
            "ttft_ms": round((t.ttft_s or 0) * 1000),
            "sent_at_s": round(t.sent_at, 1),
            "cached": f"{t.cached_tokens}/{t.prompt_tokens}",
        }
        for t in later[:4]
    ]
    return {"later_turns_moved": moved, "slowest_later_turns": slowest}


def status_changes(registry_url: str | None, since: float) -> list[dict[str, Any]] | None:
    """The servers' status changes during the workload, from the registry's change feed (a
    health check that timed out on a busy server shows here); None without a registry."""
    if registry_url is None:
        return None
    changes: list[dict[str, Any]] = []
    headers = {"authorization": f"Bearer {BENCH_TOKEN}"}
    try:
        with httpx.stream(
            "GET", f"{registry_url}/v1/events?index=0", headers=headers, timeout=2.0
        ) as reply:
            for line in reply.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("type") == "status_changed" and event["at"] >= since:
                    changes.append(
                        {
                            "instance": event["instance_id"],
                            "status": f"{event['previous_status']} -> "
                            f"{(event.get('instance') or {}).get('status')}",
                            "at_s": round(event["at"] - since, 1),
                            "reason": str(event.get("reason", ""))[:120],
                        }
                    )
    except httpx.ReadTimeout:
        pass  # the feed stays open for what comes next: everything so far was read
    return changes


def gateway_stats(target: Target) -> dict[str, Any]:
    """fleetwatch's own count of retries (a turn sent to another instance after a failure)
    and of requests sent again on a fresh connection to the same instance."""
    reply = httpx.get(f"{target.url}/v1/gateway/stats", timeout=5.0).json()
    return {"retries": reply.get("retries"), "upstream_reopened": reply.get("upstream_reopened")}


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    keys = ("tokens_predicted_total", "prompt_tokens_total", "prompt_tokens_cached_total")
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys}


def _measure(case: RouterCase, conversations: list[Conversation], turns: int) -> Outcome:
    """Fresh servers, the router in front of them, the workload, the servers' counters."""
    progress(f"{case.name}: fresh llama-servers")
    with llama_fleet(SERVERS, parallel=PARALLEL, context=CONTEXT) as fleet:
        ports = [server.port for server in fleet]
        before = [scrape(p) for p in ports]
        with case.start(ports) as target:
            progress(f"{case.name}: {len(conversations)} conversations x {turns} turns")
            started, started_wall = time.monotonic(), time.time()
            done = asyncio.run(run_workload(target, conversations, turns))
            wall = time.monotonic() - started
            servers = [_delta(scrape(p), b) for p, b in zip(ports, before, strict=True)]
            changes = status_changes(target.registry_url, started_wall)
            gateway_figures = gateway_stats(target) if changes is not None else None
    figures = summarize(done, len(conversations) * turns, wall, servers)
    if changes is not None:
        figures["status_changes"] = changes
        figures["gateway"] = gateway_figures
    progress(
        f"  {case.name}: TTFT t1 p50 {figures['ttft_turn1_ms']['p50']} ms, t2+ p50 "
        f"{figures['ttft_turns2plus_ms']['p50']} ms, cached t2+ "
        f"{figures['cached_share_turns2plus']}, wall {figures['wall_s']} s, "
        f"errors {figures['errors']}"
    )
    return Outcome(case.name, figures=figures)


#: What each round of a router keeps beside the medians.
ROUND_KEYS = ("wall_s", "ttft_turns2plus_ms", "cached_share_turns2plus", "later_turns_moved")


def merged(name: str, runs: list[Outcome]) -> Outcome:
    """One router's rounds as one outcome: the median of each headline figure (TTFT p50
    and p99 of each turn group, wall time, cache shares), and each round's own figures."""
    ok = [r for r in runs if r.available]
    if len(ok) <= 1:
        return ok[0] if ok else runs[0]
    figures = dict(ok[0].figures)
    for group in ("ttft_turn1_ms", "ttft_turns2plus_ms"):
        values = {
            q: [r.figures[group][q] for r in ok if r.figures[group][q] is not None]
            for q in ("p50", "p99")
        }
        figures[group] = {
            **{q: round(statistics.median(v), 1) if v else None for q, v in values.items()},
            "n": sum(r.figures[group]["n"] for r in ok),
        }
    for key in ("wall_s", "cached_share_all", "cached_share_turns2plus", "server_cached_share"):
        values = [r.figures[key] for r in ok if r.figures.get(key) is not None]
        figures[key] = round(statistics.median(values), 3) if values else None
    figures["rounds"] = [{k: r.figures.get(k) for k in ROUND_KEYS} for r in ok]
    return Outcome(name, figures=figures)


def run_router(case: RouterCase, conversations: list[Conversation], turns: int) -> Outcome:
    """:func:`_measure`, or why it could not: one router's failure (it would not start, or
    crashed) is recorded and the benchmark goes on with the next."""
    try:
        return _measure(case, conversations, turns)
    except (
        PeerUnavailable,
        SandboxError,
        RuntimeError,
        OSError,
        subprocess.SubprocessError,
    ) as exc:
        progress(f"{case.name}: unavailable: {exc}")
        return Outcome(case.name, available=False, reason=f"{type(exc).__name__}: {exc}"[:500])


# --- the report ---------------------------------------------------------------------------


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def table(outcomes: list[Outcome]) -> str:
    """The routers side by side, as markdown."""
    rows = [
        "| router | TTFT turn 1 p50 / p99 ms | TTFT turns 2-5 p50 / p99 ms | cached, turns 2-5 "
        "| cached, all turns (servers) | wall s | tokens generated per server | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        if not o.available:
            rows.append(f"| {o.name} | unavailable: {o.reason[:120]} | | | | | | |")
            continue
        f = o.figures
        t1, t2 = f["ttft_turn1_ms"], f["ttft_turns2plus_ms"]
        rows.append(
            f"| {o.name} | {t1['p50']} / {t1['p99']} | {t2['p50']} / {t2['p99']} "
            f"| {_pct(f['cached_share_turns2plus'])} | {_pct(f['server_cached_share'])} "
            f"| {f['wall_s']} | {' / '.join(map(str, f['tokens_generated_per_server']))} "
            f"| {f['errors']} |"
        )
    return "\n".join(rows)


def headline(outcomes: list[Outcome]) -> dict[str, str]:
    """Per router: TTFT p50 of turns 2-5 and the share of their prompt served from cache."""
    out = {}
    for o in outcomes:
        if o.available:
            f = o.figures
            out[f"{o.name}: TTFT turns 2-5 p50, cached"] = (
                f"{f['ttft_turns2plus_ms']['p50']} ms, {_pct(f['cached_share_turns2plus'])}"
            )
        else:
            out[f"{o.name}"] = "unavailable"
    return out


def comparison(outcomes: list[Outcome]) -> dict[str, Any]:
    """The best fleetwatch strategy against the best peer, by TTFT p50 of turns 2-5."""

    def best(prefix: bool) -> Outcome | None:
        pool = [
            o
            for o in outcomes
            if o.available
            and o.name.startswith("fleetwatch") == prefix
            and o.figures["ttft_turns2plus_ms"]["p50"] is not None
        ]
        return min(pool, key=lambda o: o.figures["ttft_turns2plus_ms"]["p50"], default=None)

    ours, theirs = best(True), best(False)
    if ours is None or theirs is None:
        return {}
    a, b = (o.figures["ttft_turns2plus_ms"]["p50"] for o in (ours, theirs))
    return {
        "best fleetwatch (TTFT turns 2-5 p50)": f"{ours.name}: {a} ms",
        "best peer (TTFT turns 2-5 p50)": f"{theirs.name}: {b} ms",
        "best fleetwatch / best peer": round(a / b, 2) if b else None,
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the routers (of the full list) whose name contains TEXT (repeatable)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="measure every router N times, the routers taking turns in each round; the "
        "figures are the medians over the rounds (each round's are kept too)",
    )
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    # SIGTERM (make, a CI timeout) unwinds like Ctrl-C, so every llama-server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    count, turns = (4, 3) if args.quick else (12, 5)
    if args.only:  # from every router, whatever the workload's size
        cases = [c for c in router_cases(False) if any(t in c.name for t in args.only)]
    else:
        cases = router_cases(args.quick)
    installs = ensure_peers(sorted({c.peer for c in cases if c.peer}))
    progress("sizing the system prompts with llama-server's /tokenize")
    with llama_fleet(1, parallel=PARALLEL, context=CONTEXT) as (server,):
        conversations = make_conversations(count, turns, tokenizer(server.port))
    runs: dict[str, list[Outcome]] = {case.name: [] for case in cases}
    for round_number in range(1, args.rounds + 1):
        if args.rounds > 1:
            progress(f"round {round_number} of {args.rounds}")
        for case in cases:
            install = installs.get(case.peer) if case.peer else None
            if case.peer and not isinstance(install, PeerInstall):
                runs[case.name].append(Outcome(case.name, available=False, reason=str(install)))
                continue
            runs[case.name].append(run_router(case, conversations, turns))
    outcomes = [merged(name, outcomes) for name, outcomes in runs.items()]
    sources = Counter()
    for o in outcomes:
        sources.update(o.figures.get("cache_source", {}))
    system_tokens = [c.system_tokens for c in conversations]
    emit(
        "prefix_routing",
        {
            "mode": "quick" if args.quick else "full",
            "rounds": args.rounds,
            "workload": {
                "conversations": count,
                "turns": turns,
                "clients": CLIENTS,
                "max_tokens": MAX_TOKENS,
                "system_prompt_tokens": {"min": min(system_tokens), "max": max(system_tokens)},
                "servers": SERVERS,
                "slots_per_server": PARALLEL,
                "context_per_slot": CONTEXT,
                "session_header": SESSION_HEADER,
                "seed": SEED,
            },
            "peer_versions": installed_versions(installs),
            "cache_token_source": dict(sources),
            "routers": {
                o.name: o.figures if o.available else {"unavailable": o.reason} for o in outcomes
            },
            "table_md": table(outcomes),
            "headline": headline(outcomes),
            "comparison": comparison(outcomes),
        },
    )


if __name__ == "__main__":
    main()
