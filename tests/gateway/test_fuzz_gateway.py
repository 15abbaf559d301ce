"""schemathesis against the gateway's OpenAPI, with a real backend behind it: every check,
invalid requests included, and at least 1,000 generated cases. ``make bench`` runs more."""

from __future__ import annotations

import httpx

from fleetwatch import __version__
from fleetwatch.gateway.openapi import openapi_document
from fleetwatch.sandbox.fuzz import fuzzable_gateway, run_schemathesis
from tests.server.test_fuzz_api import assert_real_response_schemas

EXAMPLES_PER_OPERATION = 400


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


async def test_schemathesis_finds_no_server_error_and_no_schema_violation() -> None:
    """At least 1,000 generated cases, every check including invalid-data rejection: 0 failures."""
    async with fuzzable_gateway() as url:
        report = await run_schemathesis(url, examples=EXAMPLES_PER_OPERATION)
    assert report.passed, report.output[-4000:]
    assert report.generated >= 1000, report.output[-2000:]
    print(f"gateway fuzz: {report.generated} cases, 0 failures")
