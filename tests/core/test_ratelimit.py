"""Rate limits on both backends (limits' memory and Redis storages), and the 429 dependency."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI, Request
from redis import exceptions as redis_exceptions
from redis.asyncio import Redis

from tests.conftest import REDIS_URL
from tezgah.core.config import Settings
from tezgah.core.ratelimit import RateLimitDecision, RateLimiter, client_ip, rate_limit
from tezgah.core.resources import Resources
from tezgah.core.routing import make_router
from tezgah.main import create_app

PROBLEM = "application/problem+json"


@pytest.fixture
async def limiter(kit_backend: str, kit_prefix: str) -> AsyncIterator[RateLimiter]:
    if kit_backend == "memory":
        yield RateLimiter.in_memory()
    else:
        limiter = RateLimiter.redis(REDIS_URL, kit_prefix)
        try:
            yield limiter
        finally:
            await limiter.close()


def fresh_key() -> str:
    return uuid.uuid4().hex


# -- RateLimiter -----------------------------------------------------------------------------


async def test_allowed_until_the_limit_then_refused(limiter: RateLimiter) -> None:
    key = fresh_key()
    decisions = [await limiter.hit("3/minute", "login", key) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert all(d.limit == 3 for d in decisions)

    refused = await limiter.hit("3/minute", "login", key)
    assert refused.allowed is False
    assert refused.remaining == 0
    assert refused.limit == 3
    assert 1 <= refused.reset_after <= 60
    again = await limiter.hit("3/minute", "login", key)
    assert again.allowed is False
    assert again.remaining == 0


async def test_refused_decision_headers_carry_retry_after(limiter: RateLimiter) -> None:
    key = fresh_key()
    allowed = await limiter.hit("1/minute", "s", key)
    assert "Retry-After" not in allowed.headers()
    assert allowed.headers()["RateLimit-Limit"] == "1"
    assert allowed.headers()["RateLimit-Remaining"] == "0"
    refused = await limiter.hit("1/minute", "s", key)
    headers = refused.headers()
    assert headers["Retry-After"] == str(refused.reset_after)
    assert headers["RateLimit-Reset"] == str(refused.reset_after)
    assert int(headers["Retry-After"]) > 0


async def test_reset_after_is_the_time_until_the_window_has_room(
    limiter: RateLimiter, kit_backend: str
) -> None:
    """A counted hit never says "retry now": the window it was counted in has time left.

    Redis windows start at the first hit (a fresh key has a whole minute ahead); memory windows
    are aligned to the clock (the rest of the current minute).
    """
    for _ in range(20):
        before = time.time()
        decision = await limiter.hit("5/minute", "s", fresh_key())
        after = time.time()
        assert decision.allowed
        if kit_backend == "redis":
            assert decision.reset_after >= 59, decision
        else:
            expected = {math.ceil(60 - before % 60), math.ceil(60 - after % 60)}
            assert min(expected) - 1 <= decision.reset_after <= max(expected) + 1, decision


async def test_different_keys_and_scopes_are_independent(limiter: RateLimiter) -> None:
    first, second = fresh_key(), fresh_key()
    assert (await limiter.hit("1/minute", "login", first)).allowed
    assert not (await limiter.hit("1/minute", "login", first)).allowed
    # Another identifier, another scope, another limit: each counted on its own.
    assert (await limiter.hit("1/minute", "login", second)).allowed
    assert (await limiter.hit("1/minute", "register", first)).allowed
    assert (await limiter.hit("2/hour", "login", first)).allowed
    assert not (await limiter.hit("1/minute", "login", first)).allowed


async def test_reset_clears_the_count(limiter: RateLimiter) -> None:
    key, other = fresh_key(), fresh_key()
    for _ in range(2):
        await limiter.hit("2/minute", "s", key)
        await limiter.hit("2/minute", "s", other)
    assert not (await limiter.hit("2/minute", "s", key)).allowed
    await limiter.reset("2/minute", "s", key)
    after_reset = await limiter.hit("2/minute", "s", key)
    assert after_reset.allowed
    assert after_reset.remaining == 1
    # Only that key was reset.
    assert not (await limiter.hit("2/minute", "s", other)).allowed


async def test_cost_counts_several_hits(limiter: RateLimiter) -> None:
    key = fresh_key()
    decision = await limiter.hit("5/minute", "s", key, cost=4)
    assert decision.allowed
    assert decision.remaining == 1
    refused = await limiter.hit("5/minute", "s", key, cost=2)
    assert not refused.allowed
    assert refused.remaining == 1  # a refused hit consumes nothing
    assert (await limiter.hit("5/minute", "s", key)).allowed


async def test_check_reports_storage_health(limiter: RateLimiter) -> None:
    assert await limiter.check() is True


async def test_redis_limiter_writes_under_its_prefix(kit_prefix: str, kit_redis: Redis) -> None:
    limiter = RateLimiter.redis(REDIS_URL, kit_prefix)
    try:
        await limiter.hit("3/minute", "login", "198.51.100.1")
        keys = [key async for key in kit_redis.scan_iter(match=kit_prefix + "*")]
        assert keys
        assert all(key.decode().startswith(kit_prefix + "ratelimit") for key in keys)
    finally:
        await limiter.close()


async def test_redis_limits_are_shared_between_limiters(kit_prefix: str) -> None:
    """Two servers (two limiters on one Redis) count against the same limit."""
    first = RateLimiter.redis(REDIS_URL, kit_prefix)
    second = RateLimiter.redis("async+" + REDIS_URL, kit_prefix)
    try:
        key = fresh_key()
        assert (await first.hit("2/minute", "s", key)).allowed
        assert (await second.hit("2/minute", "s", key)).allowed
        assert not (await first.hit("2/minute", "s", key)).allowed
        assert not (await second.hit("2/minute", "s", key)).allowed
    finally:
        await first.close()
        await second.close()


async def test_unreachable_redis_fails_loudly() -> None:
    """No silent "allow everything": the error reaches the app (which answers 503)."""
    limiter = RateLimiter.redis("redis://127.0.0.1:1/0", "unreachable:")
    try:
        assert await limiter.check() is False
        with pytest.raises(redis_exceptions.ConnectionError):
            await limiter.hit("1/minute", "s", fresh_key())
    finally:
        await limiter.close()


async def test_close_is_safe_for_memory_and_twice_for_redis(kit_prefix: str) -> None:
    await RateLimiter.in_memory().close()
    limiter = RateLimiter.redis(REDIS_URL, kit_prefix)
    assert (await limiter.hit("1/minute", "s", fresh_key())).allowed
    await limiter.close()
    await limiter.close()


def test_decision_headers_shape() -> None:
    allowed = RateLimitDecision(allowed=True, limit=10, remaining=7, reset_after=42)
    assert allowed.headers() == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "7",
        "RateLimit-Reset": "42",
    }
    refused = RateLimitDecision(allowed=False, limit=10, remaining=0, reset_after=42)
    assert refused.headers()["Retry-After"] == "42"


# -- the rate_limit dependency on a real app -------------------------------------------------


def _account_key(request: Request) -> str:
    return request.headers.get("x-account", "anonymous")


def _limit_from_header(request: Request) -> str:
    return request.headers.get("x-limit", "2/minute")


@pytest.fixture
async def limited_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The real application plus a test router whose routes are rate limited."""
    application = create_app(settings)
    router = make_router(prefix="/api/v1/test-limits")

    @router.get("/ip", dependencies=[Depends(rate_limit("2/minute", scope="test-ip"))])
    async def by_ip() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/account",
        dependencies=[Depends(rate_limit("1/minute", scope="test-account", key=_account_key))],
    )
    async def by_account() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/dynamic",
        dependencies=[Depends(rate_limit(_limit_from_header, scope="test-dynamic"))],
    )
    async def dynamic() -> dict[str, str]:
        return {"status": "ok"}

    @router.post("/items", dependencies=[Depends(rate_limit("1/minute", scope="test-post"))])
    async def create_item(payload: dict[str, int]) -> dict[str, int]:
        return payload

    application.include_router(router)
    async with LifespanManager(application):
        yield application


def _client(app: FastAPI, ip: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 51000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_app_uses_the_backend_limiter(limited_app: FastAPI, backend: str) -> None:
    resources: Resources = limited_app.state.resources
    assert resources.describe()["rate_limits"] == ("redis" if backend == "postgres" else "memory")


async def test_dependency_sets_ratelimit_headers_then_answers_429(limited_app: FastAPI) -> None:
    async with _client(limited_app) as client:
        first = await client.get("/api/v1/test-limits/ip")
        second = await client.get("/api/v1/test-limits/ip")
        refused = await client.get("/api/v1/test-limits/ip")

    assert first.status_code == 200, first.text
    assert first.json() == {"status": "ok"}
    assert first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert 1 <= int(first.headers["RateLimit-Reset"]) <= 60
    assert "Retry-After" not in first.headers
    assert second.status_code == 200
    assert second.headers["RateLimit-Remaining"] == "0"

    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith(PROBLEM)
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert refused.headers["RateLimit-Limit"] == "2"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == str(retry_after)
    body = refused.json()
    assert body["status"] == 429
    assert body["error_code"] == "RATE_LIMITED"
    assert body["type"] == "urn:tezgah:problem:rate-limited"
    assert body["title"] == "Too many requests"
    assert body["detail"] == f"Too many requests. Try again in {retry_after} seconds."
    assert body["request_id"] == refused.headers["X-Request-ID"]


async def test_429_detail_is_turkish_with_accept_language_tr(limited_app: FastAPI) -> None:
    async with _client(limited_app, ip="203.0.113.21") as client:
        for _ in range(2):
            assert (await client.get("/api/v1/test-limits/ip")).status_code == 200
        refused = await client.get(
            "/api/v1/test-limits/ip", headers={"Accept-Language": "tr-TR,tr;q=0.9,en;q=0.5"}
        )
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith(PROBLEM)
    retry_after = int(refused.headers["Retry-After"])
    body = refused.json()
    assert body["error_code"] == "RATE_LIMITED"
    assert body["title"] == "Çok fazla istek"
    assert body["detail"] == f"Çok fazla istek. {retry_after} saniye sonra yeniden deneyin."


async def test_limits_are_per_client_ip(limited_app: FastAPI) -> None:
    async with _client(limited_app, ip="198.51.100.10") as first:
        for _ in range(2):
            assert (await first.get("/api/v1/test-limits/ip")).status_code == 200
        assert (await first.get("/api/v1/test-limits/ip")).status_code == 429
    async with _client(limited_app, ip="198.51.100.11") as second:
        response = await second.get("/api/v1/test-limits/ip")
        assert response.status_code == 200
        assert response.headers["RateLimit-Remaining"] == "1"


async def test_custom_key_function(limited_app: FastAPI) -> None:
    async with _client(limited_app) as client:
        path = "/api/v1/test-limits/account"
        assert (await client.get(path, headers={"x-account": "ayse"})).status_code == 200
        assert (await client.get(path, headers={"x-account": "ayse"})).status_code == 429
        # Same IP, another account: its own count.
        assert (await client.get(path, headers={"x-account": "mehmet"})).status_code == 200


async def test_limit_expression_can_depend_on_the_request(limited_app: FastAPI) -> None:
    async with _client(limited_app, ip="198.51.100.30") as client:
        path = "/api/v1/test-limits/dynamic"
        response = await client.get(path, headers={"x-limit": "5/minute"})
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "5"
        assert response.headers["RateLimit-Remaining"] == "4"
    async with _client(limited_app, ip="198.51.100.31") as client:
        assert (await client.get(path)).headers["RateLimit-Limit"] == "2"


async def test_refused_request_does_not_run_the_endpoint(limited_app: FastAPI) -> None:
    async with _client(limited_app, ip="198.51.100.40") as client:
        path = "/api/v1/test-limits/items"
        created = await client.post(path, json={"n": 1})
        assert created.status_code == 200
        assert created.json() == {"n": 1}
        refused = await client.post(path, json={"n": 2})
        assert refused.status_code == 429
        assert refused.json()["error_code"] == "RATE_LIMITED"


async def test_scopes_do_not_share_counts_in_the_app(limited_app: FastAPI) -> None:
    async with _client(limited_app, ip="198.51.100.50") as client:
        for _ in range(2):
            await client.get("/api/v1/test-limits/ip")
        assert (await client.get("/api/v1/test-limits/ip")).status_code == 429
        assert (await client.get("/api/v1/test-limits/account")).status_code == 200


def test_client_ip_without_client_is_unknown() -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    assert client_ip(request) == "unknown"
    with_client = Request(
        {"type": "http", "method": "GET", "path": "/", "headers": [], "client": ("192.0.2.5", 1)}
    )
    assert client_ip(with_client) == "192.0.2.5"
