"""The baseline: a bare Starlette endpoint returning the same body as tezgah's ``/health``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/health", health)])


# The same endpoint answering with the response headers tezgah adds to every response (security
# headers, request id, Server-Timing): the server's own cost of writing them, without any of
# tezgah's code, so the report can tell header cost from middleware cost.
TEZGAH_RESPONSE_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "content-security-policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-request-id": "0123456789abcdef0123456789abcdef",
    "server-timing": "app;dur=0.1",
}


async def health_with_headers(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=TEZGAH_RESPONSE_HEADERS)


app_with_headers = Starlette(routes=[Route("/health", health_with_headers)])
