"""Launch profiles: the only commands a host runs, and the only values an order may fill in.

An order names a profile from the host's own configuration and gives values for its
parameters. Each value is checked against its rule (a real path under a folder, one of a
list, a whole number in a range) and is substituted into the profile's argument list as one
argument, without a shell. An order that breaks a rule is refused and nothing runs: the
network chooses among what the host allows, never what it runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleetwatch.errors import FleetwatchError

#: The placeholder the per-instance agent fills with the port it picks.
PORT_PARAM = "port"
#: The placeholder the host fills with its own address (where the server is to listen).
ADDRESS_PARAM = "address"
BUILTIN_PARAMS = frozenset({PORT_PARAM, ADDRESS_PARAM})
#: What any value may hold: no shell metacharacter, quote, space or control character, even
#: though no shell ever sees it (a value is one argument), so a log line or a copied command
#: cannot be misread either.
SAFE_VALUE = re.compile(r"^[A-Za-z0-9._/:=@+,-]{1,256}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class OrderRefused(FleetwatchError):
    """An order the host's configuration does not allow; the message says what and why."""


@dataclass(frozen=True, slots=True)
class ParamRule:
    """What one parameter may be. Exactly one of ``path_under``, ``one_of`` or ``integer``."""

    name: str
    #: The value is a path whose real path (symlinks resolved) lies inside this folder.
    path_under: str | None = None
    #: ...and ends with this suffix.
    suffix: str = ""
    #: The value is one of these.
    one_of: tuple[str, ...] = ()
    #: The value is a whole number in [low, high].
    integer: tuple[int, int] | None = None
    #: Used when the order leaves the parameter out (None: the order must give it).
    default: str | None = None

    def __post_init__(self) -> None:
        kinds = [self.path_under is not None, bool(self.one_of), self.integer is not None]
        if sum(kinds) != 1:
            raise ValueError(
                f"parameter {self.name!r}: give exactly one of path_under, one_of or integer"
            )

    def check(self, value: str) -> str:
        """The value to substitute (a path comes back resolved); raises OrderRefused."""
        where = f"parameter {self.name!r}"
        if not SAFE_VALUE.match(value):
            raise OrderRefused(
                f"{where}: {value!r} holds a character that is not allowed (allowed: letters, "
                "digits and . _ / : = @ + , -; at most 256)"
            )
        if self.one_of:
            if value not in self.one_of:
                raise OrderRefused(f"{where}: {value!r} is not one of {', '.join(self.one_of)}")
            return value
        if self.integer is not None:
            low, high = self.integer
            if not value.isdigit() or not low <= int(value) <= high:
                raise OrderRefused(f"{where}: {value!r} is not a whole number in {low}..{high}")
            return value
        assert self.path_under is not None
        try:
            return self._check_path(value, where)
        except OSError as exc:  # an unreadable folder, a broken mount: refused, and said why
            raise OrderRefused(f"{where}: {value!r} cannot be checked: {exc}") from None

    def _check_path(self, value: str, where: str) -> str:
        assert self.path_under is not None
        root = Path(os.path.realpath(self.path_under))
        candidate = Path(value) if os.path.isabs(value) else root / value
        resolved = Path(os.path.realpath(candidate))
        if not resolved.is_relative_to(root):
            raise OrderRefused(
                f"{where}: {value!r} resolves to {str(resolved)!r}, outside {str(root)!r}"
            )
        if self.suffix and not resolved.name.endswith(self.suffix):
            raise OrderRefused(f"{where}: {value!r} does not end with {self.suffix!r}")
        if not resolved.is_file():
            raise OrderRefused(f"{where}: {value!r} is not a file under {str(root)!r}")
        return str(resolved)


@dataclass(frozen=True, slots=True)
class LaunchProfile:
    """A command a host may run, what fills it, and how its agent registers it."""

    name: str
    #: The argument list, with ``{param}`` placeholders (``{port}`` is the agent's).
    command: tuple[str, ...]
    #: The server family (``llamacpp``, ``vllm``, ``openai``...), as ``fleetwatch agent --kind``.
    kind: str = "openai"
    params: Mapping[str, ParamRule] = field(default_factory=dict)
    #: Run the server as this user (the daemon needs to be root to drop to it).
    user: str | None = None
    #: The model the server must serve, if the agent is to check it.
    model: str | None = None
    #: Extra ``fleetwatch agent`` options (``--ttl``, ``--propagation-delay``...).
    agent_args: tuple[str, ...] = ()
    #: How long a start may take to become available before the order fails.
    ready_timeout: float = 600.0

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError(f"profile {self.name!r}: the command is empty")
        used = {m for part in self.command for m in _PLACEHOLDER.findall(part)}
        unknown = used - set(self.params) - BUILTIN_PARAMS
        if unknown:
            raise ValueError(
                f"profile {self.name!r}: the command uses {', '.join(sorted(unknown))}, "
                "which [profiles.params] does not define"
            )

    def render(self, values: Mapping[str, str], *, address: str) -> tuple[str, ...]:
        """The command with every parameter checked and substituted, ``{address}`` as the
        host's; ``{port}`` is left for the agent."""
        unknown = set(values) - set(self.params)
        if unknown:
            raise OrderRefused(
                f"profile {self.name!r} has no parameter {', '.join(sorted(unknown))} "
                f"(it takes: {', '.join(sorted(self.params)) or 'none'})"
            )
        checked: dict[str, str] = {}
        for name, rule in self.params.items():
            given = values.get(name, rule.default)
            if given is None:
                raise OrderRefused(f"profile {self.name!r}: parameter {name!r} is required")
            checked[name] = rule.check(given)
        checked[PORT_PARAM] = "{" + PORT_PARAM + "}"
        checked[ADDRESS_PARAM] = address

        def fill(part: str) -> str:
            return _PLACEHOLDER.sub(lambda m: checked[m.group(1)], part)

        return tuple(fill(part) for part in self.command)


def find_profile(profiles: Mapping[str, LaunchProfile], name: str) -> LaunchProfile:
    """The profile called ``name``; raises OrderRefused naming the ones that exist."""
    try:
        return profiles[name]
    except KeyError:
        raise OrderRefused(
            f"unknown launch profile {name!r}; this host allows: "
            f"{', '.join(sorted(profiles)) or 'none'}"
        ) from None
