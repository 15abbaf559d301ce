"""Process lifecycle: serving ASGI apps under fleetwatch's own signal handling, counting
requests in flight, and the drain that lets an instance leave without dropping a request."""

from fleetwatch.lifecycle._app_server import AppServer, wait_for_stop_signal
from fleetwatch.lifecycle._drain import DrainReport, Membership, drain
from fleetwatch.lifecycle._http_limits import HttpLimits
from fleetwatch.lifecycle._inflight import InFlight
from fleetwatch.lifecycle._service import LlmService, ServiceOptions, serve_llm_app

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
