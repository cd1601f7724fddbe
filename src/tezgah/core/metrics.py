"""Prometheus metrics, correct with several worker processes.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``tezgah serve --workers N`` sets it) every process writes
its samples to that directory and ``/metrics`` aggregates them, so a scrape answered by any worker
counts the requests of all workers.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "tezgah_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
REQUEST_DURATION = Histogram(
    "tezgah_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "tezgah_http_requests_in_flight",
    "HTTP requests being answered now.",
    multiprocess_mode="livesum",
)
DB_POOL_CHECKED_OUT = Gauge(
    "tezgah_db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "tezgah_db_pool_size",
    "Configured size of the database connection pool.",
    multiprocess_mode="livesum",
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render_latest() -> tuple[bytes, str]:
    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        forget_dead_processes(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# Children per (method, route, status): ``labels()`` validates and locks on every call.
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    children = _request_children.get(key)
    if children is None:
        labels = (method, route, str(status))
        children = (REQUESTS.labels(*labels), REQUEST_DURATION.labels(*labels))
        _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def instrument_pool(engine: AsyncEngine, pool_size: int) -> None:
    """Track pool usage through pool events: exact, and costs nothing at scrape time."""
    DB_POOL_SIZE.set(pool_size)

    def on_checkout(*_args: Any) -> None:
        DB_POOL_CHECKED_OUT.inc()

    def on_checkin(*_args: Any) -> None:
        DB_POOL_CHECKED_OUT.dec()

    event.listen(engine.sync_engine.pool, "checkout", on_checkout)
    event.listen(engine.sync_engine.pool, "checkin", on_checkin)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_processes(directory: str) -> None:
    """Drop the live gauges (in flight, pool) of worker processes that no longer exist.

    uvicorn replaces a worker that died (crash, OOM kill) without any hook where
    :func:`mark_process_dead` could run, so its files would be summed into every later scrape
    (a pool counted twice, requests in flight forever). A scrape checks the few pids instead.
    """
    from prometheus_client import multiprocess

    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _process_exists(int(pid)):
            # Another worker's scrape may be removing the same files right now.
            with contextlib.suppress(FileNotFoundError):
                multiprocess.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def mark_process_dead(pid: int) -> None:
    """Called by a process manager when a worker exits, so live gauges drop its values."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
