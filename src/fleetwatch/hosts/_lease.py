"""A lease with an epoch: how one of several registry nodes leads, and how its writes are fenced.

A node acquires a named lease for a few seconds and renews it; each new holder gets a higher
epoch. Every write the leader makes carries its :class:`Fence` (lease name and epoch), and the
store performs it only if that epoch still holds the lease, in the same atomic step. A leader
that lost its lease (paused past its ttl, cut off) therefore cannot act, even before it
notices: its writes are refused with :class:`~fleetwatch.errors.Fenced`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a lease, under which epoch, until when (the store's clock, seconds)."""

    name: str
    holder: str
    epoch: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Fence:
    """What a leader's write carries: it goes through only while this epoch holds the lease."""

    name: str
    epoch: int
