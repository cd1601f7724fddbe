"""GZip for large text responses, as pure ASGI.

Starlette's ``GZipMiddleware`` wraps every response even for clients that never asked for gzip;
this one costs a header scan for them. For clients that accept gzip it compresses JSON, text and
XML bodies from ``minimum_size`` bytes, whole bodies at once and streamed bodies chunk by chunk,
and leaves alone anything already encoded, binary, event streams and small bodies.
"""

from __future__ import annotations

import gzip
import zlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMPRESSIBLE_TYPES = (
    b"application/json",
    b"application/problem+json",
    b"application/javascript",
    b"application/xml",
    b"image/svg+xml",
    b"text/",
)
COMPRESS_LEVEL = 6
GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib stream with a gzip header and trailer


def accepts_gzip(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept-encoding":
            for token in value.decode("latin-1").lower().split(","):
                coding, _, params = token.partition(";")
                if coding.strip() in ("gzip", "*"):
                    return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def is_compressible(headers: list[tuple[bytes, bytes]]) -> bool:
    content_type = b""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-encoding":
            return False
        if lowered == b"content-type":
            content_type = value.lower()
    if content_type.startswith(b"text/event-stream"):
        return False
    return content_type.startswith(COMPRESSIBLE_TYPES)


def _compressed_headers(
    headers: list[tuple[bytes, bytes]], length: int | None
) -> list[tuple[bytes, bytes]]:
    """The original headers without Content-Length, plus encoding, Vary and the new length."""
    kept = [(name, value) for name, value in headers if name.lower() != b"content-length"]
    varies = any(
        name.lower() == b"vary" and b"accept-encoding" in value.lower() for name, value in kept
    )
    if not varies:
        kept.append((b"vary", b"Accept-Encoding"))
    kept.append((b"content-encoding", b"gzip"))
    if length is not None:
        kept.append((b"content-length", str(length).encode()))
    return kept


class GZipMiddleware:
    def __init__(self, app: ASGIApp, *, minimum_size: int = 1024) -> None:
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not accepts_gzip(scope):
            await self.app(scope, receive, send)
            return
        await _GZipResponder(self.minimum_size, send).run(self.app, scope, receive)


class _GZipResponder:
    """Holds the response start until the first body chunk says whether to compress."""

    def __init__(self, minimum_size: int, send: Send) -> None:
        self.minimum_size = minimum_size
        self.send = send
        self.start: Message | None = None
        self.decided = False
        self.compressor: zlib._Compress | None = None

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive) -> None:
        await app(scope, receive, self.send_message)

    async def send_message(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        if not self.decided:
            await self._first_body(message)
            return
        await self._next_body(message)

    async def _first_body(self, message: Message) -> None:
        assert self.start is not None
        self.decided = True
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        headers = list(self.start.get("headers", ()))
        # An empty body stays empty whatever the minimum size: a gzip header and trailer would
        # give a body to responses that must have none (204, 304).
        if not is_compressible(headers) or (not more and len(body) < max(self.minimum_size, 1)):
            await self.send(self.start)
            await self.send(message)
            return
        if not more:
            compressed = gzip.compress(body, compresslevel=COMPRESS_LEVEL, mtime=0)
            self.start["headers"] = _compressed_headers(headers, len(compressed))
            await self.send(self.start)
            await self.send({"type": "http.response.body", "body": compressed})
            return
        self.compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, GZIP_WBITS)
        self.start["headers"] = _compressed_headers(headers, None)
        await self.send(self.start)
        await self._next_body(message)

    async def _next_body(self, message: Message) -> None:
        if self.compressor is None:
            await self.send(message)
            return
        more = bool(message.get("more_body", False))
        chunk = self.compressor.compress(message.get("body", b""))
        chunk += self.compressor.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)
        await self.send({"type": "http.response.body", "body": chunk, "more_body": more})
