"""Structured logs: one JSON object per line, an access line per request, the request id on every
line of a request, the standard library's loggers in the same format, and secrets masked.

The logs are captured with ``capsys``. tezgah's own loggers write to ``sys.stderr`` at call time;
the standard library's handler that ``configure_logging`` (called by ``create_app``) installs is
pointed at a stream that does the same (see :class:`CurrentStderr`), so every line lands in the
capture. Each line must parse as one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import StreamingResponse

from tezgah.core.config import Settings
from tezgah.core.logging import (
    MASK,
    MAX_DEPTH,
    configure_logging,
    get_logger,
    is_secret_key,
    mask_secrets,
    mask_text,
    mask_value,
)
from tezgah.core.routing import make_router
from tezgah.main import create_app

PREFIX = "/test-log"
CLIENT = ("203.0.113.33", 51000)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
STDLIB_LOGGER = "tezgah.test.stdlib"
BASE_KEYS = {"event", "logger", "level", "timestamp"}

log = get_logger("tezgah.test.logging")
CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost_kib": 1024, "argon2_parallelism": 1}

# ---------------------------------------------------------------------------------------------
# Captured log lines
# ---------------------------------------------------------------------------------------------


class LogCapture:
    """The lines written to ``sys.stderr`` (pytest's ``capsys``), kept until ``clear``."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.captured = ""

    def clear(self) -> None:
        self.capsys.readouterr()
        self.captured = ""

    @property
    def text(self) -> str:
        self.captured += self.capsys.readouterr().err
        return self.captured

    def records(self) -> list[dict[str, Any]]:
        """Every line written; each must be one JSON object."""
        records = []
        for line in self.text.splitlines():
            record = json.loads(line)
            assert isinstance(record, dict), line
            records.append(record)
        return records

    def events(self, event: str) -> list[dict[str, Any]]:
        return [record for record in self.records() if record.get("event") == event]


class CurrentStderr:
    """A stream that writes to whatever ``sys.stderr`` is at call time, as tezgah's own loggers
    do. pytest's ``capsys`` swaps in a new stream for each test phase (setup, call, teardown) and
    closes the old one; the standard library's handler, built with the stream of its moment,
    would write to a closed stream in the next phase."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def follow_current_stderr() -> None:
    """Point the root handler that ``configure_logging`` installs at :class:`CurrentStderr`."""
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            with handler.lock or contextlib.nullcontext():
                handler.stream = CurrentStderr()


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[LogCapture]:
    yield LogCapture(capsys)
    follow_current_stderr()


# ---------------------------------------------------------------------------------------------
# The test app
# ---------------------------------------------------------------------------------------------

# Secret values: none of them may appear anywhere in the captured output.
SECRETS = {
    name: f"{name}-{uuid.uuid4().hex}"
    for name in (
        "bearer",
        "cookie",
        "api-key-header",
        "query-token",
        "password",
        "nested-api-key",
        "list-token",
        "list-secret",
        "deep-secret",
        "inline-password",
        "exception-token",
        "top-password",
        "basic",
    )
}
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJheXNlLTEyMyJ9.c2lnbmF0dXJlLXZhbHVlLTQy"


def deep(levels: int, leaf: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = leaf
    for index in range(levels):
        value = {f"level{levels - index}": value}
    return value


def build_app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    router = make_router(prefix=PREFIX)
    stdlib = logging.getLogger(STDLIB_LOGGER)

    @router.get("/things/{thing_id}")
    async def get_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("logging test failure")

    @router.get("/chatty")
    async def chatty(background: BackgroundTasks) -> dict[str, bool]:
        log.info("own_line", step=1)
        log.warning("own_warning")
        stdlib.info("stdlib line %s", 1)
        logging.getLogger("uvicorn.error").warning("uvicorn line")
        background.add_task(lambda: log.info("background_line"))
        return {"ok": True}

    @router.get("/sync")
    def sync_route() -> dict[str, bool]:
        # Runs in the thread pool.
        log.info("sync_line")
        stdlib.info("sync stdlib line")
        return {"ok": True}

    @router.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for index in range(3):
                log.info("stream_chunk", index=index)
                await asyncio.sleep(0)
                yield b"chunk\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @router.post("/login")
    async def login(request: Request, payload: dict[str, Any]) -> dict[str, bool]:
        log.info(
            "login_attempt",
            payload=payload,
            headers=dict(request.headers),
            raw_headers=request.scope["headers"],
            url=str(request.url),
            password=SECRETS["top-password"],
        )
        stdlib.warning(
            "callback %s authorized by %s", str(request.url), request.headers["authorization"]
        )
        try:
            raise ValueError(f"upstream refused token={SECRETS['exception-token']}")
        except ValueError:
            log.exception("upstream_failed")
        return {"ok": True}

    app.include_router(router)
    return app


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, client=CLIENT)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def make_settings(
    settings_factory: Callable[..., Settings], logs: LogCapture
) -> Callable[..., Settings]:
    """``settings_factory`` once the backend's database exists (the first call creates and
    migrates it, which has to happen outside the event loop, in a sync fixture), with the
    cheapest Argon2 parameters: every app start hashes a dummy password, and nothing here
    tests passwords."""
    settings_factory()

    def build(**overrides: object) -> Settings:
        return settings_factory(**{**CHEAP_ARGON2, **overrides})

    return build


@pytest.fixture
def log_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(log_level="INFO", log_json=True)


@pytest.fixture(autouse=True)
def quiet_test_client() -> Iterator[None]:
    """httpx logs each request the *test client* sends; those lines are not the app's."""
    client_logger = logging.getLogger("httpx")
    previous = client_logger.level
    client_logger.setLevel(logging.WARNING)
    yield
    client_logger.setLevel(previous)


@pytest.fixture
async def log_client(log_settings: Settings, logs: LogCapture) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(log_settings) as http:
        follow_current_stderr()
        logs.clear()
        yield http


def access_lines(logs: LogCapture, request_id: str) -> list[dict[str, Any]]:
    return [
        record
        for record in logs.records()
        if record.get("logger") == "tezgah.access" and record.get("request_id") == request_id
    ]


# ---------------------------------------------------------------------------------------------
# Access log
# ---------------------------------------------------------------------------------------------


async def test_one_access_line_per_request_with_the_route_template(
    log_client: httpx.AsyncClient, logs: LogCapture
) -> None:
    response = await log_client.get(f"{PREFIX}/things/987654321")
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    (line,) = access_lines(logs, request_id)
    assert line["event"] == "request"
    assert line["level"] == "info"
    assert line["method"] == "GET"
    assert line["path"] == f"{PREFIX}/things/{{thing_id}}"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], int | float)
    assert line["duration_ms"] >= 0
    assert line["client"] == CLIENT[0]
    assert TIMESTAMP.fullmatch(line["timestamp"])
    # The raw path (an unbounded set of values) is nowhere in the line.
    assert "987654321" not in json.dumps(line)
    # Exactly one access line for the one request.
    assert len([r for r in logs.records() if r.get("logger") == "tezgah.access"]) == 1


async def test_access_lines_for_errors(log_client: httpx.AsyncClient, logs: LogCapture) -> None:
    missing = await log_client.get("/no/such/route/123")
    failed = await log_client.get(f"{PREFIX}/boom")
    refused = await log_client.post(f"{PREFIX}/things/1")
    (missing_line,) = access_lines(logs, missing.headers["x-request-id"])
    assert (missing_line["status"], missing_line["path"]) == (404, "<unmatched>")
    (failed_line,) = access_lines(logs, failed.headers["x-request-id"])
    assert (failed_line["status"], failed_line["path"]) == (500, f"{PREFIX}/boom")
    (refused_line,) = access_lines(logs, refused.headers["x-request-id"])
    assert refused_line["status"] == 405
    assert refused_line["method"] == "POST"
    assert "/no/such/route" not in logs.text


async def test_the_access_line_uses_a_well_formed_incoming_request_id(
    log_client: httpx.AsyncClient, logs: LogCapture
) -> None:
    incoming = "lb-" + uuid.uuid4().hex
    response = await log_client.get("/health", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] == incoming
    (line,) = access_lines(logs, incoming)
    assert line["path"] == "/health"


# ---------------------------------------------------------------------------------------------
# The request id on every line of a request
# ---------------------------------------------------------------------------------------------


async def test_every_line_of_a_request_carries_its_request_id(
    log_client: httpx.AsyncClient, logs: LogCapture
) -> None:
    expected = {
        f"{PREFIX}/chatty": {
            "own_line",
            "own_warning",
            "stdlib line 1",
            "uvicorn line",
            "background_line",
            "request",
        },
        f"{PREFIX}/sync": {"sync_line", "sync stdlib line", "request"},
        f"{PREFIX}/stream": {"stream_chunk", "request"},
        f"{PREFIX}/boom": {"unhandled_exception", "request"},
    }
    for path, events in expected.items():
        logs.clear()
        response = await log_client.get(path)
        request_id = response.headers["x-request-id"]
        records = logs.records()
        assert {record["event"] for record in records} == events, path
        for record in records:
            assert record.get("request_id") == request_id, record
    # Lines from another request carry that request's id, not the previous one.
    logs.clear()
    first = await log_client.get(f"{PREFIX}/chatty")
    second = await log_client.get(f"{PREFIX}/chatty")
    ids = {record["request_id"] for record in logs.records()}
    assert ids == {first.headers["x-request-id"], second.headers["x-request-id"]}


async def test_an_invalid_request_id_never_reaches_the_logs(
    log_client: httpx.AsyncClient, logs: LogCapture
) -> None:
    attempts = [
        'forged" level="critical" injected="yes',
        "spaces are not allowed here",
        "x" * 200,
        "short",
    ]
    for attempt in attempts:
        logs.clear()
        response = await log_client.get(f"{PREFIX}/chatty", headers={"X-Request-ID": attempt})
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        assert request_id != attempt
        assert attempt not in logs.text
        (warning,) = logs.events("invalid_request_id_replaced")
        assert warning["length"] == len(attempt)
        assert warning["level"] == "warning"
        assert warning["request_id"] == request_id
        for record in logs.records():
            assert record["request_id"] == request_id
    assert "injected" not in logs.text


# ---------------------------------------------------------------------------------------------
# Standard-library loggers
# ---------------------------------------------------------------------------------------------


async def test_standard_library_loggers_write_the_same_json(
    log_client: httpx.AsyncClient, logs: LogCapture
) -> None:
    logging.getLogger("uvicorn.error").warning("Started server process [%d]", 4242)
    logging.getLogger("sqlalchemy.pool.impl.AsyncAdaptedQueuePool").warning("pool overflow")
    get_logger("tezgah.test.own").warning("own_outside")
    uvicorn_line, sqlalchemy_line, own_line = logs.records()
    assert uvicorn_line == {
        "event": "Started server process [4242]",
        "logger": "uvicorn.error",
        "level": "warning",
        "timestamp": uvicorn_line["timestamp"],
    }
    assert sqlalchemy_line["logger"] == "sqlalchemy.pool.impl.AsyncAdaptedQueuePool"
    assert sqlalchemy_line["event"] == "pool overflow"
    for line in (uvicorn_line, sqlalchemy_line, own_line):
        assert set(line) == BASE_KEYS
        assert TIMESTAMP.fullmatch(line["timestamp"]), line

    # Inside a request, both kinds carry the same keys, request id included.
    logs.clear()
    response = await log_client.get(f"{PREFIX}/chatty")
    by_event = {record["event"]: record for record in logs.records()}
    own, stdlib = by_event["own_warning"], by_event["uvicorn line"]
    assert set(own) == set(stdlib) == BASE_KEYS | {"request_id"}
    assert stdlib["logger"] == "uvicorn.error"
    assert stdlib["level"] == own["level"] == "warning"
    assert stdlib["request_id"] == own["request_id"] == response.headers["x-request-id"]
    assert by_event["stdlib line 1"]["logger"] == STDLIB_LOGGER


async def test_standard_library_exceptions_are_one_json_line_with_the_traceback(
    log_client: httpx.AsyncClient, logs: LogCapture
) -> None:
    try:
        raise KeyError("missing-thing")
    except KeyError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    (line,) = logs.records()
    assert line["level"] == "error"
    assert line["event"] == "Exception in ASGI application"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing-thing'" in line["exception"]


async def test_uvicorn_access_log_is_silenced(
    log_client: httpx.AsyncClient, logs: LogCapture
) -> None:
    # tezgah writes its own access line with the request id; uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /health HTTP/1.1" 200')
    logging.getLogger("uvicorn.error").info("still here")
    assert [record["event"] for record in logs.records()] == ["still here"]


async def test_the_log_level_applies_to_both_kinds_of_logger(
    make_settings: Callable[..., Settings], logs: LogCapture
) -> None:
    try:
        async with serve(make_settings(log_level="WARNING")) as http:
            follow_current_stderr()
            logs.clear()
            response = await http.get(f"{PREFIX}/chatty")
            assert response.status_code == 200
            events = {record["event"] for record in logs.records()}
            # No info lines, the access line included; warnings from both kinds of logger.
            assert events == {"own_warning", "uvicorn line"}
    finally:
        # The level is process-wide: leave the one every other test's app uses.
        configure_logging("INFO", json_output=True)


# ---------------------------------------------------------------------------------------------
# Secrets: unit tests of the masking functions
# ---------------------------------------------------------------------------------------------

SECRET_KEYS = [
    "authorization",
    "Authorization",
    "proxy-authorization",
    "cookie",
    "Set-Cookie",
    "password",
    "new_password",
    "passwd",
    "token",
    "access_token",
    "refreshToken",
    "api_key",
    "apiKey",
    "x-api-key",
    "X-API-Key",
    "secret",
    "client_secret",
    "credentials",
    "private_key",
    "signature",
    "pin",
    "user_pin",
    "otp",
    "otp_code",
    "totp_secret",
]
PLAIN_KEYS = ["name", "email", "path", "status", "spin", "footprint", "shipping", "user_id", "key"]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_key_names_are_recognised(key: str) -> None:
    assert is_secret_key(key)
    assert mask_value({key: "value-1"}) == {key: MASK}


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_plain_key_names_are_not_masked(key: str) -> None:
    assert not is_secret_key(key)
    assert mask_value({key: "value-1"}) == {key: "value-1"}


def test_mask_value_masks_by_key_at_any_depth_and_in_lists() -> None:
    data = {
        "user": {"name": "ayse", "password": "pw-1", "roles": ["admin", "cam"]},
        "accounts": [{"id": 1, "token": "tok-1"}, {"id": 2, "client_secret": "cs-1"}],
        "pairs": (("name", "ayse"), ("api_key", "ak-1")),
        "raw_headers": [(b"authorization", b"Bearer abc"), (b"accept", b"*/*")],
        "header_list": [["cookie", "sid=1"], ["host", "example"]],
        "numbers": [1, 2.5, None, True],
        "auth": {"token": {"nested": "whole-value"}},
    }
    assert mask_value(data) == {
        "user": {"name": "ayse", "password": MASK, "roles": ["admin", "cam"]},
        "accounts": [{"id": 1, "token": MASK}, {"id": 2, "client_secret": MASK}],
        "pairs": (("name", "ayse"), ("api_key", MASK)),
        "raw_headers": [(b"authorization", MASK), (b"accept", b"*/*")],
        "header_list": [["cookie", MASK], ["host", "example"]],
        "numbers": [1, 2.5, None, True],
        "auth": {"token": MASK},
    }


@pytest.mark.parametrize("levels", [1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 5])
def test_mask_value_never_passes_on_a_secret_nested_deeper_than_it_looks(levels: int) -> None:
    data = deep(levels, {"password": "deep-pw", "items": [{"token": "deep-tok"}]})
    rendered = json.dumps(mask_value(data, 1))
    assert "deep-pw" not in rendered
    assert "deep-tok" not in rendered
    # Shallow data keeps its structure: only the secrets are replaced.
    if levels < MAX_DEPTH - 1:
        assert json.loads(rendered) == deep(levels, {"password": MASK, "items": [{"token": MASK}]})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.DEF-123_~+/=", "Authorization: Bearer ***"),
        ("auth header was bearer xyz", "auth header was bearer ***"),
        ("Basic dXNlcjpwYXNz", "Basic ***"),
        (f"token {JWT} expired", "token *** expired"),
        ("GET /cb?code=abc123&state=ok", "GET /cb?code=***&state=ok"),
        ("/login?user=ayse&password=hunter2&next=/", "/login?user=ayse&password=***&next=/"),
        ("https://x/y?token=t1&access_token=t2", "https://x/y?token=***&access_token=***"),
        ("?refresh_token=r1;apikey=k1", "?refresh_token=***;apikey=***"),
        ("?api_key=k1&api-key=k2&x-api-key=k3", "?api_key=***&api-key=***&x-api-key=***"),
        ("?passwd=p1&client_secret=s1", "?passwd=***&client_secret=***"),
        ("sig: signature=abc&pin=1234", "sig: signature=***&pin=***"),
        ('redirect "token=abc" done', 'redirect "token=***" done'),
    ],
)
def test_mask_text_masks_inline_secrets(text: str, expected: str) -> None:
    assert mask_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "GET /api/v1/designs?limit=10&sort=-created_at",
        "request finished in 12 ms",
        "eyJ alone is not a token",
        "",
    ],
)
def test_mask_text_leaves_ordinary_text_alone(text: str) -> None:
    assert mask_text(text) == text


def test_mask_secrets_processor_masks_keys_values_and_text() -> None:
    event = {
        "event": "calling https://api.example/x?token=abc",
        "password": "pw",
        "Authorization": "Bearer abc",
        "payload": {"list": [{"secret": "s"}], "note": f"jwt {JWT}"},
        "status": 200,
        "ratio": 0.5,
    }
    assert mask_secrets(None, "info", event) == {
        "event": "calling https://api.example/x?token=***",
        "password": MASK,
        "Authorization": MASK,
        "payload": {"list": [{"secret": MASK}], "note": "jwt ***"},
        "status": 200,
        "ratio": 0.5,
    }


# ---------------------------------------------------------------------------------------------
# Secrets: end to end
# ---------------------------------------------------------------------------------------------


async def test_secrets_never_reach_the_log_output(
    log_client: httpx.AsyncClient, logs: LogCapture
) -> None:
    payload = {
        "username": "ayse-logs-visible",
        "password": SECRETS["password"],
        "profile": {"settings": {"theme": "dark", "api_key": SECRETS["nested-api-key"]}},
        "accounts": [
            {"provider": "github", "access_token": SECRETS["list-token"]},
            {"provider": "s3", "secret": SECRETS["list-secret"]},
        ],
        "deep": deep(MAX_DEPTH + 4, {"secret": SECRETS["deep-secret"], "note": "deep-note"}),
        "callback": f"https://cam.example/done?job=7&password={SECRETS['inline-password']}",
        "id_token": JWT,
        "note": f"forwarded {JWT} and Basic {SECRETS['basic']}",
    }
    response = await log_client.post(
        f"{PREFIX}/login",
        params={"token": SECRETS["query-token"], "next": "/home"},
        json=payload,
        headers={
            "Authorization": f"Bearer {SECRETS['bearer']}",
            "Cookie": f"session={SECRETS['cookie']}",
            "X-API-Key": SECRETS["api-key-header"],
        },
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    output = logs.text
    for name, value in SECRETS.items():
        assert value not in output, name
    for part in JWT.split("."):
        assert part not in output

    # The lines were written, with the request id and the harmless data intact.
    (login,) = logs.events("login_attempt")
    assert login["request_id"] == request_id
    assert login["password"] == MASK
    assert login["payload"]["username"] == "ayse-logs-visible"
    assert login["payload"]["profile"]["settings"] == {"theme": "dark", "api_key": MASK}
    assert login["payload"]["accounts"][0] == {"provider": "github", "access_token": MASK}
    assert login["headers"]["authorization"] == MASK
    assert login["headers"]["cookie"] == MASK
    assert login["headers"]["x-api-key"] == MASK
    assert login["headers"]["host"] == "testserver"
    assert "next=%2Fhome" in login["url"]
    (callback,) = [r for r in logs.records() if r.get("logger") == STDLIB_LOGGER]
    assert callback["request_id"] == request_id
    assert callback["event"].startswith("callback http://testserver/test-log/login?")
    assert "Bearer ***" in callback["event"]
    (failure,) = logs.events("upstream_failed")
    assert "ValueError: upstream refused token=***" in failure["exception"]
