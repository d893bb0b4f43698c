"""A request body larger than the context could hold is refused before it is parsed.

Tokenizing is the first thing that would find out, and it runs on the one
engine thread: a 30 MB message took 33 s there (7.5M tokens) while every
other client waited, only to be refused for its length. No prompt that fits
`n_ctx` tokens needs more than `BYTES_PER_TOKEN` bytes a token of JSON (a
token is a few characters; a character escaped as \\uXXXX is six bytes), plus
`SLACK` for the rest of the request (tools, options), so a body beyond that
gets 413 at once: by its Content-Length when it gives one, else as it arrives.
The body is read to its end, unkept, so a client still writing can read the
answer (closing mid-upload would leave it a broken pipe instead).
"""

from __future__ import annotations

import json

BYTES_PER_TOKEN = 64
SLACK = 1 << 20
DRAIN_LIMIT = 1 << 30  # past this, stop reading and close: the answer is lost, the server is not


def body_limit(n_ctx: int) -> int:
    return SLACK + BYTES_PER_TOKEN * n_ctx


class BodyLimit:
    """ASGI middleware: POST bodies over `limit` bytes get OpenAI's error object with 413."""

    def __init__(self, app, limit: int, n_ctx: int, on_refuse=lambda: None):
        self.app = app
        self.limit = limit
        self.n_ctx = n_ctx
        self.on_refuse = on_refuse

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(receive, send, declared)
            return
        # No length given (chunked) or a length within the limit: read the
        # body here, counting, and hand it on whole.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(receive, send, None, size, more=message.get("more_body", False))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then: disconnect, as the app expects

        await self.app(scope, replay, send)

    async def _refuse(self, receive, send, declared: int | None, seen: int = 0, more: bool = True) -> None:
        self.on_refuse()
        while more and seen < DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        size = f"{declared}" if declared is not None else f"more than {seen}" if more else f"{seen}"
        error = {
            "message": (
                f"The request body is {size} bytes, more than this server takes: its context holds "
                f"{self.n_ctx} tokens, so a request may be at most {self.limit} bytes."
            ),
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }
        payload = json.dumps({"error": error}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if more:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
