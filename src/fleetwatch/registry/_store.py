"""The store protocol: what the registry needs from its storage, memory or Redis.

Every membership or status change is atomic with the event it emits and the change index it
bumps. Check bookkeeping that changes nothing (another passing check) writes without an event,
and load figures travel apart from membership, so blocking queries wake only for real changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from fleetwatch.registry._model import Event, EventType, Instance, InstanceStatus

#: How many events a store keeps for clients catching up after a disconnection.
DEFAULT_HISTORY = 10_000
#: Reads :func:`consistent_read` tries for an exact index before settling for a lower bound.
EXACT_READ_ATTEMPTS = 3

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """The monitor's bookkeeping after one check of an instance."""

    at: float
    output: str
    consecutive_failures: int
    consecutive_successes: int
    #: A check of the instance itself vouches for it (its lease runs on); a check of its agent
    #: does not: an agent-held instance lives by its agent's heartbeats.
    renews_lease: bool = True


class RegistryStore(Protocol):
    """Storage for instances, their leases, tombstones, the change index and event history."""

    async def now(self) -> float:
        """The store's clock, in seconds since the epoch (Redis: its ``TIME``)."""
        ...

    async def index(self) -> int:
        """The current change index."""
        ...

    async def upsert(self, instance: Instance, *, guard_owner: bool = False) -> Event:
        """Register or update; the lease runs ``instance.ttl`` from now on the store's clock.

        Emits ``registered`` for a new instance, ``updated`` otherwise. Raises
        :class:`~fleetwatch.errors.InstanceGone` while the instance is tombstoned, and (with
        ``guard_owner``) :class:`~fleetwatch.errors.Forbidden` if the stored instance belongs
        to another owner: the check and the write are one atomic step.
        """
        ...

    async def renew(self, service: str, instance_id: str) -> Instance | None:
        """Extend the lease by the instance's ttl. ``None`` if unknown; raises InstanceGone."""
        ...

    async def set_status(
        self,
        service: str,
        instance_id: str,
        status: InstanceStatus,
        *,
        reason: str = "",
        record: CheckRecord | None = None,
        only_from: frozenset[InstanceStatus] | None = None,
    ) -> tuple[Instance, Event | None] | None:
        """Set the status (and the check bookkeeping) of an instance.

        Emits ``status_changed`` (and stamps ``status_since``) only when the status changes.
        With a ``record`` (a check just ran) the lease is renewed too: the checker vouches for
        the instance. With ``only_from``, nothing happens unless the current status is one of
        those (an operator's maintenance is not overwritten by a check that raced with it).
        ``None`` if the instance is unknown.
        """
        ...

    async def remove(
        self,
        service: str,
        instance_id: str,
        *,
        evicted: bool = False,
        reason: str = "",
        tombstone_for: float = 0.0,
    ) -> Event | None:
        """Remove an instance and everything that points at it; optionally leave a tombstone."""
        ...

    async def lapsed(self) -> list[tuple[str, str]]:
        """Instances whose lease deadline has passed on the store's clock."""
        ...

    async def evict_if_lapsed(self, service: str, instance_id: str, reason: str) -> Event | None:
        """Remove the instance only if its lease is still lapsed (a renewal may have raced)."""
        ...

    async def get(self, service: str, instance_id: str) -> Instance | None:
        """One instance."""
        ...

    async def instances(self, service: str | None = None) -> list[Instance]:
        """The instances of one service, or of all services, sorted by service and id."""
        ...

    async def events_after(self, index: int, limit: int = 1000) -> list[Event]:
        """Events with an index above ``index``, oldest first.

        Raises :class:`~fleetwatch.errors.IndexReset` when ``index`` is ahead of the store's
        (it restarted) or older than the history kept.
        """
        ...

    async def wait_for_change(self, index: int, within: float) -> int:
        """Return the current index once it exceeds ``index``, or after ``within`` seconds."""
        ...

    def changed_keys(self, after: int, upto: int) -> set[tuple[str, str]] | None:
        """The (service, instance_id) of every change in ``(after, upto]``, as far as this
        node knows without asking the store (a notice counts as :data:`NOTICE_KEY`); None when
        it does not know them all. What lets a blocking query sleep on through changes that
        cannot touch its answer, without a read each."""
        ...

    async def put_load(self, service: str, instance_id: str, load: Mapping[str, float]) -> None:
        """Record load figures (queue depth, KV-cache use); never bumps the change index."""
        ...

    async def loads(self, service: str) -> dict[str, dict[str, float]]:
        """The latest load figures of a service's instances, by instance id."""
        ...

    async def add_sli(self, service: str, minute: int, counts: Mapping[str, float]) -> None:
        """Add to one minute's SLO counters (``good``, ``total``, ``capacity``, requests...)."""
        ...

    async def sli_minutes(self, service: str, since: int) -> dict[int, dict[str, float]]:
        """{minute: {counter: value}} from minute ``since`` on."""
        ...

    async def trim_sli(self, service: str, before: int) -> None:
        """Forget SLO history older than minute ``before``."""
        ...

    async def note(self, kind: EventType, reason: str) -> Event:
        """Record a registry-wide notice (self-preservation) in the change feed."""
        ...

    async def node_heartbeat(self, node_id: str, ttl: float) -> list[str]:
        """Keep this registry node alive for ``ttl`` seconds; return every live node, sorted.

        Nodes sharing a store split the monitoring between them by these names.
        """
        ...

    async def node_leave(self, node_id: str) -> None:
        """This node stops: its share of the monitoring moves to the others at once."""
        ...

    async def aclose(self) -> None:
        """Release connections and background tasks."""
        ...


async def consistent_read(
    store: RegistryStore, read: Callable[[], Awaitable[T]], attempts: int = EXACT_READ_ATTEMPTS
) -> tuple[int, T]:
    """An answer, and a change index it is at least as new as.

    When the index stays put across a read, the answer is exactly that index's. Under steady
    churn it may never stay put (at 200 joins and leaves a second on Redis, a 600-instance
    listing never did in 1,000 tries), so after ``attempts`` the index read just before the last
    read is returned: the answer holds every change up to it and maybe some after. That is safe
    for both users: a blocking query with that index is answered again at once (the store has
    moved on), and the monitor replays the events after it, which it applies idempotently.
    """
    for _ in range(attempts - 1):
        before = await store.index()
        answer = await read()
        if await store.index() == before:
            return before, answer
    before = await store.index()
    return before, await read()


def recent_keys(
    newest_first: Iterable[tuple[int, tuple[str, str]]], after: int, upto: int
) -> set[tuple[str, str]] | None:
    """The keys of the changes in ``(after, upto]`` from (index, key) pairs newest first, or
    None when the pairs do not reach back to ``after + 1``."""
    keys: set[tuple[str, str]] = set()
    for index, key in newest_first:
        if index <= after:
            return keys
        if index <= upto:
            keys.add(key)
        if index == after + 1:
            return keys
    return None
