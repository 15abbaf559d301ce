"""Security: tokens and scopes (who may do what), which networks the registry's monitor may
contact, and TLS."""

from fleetwatch.security._auth import (
    ANONYMOUS,
    TOKEN_ENV,
    Principal,
    Scope,
    Token,
    TokenAuth,
    client_token,
)
from fleetwatch.security._networks import DEFAULT_ALLOWED_NETWORKS, NetworkPolicy

__all__ = [
    "ANONYMOUS",
    "DEFAULT_ALLOWED_NETWORKS",
    "TOKEN_ENV",
    "NetworkPolicy",
    "Principal",
    "Scope",
    "Token",
    "TokenAuth",
    "client_token",
]
