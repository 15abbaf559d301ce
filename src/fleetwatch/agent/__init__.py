"""The sidecar agent: registers an unmodified LLM server, checks it, reports, drains."""

from fleetwatch.agent.agent import Agent, StopReason
from fleetwatch.agent.port import PORT_PLACEHOLDER, needs_port, start_on_free_port
from fleetwatch.agent.settings import AgentSettings, default_instance_id

__all__ = [
    "PORT_PLACEHOLDER",
    "Agent",
    "AgentSettings",
    "StopReason",
    "default_instance_id",
    "needs_port",
    "start_on_free_port",
]
