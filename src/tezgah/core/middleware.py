"""Pure ASGI middleware: no ``BaseHTTPMiddleware``, so context variables and streaming work and
each layer costs one function call per message.

Order, outermost first (see ``install_middleware``): request context (request id, language,
security headers, access log, metrics, Server-Timing, last-resort 500), trusted hosts, CORS,
GZip, body-size limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tezgah.core import context, metrics
from tezgah.core.compression import GZipMiddleware
from tezgah.core.config import Settings
from tezgah.core.errors import (
    AppError,
    CORSRefused,
    InternalError,
    InvalidHost,
    PayloadTooLarge,
    problem_response,
)
from tezgah.core.i18n import negotiate_language, set_language
from tezgah.core.logging import enabled_for as logging_enabled_for
from tezgah.core.logging import get_logger, write_access_line

error_log = get_logger("tezgah.error")

UNMATCHED_ROUTE = "<unmatched>"
HTTP1_VERSIONS = frozenset({"1.0", "1.1"})
DOCS_PATHS = ("/docs", "/redoc", "/static/swagger")
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)

API_CSP_BYTES = API_CSP.encode()
DOCS_CSP_BYTES = DOCS_CSP.encode()


def header_value(scope: Scope, name: bytes) -> str | None:
    """One request header, read from the raw ASGI list without building a ``Headers`` object
    (names arrive lower-cased from the server)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/designs/{id}``), never the raw path,
    so metrics and logs have a bounded number of label values."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(path, str):
        return str(scope.get("root_path", "")) + path
    return UNMATCHED_ROUTE


class SecurityHeaders:
    """The security headers of every response. Applied by :class:`RequestContextMiddleware`
    in the same ``send`` wrapper as the request id: one layer less on every request."""

    def __init__(self, *, https: bool, hsts_max_age: int) -> None:
        self.static_headers: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
        ]
        if https:
            value = f"max-age={hsts_max_age}; includeSubDomains".encode()
            self.static_headers.append((b"strict-transport-security", value))
        # Framing and browsing-context isolation only mean something for documents (docs, web
        # app). Every response's CSP says frame-ancestors 'none'; X-Frame-Options repeats it
        # for browsers that predate CSP, which only ever render documents.
        self.document_headers = [
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]

    def apply(self, path: str, raw: list[tuple[bytes, bytes]]) -> None:
        has_csp = False
        is_document = False
        present = set()
        for name, value in raw:
            present.add(name)
            if name == b"content-security-policy":
                has_csp = True
            elif name == b"content-type" and value.startswith(b"text/html"):
                is_document = True
        # A header the response set itself (a download's nosniff) is not sent twice.
        raw.extend(header for header in self.static_headers if header[0] not in present)
        if is_document:
            raw.extend(self.document_headers)
        if not has_csp:
            csp = DOCS_CSP_BYTES if path.startswith(DOCS_PATHS) else API_CSP_BYTES
            raw.append((b"content-security-policy", csp))


class RequestContextMiddleware:
    """Request id, language, security headers, access log, metrics, Server-Timing, and the
    last-resort 500."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default_language: str,
        metrics_enabled: bool,
        security: SecurityHeaders,
    ) -> None:
        self.app = app
        self.default_language = default_language
        self.metrics_enabled = metrics_enabled
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = self._request_id(header_value(scope, b"x-request-id"))
        accept_language = header_value(scope, b"accept-language")
        set_language(negotiate_language(accept_language, self.default_language))
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await self._handle_http(scope, receive, send, started, request_id)

    @staticmethod
    def _request_id(incoming: str | None) -> str:
        """Accept a well-formed incoming id; replace anything else, which is never echoed
        (it would let a client inject text into logs and other services' headers)."""
        valid = incoming is not None and context.is_valid_request_id(incoming)
        request_id = incoming if valid and incoming is not None else context.new_request_id()
        context.set_request_id(request_id)
        context.set_user_id(None)  # log lines take both from the request's context
        if incoming is not None and not valid:
            error_log.warning("invalid_request_id_replaced", length=len(incoming))
        return request_id

    async def _handle_http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        started: float,
        request_id: str,
    ) -> None:
        state: dict[str, Any] = {"status": 500, "started": False}
        request_id_bytes = request_id.encode("latin-1")
        security = self.security
        path: str = scope["path"]

        async def send_with_context(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                elapsed_ms = (time.perf_counter() - started) * 1000
                # Routes never set these two headers: appending is enough.
                raw = list(message.get("headers", ()))
                raw.append((b"x-request-id", request_id_bytes))
                raw.append((b"server-timing", b"app;dur=%.1f" % elapsed_ms))
                security.apply(path, raw)
                message["headers"] = raw
            await send(message)

        if self.metrics_enabled:
            metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_context)
        except Exception:
            error_log.exception("unhandled_exception", path=scope.get("path"))
            if not state["started"]:
                await problem_response(InternalError())(scope, receive, send_with_context)
        finally:
            if self.metrics_enabled:
                metrics.IN_FLIGHT.dec()
            self._finish(scope, state["status"], started)

    def _finish(self, scope: Scope, status: int, started: float) -> None:
        duration = time.perf_counter() - started
        route = route_template(scope)
        method = str(scope.get("method", ""))
        if self.metrics_enabled:
            metrics.observe_request(method, route, status, duration)
        if not logging_enabled_for(logging.INFO):
            return
        # request_id (and user_id once authenticated) come from the bound log context.
        write_access_line(
            {
                "method": method,
                "path": route,
                "status": status,
                "duration_ms": round(duration * 1000, 2),
                "client": (scope.get("client") or (None,))[0],
            }
        )


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS layer, answering a refused preflight in the API's error format."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        problem = problem_response(CORSRefused())
        for name in ("vary", "access-control-max-age"):
            if name in response.headers:
                problem.headers[name] = response.headers[name]
        return problem


class TrustedHostMiddleware:
    """Answer only to configured host names (``*.example.com`` wildcards allowed)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allow_any = "*" in allowed_hosts
        self.exact = {host.lower() for host in allowed_hosts if not host.startswith("*.")}
        self.suffixes = tuple(host[1:].lower() for host in allowed_hosts if host.startswith("*."))

    def host_allowed(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.lower()
        return name in self.exact or (bool(self.suffixes) and name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = header_value(scope, b"host") or ""
        if self.host_allowed(host):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            await problem_response(InvalidHost())(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008})


class BodySizeLimitMiddleware:
    """Refuse bodies over the limit: at once from Content-Length, or while streaming.

    Routes under ``exempt_prefixes`` (resumable uploads) enforce their own, larger limits.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, exempt_prefixes: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # "/api/v1/uploads" exempts itself and what is under it, not "/api/v1/uploadsX".
        self.exempt_prefixes = tuple(exempt_prefixes)
        self.exempt_subtrees = tuple(prefix.rstrip("/") + "/" for prefix in self.exempt_prefixes)

    def _exempt(self, path: str) -> bool:
        return path in self.exempt_prefixes or path.startswith(self.exempt_subtrees)

    def _too_large(self) -> AppError:
        return PayloadTooLarge(params={"limit": self.max_bytes})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt_prefixes and self._exempt(scope["path"])):
            await self.app(scope, receive, send)
            return
        declared = header_value(scope, b"content-length")
        if (
            declared is None
            and scope.get("http_version") in HTTP1_VERSIONS
            and header_value(scope, b"transfer-encoding") is None
        ):
            # HTTP/1.x: without either header a request has no body; nothing to count.
            # (HTTP/2 may send a body with neither, so it is always counted.)
            await self.app(scope, receive, send)
            return
        if declared is not None:
            # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
            if not (declared.isascii() and declared.isdigit()):
                await problem_response(AppError())(scope, receive, send)
                return
            # More digits than the limit has (leading zeros aside) is over it; this also keeps
            # int() away from digit strings longer than it will parse.
            digits = declared.lstrip("0")
            if len(digits) > len(str(self.max_bytes)) or int(digits or "0") > self.max_bytes:
                await problem_response(self._too_large())(scope, receive, send)
                return
        await self._stream_with_limit(scope, receive, send)

    async def _stream_with_limit(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = {"received": 0, "exceeded": False, "started": False}

        async def limited_receive() -> Message:
            if state["exceeded"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    # Tell the app the client went away; we answer 413 ourselves.
                    state["exceeded"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["exceeded"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["exceeded"]:
                raise
        if state["exceeded"] and not state["started"]:
            await problem_response(self._too_large())(scope, receive, send)


def install_middleware(
    app: FastAPI, settings: Settings, exempt_body_prefixes: Iterable[str]
) -> None:
    """Add middleware innermost first: Starlette wraps each new one around the previous."""
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        exempt_prefixes=tuple(exempt_body_prefixes),
    )
    app.add_middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes)
    if settings.cors_origins:
        app.add_middleware(
            ProblemCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Accept-Language",
                "X-Request-ID",
                "X-API-Key",
                "X-CSRF-Token",
                "Idempotency-Key",
                "If-None-Match",
                "If-Match",
                "Upload-Offset",
                "Upload-Length",
                "Upload-Metadata",
                "Upload-Checksum",
                "Tus-Resumable",
            ],
            expose_headers=[
                "X-Request-ID",
                "ETag",
                "Link",
                "Location",
                "Retry-After",
                "Server-Timing",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "Upload-Offset",
                "Upload-Length",
                "Tus-Resumable",
            ],
            max_age=600,
        )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    app.add_middleware(
        RequestContextMiddleware,
        default_language=settings.default_language,
        metrics_enabled=settings.metrics_enabled,
        security=SecurityHeaders(https=settings.https, hsts_max_age=settings.hsts_max_age),
    )
