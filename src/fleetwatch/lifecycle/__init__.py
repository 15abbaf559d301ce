"""Process lifecycle: serving ASGI apps under fleetwatch's own signal handling, counting
requests in flight, and the drain that lets an instance leave without dropping a request."""

from fleetwatch.lifecycle.drain import DrainReport, Membership, drain
from fleetwatch.lifecycle.http_limits import HttpLimits
from fleetwatch.lifecycle.inflight import InFlight
from fleetwatch.lifecycle.service import LlmService, ServiceOptions, serve_llm_app
from fleetwatch.lifecycle.serving import AppServer, wait_for_stop_signal

__all__ = [
    "AppServer",
    "DrainReport",
    "HttpLimits",
    "InFlight",
    "LlmService",
    "Membership",
    "ServiceOptions",
    "drain",
    "serve_llm_app",
    "wait_for_stop_signal",
]
