"""schemathesis against both HTTP APIs' OpenAPI documents: generated requests, every response
checked against the schema, no server error. Bounded here; ``make bench`` runs larger passes.

Both runs live in one file so that a parallel test run keeps them on one worker, one after the
other: each keeps a core busy generating cases, and side by side they starve each other.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fleetwatch import __version__
from fleetwatch.gateway._openapi import openapi_document
from fleetwatch_testing.fuzz import (
    framework_app,
    fuzzable_gateway,
    fuzzable_registry,
    fuzzable_registry_app,
    run_schemathesis,
)

REGISTRY_EXAMPLES_PER_OPERATION = 100
GATEWAY_EXAMPLES_PER_OPERATION = 400
#: Each run takes 1-2 minutes of one core; the default 120 s cap is for ordinary tests.
FUZZ_TIMEOUT_S = 300


def assert_real_response_schemas(spec: dict[str, Any]) -> None:
    """Fail on any empty or catch-all response schema (it would make conformance vacuous)."""
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for code, response in operation["responses"].items():
                for media, body in response.get("content", {}).items():
                    schema = body.get("schema", {})
                    assert schema, f"{method.upper()} {path} {code} {media}: empty schema"
                    assert set(schema) & {"$ref", "type", "anyOf", "allOf", "oneOf"}, (
                        f"{method.upper()} {path} {code}: catch-all schema {schema}"
                    )


def test_every_registry_response_has_a_real_schema() -> None:
    """No empty or catch-all response schema that would make the conformance check vacuous."""
    assert_real_response_schemas(framework_app(fuzzable_registry_app()).openapi())


def test_every_gateway_response_has_a_real_schema() -> None:
    """The gateway's document gives every response a real schema, errors included."""
    spec = openapi_document(__version__)
    assert_real_response_schemas(spec)
    assert set(spec["paths"]) >= {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}


async def test_the_gateway_serves_its_document() -> None:
    """GET /openapi.json returns the document the gateway enforces."""
    async with fuzzable_gateway() as url, httpx.AsyncClient(timeout=5) as client:
        reply = await client.get(f"{url}/openapi.json")
    assert reply.status_code == 200
    assert reply.json() == openapi_document(__version__)


@pytest.mark.timeout(FUZZ_TIMEOUT_S)
async def test_schemathesis_finds_no_registry_error_and_no_schema_violation() -> None:
    """At least 1,000 generated cases over every operation but the event stream: 0 failures."""
    async with fuzzable_registry() as url:
        report = await run_schemathesis(
            url,
            examples=REGISTRY_EXAMPLES_PER_OPERATION,
            exclude_paths=("/v1/events",),
            # Query strings carry no types: a generated `tag=true` meant as a boolean reads as
            # the tag "true", which the server rightly accepts, and this check calls that a
            # failure. Invalid bodies are refused and tested in tests/registry_api/test_api.py.
            exclude_checks=("negative_data_rejection",),
        )
    assert report.passed, report.output[-4000:]
    assert report.generated >= 1000, report.output[-2000:]
    print(f"registry fuzz: {report.generated} cases, 0 failures")


@pytest.mark.timeout(FUZZ_TIMEOUT_S)
async def test_schemathesis_finds_no_gateway_error_and_no_schema_violation() -> None:
    """At least 1,000 generated cases, every check including invalid-data rejection: 0 failures."""
    async with fuzzable_gateway() as url:
        report = await run_schemathesis(url, examples=GATEWAY_EXAMPLES_PER_OPERATION)
    assert report.passed, report.output[-4000:]
    assert report.generated >= 1000, report.output[-2000:]
    print(f"gateway fuzz: {report.generated} cases, 0 failures")
