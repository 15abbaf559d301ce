"""AsyncResource's explicit life: unopened, open, closed; no second start, no reopening."""

from __future__ import annotations

import pytest

from fleetwatch._async_resource import AsyncResource, ResourceState
from fleetwatch.discovery import RegistryClient


class Counting(AsyncResource):
    """Counts its starts and closes."""

    def __init__(self) -> None:
        self.starts = 0
        self.closes = 0

    async def start(self) -> None:
        self.starts += 1

    async def aclose(self) -> None:
        self.closes += 1


async def test_a_resource_goes_from_unopened_to_open_to_closed() -> None:
    """Entering opens it once; leaving closes it."""
    resource = Counting()
    assert resource.resource_state is ResourceState.UNOPENED
    async with resource:
        assert resource.resource_state is ResourceState.OPEN
    assert resource.resource_state is ResourceState.CLOSED
    assert (resource.starts, resource.closes) == (1, 1)


async def test_entering_an_open_resource_again_is_refused() -> None:
    """A second ``async with`` would start every background loop twice: a RuntimeError
    saying it is already open, and nothing started again."""
    resource = Counting()
    async with resource:
        with pytest.raises(RuntimeError, match="Counting is already open"):
            await resource.__aenter__()
    assert resource.starts == 1


async def test_a_closed_resource_cannot_be_opened_again() -> None:
    """Closed by leaving or by a direct aclose(): entering raises, naming the way out."""
    left = Counting()
    async with left:
        pass
    with pytest.raises(RuntimeError, match="was closed and cannot be opened again: make a new one"):
        await left.__aenter__()
    closed_directly = RegistryClient("http://127.0.0.1:9")
    await closed_directly.aclose()
    assert closed_directly.resource_state is ResourceState.CLOSED
    with pytest.raises(RuntimeError, match="RegistryClient was closed"):
        await closed_directly.__aenter__()
