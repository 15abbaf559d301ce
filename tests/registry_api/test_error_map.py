"""One map between registry errors and HTTP statuses, used by the server and the client."""

from __future__ import annotations

import pytest

from fleetwatch.discovery import RegistryClient
from fleetwatch.errors import (
    REGISTRY_ERRORS_BY_STATUS,
    IndexReset,
    InstanceNotFound,
    RegistryError,
    Unauthorized,
)
from fleetwatch.registry_api._errors import status_of
from tests._support.registry_node import TOKEN, RunningRegistry


def test_every_mapped_error_goes_to_its_status_and_back() -> None:
    """The server answers each error's status_code, and that status names the error again;
    an unmapped registry error is a 500."""
    assert sorted(REGISTRY_ERRORS_BY_STATUS) == [401, 403, 404, 409, 410, 503]
    for code, kind in REGISTRY_ERRORS_BY_STATUS.items():
        assert status_of(kind("what went wrong")) == code
        assert kind.status_code == code
    assert status_of(IndexReset("behind")) == 500
    assert status_of(RegistryError("other")) == 500


async def test_the_client_raises_the_error_the_server_answered(registry: RunningRegistry) -> None:
    """A real registry's 404 and 401 come back to the client as InstanceNotFound and
    Unauthorized."""
    async with RegistryClient(registry.url, token="not-a-token") as stranger:
        with pytest.raises(Unauthorized):
            await stranger.register("llm", "a", {"host": "127.0.0.1", "port": 9})
    async with RegistryClient(registry.url, token=TOKEN) as api:
        with pytest.raises(InstanceNotFound):
            await api.heartbeat("llm", "nobody")


async def test_errors_name_the_service_and_instance_on_both_sides(
    registry: RunningRegistry,
) -> None:
    """The registry's error names the service and instance it concerns; the HTTP reply
    carries them, and the client's exception has them as attributes."""
    async with RegistryClient(registry.url, token=TOKEN) as api:
        with pytest.raises(InstanceNotFound) as raised:
            await api.heartbeat("llm", "nobody")
    assert (raised.value.service, raised.value.instance_id) == ("llm", "nobody")
    assert raised.value.status_code == 404
    assert "llm/nobody" in str(raised.value)
