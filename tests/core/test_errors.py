"""Every error the app answers is an RFC 9457 problem (``application/problem+json``) with a stable
``error_code``, a localized ``detail`` and the ``request_id`` of the ``X-Request-ID`` header.

A test app (``create_app`` plus a few test-only routes) runs on both backends; the database- and
Redis-down cases point the settings at ports where nothing listens (or at an SQLite path that is a
directory), with the real drivers.
"""

from __future__ import annotations

import functools
import json
import socket
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from babel.messages.pofile import read_po
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from tezgah.core import errors
from tezgah.core.config import Settings
from tezgah.core.db import SessionDep
from tezgah.core.i18n import LOCALE_DIR
from tezgah.core.ratelimit import rate_limit
from tezgah.core.routing import make_router
from tezgah.main import create_app

PREFIX = "/test-errors"
MAX_BODY_BYTES = 1024
REQUIRED_KEYS = frozenset(
    {"type", "title", "status", "detail", "error_code", "field_errors", "request_id"}
)
# Text that only the failing route knows: it must reach the log, never the client.
INTERNAL_SENTINEL = "internal-sentinel-7f3c /srv/tezgah/private/module.py"
TR = {"Accept-Language": "tr"}

# ---------------------------------------------------------------------------------------------
# Catalog access independent of tezgah.core.i18n: what the client must see, read from the .po.
# ---------------------------------------------------------------------------------------------


@functools.cache
def tr_catalog() -> dict[str, str]:
    with (LOCALE_DIR / "tr" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale="tr")
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string}


def turkish(msgid: str, **params: Any) -> str:
    return tr_catalog()[msgid].format(**params)


def english(msgid: str, **params: Any) -> str:
    return msgid.format(**params)


# ---------------------------------------------------------------------------------------------
# The test app
# ---------------------------------------------------------------------------------------------


class Item(BaseModel):
    name: str = Field(min_length=3, max_length=20)
    qty: int = Field(gt=0)


APP_ERRORS: dict[str, Callable[[], errors.AppError]] = {
    "unauthorized": errors.Unauthorized,
    "forbidden": errors.Forbidden,
    "not-found": errors.NotFound,
    "conflict": errors.Conflict,
    "invalid-sort": lambda: errors.InvalidSort(params={"field": "secret", "allowed": "name, rank"}),
    "rate-limited": lambda: errors.RateLimited(
        params={"retry_after": 7}, headers={"Retry-After": "7"}
    ),
    "bad-request": errors.BadRequest,
}


def build_error_app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    router = make_router(prefix=PREFIX)

    @router.post("/items")
    async def create_item(item: Item) -> Item:
        return item

    @router.get("/search")
    async def search(
        limit: Annotated[int, Query(ge=1, le=100)],
        name: Annotated[str, Query(min_length=2)],
    ) -> dict[str, Any]:
        return {"limit": limit, "name": name}

    @router.get("/things/{thing_id}")
    async def get_thing(thing_id: uuid.UUID) -> dict[str, str]:
        return {"id": str(thing_id)}

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError(INTERNAL_SENTINEL)

    @router.get("/db")
    async def database_query(session: SessionDep) -> dict[str, int]:
        value = (await session.execute(text("SELECT 1"))).scalar_one()
        return {"value": int(value)}

    @router.get("/bad-sql")
    async def bad_sql(session: SessionDep) -> None:
        await session.execute(text("SELECT * FROM test_errors_table_that_does_not_exist"))

    @router.get("/cache")
    async def cache_read(request: Request) -> dict[str, bool]:
        value = await request.app.state.resources.cache.get("test-errors")
        return {"hit": value is not None}

    @router.get("/limited", dependencies=[Depends(rate_limit("1000/minute", scope="test-errors"))])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/app-error/{name}")
    async def app_error(name: str) -> None:
        raise APP_ERRORS[name]()

    @router.get("/http/{status}")
    async def http_error(status: int) -> None:
        raise HTTPException(status_code=status, detail=INTERNAL_SENTINEL)

    app.include_router(router)
    return app


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = build_error_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 51000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def error_settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(trusted_hosts=["testserver"], max_body_bytes=MAX_BODY_BYTES)


@pytest.fixture
async def error_client(error_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(error_settings) as http:
        yield http


def closed_port() -> int:
    """A local TCP port where nothing listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_problem(response: httpx.Response, status: int, error_code: str) -> dict[str, Any]:
    """The shape every error shares; returns the body for further checks."""
    assert response.status_code == status, response.text
    media_type = response.headers["content-type"].split(";")[0].strip()
    assert media_type == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= REQUIRED_KEYS, body
    assert body["status"] == status
    assert body["error_code"] == error_code
    assert body["type"] == "urn:tezgah:problem:" + error_code.lower().replace("_", "-")
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["request_id"]
    assert body["request_id"] == response.headers["x-request-id"]
    field_errors = body["field_errors"]
    assert isinstance(field_errors, dict)
    if field_errors:
        for messages in field_errors.values():
            assert isinstance(messages, list)
            assert messages
            assert all(isinstance(message, str) and message for message in messages)
    for value in (body["title"], body["detail"]):
        assert "{" not in value, f"unformatted placeholder in {value!r}"
    return body


def log_records(stderr: str) -> Iterator[dict[str, Any]]:
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


# ---------------------------------------------------------------------------------------------
# Routing errors
# ---------------------------------------------------------------------------------------------


async def test_unknown_route_is_a_404_problem(error_client: httpx.AsyncClient) -> None:
    response = await error_client.get("/no/such/route")
    body = assert_problem(response, 404, "NOT_FOUND")
    assert body["detail"] == english(errors.NotFound.message)
    assert body["title"] == "Not found"
    assert body["field_errors"] == {}


async def test_wrong_method_is_a_405_problem_with_allow_header(
    error_client: httpx.AsyncClient,
) -> None:
    response = await error_client.get(f"{PREFIX}/items")
    body = assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert allowed == {"POST"}
    assert body["detail"] == english(errors.MethodNotAllowed.message, method="GET")

    response = await error_client.delete("/health")
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["allow"]


async def test_http_exception_raised_by_a_route_keeps_its_status_not_its_detail(
    error_client: httpx.AsyncClient,
) -> None:
    not_found = await error_client.get(f"{PREFIX}/http/404")
    assert_problem(not_found, 404, "NOT_FOUND")
    teapot = await error_client.get(f"{PREFIX}/http/418")
    body = assert_problem(teapot, 418, "HTTP_ERROR")
    assert body["detail"] == english(errors.HTTPStatusError.message)
    for response in (not_found, teapot):
        assert "internal-sentinel" not in response.text


# ---------------------------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"{bad", b'{"name": "abc", "qty": }', b'{"name": "abc"', b"\xff\xfe\x00"],
    ids=["garbage", "missing-value", "unterminated", "not-utf8"],
)
async def test_malformed_json_is_a_400_problem(error_client: httpx.AsyncClient, raw: bytes) -> None:
    response = await error_client.post(
        f"{PREFIX}/items", content=raw, headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 400, "MALFORMED_JSON")
    assert body["title"] == "Malformed JSON"
    assert body["detail"] in {
        english("The request body is not valid JSON."),
        english("The request body could not be parsed."),
    }


async def test_well_formed_json_of_the_wrong_shape_is_a_422_on_body(
    error_client: httpx.AsyncClient,
) -> None:
    response = await error_client.post(f"{PREFIX}/items", json=[1, 2])
    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["field_errors"] == {"body": [english("Enter an object.")]}


async def test_missing_body_is_a_422_required(error_client: httpx.AsyncClient) -> None:
    response = await error_client.post(
        f"{PREFIX}/items", headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["field_errors"] == {"body": [english("This field is required.")]}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data"],
)
async def test_json_route_refuses_other_content_types_with_415(
    error_client: httpx.AsyncClient, content_type: str
) -> None:
    response = await error_client.post(
        f"{PREFIX}/items",
        content=b'{"name": "abc", "qty": 1}',
        headers={"Content-Type": content_type},
    )
    body = assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert body["detail"] == english(
        errors.UnsupportedMediaType.message, expected="application/json"
    )


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"],
)
async def test_json_route_accepts_json_media_types(
    error_client: httpx.AsyncClient, content_type: str
) -> None:
    response = await error_client.post(
        f"{PREFIX}/items",
        content=b'{"name": "abc", "qty": 1}',
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "abc", "qty": 1}


async def test_body_validation_is_a_422_keyed_by_field(error_client: httpx.AsyncClient) -> None:
    response = await error_client.post(
        f"{PREFIX}/items", json={"name": "ab", "qty": 0, "ignored": True}
    )
    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["detail"] == english(errors.ValidationFailed.message)
    assert body["field_errors"] == {
        "name": [english("Enter at least {min_length} characters.", min_length=3)],
        "qty": [english("Enter a value greater than {gt}.", gt=0)],
    }


async def test_body_over_the_limit_is_a_413_declared_or_streamed(
    error_client: httpx.AsyncClient,
) -> None:
    payload = json.dumps({"name": "x" * (MAX_BODY_BYTES * 2), "qty": 1}).encode()
    declared = await error_client.post(
        f"{PREFIX}/items", content=payload, headers={"Content-Type": "application/json"}
    )
    body = assert_problem(declared, 413, "PAYLOAD_TOO_LARGE")
    assert body["detail"] == english(errors.PayloadTooLarge.message, limit=MAX_BODY_BYTES)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 256):
            yield payload[start : start + 256]

    streamed = await error_client.post(
        f"{PREFIX}/items", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413, "PAYLOAD_TOO_LARGE")


# ---------------------------------------------------------------------------------------------
# Query and path parameters
# ---------------------------------------------------------------------------------------------


async def test_invalid_query_parameters_are_a_422_keyed_by_field_name(
    error_client: httpx.AsyncClient,
) -> None:
    response = await error_client.get(f"{PREFIX}/search", params={"limit": "x", "name": "a"})
    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["field_errors"] == {
        "limit": [english("Enter a whole number.")],
        "name": [english("Enter at least {min_length} characters.", min_length=2)],
    }

    out_of_range = await error_client.get(f"{PREFIX}/search", params={"limit": 101, "name": "ok"})
    body = assert_problem(out_of_range, 422, "VALIDATION_ERROR")
    assert body["field_errors"] == {
        "limit": [english("Enter a value less than or equal to {le}.", le=100)]
    }

    missing = await error_client.get(f"{PREFIX}/search", params={"name": "ok"})
    body = assert_problem(missing, 422, "VALIDATION_ERROR")
    assert body["field_errors"] == {"limit": [english("This field is required.")]}

    valid = await error_client.get(f"{PREFIX}/search", params={"limit": 5, "name": "ok"})
    assert valid.status_code == 200
    assert valid.json() == {"limit": 5, "name": "ok"}


async def test_invalid_path_parameter_is_a_422_keyed_by_field_name(
    error_client: httpx.AsyncClient,
) -> None:
    response = await error_client.get(f"{PREFIX}/things/not-a-uuid")
    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["field_errors"] == {"thing_id": [english("Enter a valid UUID.")]}


# ---------------------------------------------------------------------------------------------
# Errors raised by domain code, hosts, request ids
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "error_code"),
    [
        ("bad-request", 400, "BAD_REQUEST"),
        ("invalid-sort", 400, "INVALID_SORT"),
        ("unauthorized", 401, "UNAUTHORIZED"),
        ("forbidden", 403, "FORBIDDEN"),
        ("not-found", 404, "NOT_FOUND"),
        ("conflict", 409, "CONFLICT"),
        ("rate-limited", 429, "RATE_LIMITED"),
    ],
)
async def test_app_errors_share_the_problem_shape(
    error_client: httpx.AsyncClient, name: str, status: int, error_code: str
) -> None:
    error = APP_ERRORS[name]()
    response = await error_client.get(f"{PREFIX}/app-error/{name}")
    body = assert_problem(response, status, error_code)
    assert body["detail"] == english(error.message_id, **error.params)
    assert body["title"] == english(error.title)
    for header, value in error.headers.items():
        assert response.headers[header] == value


async def test_unknown_host_is_a_400_problem(error_client: httpx.AsyncClient) -> None:
    response = await error_client.get("/health", headers={"Host": "evil.example"})
    body = assert_problem(response, 400, "INVALID_HOST")
    assert body["detail"] == english(errors.InvalidHost.message)


async def test_request_id_is_echoed_when_well_formed_and_replaced_otherwise(
    error_client: httpx.AsyncClient,
) -> None:
    incoming = "req-" + uuid.uuid4().hex
    response = await error_client.get("/no/such/route", headers={"X-Request-ID": incoming})
    body = assert_problem(response, 404, "NOT_FOUND")
    assert body["request_id"] == incoming

    for bad in ("short", "has spaces in it", "x" * 200):
        response = await error_client.get("/no/such/route", headers={"X-Request-ID": bad})
        body = assert_problem(response, 404, "NOT_FOUND")
        assert body["request_id"] != bad

    first = await error_client.get("/no/such/route")
    second = await error_client.get("/no/such/route")
    assert first.json()["request_id"] != second.json()["request_id"]


# ---------------------------------------------------------------------------------------------
# 500: nothing internal in the body, everything in the log
# ---------------------------------------------------------------------------------------------


async def test_unexpected_exception_is_a_500_without_internals_and_logged_in_full(
    error_client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    response = await error_client.get(f"{PREFIX}/boom")
    body = assert_problem(response, 500, "INTERNAL_ERROR")
    assert body["detail"] == english(errors.InternalError.message)
    assert set(body) == REQUIRED_KEYS
    for leak in ("internal-sentinel", "/srv/tezgah", "RuntimeError", "Traceback", 'File "'):
        assert leak not in response.text

    stderr = capsys.readouterr().err
    records = [
        record
        for record in log_records(stderr)
        if record.get("event") == "unhandled_exception"
        and record.get("request_id") == body["request_id"]
    ]
    assert len(records) == 1, stderr
    record = records[0]
    assert record["level"] == "error"
    assert record["path"] == f"{PREFIX}/boom"
    traceback_text = record["exception"]
    assert traceback_text.startswith("Traceback (most recent call last):")
    assert "in boom" in traceback_text
    assert f"RuntimeError: {INTERNAL_SENTINEL}" in traceback_text

    # The process keeps serving.
    health = await error_client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


async def test_a_bad_query_is_a_500_not_a_database_outage(
    error_client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    response = await error_client.get(f"{PREFIX}/bad-sql")
    body = assert_problem(response, 500, "INTERNAL_ERROR")
    assert "test_errors_table_that_does_not_exist" not in response.text
    assert "retry-after" not in response.headers
    logged = [
        record
        for record in log_records(capsys.readouterr().err)
        if record.get("event") == "unhandled_exception"
        and record.get("request_id") == body["request_id"]
    ]
    assert len(logged) == 1
    assert "test_errors_table_that_does_not_exist" in logged[0]["exception"]
    ok = await error_client.get(f"{PREFIX}/db")
    assert ok.status_code == 200
    assert ok.json() == {"value": 1}


# ---------------------------------------------------------------------------------------------
# Dependencies down: 503 with a stable code, and the process keeps serving
# ---------------------------------------------------------------------------------------------


def unreachable_database_url(backend: str, tmp_path: Path) -> str:
    if backend == "postgres":
        return f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/tezgah_nowhere"
    directory = tmp_path / "a-directory-not-a-database"
    directory.mkdir()
    return f"sqlite+aiosqlite:///{directory}"


async def test_database_down_is_a_503_and_the_process_keeps_serving(
    settings_factory: Callable[..., Settings], backend: str, tmp_path: Path
) -> None:
    settings = settings_factory(
        database_url=unreachable_database_url(backend, tmp_path), database_pool_timeout=2
    )
    async with serve(settings) as http:
        for headers, translate in (({}, english), (TR, turkish)):
            response = await http.get(f"{PREFIX}/db", headers=headers)
            body = assert_problem(response, 503, "DATABASE_UNAVAILABLE")
            assert body["detail"] == translate(errors.DatabaseUnavailable.message)
            assert body["title"] == translate(errors.DatabaseUnavailable.title)
            assert response.headers["retry-after"] == "5"
            assert "tezgah_nowhere" not in response.text
            assert "a-directory-not-a-database" not in response.text

        ready = await http.get("/ready")
        body = assert_problem(ready, 503, "DEPENDENCY_UNAVAILABLE")
        assert body["checks"]["database"]["status"] == "failed"
        assert body["detail"] == english(
            errors.DependencyUnavailable.message, dependency="database"
        )

        health = await http.get("/health")
        assert health.status_code == 200
        still_serving = await http.get(f"{PREFIX}/search", params={"limit": 1, "name": "ok"})
        assert still_serving.status_code == 200


async def test_redis_down_is_a_503_and_the_process_keeps_serving(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    async with serve(settings) as http:
        for path in (f"{PREFIX}/cache", f"{PREFIX}/limited"):
            for headers, translate in (({}, english), (TR, turkish)):
                response = await http.get(path, headers=headers)
                body = assert_problem(response, 503, "DEPENDENCY_UNAVAILABLE")
                assert body["detail"] == translate(
                    errors.DependencyUnavailable.message, dependency="redis"
                )
                assert response.headers["retry-after"] == "5"

        health = await http.get("/health")
        assert health.status_code == 200
        database = await http.get(f"{PREFIX}/db")
        assert database.status_code == 200
        assert database.json() == {"value": 1}


def test_only_sqlite_errors_that_mean_unreachable_count_as_unavailability(
    tmp_path: Path,
) -> None:
    def wrapped(error: sqlite3.Error) -> sa_exc.DBAPIError:
        return sa_exc.OperationalError("SELECT 1", None, error)

    def raised(action: Callable[[], object]) -> sqlite3.Error:
        with pytest.raises(sqlite3.Error) as info:
            action()
        return info.value

    memory = sqlite3.connect(":memory:")
    no_table = raised(lambda: memory.execute("SELECT * FROM missing"))
    syntax = raised(lambda: memory.execute("SELEC 1"))
    cannot_open = raised(lambda: sqlite3.connect(str(tmp_path)).execute("SELECT 1"))

    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    locked = raised(lambda: other.execute("INSERT INTO t VALUES (1)"))
    for connection in (holder, other, memory):
        connection.close()

    assert not errors.database_error_is_unavailability(wrapped(no_table))
    assert not errors.database_error_is_unavailability(wrapped(syntax))
    assert errors.database_error_is_unavailability(wrapped(cannot_open))
    assert errors.database_error_is_unavailability(wrapped(locked))


def test_connection_failures_are_recognised() -> None:
    assert errors.is_connection_failure(ConnectionRefusedError(111, "refused"))
    assert errors.is_connection_failure(TimeoutError())
    assert errors.is_connection_failure(socket.gaierror(-2, "Name or service not known"))
    assert not errors.is_connection_failure(PermissionError(13, "denied"))
    assert not errors.is_connection_failure(ValueError("bad"))


# ---------------------------------------------------------------------------------------------
# Turkish
# ---------------------------------------------------------------------------------------------

TURKISH_CASES: list[
    tuple[str, str, dict[str, Any], int, str, type[errors.AppError], dict[str, Any]]
] = [
    ("GET", "/no/such/route", {}, 404, "NOT_FOUND", errors.NotFound, {}),
    (
        "GET",
        f"{PREFIX}/items",
        {},
        405,
        "METHOD_NOT_ALLOWED",
        errors.MethodNotAllowed,
        {"method": "GET"},
    ),
    (
        "POST",
        f"{PREFIX}/items",
        {"content": b"{bad", "headers": {"Content-Type": "application/json"}},
        400,
        "MALFORMED_JSON",
        errors.MalformedJSON,
        {},
    ),
    (
        "POST",
        f"{PREFIX}/items",
        {"content": b"name=abc", "headers": {"Content-Type": "text/plain"}},
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        errors.UnsupportedMediaType,
        {"expected": "application/json"},
    ),
    (
        "POST",
        f"{PREFIX}/items",
        {"json": {"name": "ab", "qty": 1}},
        422,
        "VALIDATION_ERROR",
        errors.ValidationFailed,
        {},
    ),
    (
        "POST",
        f"{PREFIX}/items",
        {"content": b"[" * (MAX_BODY_BYTES + 1), "headers": {"Content-Type": "application/json"}},
        413,
        "PAYLOAD_TOO_LARGE",
        errors.PayloadTooLarge,
        {"limit": MAX_BODY_BYTES},
    ),
    ("GET", f"{PREFIX}/app-error/forbidden", {}, 403, "FORBIDDEN", errors.Forbidden, {}),
    (
        "GET",
        f"{PREFIX}/app-error/rate-limited",
        {},
        429,
        "RATE_LIMITED",
        errors.RateLimited,
        {"retry_after": 7},
    ),
    ("GET", f"{PREFIX}/boom", {}, 500, "INTERNAL_ERROR", errors.InternalError, {}),
    (
        "GET",
        "/health",
        {"headers": {"Host": "evil.example"}},
        400,
        "INVALID_HOST",
        errors.InvalidHost,
        {},
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error_code", "error_class", "params"),
    TURKISH_CASES,
    ids=[case[4].lower() for case in TURKISH_CASES],
)
async def test_problem_detail_is_turkish_with_accept_language_tr(
    error_client: httpx.AsyncClient,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    error_code: str,
    error_class: type[errors.AppError],
    params: dict[str, Any],
) -> None:
    def send(language: str) -> Any:
        headers = {**kwargs.get("headers", {}), "Accept-Language": language}
        return error_client.request(method, path, **{**kwargs, "headers": headers})

    english_response = await send("en-US,en;q=0.9")
    turkish_response = await send("tr-TR,tr;q=0.9,en;q=0.5")
    english_body = assert_problem(english_response, status, error_code)
    turkish_body = assert_problem(turkish_response, status, error_code)

    assert english_body["detail"] == english(error_class.message, **params)
    assert turkish_body["detail"] == turkish(error_class.message, **params)
    assert turkish_body["detail"] != english_body["detail"]
    assert turkish_body["title"] == turkish(error_class.title)
    assert turkish_body["title"] != english_body["title"]
    # The stable parts do not change with the language.
    assert turkish_body["error_code"] == english_body["error_code"]
    assert turkish_body["type"] == english_body["type"]


async def test_field_errors_are_turkish_and_the_language_does_not_leak(
    error_client: httpx.AsyncClient,
) -> None:
    turkish_response = await error_client.get(
        f"{PREFIX}/search", params={"limit": "x", "name": "a"}, headers=TR
    )
    body = assert_problem(turkish_response, 422, "VALIDATION_ERROR")
    assert body["detail"] == turkish(errors.ValidationFailed.message)
    assert body["field_errors"] == {
        "limit": [turkish("Enter a whole number.")],
        "name": [turkish("Enter at least {min_length} characters.", min_length=2)],
    }
    # The next request states no language: English again, not the previous request's Turkish.
    english_response = await error_client.get(
        f"{PREFIX}/search", params={"limit": "x", "name": "a"}
    )
    body = assert_problem(english_response, 422, "VALIDATION_ERROR")
    assert body["field_errors"]["limit"] == [english("Enter a whole number.")]


async def test_default_language_setting_applies_without_accept_language(
    settings_factory: Callable[..., Settings],
) -> None:
    async with serve(settings_factory(default_language="tr")) as http:
        implicit = await http.get("/no/such/route")
        assert assert_problem(implicit, 404, "NOT_FOUND")["detail"] == turkish(
            errors.NotFound.message
        )
        explicit = await http.get("/no/such/route", headers={"Accept-Language": "en"})
        assert assert_problem(explicit, 404, "NOT_FOUND")["detail"] == english(
            errors.NotFound.message
        )
