"""Serve an ASGI app with uvicorn inside a running event loop, under our signal handling.

uvicorn's own handler stops accepting connections the moment SIGTERM arrives and re-raises the
signal afterwards; fleetwatch decides itself what a signal means (a drain, later), so the server
here never touches signals and is stopped by :meth:`AppServer.aclose`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Generator
from typing import Any

import uvicorn

from fleetwatch._async_resource import AsyncResource
from fleetwatch.errors import ServeError
from fleetwatch.lifecycle._http_limits import BodySizeLimit, HeaderSizeLimit, HttpLimits

DEFAULT_LIMITS = HttpLimits()

#: Binding a socket and running an app's start-up takes milliseconds; a start-up that takes
#: longer than this is stuck (a lifespan waiting on something that never comes).
STARTUP_LIMIT_S = 30.0


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # signals belong to the application, see wait_for_stop_signal()


class AppServer(AsyncResource):
    """An ASGI app served on ``host:port`` (port 0 picks a free one) as an async context manager.

    Every server gets the slow-client deadlines and size limits of ``limits``
    (see :mod:`fleetwatch.lifecycle._http_limits`).
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        access_log: bool = False,
        tls: tuple[str, str] | None = None,
        limits: HttpLimits = DEFAULT_LIMITS,
        **uvicorn_options: Any,
    ) -> None:
        uvicorn_options = {**limits.uvicorn_options(), **uvicorn_options}
        if tls is not None:
            uvicorn_options = {**uvicorn_options, "ssl_certfile": tls[0], "ssl_keyfile": tls[1]}
        if limits.max_body_bytes is not None:
            app = BodySizeLimit(app, limits.max_body_bytes)
        config = uvicorn.Config(
            HeaderSizeLimit(app, limits.max_header_bytes),
            host=host,
            port=port,
            log_level=log_level,
            access_log=access_log,
            lifespan="auto",
            **uvicorn_options,
        )
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None
        self.host = host
        self.port = port
        self.scheme = "https" if tls is not None else "http"

    @property
    def url(self) -> str:
        """``http(s)://host:port`` once started (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    async def start(self, *, within: float = STARTUP_LIMIT_S) -> None:
        """Bind and start serving; returns once the socket accepts connections.

        Raises :class:`ServeError` naming the address when the port cannot be bound (uvicorn
        itself would exit the process) or when start-up takes longer than ``within`` seconds.
        """
        self._task = asyncio.create_task(self._serve(), name="fleetwatch.http-server")
        try:
            async with asyncio.timeout(within):
                while not self._server.started:
                    if self._task.done():
                        await self._task
                        raise ServeError(f"the server on {self.host}:{self.port} did not start")
                    await asyncio.sleep(0.01)
        except TimeoutError:
            await self.aclose()
            raise ServeError(
                f"the server on {self.host}:{self.port} did not start within {within:g}s"
            ) from None
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit:
            # uvicorn logs the bind error and exits; turn that into an error we can report.
            raise ServeError(
                f"cannot listen on {self.host}:{self.port}: the address is in use or not "
                "available (choose another port, or stop what holds it)"
            ) from None

    async def aclose(self) -> None:
        """Stop serving and wait for uvicorn to finish (it closes idle connections)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._server.should_exit = True
        try:
            async with asyncio.timeout(10):
                await task
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_for_stop_signal(
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> signal.Signals:
    """Wait until one of ``signals`` arrives and return it; restores the handlers after."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await received
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
