"""OpenAI-style error replies: ``{"error": {"message", "type", "code"}}``."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


def error_response(
    status: int, message: str, kind: str, code: str | None = None, **headers: str
) -> JSONResponse:
    return JSONResponse(error_body(message, kind, code), status_code=status, headers=headers)


def sse_error(message: str, code: str) -> bytes:
    """An error event ending a stream that already started (the status line is gone)."""
    payload = json.dumps(error_body(message, "upstream_error", code))
    return f"data: {payload}\n\ndata: [DONE]\n\n".encode()
