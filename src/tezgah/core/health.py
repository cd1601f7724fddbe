"""Liveness, readiness, metrics and the service description.

``/health`` answers while the process can run Python (no dependencies: a load balancer must not
kill every server because the database blinked). ``/ready`` checks each dependency with a time
limit and answers 503 naming the checks that failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Route

from tezgah import __version__
from tezgah.core import metrics
from tezgah.core.errors import DependencyUnavailable, problem_body
from tezgah.core.i18n import SUPPORTED_LANGUAGES
from tezgah.core.logging import get_logger
from tezgah.core.resources import Resources
from tezgah.core.routing import PROBLEM_RESPONSES, make_router

log = get_logger("tezgah.health")
CHECK_TIMEOUT_SECONDS = 3.0

router = make_router(tags=["system"])


class Health(BaseModel):
    status: Literal["ok"]


class CheckResult(BaseModel):
    status: Literal["ok", "failed"]
    duration_ms: float
    error: str | None = None


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, CheckResult]


class ServiceInfo(BaseModel):
    name: str
    version: str
    api_version: str
    languages: list[str]
    default_language: str
    backends: dict[str, str]


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


HEALTH_BODY = b'{"status":"ok"}'


@router.get("/health", response_model=Health, summary="Liveness: the process is serving")
async def health() -> Health:
    """Documents the liveness answer; ``liveness_route`` serves it (see there)."""
    return Health(status="ok")


async def _liveness(request: StarletteRequest) -> Response:
    request.scope["route"] = liveness_route  # logs and metrics label it like any route
    return Response(HEALTH_BODY, media_type="application/json")


# Probes hit /health every few seconds on every server: it is answered by a plain Starlette
# route, placed before the documented FastAPI route, with a pre-rendered body. It still passes
# through the whole middleware stack (request id, access log, metrics, security headers), but
# not through dependency injection and response validation, which have nothing to do here.
liveness_route = Route("/health", _liveness, methods=["GET", "HEAD"], include_in_schema=False)


async def _run_check(check: Callable[[], Awaitable[object]]) -> CheckResult:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # every failure is reported, none crashes readiness
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        error = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        return CheckResult(status="failed", duration_ms=elapsed, error=error)
    return CheckResult(status="ok", duration_ms=round((time.perf_counter() - started) * 1000, 2))


def readiness_checks(resources: Resources) -> dict[str, Callable[[], Awaitable[object]]]:
    checks: dict[str, Callable[[], Awaitable[object]]] = {
        "database": resources.database.ping,
        "storage": resources.blobs.check_writable,
    }
    redis = resources.redis
    if redis is not None:
        checks["redis"] = redis.ping
    return checks


async def run_readiness(resources: Resources) -> dict[str, CheckResult]:
    checks = readiness_checks(resources)
    results = await asyncio.gather(*(_run_check(check) for check in checks.values()))
    return dict(zip(checks, results, strict=True))


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Readiness: every dependency answers",
    responses={503: PROBLEM_RESPONSES[503]},
)
async def ready(request: Request) -> Response:
    results = await run_readiness(get_resources(request))
    failed = sorted(name for name, result in results.items() if result.status == "failed")
    if not failed:
        body = Readiness(status="ready", checks=results)
        return JSONResponse(body.model_dump(mode="json"))
    log.warning("not_ready", failed=failed)
    error = DependencyUnavailable(
        params={"dependency": ", ".join(failed)},
        extra={
            "checks": {name: result.model_dump(mode="json") for name, result in results.items()}
        },
    )
    return JSONResponse(
        problem_body(error),
        status_code=error.status_code,
        media_type="application/problem+json",
        headers={"Retry-After": "5", "Cache-Control": "no-store"},
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def prometheus_metrics() -> Response:
    body, content_type = metrics.render_latest()
    return Response(body, media_type=content_type)


@router.get("/api/v1/meta", response_model=ServiceInfo, summary="What this server runs")
async def service_info(request: Request) -> ServiceInfo:
    resources = get_resources(request)
    return ServiceInfo(
        name="tezgah",
        version=__version__,
        api_version="v1",
        languages=list(SUPPORTED_LANGUAGES),
        default_language=resources.settings.default_language,
        backends=resources.describe(),
    )
