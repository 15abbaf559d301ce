"""Client authentication: a bearer token among the gateway's."""

from __future__ import annotations

import hmac
from collections.abc import Collection

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
