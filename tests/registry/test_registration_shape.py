"""A registration has one shape: the frozen ``Registration``. The API's body, the client's
request and the agent's registration all follow from it."""

from __future__ import annotations

from dataclasses import fields

from fleetwatch.registry import CheckSpec, CheckType, Instance, Registration
from fleetwatch.registry._model import REGISTRATION_FIELDS
from fleetwatch.registry_api._schemas import CheckBody, RegistrationBody


def test_the_api_body_has_exactly_the_registration_fields() -> None:
    """The HTTP body and its check take the fields of Registration and CheckSpec, no more and
    no fewer: a field added to the value must be added to the API, or this fails."""
    assert set(RegistrationBody.model_fields) == set(REGISTRATION_FIELDS)
    assert set(CheckBody.model_fields) == {f.name for f in fields(CheckSpec)}
    assert tuple(f.name for f in fields(Registration)) == REGISTRATION_FIELDS


def test_a_registration_goes_through_the_api_body_unchanged() -> None:
    """What the client sends (as_body) parses, through the API's validation, back into the
    same value."""
    sent = Registration(
        host="10.0.0.7",
        port=8080,
        check=CheckSpec(type=CheckType.TTL, agent_port=9100),
        tags=frozenset({"gpu", "zone=a"}),
        metadata={"kind": "llamacpp"},
        version="2",
        weight=2.0,
        ttl=12.0,
    )
    assert RegistrationBody.model_validate(sent.as_body()).registration() == sent
    assert Registration.from_body(sent.as_body()) == sent


def test_an_instance_registers_again_as_it_is() -> None:
    """Registration.of(instance) carries every registration field of the stored instance."""
    instance = Instance(
        service="llm", instance_id="a", host="127.0.0.1", port=9, version="3", weight=0.5
    )
    again = Registration.of(instance)
    assert {name: getattr(again, name) for name in REGISTRATION_FIELDS} == {
        name: getattr(instance, name) for name in REGISTRATION_FIELDS
    }
