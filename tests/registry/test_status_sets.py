"""The status vocabulary is defined once: routable, operator-held and checked statuses."""

from __future__ import annotations

import re
from pathlib import Path

import fleetwatch
from fleetwatch.registry._model import (
    CHECKED_STATUSES,
    OPERATOR_STATUSES,
    ROUTABLE_STATUSES,
    InstanceStatus,
)

SOURCE = Path(fleetwatch.__file__).parent
#: A set or tuple of statuses written out by hand: ``(InstanceStatus.X, InstanceStatus.Y``.
_SPELLED_OUT = re.compile(r"[({]\s*InstanceStatus\.\w+\s*,\s*InstanceStatus\.")


def test_the_status_sets_split_every_status_as_the_properties_say() -> None:
    """Checked and operator statuses partition them all; routable ones are checked ones; and
    each status's properties agree with the sets."""
    assert frozenset(InstanceStatus) == CHECKED_STATUSES | OPERATOR_STATUSES
    assert not CHECKED_STATUSES & OPERATOR_STATUSES
    assert ROUTABLE_STATUSES <= CHECKED_STATUSES
    for status in InstanceStatus:
        assert status.routable == (status in ROUTABLE_STATUSES)
        assert status.held_by_operator == (status in OPERATOR_STATUSES)


def test_no_module_spells_out_a_status_set_of_its_own() -> None:
    """Only registry/_model.py writes a set of statuses by hand; the rest import its sets."""
    found = [
        f"{path.relative_to(SOURCE)}:{n}"
        for path in sorted(SOURCE.rglob("*.py"))
        if path != SOURCE / "registry" / "_model.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _SPELLED_OUT.search(line)
    ]
    assert found == []
