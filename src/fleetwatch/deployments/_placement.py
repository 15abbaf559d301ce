"""Where new instances go, and which old ones leave first: spread over matching hosts.

New instances go, one at a time, to the matching host with free capacity that runs the
fewest instances of the service (water-filling), so per-host counts differ by at most one
wherever capacity allows. Old instances leave from the host that runs the most.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fleetwatch.hosts._model import Host


@dataclass(frozen=True, slots=True)
class Candidate:
    """A host as placement sees it: free slots, and how many instances of the service it runs."""

    host_id: str
    free: int
    running: int


def matches(host: Host, placement: Mapping[str, str]) -> bool:
    """Whether ``host``'s labels include every placement label."""
    return all(host.labels.get(key) == value for key, value in placement.items())


def candidates(
    hosts: Iterable[tuple[Host, bool]], service: str, placement: Mapping[str, str]
) -> list[Candidate]:
    """The hosts a new instance of ``service`` may go to: up, uncordoned, matching."""
    return [
        Candidate(
            host.host_id,
            host.free_slots,
            sum(1 for s in host.instances.values() if s == service),
        )
        for host, alive in hosts
        if alive and not host.cordoned and matches(host, placement)
    ]


def place(count: int, hosts: Sequence[Candidate], *, spread: bool = True) -> list[str]:
    """Host ids for ``count`` new instances (fewer when capacity runs out). With ``spread``
    each goes where the service runs least; without, where most slots are free."""
    free = {c.host_id: c.free for c in hosts}
    running = Counter({c.host_id: c.running for c in hosts})
    chosen: list[str] = []
    for _ in range(count):
        open_hosts = [h for h, slots in free.items() if slots > 0]
        if not open_hosts:
            break
        if spread:
            best = min(open_hosts, key=lambda h: (running[h], -free[h], h))
        else:
            best = min(open_hosts, key=lambda h: (-free[h], h))
        chosen.append(best)
        free[best] -= 1
        running[best] += 1
    return chosen


def retire_order(instances: Mapping[str, str]) -> list[str]:
    """Instance ids (``instance -> host``) in the order to retire them: from the host that
    runs the most first, so what stays is still spread."""
    per_host = Counter(instances.values())
    remaining = dict(instances)
    ordered: list[str] = []
    while remaining:
        busiest = max(per_host, key=lambda h: (per_host[h], h))
        instance = min(i for i, h in remaining.items() if h == busiest)
        ordered.append(instance)
        del remaining[instance]
        per_host[busiest] -= 1
        if per_host[busiest] == 0:
            del per_host[busiest]
    return ordered
