"""``fleetwatch gateway``: an OpenAI-compatible proxy routed by discovery and load."""

from fleetwatch.gateway.app import Gateway
from fleetwatch.gateway.settings import GatewaySettings

__all__ = ["Gateway", "GatewaySettings"]
