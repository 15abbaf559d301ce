"""Bearer tokens with scopes, compared in constant time; secrets are never logged or stored."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fleetwatch.errors import Unauthorized
from fleetwatch.registry.registry import ANONYMOUS, TOKEN_ENV, Principal, Scope


@dataclass(frozen=True, slots=True)
class Token:
    """A named secret and what it may do."""

    name: str
    secret: str
    scopes: frozenset[str]


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
        return Principal(found.name, found.scopes)
