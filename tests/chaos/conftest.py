"""Chaos tests borrow the gateway fixtures."""

from tests.gateway.conftest import backends, gateways  # noqa: F401 - fixtures
