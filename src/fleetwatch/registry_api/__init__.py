"""The registry's HTTP API (FastAPI, with OpenAPI at /docs and /openapi.json)."""

from fleetwatch.registry_api._app import create_app

__all__ = ["create_app"]
