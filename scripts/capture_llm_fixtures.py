#!/usr/bin/env python3
"""Record a real LLM server's replies as test fixtures for fleetwatch's adapters.

Usage: scripts/capture_llm_fixtures.py KIND BASE_URL OUT_DIR --command "how the server was started"

Saves, where the family has them: /health (status + body), /metrics, /v1/models, /slots,
/props, /api/tags, /api/ps, /api/version, /info, and one streamed 4-token chat completion; and
writes SOURCE.md with the server's version, the command, the time and what was captured.
Bodies are stored exactly as received.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

GETS = {
    "llamacpp": ["/health", "/metrics", "/v1/models", "/slots", "/props"],
    "vllm": ["/health", "/metrics", "/v1/models", "/version"],
    "tgi": ["/health", "/metrics", "/info"],
    "sglang": ["/health", "/metrics", "/v1/models", "/get_model_info"],
    "ollama": ["/", "/api/tags", "/api/ps", "/api/version"],
    "openai": ["/v1/models"],
}


def fetch(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(  # noqa: S310 - the operator names the server
        url, data=body, headers={"Content-Type": "application/json"} if body else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def file_name(path: str) -> str:
    return (path.strip("/").replace("/", "_") or "root") + (".txt" if "metrics" in path else ".json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(GETS))
    parser.add_argument("base_url")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--command", required=True, help="the command that started the server")
    parser.add_argument("--version", default="", help="the server's version, if it cannot tell")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    base = args.base_url.rstrip("/")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for path in GETS[args.kind]:
        status, body = fetch(base + path)
        name = file_name(path)
        (args.out_dir / name).write_bytes(body)
        lines.append(f"- `{name}`: `GET {path}` answered HTTP {status}")
    chat = {
        "messages": [{"role": "user", "content": "Reply with the single word OK."}],
        "max_tokens": 4,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if args.model:
        chat["model"] = args.model
    status, body = fetch(base + "/v1/chat/completions", json.dumps(chat).encode())
    (args.out_dir / "chat_stream.txt").write_bytes(body)
    lines.append(f"- `chat_stream.txt`: streamed 4-token chat completion, HTTP {status}")
    version = args.version
    if not version and args.kind == "llamacpp":
        props = json.loads((args.out_dir / "props.json").read_bytes() or b"{}")
        version = str(props.get("build_info") or "")
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    source = [
        f"# {args.kind} fixtures",
        "",
        f"Captured {now} by `scripts/capture_llm_fixtures.py` from a real server.",
        f"- server version: {version or 'not reported'}",
        f"- command: `{args.command}`",
        "",
        *lines,
        "",
    ]
    (args.out_dir / "SOURCE.md").write_text("\n".join(source))
    print(f"captured {len(lines)} replies into {args.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
