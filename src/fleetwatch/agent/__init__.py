"""The sidecar agent: registers an unmodified LLM server, checks it, reports, drains."""

from fleetwatch.agent._agent import Agent, StopReason
from fleetwatch.agent._port import PORT_PLACEHOLDER, needs_port, start_on_free_port
from fleetwatch.agent._settings import AgentSettings, default_instance_id

__all__ = [
    "PORT_PLACEHOLDER",
    "Agent",
    "AgentSettings",
    "StopReason",
    "default_instance_id",
    "needs_port",
    "start_on_free_port",
]
