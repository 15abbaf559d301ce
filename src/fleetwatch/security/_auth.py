"""Authentication and authorization, in one place: bearer tokens, their scopes, and who is
calling. The registry's API resolves a caller to a :class:`Principal` and the registry checks
its :class:`Scope`; the gateway checks its clients' tokens with :func:`client_token`."""

from __future__ import annotations

import hmac
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from fleetwatch.errors import Forbidden, Unauthorized

#: One token with every scope: the simplest set-up. The server accepts it and every fleetwatch
#: client command sends it.
TOKEN_ENV = "FLEETWATCH_TOKEN"  # noqa: S105 - the variable's name, not a secret


class Scope:
    """Token scopes."""

    READ = "read"
    REGISTER = "register"
    #: Write orders to hosts (and deployments).
    DEPLOY = "deploy"
    #: Be one host: report it, read its own orders, report on them. A token with this scope
    #: is bound to one host id.
    HOST = "host"
    ADMIN = "admin"
    #: What a token with every scope holds. ``host`` is not in it: a host token is bound to
    #: one host, so it is given on purpose.
    ALL = frozenset({READ, REGISTER, DEPLOY, ADMIN})
    #: Every scope a configuration may name.
    KNOWN = frozenset({READ, REGISTER, DEPLOY, HOST, ADMIN})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's name (never the secret) and its scopes."""

    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    authenticated: bool = True
    #: The one host a ``host`` token acts as (None for any other token).
    host_id: str | None = None

    @property
    def admin(self) -> bool:
        """Whether this caller may act on anyone's instance."""
        return Scope.ADMIN in self.scopes

    def require(self, scope: str, what: str) -> None:
        """Raise unless the caller holds ``scope`` (admin holds every scope): Unauthorized when
        no token was presented, Forbidden when the token lacks the scope."""
        if scope in self.scopes or self.admin:
            return
        if not self.authenticated:
            raise Unauthorized(
                f"{what} needs a bearer token (Authorization: Bearer <token>, e.g. the value of "
                "FLEETWATCH_TOKEN)"
            )
        if scope not in self.scopes and not self.admin:
            raise Forbidden(
                f"{what} needs a token with the {scope!r} scope; {self.name!r} has "
                f"{', '.join(sorted(self.scopes)) or 'none'}"
            )

    def require_host(self, host_id: str, what: str) -> None:
        """Raise Forbidden unless the caller may act as host ``host_id``: a host token bound
        to it, or an admin."""
        if self.admin:
            return
        self.require(Scope.HOST, what)
        if self.host_id != host_id:
            raise Forbidden(
                f"{what}: {self.name!r} is the token of host {self.host_id!r}, not {host_id!r}"
            )

    def require_not_other_host(self, host_id: str, what: str) -> None:
        """Raise Forbidden when the caller is a host token bound to another host: a host
        sees only its own orders."""
        if self.host_id is not None and self.host_id != host_id and not self.admin:
            raise Forbidden(
                f"{what}: {self.name!r} is the token of host {self.host_id!r}, not {host_id!r}"
            )


ANONYMOUS = Principal("anonymous", authenticated=False)


@dataclass(frozen=True, slots=True)
class Token:
    """A named secret and what it may do."""

    name: str
    secret: str
    scopes: frozenset[str]
    #: For a token with the ``host`` scope: the host it is bound to.
    host_id: str | None = None

    def __post_init__(self) -> None:
        if (Scope.HOST in self.scopes) != (self.host_id is not None):
            raise ValueError(
                f"token {self.name!r}: the host scope and a host id go together "
                "(a host token is bound to exactly one host)"
            )
        if Scope.HOST in self.scopes and self.scopes & {Scope.DEPLOY, Scope.ADMIN}:
            raise ValueError(
                f"token {self.name!r}: a host token cannot also deploy or administer "
                "(it would write orders to every host); give those to another token"
            )


class TokenAuth:
    """Resolves ``Authorization: Bearer <token>`` to a :class:`Principal`."""

    def __init__(self, tokens: Iterable[Token], *, open_reads: bool = False) -> None:
        self._tokens = [t for t in tokens if t.secret]
        self.open_reads = open_reads

    @classmethod
    def from_environment(
        cls,
        tokens: Iterable[Token] = (),
        *,
        open_reads: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> TokenAuth:
        """Configured tokens plus, if set, ``FLEETWATCH_TOKEN`` with every scope."""
        env = os.environ if environ is None else environ
        all_tokens = list(tokens)
        if secret := env.get(TOKEN_ENV):
            all_tokens.append(Token("default", secret, Scope.ALL))
        return cls(all_tokens, open_reads=open_reads)

    @property
    def configured(self) -> bool:
        """Whether any token exists (without one, nothing can be written)."""
        return bool(self._tokens)

    def principal(self, authorization: str | None) -> Principal:
        """The caller behind an Authorization header; anonymous (no scopes) without one."""
        if not authorization:
            scopes = frozenset({Scope.READ}) if self.open_reads else frozenset()
            return Principal(ANONYMOUS.name, scopes, authenticated=False)
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        presented_bytes = presented.strip().encode()
        found: Token | None = None
        for token in self._tokens:  # compare with every token, so timing reveals nothing
            if hmac.compare_digest(presented_bytes, token.secret.encode()):
                found = token
        if found is None:
            raise Unauthorized("the bearer token is not valid")
        return Principal(found.name, found.scopes, host_id=found.host_id)


#: Any client may call: the gateway has no tokens.
OPEN = True


def client_token(authorization: str, tokens: Collection[str]) -> str | bool | None:
    """The token the client presented when it is one of ``tokens``; ``OPEN`` when there are
    no tokens; None when it is missing or wrong."""
    if not tokens:
        return OPEN
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return None
    # Compare against every token, always, in constant time per token.
    matches = [hmac.compare_digest(presented.encode(), t.encode()) for t in tokens]
    return presented if any(matches) else None
