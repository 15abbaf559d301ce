"""Request body limits, enforced before a body reaches the app."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetwatch.lifecycle._http_limits import send_too_large


class BodyLimit:
    """Refuse request bodies above ``limit`` bytes with 413, declared or chunked.

    Bodies are read here (they are small: registrations, status changes) and handed to the app
    whole, so a chunked upload that grows too large is refused with a clear 413 instead of
    surfacing as a parse error deep in the framework.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await send_too_large(send, self.limit)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; let the app see it
            body += message.get("body", b"")
            if len(body) > self.limit:
                await send_too_large(send, self.limit)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
