"""``fleetwatch gateway``: an OpenAI-compatible proxy routed by discovery and load."""

from fleetwatch.gateway._app import Gateway
from fleetwatch.gateway._settings import GatewaySettings

__all__ = ["Gateway", "GatewaySettings"]
