"""FastAPI dependencies: the registry and the caller, taken from the app's state.

They are ``async def`` though they never await: FastAPI runs a plain ``def`` dependency in
its thread pool, and a thread hop (with the GIL handed back and forth) for each of them on
every request slowed a node serving 400 agents until their leases lapsed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from fleetwatch.registry._registry import Registry
from fleetwatch.security._auth import Principal, Scope, TokenAuth

#: Service names and instance ids in paths.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


async def registry(request: Request) -> Registry:
    """The registry this app serves."""
    found: Registry = request.app.state.registry
    return found


async def caller(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """Who is calling, from the bearer token (anonymous without one)."""
    auth: TokenAuth = request.app.state.auth
    return auth.principal(authorization)


async def reader(who: Annotated[Principal, Depends(caller)]) -> Principal:
    """A caller allowed to read (any token with ``read``, or anyone when reads are open)."""
    who.require(Scope.READ, "reading the registry")
    return who


RegistryDep = Annotated[Registry, Depends(registry)]
Caller = Annotated[Principal, Depends(caller)]
Reader = Annotated[Principal, Depends(reader)]
