"""The pure ASGI middleware stack: security headers, request id and Server-Timing, CORS, trusted
hosts, gzip and the request body limit.

Every test builds ``create_app`` plus a few test-only routes and runs on both backends (SQLite and
PostgreSQL + Redis). The gzip layer is also driven directly with a raw ASGI app, where the order
of messages (streaming chunk by chunk) can be observed.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import re
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from babel.messages.pofile import read_po
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from tezgah.core.compression import GZipMiddleware
from tezgah.core.config import Settings
from tezgah.core.i18n import LOCALE_DIR
from tezgah.core.routing import make_router
from tezgah.main import create_app

PREFIX = "/test-mw"
UPLOADS = "/api/v1/uploads"
MAX_BODY_BYTES = 1024
CLIENT = ("203.0.113.21", 51000)

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
ROUTE_CSP = "default-src 'self'; img-src https://img.example"
STATIC_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
# Framing and browsing-context isolation: only on HTML documents (the docs page, later the web
# app); every response's CSP forbids framing with frame-ancestors 'none'.
DOCUMENT_HEADERS = {"x-frame-options": "DENY", "cross-origin-opener-policy": "same-origin"}
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
SERVER_TIMING = re.compile(r"app;dur=(\d+(?:\.\d+)?)")

# A JSON body far over the default gzip threshold (1024 bytes) that compresses well.
BIG_PAYLOAD: dict[str, Any] = {
    "items": [{"id": index, "name": f"item-{index}", "tags": ["a", "b"]} for index in range(400)]
}
STREAM_CHUNKS = [
    json.dumps({"row": index, "text": "x" * 300}).encode() + b"\n" for index in range(6)
]
PRE_ENCODED = gzip.compress(json.dumps(BIG_PAYLOAD).encode(), mtime=0)
BINARY = bytes(range(256)) * 40
SSE_BODY = b"".join(f"data: {index} {'y' * 80}\n\n".encode() for index in range(40))
CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost_kib": 1024, "argon2_parallelism": 1}

# ---------------------------------------------------------------------------------------------
# The test app
# ---------------------------------------------------------------------------------------------


async def count_body(request: Request) -> dict[str, int]:
    """Reads the raw body stream (not FastAPI's parsed body) and reports its size."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
    return {"received": received}


def build_app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    router = make_router(prefix=PREFIX)

    @router.get("/json")
    async def plain_json() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/own-csp")
    async def own_csp() -> Response:
        return JSONResponse({"ok": True}, headers={"Content-Security-Policy": ROUTE_CSP})

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("middleware test failure")

    @router.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(0.06)
        return {"ok": True}

    @router.api_route("/big", methods=["GET", "HEAD"], include_in_schema=False)
    async def big() -> Response:
        return JSONResponse(BIG_PAYLOAD)

    @router.get("/vary")
    async def vary() -> Response:
        return JSONResponse(BIG_PAYLOAD, headers={"Vary": "Accept-Language"})

    @router.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for chunk in STREAM_CHUNKS:
                yield chunk

        return StreamingResponse(chunks(), media_type="application/json")

    @router.get("/encoded")
    async def encoded() -> Response:
        return Response(
            PRE_ENCODED, media_type="application/json", headers={"Content-Encoding": "gzip"}
        )

    @router.get("/binary")
    async def binary() -> Response:
        return Response(BINARY, media_type="image/png")

    @router.get("/events")
    async def events() -> Response:
        return Response(SSE_BODY, media_type="text/event-stream")

    @router.delete("/nothing", status_code=204)
    async def nothing() -> None:
        return None

    router.add_api_route("/count", count_body, methods=["POST"])
    app.include_router(router)
    uploads = make_router(prefix=UPLOADS)
    uploads.add_api_route("/test-mw-count", count_body, methods=["POST"])
    app.include_router(uploads)
    # Shares the upload prefix's text but is not under it: limited like any route.
    lookalike = make_router(prefix=UPLOADS + "-lookalike")
    lookalike.add_api_route("/count", count_body, methods=["POST"])
    app.include_router(lookalike)
    return app


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, client=CLIENT)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def make_settings(settings_factory: Callable[..., Settings]) -> Callable[..., Settings]:
    """``settings_factory`` once the backend's database exists (the first call creates and
    migrates it, which has to happen outside the event loop, in a sync fixture), with the
    cheapest Argon2 parameters: every app start hashes a dummy password, and nothing here
    tests passwords."""
    settings_factory()

    def build(**overrides: object) -> Settings:
        return settings_factory(**{**CHEAP_ARGON2, **overrides})

    return build


@pytest.fixture
async def mw_client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(trusted_hosts=["testserver"], max_body_bytes=MAX_BODY_BYTES)
    async with serve(settings) as http:
        yield http


@functools.cache
def tr_catalog() -> dict[str, str]:
    with (LOCALE_DIR / "tr" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale="tr")
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string}


def assert_problem(response: httpx.Response, status: int, error_code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["error_code"] == error_code
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def chunked(data: bytes, size: int = 256) -> AsyncIterator[bytes]:
    """A request body without Content-Length (httpx sends it chunked)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def header_values(response: httpx.Response, name: str) -> list[str]:
    return response.headers.get_list(name)


# ---------------------------------------------------------------------------------------------
# Security headers
# ---------------------------------------------------------------------------------------------


def assert_security_headers(response: httpx.Response, csp: str) -> None:
    for name, value in STATIC_SECURITY_HEADERS.items():
        assert header_values(response, name) == [value], (name, response.request.url)
    assert header_values(response, "content-security-policy") == [csp]
    if csp != ROUTE_CSP:  # tezgah's own policies forbid framing everywhere
        assert "frame-ancestors 'none'" in csp
    is_document = response.headers.get("content-type", "").startswith("text/html")
    for name, value in DOCUMENT_HEADERS.items():
        assert header_values(response, name) == ([value] if is_document else [])


async def test_security_headers_on_api_and_error_responses(
    mw_client: httpx.AsyncClient,
) -> None:
    responses = {
        "health": await mw_client.get("/health"),
        "json": await mw_client.get(f"{PREFIX}/json"),
        "404": await mw_client.get("/no/such/route"),
        "405": await mw_client.delete("/health"),
        "500": await mw_client.get(f"{PREFIX}/boom"),
        "400-host": await mw_client.get("/health", headers={"Host": "evil.example"}),
        "413": await mw_client.post(f"{PREFIX}/count", content=b"x" * (MAX_BODY_BYTES + 1)),
        "openapi": await mw_client.get("/openapi.json"),
    }
    statuses = {name: response.status_code for name, response in responses.items()}
    assert statuses == {
        "health": 200,
        "json": 200,
        "404": 404,
        "405": 405,
        "500": 500,
        "400-host": 400,
        "413": 413,
        "openapi": 200,
    }
    for response in responses.values():
        assert_security_headers(response, API_CSP)
        # HSTS only when the settings say the server is reached over HTTPS.
        assert "strict-transport-security" not in response.headers


async def test_docs_get_a_csp_that_lets_swagger_ui_run_from_this_server(
    mw_client: httpx.AsyncClient,
) -> None:
    docs = await mw_client.get("/docs")
    assert docs.status_code == 200
    (csp,) = header_values(docs, "content-security-policy")
    assert csp != API_CSP
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert "'self'" in directives["script-src"]
    assert "'self'" in directives["style-src"]
    assert directives["frame-ancestors"] == "'none'"
    for name, value in {**STATIC_SECURITY_HEADERS, **DOCUMENT_HEADERS}.items():
        assert header_values(docs, name) == [value]
    # The CSP allows only this server's scripts: the page must not load them from a CDN.
    sources = re.findall(r"""<script[^>]+src=["']([^"']+)""", docs.text)
    assert sources
    assert all(source.startswith("/static/swagger/") for source in sources), sources

    asset = await mw_client.get("/static/swagger/swagger-ui.css")
    assert asset.status_code == 200
    assert_security_headers(asset, csp)


async def test_a_route_that_sets_its_own_csp_keeps_it(mw_client: httpx.AsyncClient) -> None:
    response = await mw_client.get(f"{PREFIX}/own-csp")
    assert response.status_code == 200
    assert_security_headers(response, ROUTE_CSP)


async def test_hsts_is_sent_with_the_configured_max_age_when_https(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(https=True, hsts_max_age=12345, trusted_hosts=["testserver"])
    async with serve(settings) as http:
        for response in (
            await http.get("/health"),
            await http.get("/no/such/route"),
            await http.get("/health", headers={"Host": "evil.example"}),
            await http.get("/docs"),
        ):
            assert header_values(response, "strict-transport-security") == [
                "max-age=12345; includeSubDomains"
            ]


# ---------------------------------------------------------------------------------------------
# Request id and Server-Timing
# ---------------------------------------------------------------------------------------------


async def test_every_response_has_a_request_id_and_server_timing(
    mw_client: httpx.AsyncClient,
) -> None:
    responses = [
        await mw_client.get("/health"),
        await mw_client.get(f"{PREFIX}/json"),
        await mw_client.get("/no/such/route"),
        await mw_client.delete("/health"),
        await mw_client.get(f"{PREFIX}/boom"),
        await mw_client.get("/health", headers={"Host": "evil.example"}),
        await mw_client.post(f"{PREFIX}/count", content=chunked(b"x" * (MAX_BODY_BYTES * 2))),
        await mw_client.get(f"{PREFIX}/stream"),
    ]
    assert [response.status_code for response in responses] == [
        200,
        200,
        404,
        405,
        500,
        400,
        413,
        200,
    ]
    request_ids = []
    for response in responses:
        (request_id,) = header_values(response, "x-request-id")
        assert REQUEST_ID.fullmatch(request_id), request_id
        request_ids.append(request_id)
        (timing,) = header_values(response, "server-timing")
        match = SERVER_TIMING.fullmatch(timing)
        assert match, timing
        assert float(match.group(1)) >= 0
    assert len(set(request_ids)) == len(request_ids)


async def test_server_timing_measures_the_time_spent_in_the_app(
    mw_client: httpx.AsyncClient,
) -> None:
    slow = await mw_client.get(f"{PREFIX}/slow")
    match = SERVER_TIMING.fullmatch(slow.headers["server-timing"])
    assert match
    assert float(match.group(1)) >= 60.0


async def test_a_well_formed_incoming_request_id_is_returned(
    mw_client: httpx.AsyncClient,
) -> None:
    incoming = "edge-proxy.42_abc-DEF"
    for path in ("/health", f"{PREFIX}/boom"):
        response = await mw_client.get(path, headers={"X-Request-ID": incoming})
        assert header_values(response, "x-request-id") == [incoming]


# ---------------------------------------------------------------------------------------------
# CORS
# ---------------------------------------------------------------------------------------------

ALLOWED_ORIGIN = "https://app.example"


@pytest.fixture
async def cors_client(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(cors_origins=[ALLOWED_ORIGIN])) as http:
        yield http


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


async def test_cors_preflight_from_an_allowed_origin(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.options(
        f"{PREFIX}/count",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type, X-Request-ID",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert {"post", "get", "delete"} <= listed(response.headers["access-control-allow-methods"])
    assert {"authorization", "content-type", "x-request-id"} <= listed(
        response.headers["access-control-allow-headers"]
    )
    assert response.headers["access-control-max-age"] == "600"
    assert "origin" in listed(response.headers["vary"])


async def test_cors_simple_request_from_an_allowed_origin_exposes_the_request_id(
    cors_client: httpx.AsyncClient,
) -> None:
    response = await cors_client.get(f"{PREFIX}/json", headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    exposed = listed(response.headers["access-control-expose-headers"])
    assert {"x-request-id", "etag", "retry-after", "server-timing"} <= exposed
    assert "origin" in listed(response.headers["vary"])


async def test_cors_refuses_other_origins(cors_client: httpx.AsyncClient) -> None:
    for origin in ("https://evil.example", "https://app.example.evil.net", "http://app.example"):
        preflight = await cors_client.options(
            f"{PREFIX}/count",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers
        assert_problem(preflight, 400, "CORS_REFUSED")
        simple = await cors_client.get(f"{PREFIX}/json", headers={"Origin": origin})
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers


async def test_no_cors_headers_without_configured_origins(mw_client: httpx.AsyncClient) -> None:
    preflight = await mw_client.options(
        f"{PREFIX}/count",
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert_problem(preflight, 405, "METHOD_NOT_ALLOWED")
    simple = await mw_client.get(f"{PREFIX}/json", headers={"Origin": ALLOWED_ORIGIN})
    assert simple.status_code == 200
    for response in (preflight, simple):
        cors = [name for name in response.headers if name.lower().startswith("access-control-")]
        assert cors == []


# ---------------------------------------------------------------------------------------------
# Trusted hosts
# ---------------------------------------------------------------------------------------------

TRUSTED_HOSTS = ["api.example.org", "*.example.com", "[::1]", "127.0.0.1"]
ALLOWED_HOSTS = [
    "api.example.org",
    "API.Example.ORG",
    "api.example.org:8443",
    "sub.example.com",
    "deep.sub.example.com",
    "sub.example.com:8000",
    "[::1]",
    "[::1]:8000",
    "127.0.0.1:8000",
]
REFUSED_HOSTS = [
    "example.com",
    "evil-example.com",
    "notexample.com",
    "sub.example.com.evil.net",
    "api.example.org.evil.net",
    "other.example.org",
    "[::2]",
    "[::2]:8000",
    "127.0.0.2",
    "evil.example",
]


async def test_trusted_hosts_exact_wildcard_port_and_ipv6(
    make_settings: Callable[..., Settings],
) -> None:
    async with serve(make_settings(trusted_hosts=TRUSTED_HOSTS)) as http:
        for host in ALLOWED_HOSTS:
            response = await http.get("/health", headers={"Host": host})
            assert response.status_code == 200, host
            assert response.json() == {"status": "ok"}
        for host in REFUSED_HOSTS:
            response = await http.get("/health", headers={"Host": host})
            body = assert_problem(response, 400, "INVALID_HOST")
            assert body["detail"] == "The Host header is not one this server answers to.", host


async def test_the_default_trusts_any_host(make_settings: Callable[..., Settings]) -> None:
    async with serve(make_settings()) as http:
        for host in ("anything.invalid", "evil-example.com:81", "[::2]"):
            response = await http.get("/health", headers={"Host": host})
            assert response.status_code == 200, host


# ---------------------------------------------------------------------------------------------
# GZip (tezgah.core.compression)
# ---------------------------------------------------------------------------------------------


async def raw_get(
    http: httpx.AsyncClient, path: str, accept_encoding: str
) -> tuple[httpx.Response, bytes]:
    """The response and its body bytes as sent (httpx would otherwise decode gzip)."""
    async with http.stream("GET", path, headers={"Accept-Encoding": accept_encoding}) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, raw


async def test_large_json_is_compressed_only_for_clients_that_accept_gzip(
    mw_client: httpx.AsyncClient,
) -> None:
    plain, original = await raw_get(mw_client, f"{PREFIX}/big", "identity")
    assert "content-encoding" not in plain.headers
    assert json.loads(original) == BIG_PAYLOAD
    assert int(plain.headers["content-length"]) == len(original) > 1024

    for accept in ("gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.5", "*", "GZIP"):
        response, raw = await raw_get(mw_client, f"{PREFIX}/big", accept)
        assert header_values(response, "content-encoding") == ["gzip"], accept
        assert "accept-encoding" in listed(response.headers["vary"])
        assert int(response.headers["content-length"]) == len(raw)
        assert len(raw) < len(original) // 4
        assert gzip.decompress(raw) == original

    for accept in ("identity", "deflate", "br", "gzip;q=0", "gzip; q=0, identity"):
        response, raw = await raw_get(mw_client, f"{PREFIX}/big", accept)
        assert "content-encoding" not in response.headers, accept
        assert raw == original


async def test_small_bodies_are_not_compressed(mw_client: httpx.AsyncClient) -> None:
    for path in (f"{PREFIX}/json", "/health", "/no/such/route"):
        response, raw = await raw_get(mw_client, path, "gzip")
        assert "content-encoding" not in response.headers, path
        assert raw.startswith(b"{")
        assert len(raw) < 1024


async def test_streaming_json_is_compressed_without_a_content_length(
    mw_client: httpx.AsyncClient,
) -> None:
    response, raw = await raw_get(mw_client, f"{PREFIX}/stream", "gzip")
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "content-length" not in response.headers
    assert "accept-encoding" in listed(response.headers["vary"])
    assert gzip.decompress(raw) == b"".join(STREAM_CHUNKS)

    plain, raw_plain = await raw_get(mw_client, f"{PREFIX}/stream", "identity")
    assert "content-encoding" not in plain.headers
    assert raw_plain == b"".join(STREAM_CHUNKS)


async def test_encoded_binary_and_event_stream_responses_are_left_alone(
    mw_client: httpx.AsyncClient,
) -> None:
    encoded, raw = await raw_get(mw_client, f"{PREFIX}/encoded", "gzip")
    assert header_values(encoded, "content-encoding") == ["gzip"]
    assert raw == PRE_ENCODED

    binary, raw = await raw_get(mw_client, f"{PREFIX}/binary", "gzip")
    assert "content-encoding" not in binary.headers
    assert raw == BINARY

    events, raw = await raw_get(mw_client, f"{PREFIX}/events", "gzip")
    assert "content-encoding" not in events.headers
    assert raw == SSE_BODY


async def test_an_existing_vary_header_is_kept_and_extended(mw_client: httpx.AsyncClient) -> None:
    response, raw = await raw_get(mw_client, f"{PREFIX}/vary", "gzip")
    assert response.headers["content-encoding"] == "gzip"
    varies = set()
    for value in header_values(response, "vary"):
        varies |= listed(value)
    assert varies == {"accept-language", "accept-encoding"}
    assert json.loads(gzip.decompress(raw)) == BIG_PAYLOAD


async def test_head_gets_the_headers_of_get_and_no_body(mw_client: httpx.AsyncClient) -> None:
    accept = {"Accept-Encoding": "gzip"}
    get = await mw_client.get(f"{PREFIX}/big", headers=accept)
    head = await mw_client.head(f"{PREFIX}/big", headers=accept)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    for name in ("content-encoding", "content-length", "content-type", "vary"):
        assert head.headers.get(name) == get.headers.get(name), name
    assert get.headers["content-encoding"] == "gzip"


async def test_empty_bodies_stay_empty_even_with_a_zero_minimum(
    make_settings: Callable[..., Settings],
) -> None:
    async with serve(make_settings(gzip_min_bytes=0)) as http:
        accept = {"Accept-Encoding": "gzip"}
        no_content = await http.delete(f"{PREFIX}/nothing", headers=accept)
        assert no_content.status_code == 204
        assert "content-encoding" not in no_content.headers
        assert no_content.content == b""
        # With a zero minimum, a small non-empty body is compressed.
        small, raw = await raw_get(http, f"{PREFIX}/json", "gzip")
        assert small.headers["content-encoding"] == "gzip"
        assert json.loads(gzip.decompress(raw)) == {"ok": True}


def recording_app(
    chunks: Iterable[bytes], content_type: bytes, events: list[str]
) -> Callable[[Scope, Receive, Send], Any]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type)],
            }
        )
        items = list(chunks)
        for index, chunk in enumerate(items):
            events.append(f"produce {index}")
            more = index < len(items) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

    return app


async def test_streamed_bodies_are_compressed_chunk_by_chunk() -> None:
    events: list[str] = []
    sent: list[Message] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            events.append(f"send {len(sent)}")
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    chunks = [b"[" + b'"first",' * 10, b'"second",' * 10, b'"third"]']
    app = GZipMiddleware(recording_app(chunks, b"application/json", events), minimum_size=1024)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"accept-encoding", b"gzip")],
    }
    await app(scope, receive, send)

    # Each chunk leaves compressed before the app produces the next one: nothing is buffered.
    assert events == ["produce 0", "send 1", "produce 1", "send 2", "produce 2", "send 3"]
    start, *bodies = sent
    headers = dict(start["headers"])
    assert headers[b"content-encoding"] == b"gzip"
    assert b"content-length" not in headers
    assert [body["more_body"] for body in bodies] == [True, True, False]
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk, body in zip(chunks, bodies, strict=True):
        # A sync flush after each chunk: the client can decode every chunk on arrival.
        assert decompressor.decompress(body["body"]) == chunk
    assert decompressor.eof


async def test_clients_without_gzip_get_the_app_messages_unchanged() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    chunks = [b"x" * 2000, b"y" * 2000]
    app = GZipMiddleware(recording_app(chunks, b"text/plain", []), minimum_size=10)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    await app(scope, receive, send)
    assert [message.get("body") for message in sent[1:]] == chunks
    assert sent[0]["headers"] == [(b"content-type", b"text/plain")]


# ---------------------------------------------------------------------------------------------
# Request body limit (the declared 413 in English and Turkish is covered by test_errors.py)
# ---------------------------------------------------------------------------------------------


async def test_streamed_body_over_the_limit_is_a_413_in_english_and_turkish(
    mw_client: httpx.AsyncClient,
) -> None:
    payload = b"z" * (MAX_BODY_BYTES * 3)
    english = await mw_client.post(f"{PREFIX}/count", content=chunked(payload))
    assert "content-length" not in english.request.headers
    body = assert_problem(english, 413, "PAYLOAD_TOO_LARGE")
    assert body["detail"] == f"The request body is larger than the limit of {MAX_BODY_BYTES} bytes."
    assert body["title"] == "Payload too large"

    turkish = await mw_client.post(
        f"{PREFIX}/count", content=chunked(payload), headers={"Accept-Language": "tr"}
    )
    body = assert_problem(turkish, 413, "PAYLOAD_TOO_LARGE")
    message_id = "The request body is larger than the limit of {limit} bytes."
    assert body["detail"] == tr_catalog()[message_id].format(limit=MAX_BODY_BYTES)
    assert body["title"] == tr_catalog()["Payload too large"]
    assert str(MAX_BODY_BYTES) in body["detail"]
    assert body["detail"] != english.json()["detail"]


async def test_bodies_up_to_the_limit_pass_and_one_byte_more_does_not(
    mw_client: httpx.AsyncClient,
) -> None:
    at_limit = b"a" * MAX_BODY_BYTES
    over = at_limit + b"a"
    for content in (at_limit, chunked(at_limit, 100)):
        response = await mw_client.post(f"{PREFIX}/count", content=content)
        assert response.status_code == 200, response.text
        assert response.json() == {"received": MAX_BODY_BYTES}
    for content in (over, chunked(over, 100)):
        response = await mw_client.post(f"{PREFIX}/count", content=content)
        assert_problem(response, 413, "PAYLOAD_TOO_LARGE")


async def test_upload_routes_are_not_limited(mw_client: httpx.AsyncClient) -> None:
    payload = b"u" * (MAX_BODY_BYTES * 5)
    for content in (payload, chunked(payload, 1000)):
        response = await mw_client.post(f"{UPLOADS}/test-mw-count", content=content)
        assert response.status_code == 200, response.text
        assert response.json() == {"received": len(payload)}
    # The same body on a route outside the exempt prefix is refused.
    limited = await mw_client.post(f"{PREFIX}/count", content=payload)
    assert_problem(limited, 413, "PAYLOAD_TOO_LARGE")
    lookalike = await mw_client.post(f"{UPLOADS}-lookalike/count", content=payload)
    assert_problem(lookalike, 413, "PAYLOAD_TOO_LARGE")


INVALID_CONTENT_LENGTHS = [b"abc", b"-1", b"+5", b"1.5", b"1e3", b"0x10", b"", b"\xb2", b"12 34"]


async def test_invalid_content_length_is_a_400_problem(mw_client: httpx.AsyncClient) -> None:
    for declared in INVALID_CONTENT_LENGTHS:
        response = await mw_client.post(
            f"{PREFIX}/count", content=b"12345", headers={"Content-Length": declared}
        )
        body = assert_problem(response, 400, "BAD_REQUEST")
        assert body["detail"] == "The request could not be processed.", declared


async def test_content_length_digits_are_compared_by_value(mw_client: httpx.AsyncClient) -> None:
    # Leading zeros do not make a small body large ...
    padded = await mw_client.post(
        f"{PREFIX}/count", content=b"x" * 100, headers={"Content-Length": "0" * 30 + "100"}
    )
    assert padded.status_code == 200, padded.text
    assert padded.json() == {"received": 100}
    # ... and a length with more digits than int() parses is simply over the limit.
    huge = await mw_client.post(
        f"{PREFIX}/count", content=b"x", headers={"Content-Length": "9" * 5000}
    )
    assert_problem(huge, 413, "PAYLOAD_TOO_LARGE")
