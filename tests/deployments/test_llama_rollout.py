"""A rollout of six real llama.cpp instances (SmolLM2) over three simulated hosts, under
traffic through the gateway from the openai SDK, half of it streaming: no request fails, and
each host ends with two instances of the new version."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from tests._support.deploying import deploy_llama, roll_llama_under_traffic, running, until_phase
from tests._support.host_fleet import LLAMA, Fleet, hosts_up, running_fleet

# Six llama.cpp servers want the machine to themselves. The test's own waits (two rollouts,
# then the traffic count) bound it; the suite's 120 s default is below their sum, and a CI
# machine slower than this one ran past it.
pytestmark = [pytest.mark.serial, pytest.mark.timeout(480)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """3 hosts with 3 slots each, the registry with its controller, a daemon per host."""
    with running_fleet(tmp_path_factory.mktemp("llama-deploy")) as running_fleet_:
        yield running_fleet_


async def test_six_llama_instances_roll_with_no_failed_request(fleet: Fleet) -> None:
    """Version 1 (6 replicas, 2 per host), then version 2 with surge 1 under SDK traffic:
    at least 300 requests, none failed, 2 new instances per host."""
    await hosts_up(fleet, 3)
    first = await deploy_llama(fleet, "1", "512")
    await until_phase(fleet, first["revision"], "complete", 120, service=LLAMA)
    assert Counter((await running(fleet, LLAMA))["1"]) == {"h0": 2, "h1": 2, "h2": 2}
    traffic, _ = await roll_llama_under_traffic(fleet, "2", "1024")
    assert (traffic.failed, traffic.reasons) == (0, {})
    assert traffic.sent >= 300
    now = await running(fleet, LLAMA)
    assert list(now) == ["2"]
    assert Counter(now["2"]) == {"h0": 2, "h1": 2, "h2": 2}
