"""The sidecar agent: registers an unmodified LLM server, checks it, reports, drains."""

from fleetwatch.agent.agent import Agent, StopReason
from fleetwatch.agent.settings import AgentSettings, default_instance_id

__all__ = ["Agent", "AgentSettings", "StopReason", "default_instance_id"]
