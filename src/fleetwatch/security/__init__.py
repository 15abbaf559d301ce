"""Security: which networks the registry's monitor may contact."""

from fleetwatch.security.networks import DEFAULT_ALLOWED_NETWORKS, NetworkPolicy

__all__ = ["DEFAULT_ALLOWED_NETWORKS", "NetworkPolicy"]
