"""A routing pipeline: filters keep the instances that may serve a request, scorers rate
them, a picker chooses one by the weighted totals, and the scorers hear what was chosen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fleetwatch.registry._model import Instance
from fleetwatch.routing._filters import Filter
from fleetwatch.routing._pickers import Picker
from fleetwatch.routing._request import RouteRequest
from fleetwatch.routing._scorers import Scorer

NO_REQUEST = RouteRequest()
#: Requests' (model, tenant) pairs whose filtered instances are remembered (models are named by
#: clients, so the memo is bounded).
MEMO_LIMIT = 256


@dataclass
class _Memo:
    """What the static filters kept, by (model, tenant), for one tuple of instances."""

    source: Sequence[Instance] | None = None
    kept: dict[tuple[str | None, str | None], list[Instance]] = field(default_factory=dict)


@dataclass(frozen=True)
class Pipeline:
    """``filters`` then ``scorers`` then ``picker``."""

    filters: tuple[Filter, ...]
    scorers: tuple[Scorer, ...]
    picker: Picker
    _memo: _Memo = field(default_factory=_Memo, compare=False, repr=False)
    _static: tuple[Filter, ...] = field(init=False, compare=False, repr=False)
    _dynamic: tuple[Filter, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        static = tuple(f for f in self.filters if getattr(f, "static", False))
        object.__setattr__(self, "_static", static)
        object.__setattr__(self, "_dynamic", tuple(f for f in self.filters if f not in static))

    def candidates(self, request: RouteRequest, instances: Sequence[Instance]) -> list[Instance]:
        """The instances every filter keeps.

        Filters marked ``static`` look only at the instances and the request's model and
        tenant: what they keep is remembered for as long as ``instances`` is the same object
        (the discovery client's :meth:`~fleetwatch.discovery.DiscoveryClient.routable` tuple
        stays one object until the view changes). The others run every time.
        """
        memo = self._memo
        if memo.source is not instances:
            memo.source, memo.kept = instances, {}
        key = (request.model, request.tenant)
        kept = memo.kept.get(key)
        if kept is None:
            kept = list(instances)
            for step in self._static:
                if kept:
                    kept = step.apply(request, kept)
            if len(memo.kept) >= MEMO_LIMIT:
                memo.kept.clear()
            memo.kept[key] = kept
        for step in self._dynamic:
            if not kept:
                break
            kept = step.apply(request, kept)
        return list(kept)

    def totals(self, request: RouteRequest, instances: Sequence[Instance]) -> list[float]:
        """Each instance's weighted score."""
        totals = [0.0] * len(instances)
        for scorer in self.scorers:
            for n, value in enumerate(scorer.score(request, instances)):
                totals[n] += scorer.weight * value
        return totals

    def choose(self, request: RouteRequest, instances: Sequence[Instance]) -> Instance:
        """One of ``instances`` (already filtered; never empty) for ``request``."""
        if len(instances) == 1:
            chosen = instances[0]
        else:
            chosen = self.picker.pick(instances, self.totals(request, instances))
        for scorer in self.scorers:
            scorer.chosen(request, chosen)
        return chosen

    def pick(self, instances: Sequence[Instance]) -> Instance:
        """:class:`Balancer`'s interface: a choice for a request nothing is known about."""
        return self.choose(NO_REQUEST, instances)

    def scorer(self, name: str) -> Scorer | None:
        """This pipeline's scorer called ``name``, if it has one."""
        return next((s for s in self.scorers if s.name == name), None)
