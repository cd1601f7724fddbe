"""Observability: ``/health``, ``/ready``, ``/metrics``, ``/api/v1/meta``, metrics shared by several
worker processes, and OpenTelemetry tracing.

App-level tests run on both backends (SQLite + memory, PostgreSQL + Redis). Dependencies are made
to fail for real: a database URL pointing at a closed port (or an SQLite "file" that is a
directory), a Redis URL at a closed port or at a socket that never answers, a storage directory
whose parent is a regular file (chmod does not stop root). The multi-process test starts
``tezgah serve --workers 2``; the tracing tests run in a subprocess because the tracer provider
and the httpx instrumentation are process-global.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from babel.messages.pofile import read_po
from fastapi import FastAPI, Request
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tezgah import __version__
from tezgah.core import errors, health, migrate
from tezgah.core.config import Settings
from tezgah.core.db import SessionDep
from tezgah.core.i18n import LOCALE_DIR
from tezgah.core.metrics import LATENCY_BUCKETS
from tezgah.core.routing import make_router
from tezgah.main import create_app

PREFIX = "/test-observability"
THING_ROUTE = PREFIX + "/things/{thing_id}"
UNMATCHED = "<unmatched>"
TR = {"Accept-Language": "tr"}
VENV_BIN = Path(sys.executable).parent
TEZGAH_CLI = VENV_BIN / "tezgah"

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@functools.cache
def tr_catalog() -> dict[str, str]:
    """The Turkish catalog read with Babel, independently of ``tezgah.core.i18n``."""
    with (LOCALE_DIR / "tr" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale="tr")
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string}


def turkish(msgid: str, **params: Any) -> str:
    return tr_catalog()[msgid].format(**params)


def free_port() -> int:
    """A local TCP port where nothing listens (yet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never answers a byte."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def unreachable_database_url(backend: str, tmp_path: Path) -> str:
    if backend == "postgres":
        return f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/tezgah_nowhere"
    directory = tmp_path / "a-directory-not-a-database"
    directory.mkdir()
    return f"sqlite+aiosqlite:///{directory}"


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(body: str) -> list[Sample]:
    return [
        Sample(sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def request_count(samples: list[Sample], route: str, status: int, method: str = "GET") -> float:
    return total(
        samples, "tezgah_http_requests_total", method=method, route=route, status=str(status)
    )


# ---------------------------------------------------------------------------------------------
# The test app: create_app plus a templated route and a route that holds a database connection
# until the test lets it go.
# ---------------------------------------------------------------------------------------------


@dataclass
class Gate:
    entered: asyncio.Event
    release: asyncio.Event


def build_app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    app.state.gate = Gate(asyncio.Event(), asyncio.Event())
    router = make_router(prefix=PREFIX)

    @router.get("/things/{thing_id}")
    async def get_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @router.get("/hold")
    async def hold(request: Request, session: SessionDep) -> dict[str, int]:
        value = (await session.execute(text("SELECT 1"))).scalar_one()
        gate: Gate = request.app.state.gate
        gate.entered.set()
        await gate.release.wait()
        return {"value": int(value)}

    app.include_router(router)
    return app


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = build_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.20", 51000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


async def scrape(http: httpx.AsyncClient) -> list[Sample]:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return parse_metrics(response.text)


@pytest.fixture
def make_settings(
    settings: Settings, settings_factory: Callable[..., Settings]
) -> Callable[..., Settings]:
    """``settings_factory``, with the backend's database fixtures already set up (asking for
    them for the first time from inside a running test loop would fail)."""
    return settings_factory


@pytest.fixture
async def obs(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serve(settings) as served:
        yield served


@pytest.fixture
def http(obs: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return obs[1]


# ---------------------------------------------------------------------------------------------
# /health
# ---------------------------------------------------------------------------------------------


async def test_health_is_ok_for_get_and_head(http: httpx.AsyncClient) -> None:
    response = await http.get("/health")
    assert response.status_code == 200
    assert response.content == b'{"status":"ok"}'
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"].split(";")[0] == "application/json"
    # It goes through the whole middleware stack like any route.
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"

    head = await http.head("/health")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"].split(";")[0] == "application/json"


async def test_health_answers_while_the_database_is_unreachable(
    make_settings: Callable[..., Settings], backend: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url=unreachable_database_url(backend, tmp_path), database_pool_timeout=2
    )
    async with serve(settings) as (_app, http):
        # The database really is down for this app: readiness says so...
        ready = await http.get("/ready")
        assert ready.status_code == 503
        # ...but liveness does not depend on it.
        for _ in range(3):
            response = await http.get("/health")
            assert response.status_code == 200
            assert response.json() == {"status": "ok"}
        assert (await http.head("/health")).status_code == 200


# ---------------------------------------------------------------------------------------------
# /ready
# ---------------------------------------------------------------------------------------------


def expected_checks(backend: str) -> set[str]:
    return {"database", "storage"} | ({"redis"} if backend == "postgres" else set())


def assert_not_ready(
    response: httpx.Response, failed: list[str], all_checks: set[str]
) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].split(";")[0] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["status"] == 503
    assert body["error_code"] == "DEPENDENCY_UNAVAILABLE"
    assert body["type"] == "urn:tezgah:problem:dependency-unavailable"
    assert body["request_id"] == response.headers["x-request-id"]
    checks = body["checks"]
    assert set(checks) == all_checks
    for name, check in checks.items():
        if name in failed:
            assert check["status"] == "failed", (name, check)
            assert isinstance(check["error"], str)
            assert check["error"]
        else:
            assert check["status"] == "ok", (name, check)
            assert check["error"] is None
        assert isinstance(check["duration_ms"], int | float)
        assert check["duration_ms"] >= 0
    return body


async def test_ready_reports_each_dependency(http: httpx.AsyncClient, backend: str) -> None:
    response = await http.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == expected_checks(backend)
    for check in body["checks"].values():
        assert check["status"] == "ok"
        assert check["error"] is None
        assert 0 <= check["duration_ms"] < health.CHECK_TIMEOUT_SECONDS * 1000


async def test_ready_is_503_when_the_database_is_down(
    make_settings: Callable[..., Settings], backend: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url=unreachable_database_url(backend, tmp_path), database_pool_timeout=2
    )
    async with serve(settings) as (_app, http):
        response = await http.get("/ready")
        body = assert_not_ready(response, ["database"], expected_checks(backend))
        assert body["detail"] == errors.DependencyUnavailable.message.format(dependency="database")
        assert body["title"] == errors.DependencyUnavailable.title
        # No connection string or path in what the client sees.
        assert "tezgah_nowhere" not in response.text
        assert "a-directory-not-a-database" not in response.text

        turkish_response = await http.get("/ready", headers=TR)
        body = assert_not_ready(turkish_response, ["database"], expected_checks(backend))
        assert body["detail"] == turkish(
            errors.DependencyUnavailable.message, dependency="database"
        )
        assert body["title"] == turkish(errors.DependencyUnavailable.title)
        assert body["detail"] != errors.DependencyUnavailable.message.format(dependency="database")


async def test_ready_is_503_when_redis_is_down(
    make_settings: Callable[..., Settings], backend: str
) -> None:
    # On the SQLite backend too: a Redis URL is what turns Redis on.
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    all_checks = {"database", "storage", "redis"}
    async with serve(settings) as (_app, http):
        started = time.perf_counter()
        response = await http.get("/ready", headers=TR)
        # Refused connections are reported at once, not after the check's time limit.
        assert time.perf_counter() - started < health.CHECK_TIMEOUT_SECONDS
        body = assert_not_ready(response, ["redis"], all_checks)
        assert body["checks"]["redis"]["error"] != "timeout"
        assert body["detail"] == turkish(errors.DependencyUnavailable.message, dependency="redis")


async def test_ready_is_503_when_blob_storage_is_not_writable(
    make_settings: Callable[..., Settings], backend: str, tmp_path: Path
) -> None:
    # A directory cannot be created under a regular file, even by root.
    blocker = tmp_path / "a-regular-file"
    blocker.write_bytes(b"not a directory")
    settings = make_settings(storage_dir=blocker / "blobs")
    async with serve(settings) as (_app, http):
        response = await http.get("/ready")
        body = assert_not_ready(response, ["storage"], expected_checks(backend))
        assert body["detail"] == errors.DependencyUnavailable.message.format(dependency="storage")
        assert "a-regular-file" not in response.text

        turkish_response = await http.get("/ready", headers=TR)
        body = assert_not_ready(turkish_response, ["storage"], expected_checks(backend))
        assert body["detail"] == turkish(errors.DependencyUnavailable.message, dependency="storage")


async def test_ready_names_every_failed_dependency(
    make_settings: Callable[..., Settings], backend: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-regular-file"
    blocker.write_bytes(b"x")
    settings = make_settings(
        database_url=unreachable_database_url(backend, tmp_path),
        database_pool_timeout=2,
        storage_dir=blocker / "blobs",
    )
    async with serve(settings) as (_app, http):
        body = assert_not_ready(
            await http.get("/ready"), ["database", "storage"], expected_checks(backend)
        )
        assert body["detail"] == errors.DependencyUnavailable.message.format(
            dependency="database, storage"
        )


async def test_a_dependency_that_hangs_fails_its_check_by_the_time_limit(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis at a socket that accepts the connection and never replies: the ping would wait for
    # its own 5 s socket timeout; the readiness limit (shortened here) answers first.
    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.3)
    with silent_listener() as port:
        settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0")
        async with serve(settings) as (_app, http):
            started = time.perf_counter()
            response = await http.get("/ready")
            elapsed = time.perf_counter() - started
            body = assert_not_ready(response, ["redis"], {"database", "storage", "redis"})
    assert body["checks"]["redis"]["error"] == "timeout"
    # Well under the 5 s the ping itself would have waited.
    assert 300 <= body["checks"]["redis"]["duration_ms"] < 4000
    assert elapsed < 4.0


# ---------------------------------------------------------------------------------------------
# /metrics
# ---------------------------------------------------------------------------------------------


async def test_metrics_is_prometheus_text(http: httpx.AsyncClient) -> None:
    await http.get("/health")
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    expected_types = {
        "tezgah_http_requests": "counter",
        "tezgah_http_request_duration_seconds": "histogram",
        "tezgah_http_requests_in_flight": "gauge",
        "tezgah_db_pool_connections_in_use": "gauge",
        "tezgah_db_pool_size": "gauge",
    }
    for name, kind in expected_types.items():
        assert name in families, name
        assert families[name].type == kind, (name, families[name].type)
        assert f"# HELP {name}" in response.text


async def test_requests_are_counted_by_route_template_and_status(
    http: httpx.AsyncClient,
) -> None:
    marker = uuid.uuid4().hex
    before = await scrape(http)
    for thing_id in (1, 2, 3):
        assert (await http.get(f"{PREFIX}/things/{thing_id}")).status_code == 200
    assert (await http.get(f"{PREFIX}/things/not-a-number")).status_code == 422
    for _ in range(2):
        assert (await http.get(f"/no/such/route/{marker}")).status_code == 404
    assert (await http.get("/health")).status_code == 200
    after = await scrape(http)

    def delta(route: str, status: int) -> float:
        return request_count(after, route, status) - request_count(before, route, status)

    assert delta(THING_ROUTE, 200) == 3
    assert delta(THING_ROUTE, 422) == 1
    assert delta(UNMATCHED, 404) == 2
    assert delta("/health", 200) == 1
    # Raw paths never become label values (unbounded cardinality).
    routes = {s.labels.get("route") for s in after if "route" in s.labels}
    assert not any(route and ("/things/1" in route or marker in route) for route in routes)
    assert f"{PREFIX}/things/not-a-number" not in routes


async def test_request_duration_histogram(http: httpx.AsyncClient) -> None:
    before = await scrape(http)
    for thing_id in range(4):
        await http.get(f"{PREFIX}/things/{thing_id}")
    after = await scrape(http)
    name = "tezgah_http_request_duration_seconds"
    labels = {"method": "GET", "route": THING_ROUTE, "status": "200"}

    count = total(after, f"{name}_count", **labels) - total(before, f"{name}_count", **labels)
    assert count == 4
    assert total(after, f"{name}_sum", **labels) > total(before, f"{name}_sum", **labels)

    buckets = sorted(
        (float(s.labels["le"]), s.value)
        for s in after
        if s.name == f"{name}_bucket" and all(s.labels.get(k) == v for k, v in labels.items())
    )
    assert [bound for bound, _ in buckets] == [*LATENCY_BUCKETS, math.inf]
    assert LATENCY_BUCKETS[0] <= 0.005  # fine enough for fast endpoints
    values = [value for _, value in buckets]
    assert values == sorted(values)  # cumulative
    assert values[-1] == total(after, f"{name}_count", **labels)


IN_USE = "tezgah_db_pool_connections_in_use"


def in_use_offset(pool: Any) -> float:
    """The in-use gauge minus what the pool itself says is checked out, read in one go.

    The gauge is process-wide and background tasks (the mail sender) use the pool too, so tests
    check that the gauge moves exactly with the pool rather than by a fixed step.
    """
    value = REGISTRY.get_sample_value(IN_USE)
    assert value is not None
    return value - int(pool.checkedout())


async def pool_idle(pool: Any) -> None:
    """Wait until no connection of ``pool`` is checked out (a background task may hold one)."""
    deadline = time.monotonic() + 10
    while pool.checkedout():
        assert time.monotonic() < deadline, "the pool never became idle"
        await asyncio.sleep(0.02)


async def test_in_flight_and_pool_gauges_follow_a_request_holding_a_connection(
    obs: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = obs
    gate: Gate = app.state.gate
    pool = app.state.resources.database.engine.sync_engine.pool
    await pool_idle(pool)
    offset = in_use_offset(pool)
    before = await scrape(http)  # this scrape is itself in flight
    task = asyncio.create_task(http.get(f"{PREFIX}/hold"))
    try:
        await asyncio.wait_for(gate.entered.wait(), timeout=10)
        assert pool.checkedout() >= 1
        assert in_use_offset(pool) == offset
        during = await scrape(http)
    finally:
        gate.release.set()
        response = await asyncio.wait_for(task, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"value": 1}
    after = await scrape(http)
    await pool_idle(pool)
    assert in_use_offset(pool) == offset

    in_flight = "tezgah_http_requests_in_flight"
    assert total(before, in_flight) >= 1
    assert total(during, in_flight) == total(before, in_flight) + 1
    assert total(after, in_flight) == total(before, in_flight)
    # /metrics shows the gauge: at least the held connection while the request runs.
    assert total(during, IN_USE) >= offset + 1


async def test_pool_gauges(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(database_pool_size=7)
    async with serve(settings) as (app, http):
        assert total(await scrape(http), "tezgah_db_pool_size") == 7
        engine = app.state.resources.database.engine
        pool = engine.sync_engine.pool
        await pool_idle(pool)
        offset = in_use_offset(pool)
        async with engine.connect() as first, engine.connect() as second:
            await first.execute(text("SELECT 1"))
            await second.execute(text("SELECT 1"))
            assert pool.checkedout() >= 2
            assert in_use_offset(pool) == offset
            assert total(await scrape(http), IN_USE) >= offset + 2
        await pool_idle(pool)
        assert in_use_offset(pool) == offset


async def test_metrics_can_be_switched_off(make_settings: Callable[..., Settings]) -> None:
    async with serve(make_settings(metrics_enabled=False)) as (_app, http):
        before = await scrape(http)
        for thing_id in range(3):
            await http.get(f"{PREFIX}/things/{thing_id}")
        after = await scrape(http)
    assert request_count(after, THING_ROUTE, 200) == request_count(before, THING_ROUTE, 200)


# ---------------------------------------------------------------------------------------------
# /api/v1/meta
# ---------------------------------------------------------------------------------------------


async def test_meta_describes_the_backends(http: httpx.AsyncClient, backend: str) -> None:
    response = await http.get("/api/v1/meta")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "tezgah"
    assert body["version"] == __version__
    assert body["api_version"] == "v1"
    assert body["languages"] == ["en", "tr"]
    assert body["default_language"] == "en"
    if backend == "postgres":
        assert body["backends"] == {
            "database": "postgresql",
            "cache": "redis",
            "rate_limits": "redis",
            "events": "redis",
            "blobs": "local",
        }
    else:
        assert body["backends"] == {
            "database": "sqlite",
            "cache": "memory",
            "rate_limits": "memory",
            "events": "memory",
            "blobs": "local",
        }


# ---------------------------------------------------------------------------------------------
# Several worker processes: every scrape counts the requests of all workers
# ---------------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without tezgah, Prometheus or OpenTelemetry settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEZGAH_", "OTEL_", "PROMETHEUS_"))
    }
    env.update(extra)
    return env


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and its workers (their own process group), by force if need be."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
    # Workers left behind by a killed supervisor share its process group.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def wait_until_serving(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"tezgah serve exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("tezgah serve did not start within 30 s")


def worker_samples(files: list[Path], tmp_path: Path) -> list[Sample]:
    """The metrics of some workers only, read from copies of their files."""
    alone = tmp_path / f"alone-{uuid.uuid4().hex[:8]}"
    alone.mkdir()
    for path in files:
        shutil.copy(path, alone / path.name)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return parse_metrics(generate_latest(registry).decode())


def pid_of(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


@contextmanager
def tezgah_serve(tmp_path: Path, workers: int, **env_vars: str) -> Iterator[tuple[str, Path]]:
    """``tezgah serve --workers N`` on a migrated SQLite database; yields (base URL, var dir)."""
    var_dir = tmp_path / "var"
    env = clean_env(
        TEZGAH_VAR_DIR=str(var_dir), TEZGAH_ENV="test", TEZGAH_LOG_LEVEL="WARNING", **env_vars
    )
    # What ``tezgah db upgrade`` does, without paying for one more interpreter start-up; the URL
    # is the one the server derives from TEZGAH_VAR_DIR.
    migrate.upgrade(Settings(var_dir=var_dir, database_url="").effective_database_url)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(TEZGAH_CLI), "serve", "--workers", str(workers), "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_serving(base_url, process)
        yield base_url, var_dir
    except BaseException:
        print(log_path.read_text(errors="replace"))  # shown with the failure
        raise
    finally:
        stop_process_group(process)
    assert process.poll() is not None


POOL_SIZE = 3


def test_metrics_are_aggregated_across_worker_processes(tmp_path: Path) -> None:
    with tezgah_serve(tmp_path, workers=2, TEZGAH_DATABASE_POOL_SIZE=str(POOL_SIZE)) as (
        base_url,
        var_dir,
    ):
        metrics_dir = var_dir / "prometheus"

        def scrape_any_worker() -> list[Sample]:
            # A new connection each time: any worker may answer.
            scraped = httpx.get(f"{base_url}/metrics", headers={"Connection": "close"})
            assert scraped.status_code == 200
            return parse_metrics(scraped.text)

        sent = 0
        # A new connection per request, so the kernel spreads them over both workers; keep
        # sending until each worker has answered some (each writes its own counter file).
        while sent < 400:
            for _ in range(20):
                response = httpx.get(f"{base_url}/api/v1/meta", headers={"Connection": "close"})
                assert response.status_code == 200
                sent += 1
            if len(list(metrics_dir.glob("counter_*.db"))) >= 2:
                break
        counter_files = sorted(metrics_dir.glob("counter_*.db"))
        assert len(counter_files) == 2, (sent, counter_files)
        # What each worker counted on its own: both answered some, so neither answered all.
        shares = [
            request_count(worker_samples([path], tmp_path), "/api/v1/meta", 200)
            for path in counter_files
        ]
        assert all(share > 0 for share in shares), shares

        # A worker counts a request just after sending its response: give the last one a moment.
        deadline = time.monotonic() + 5
        while request_count(scrape_any_worker(), "/api/v1/meta", 200) != sent:
            assert time.monotonic() < deadline, "the count never reached the requests sent"
            time.sleep(0.05)

        in_flight: list[float] = []
        for _ in range(6):
            samples = scrape_any_worker()
            assert request_count(samples, "/api/v1/meta", 200) == sent
            count = total(
                samples,
                "tezgah_http_request_duration_seconds_count",
                route="/api/v1/meta",
                status="200",
            )
            assert count == sent
            # One sample per series, not one per worker process.
            meta = [
                s
                for s in samples
                if s.name == "tezgah_http_requests_total" and s.labels["route"] == "/api/v1/meta"
            ]
            assert len(meta) == 1
            # Live gauges are summed over the live workers.
            assert total(samples, "tezgah_db_pool_size") == 2 * POOL_SIZE
            # None of the requests above is left in flight (the previous scrape may still be
            # finishing on the other worker).
            in_flight.append(total(samples, "tezgah_http_requests_in_flight"))
        assert min(in_flight) == 1
        assert max(in_flight) <= 2

        # A worker dies (OOM kill) and uvicorn starts a new one: the requests it answered stay
        # counted, its live gauges go.
        gauge_files = sorted(metrics_dir.glob("gauge_livesum_*.db"))
        assert len(gauge_files) == 2
        old_pids = {pid_of(path) for path in gauge_files}
        victim = pid_of(counter_files[0])
        assert victim in old_pids
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, "no replacement worker started"
            new = [p for p in metrics_dir.glob("gauge_livesum_*.db") if pid_of(p) not in old_pids]
            if new and total(worker_samples(new, tmp_path), "tezgah_db_pool_size") == POOL_SIZE:
                break  # the replacement has opened its pool
            time.sleep(0.1)
        for _ in range(4):
            samples = scrape_any_worker()
            assert request_count(samples, "/api/v1/meta", 200) == sent
            assert total(samples, "tezgah_db_pool_size") == 2 * POOL_SIZE
            assert total(samples, "tezgah_http_requests_in_flight") in (1, 2)


# ---------------------------------------------------------------------------------------------
# Tracing (in subprocesses: the tracer provider and httpx instrumentation are process-global)
# ---------------------------------------------------------------------------------------------


class Collector:
    """A tiny OTLP/HTTP receiver: keeps the bodies POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.other_paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    message = ExportTraceServiceRequest()
                    message.ParseFromString(body)
                    collector.requests.append(message)
                else:
                    collector.other_paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                collector.other_paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def spans(self) -> list[dict[str, Any]]:
        found = []
        for message in self.requests:
            for resource_spans in message.resource_spans:
                resource = attributes_of(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            {
                                "name": span.name,
                                "kind": span.kind,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "attributes": attributes_of(span.attributes),
                                "resource": resource,
                                "scope": scope_spans.scope.name,
                            }
                        )
        return found


def attributes_of(key_values: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in key_values:
        which = item.value.WhichOneof("value")
        result[item.key] = getattr(item.value, which) if which else None
    return result


SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3

# What a subprocess reports about tracing after create_app(): which tracing modules are
# loaded, the global tracer provider's class, and whether the app set tracing up.
TRACING_REPORT = textwrap.dedent(
    """
    import json
    import sys

    from opentelemetry import trace


    def tracing_report(app):
        prefixes = (
            "opentelemetry.sdk.trace",
            "opentelemetry.exporter",
            "opentelemetry.instrumentation",
            "tezgah.core.tracing",
        )
        loaded = sorted(
            {p for p in prefixes for m in sys.modules if m == p or m.startswith(p + ".")}
        )
        return json.dumps(
            {
                "loaded": loaded,
                "provider": type(trace.get_tracer_provider()).__name__,
                "tracing": bool(getattr(app.state, "tracing", False)),
            }
        )
    """
)

TRACED_SCRIPT = TRACING_REPORT + textwrap.dedent(
    """
    import asyncio
    import os

    import httpx
    from asgi_lifespan import LifespanManager

    from tezgah.core import tracing
    from tezgah.main import create_app


    async def main() -> None:
        app = create_app()
        print(tracing_report(app))
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                for path in ("/api/v1/meta", "/ready", "/health", "/metrics"):
                    response = await c.get(path)
                    assert response.status_code == 200, (path, response.text)
        async with httpx.AsyncClient() as outgoing:
            response = await outgoing.get(os.environ["COLLECTOR_URL"] + "/outgoing")
            assert response.status_code == 200
        tracing.flush()


    asyncio.run(main())
    """
)


def test_tracing_exports_server_sql_and_client_spans_over_otlp(tmp_path: Path) -> None:
    with Collector() as collector:
        env = clean_env(
            TEZGAH_VAR_DIR=str(tmp_path / "var"),
            TEZGAH_ENV="test",
            TEZGAH_LOG_LEVEL="WARNING",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
            OTEL_SERVICE_NAME="tezgah-test-service",
            COLLECTOR_URL=collector.url,
        )
        result = subprocess.run(
            [sys.executable, "-c", TRACED_SCRIPT],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        spans = collector.spans()
    assert json.loads(result.stdout.strip().splitlines()[0]) == {
        "loaded": [
            "opentelemetry.exporter",
            "opentelemetry.instrumentation",
            "opentelemetry.sdk.trace",
            "tezgah.core.tracing",
        ],
        "provider": "TracerProvider",
        "tracing": True,
    }
    assert spans, "no span was exported"
    assert all(span["resource"]["service.name"] == "tezgah-test-service" for span in spans)
    assert all(span["resource"]["service.version"] == __version__ for span in spans)

    servers = {
        span["attributes"].get("http.route"): span
        for span in spans
        if span["kind"] == SPAN_KIND_SERVER
    }
    assert "/api/v1/meta" in servers, spans
    assert servers["/api/v1/meta"]["name"] == "GET /api/v1/meta"
    assert "/ready" in servers
    # Probes and scrapes are not traced.
    assert "/health" not in servers
    assert "/metrics" not in servers
    assert not any("/health" in span["name"] or "/metrics" in span["name"] for span in spans)

    sql = [
        span
        for span in spans
        if span["scope"].startswith("opentelemetry.instrumentation.sqlalchemy")
    ]
    queries = [span for span in sql if span["attributes"].get("db.statement") == "SELECT 1"]
    assert len(queries) == 1, sql
    ping = queries[0]
    assert ping["kind"] == SPAN_KIND_CLIENT
    assert ping["attributes"]["db.system"] == "sqlite"
    # The readiness check's query belongs to the /ready request's trace.
    assert ping["trace_id"] == servers["/ready"]["trace_id"]

    outgoing = [
        span
        for span in spans
        if span["kind"] == SPAN_KIND_CLIENT
        and span["scope"].startswith("opentelemetry.instrumentation.httpx")
    ]
    assert len(outgoing) == 1, spans
    assert "/outgoing" in json.dumps(outgoing[0]["attributes"])


# redis-py (8.x) itself imports ``opentelemetry.sdk.metrics`` whenever the SDK is installed, so
# "no opentelemetry.sdk module at all" cannot hold with the tracing extra installed; what tezgah
# controls is that nothing of tracing is loaded or set up: no SDK tracer, exporter,
# instrumentation, tezgah.core.tracing, global tracer provider or middleware.
UNTRACED_SCRIPT = TRACING_REPORT + textwrap.dedent(
    """
    from tezgah.main import create_app

    print(tracing_report(create_app()))
    """
)


def test_tracing_loads_nothing_without_an_endpoint(tmp_path: Path) -> None:
    # The same report shows everything loaded when an endpoint is set (test above).
    result = subprocess.run(
        [sys.executable, "-c", UNTRACED_SCRIPT],
        env=clean_env(TEZGAH_VAR_DIR=str(tmp_path / "var"), TEZGAH_ENV="test"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"loaded": [], "provider": "ProxyTracerProvider", "tracing": False}
