"""LLM awareness: an adapter per server family, readiness and a cheap streamed generation
probe under a token budget, and load read from each server's own metrics."""

from fleetwatch.llm._adapters import (
    KINDS,
    LoadSignals,
    Phase,
    Readiness,
    ServerAdapter,
    adapter_for,
)
from fleetwatch.llm._check import (
    GENERATE_CHECK,
    READY_CHECK,
    GenerationCheck,
    LlmServer,
    LlmServerSettings,
    ReadinessCheck,
)
from fleetwatch.llm._economy import ProbeGovernor
from fleetwatch.llm._probe import ProbeReply, generate_probe
from fleetwatch.llm._prometheus import MetricsPage, parse_metrics

__all__ = [
    "GENERATE_CHECK",
    "KINDS",
    "READY_CHECK",
    "GenerationCheck",
    "LlmServer",
    "LlmServerSettings",
    "LoadSignals",
    "MetricsPage",
    "Phase",
    "ProbeGovernor",
    "ProbeReply",
    "Readiness",
    "ReadinessCheck",
    "ServerAdapter",
    "adapter_for",
    "generate_probe",
    "parse_metrics",
]
