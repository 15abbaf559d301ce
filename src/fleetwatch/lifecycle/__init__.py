"""Process lifecycle: serving ASGI apps under fleetwatch's own signal handling."""

from fleetwatch.lifecycle.serving import AppServer, wait_for_stop_signal

__all__ = ["AppServer", "wait_for_stop_signal"]
