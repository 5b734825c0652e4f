"""Request bodies bounded before they are read whole: an ASGI middleware.

A declared ``Content-Length`` above the limit is refused at once with 413, without reading a byte;
a body sent without one (chunked) is counted as it arrives and cut off at the limit.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class UploadTooLargeError(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the {limit / 1024 / 1024:g} MB allowed (--max-upload-mb)")


class VideoTooLongError(Exception):
    def __init__(self, seconds: float, limit: float) -> None:
        super().__init__(f"the video lasts {seconds:.1f} s, longer than the {limit:g} s allowed (--max-video-s)")


async def send_json(send: Send, status: int, payload: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_json(send, 413, {"error": str(UploadTooLargeError(self.max_bytes))},
                            [(b"connection", b"close")])
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLargeError(self.max_bytes)
            return message

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except UploadTooLargeError as e:  # raised wherever the body was being read: answered here
            if started:
                raise
            await send_json(send, 413, {"error": str(e)}, [(b"connection", b"close")])
