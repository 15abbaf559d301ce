"""Fixtures the observability tests borrow from the agent and gateway tests."""

from tests.agent.conftest import agents  # noqa: F401 - fixture
from tests.gateway.conftest import gateways  # noqa: F401 - fixture
