"""The registry's HTTP API (FastAPI, with OpenAPI at /docs and /openapi.json)."""

from fleetwatch.server.app import create_app

__all__ = ["create_app"]
