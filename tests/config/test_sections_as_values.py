"""Pydantic stays at the edges: the alert engine, its notifiers and the SLO tracker take
frozen values, and each configuration section turns into its value with every field."""

from __future__ import annotations

from dataclasses import fields

from fleetwatch.alerts import AlertRule, NotifierSettings
from fleetwatch.config._alerts import AlertSection, NotifierSection
from fleetwatch.config._registry import SloSection
from fleetwatch.slo import SloObjective


def test_each_section_has_exactly_its_values_fields() -> None:
    """A field added to a section but not to its value (or the other way) fails here."""
    for section, value in (
        (SloSection, SloObjective),
        (NotifierSection, NotifierSettings),
        (AlertSection, AlertRule),
    ):
        assert set(section.model_fields) == {f.name for f in fields(value)}, section.__name__


def test_sections_convert_to_the_values_they_describe() -> None:
    """Parsed tables become the same values one would write by hand."""
    alert = AlertSection.model_validate(
        {"name": "down", "kind": "instance_status", "for": "30s", "notify": ["ops"]}
    )
    assert alert.as_rule() == AlertRule(
        name="down", kind="instance_status", for_=30.0, notify=("ops",)
    )
    slo = SloSection(service="llm", objective=0.99, window="2h", desired=3)  # type: ignore[arg-type]
    assert slo.as_objective() == SloObjective(
        service="llm", objective=0.99, window=7200.0, desired=3
    )
    hook = NotifierSection(name="n", type="webhook", url="http://127.0.0.1:9/")
    assert hook.as_settings() == NotifierSettings(
        name="n", type="webhook", url="http://127.0.0.1:9/"
    )
