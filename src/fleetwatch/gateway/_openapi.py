"""The gateway's OpenAPI document and the request checks it promises.

The gateway forwards OpenAI requests untouched, so it checks only what it relies on or what
would waste a backend: the body is a JSON object; ``model``, when given, is a string (it
routes on it); ``stream`` is a boolean; ``max_tokens`` a positive integer; chat requests carry
``messages``, completions a ``prompt``, embeddings an ``input``. Everything else (sampling
parameters, tools, ...) passes through for the backend to judge. The document says exactly
this, so a client generator or a fuzzer sees the same contract the gateway enforces, and
every response has a real schema.
"""

from __future__ import annotations

from typing import Any

#: What each proxied path requires besides the common fields, with its JSON Schema.
_REQUIRED_BY_PATH: dict[str, tuple[str, dict[str, Any]]] = {
    "/v1/chat/completions": (
        "messages",
        {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {"role": {"type": "string", "minLength": 1}},
            },
        },
    ),
    "/v1/completions": (
        "prompt",
        {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    ),
    "/v1/embeddings": (
        "input",
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "minItems": 1, "items": {"type": "string"}},
            ]
        },
    ),
}

_COMMON_FIELDS: dict[str, dict[str, Any]] = {
    "model": {"type": "string", "minLength": 1, "maxLength": 256},
    "stream": {"type": "boolean"},
    "max_tokens": {"type": "integer", "minimum": 1},
}


def request_problem(path: str, payload: dict[str, Any]) -> str | None:
    """What is wrong with a proxied request's JSON object, or None when the gateway takes it."""
    return _common_problem(payload) or _required_problem(path, payload)


def _common_problem(payload: dict[str, Any]) -> str | None:
    model = payload.get("model")
    if "model" in payload and not (isinstance(model, str) and 1 <= len(model) <= 256):
        return "'model' must be a string of 1 to 256 characters"
    if "stream" in payload and not isinstance(payload["stream"], bool):
        return "'stream' must be true or false"
    max_tokens = payload.get("max_tokens")
    # JSON Schema's integers include 5.0, so the gateway takes it too.
    whole = isinstance(max_tokens, int) or (
        isinstance(max_tokens, float) and max_tokens.is_integer()
    )
    if "max_tokens" in payload and not (
        whole and not isinstance(max_tokens, bool) and max_tokens >= 1  # type: ignore[operator]
    ):
        return "'max_tokens' must be an integer >= 1"
    return None


def _required_problem(path: str, payload: dict[str, Any]) -> str | None:
    field, _ = _REQUIRED_BY_PATH[path]
    value = payload.get(field)
    if field == "messages":
        if not isinstance(value, list) or not value:
            return "'messages' must be a non-empty array of {role, content} objects"
        for n, message in enumerate(value):
            role = message.get("role") if isinstance(message, dict) else None
            if not (isinstance(role, str) and role):
                return f"'messages[{n}]' must be an object with a 'role' string"
        return None
    if isinstance(value, str) or (
        isinstance(value, list)
        and all(isinstance(item, str) for item in value)
        and (value or field == "prompt")
    ):
        return None
    plural = "a non-empty array" if field == "input" else "an array"
    return f"'{field}' must be a string or {plural} of strings"


def _error_schema() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {
        400: "Invalid request (names the field)",
        401: "Missing or wrong gateway token",
        404: "No instance serves the model (names the served ones)",
        413: "Request body over the limit",
        429: "Every instance is saturated (Retry-After)",
        502: "No instance could serve it",
        503: "No instance available (Retry-After)",
        504: "No reply within the request timeout",
    }
    return {str(code): _json(_error_schema(), meaning[code]) for code in codes}


def _proxied(path: str) -> dict[str, Any]:
    field, field_schema = _REQUIRED_BY_PATH[path]
    reply = "EmbeddingList" if path == "/v1/embeddings" else "Completion"
    ok = _json({"$ref": f"#/components/schemas/{reply}"}, "The backend's reply")
    if path != "/v1/embeddings":
        ok["content"]["text/event-stream"] = {"schema": {"$ref": "#/components/schemas/Event"}}
    return {
        "post": {
            "summary": f"Proxy {path} to a healthy instance",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": [field],
                            "properties": {**_COMMON_FIELDS, field: field_schema},
                            "additionalProperties": True,
                        }
                    }
                },
            },
            "responses": {
                "200": ok,
                **_errors(400, 401, 404, 413, 429, 502, 503, 504),
            },
        }
    }


def _probe(schema: dict[str, Any], *codes: int) -> dict[str, Any]:
    return {
        "get": {
            "responses": {str(code): _json(schema, "Probe result") for code in codes},
        }
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The gateway's OpenAPI 3.1 document."""
    paths: dict[str, Any] = {path: _proxied(path) for path in _REQUIRED_BY_PATH}
    paths["/v1/models"] = {
        "get": {
            "summary": "The union of the models the healthy instances serve",
            "security": [{"bearer": []}],
            "responses": {
                "200": _json({"$ref": "#/components/schemas/ModelList"}, "Served models"),
                **_errors(401),
            },
        }
    }
    paths["/v1/gateway/stats"] = {
        "get": {
            "summary": "The gateway's own figures",
            "responses": {"200": _json({"$ref": "#/components/schemas/Stats"}, "Figures")},
        }
    }
    probe = {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"enum": ["pass", "fail"]}},
    }
    readiness = {
        "type": "object",
        "required": ["status", "routable_instances"],
        "properties": {
            "status": {"enum": ["pass", "fail"]},
            "routable_instances": {"type": "integer", "minimum": 0},
        },
    }
    paths["/livez"] = _probe(probe, 200)
    paths["/readyz"] = _probe(readiness, 200, 503)
    paths["/metrics"] = {
        "get": {
            "responses": {
                "200": {
                    "description": "Prometheus text exposition",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            }
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "fleetwatch gateway", "version": version},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
        | {"schemas": _SCHEMAS},
    }


_SCHEMAS: dict[str, Any] = {
    "Event": {
        "description": "One server-sent event: a JSON chunk, an error, or the final [DONE]",
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "string", "pattern": r"^(\[DONE\]|\{.*\})$"},
            "event": {"type": "string"},
            "id": {"type": "string"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "Completion": {
        "type": "object",
        "required": ["object", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": {"type": "object"},
        },
    },
    "EmbeddingList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"type": "object"}},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": {"type": "string"}},
                },
            },
        },
    },
    "Stats": {
        "type": "object",
        "required": ["in_flight", "queued", "circuits"],
        "properties": {
            "in_flight": {"type": "object", "additionalProperties": {"type": "integer"}},
            "queued": {"type": "integer", "minimum": 0},
            "circuits": {"type": "object"},
        },
    },
}
