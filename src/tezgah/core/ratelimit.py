"""Rate limits on the ``limits`` library: in-memory or Redis storage, sliding-window counters.

``RateLimiter.hit`` counts one request against a limit such as ``"5/minute"`` for a key (client IP,
account, API key) and says whether it is allowed and when to retry. The :func:`rate_limit`
dependency turns a refusal into a 429 in the error format with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fastapi import Request, Response
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import ConnectionPool

from tezgah.core.errors import RateLimited


@dataclass(frozen=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until the window has room again

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_after)
        return headers


@lru_cache(maxsize=256)
def parse_limit(expression: str) -> RateLimitItem:
    return parse(expression)


class RateLimiter:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.strategy = SlidingWindowCounterRateLimiter(storage)

    @classmethod
    def in_memory(cls) -> RateLimiter:
        return cls(MemoryStorage())

    @classmethod
    def redis(
        cls, redis_url: str, key_prefix: str, pool: ConnectionPool | None = None
    ) -> RateLimiter:
        """Counters in Redis; ``pool``: share the app's connection pool (its waiting policy)."""
        uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
        options: dict[str, Any] = {} if pool is None else {"connection_pool": pool}
        storage = RedisStorage(
            uri, implementation="redispy", key_prefix=key_prefix + "ratelimit", **options
        )
        return cls(storage)

    async def exhausted(self, expression: str, *identifiers: str) -> bool:
        """True when one more hit would be refused; counts nothing (for limits on failures
        only: check first, count when the attempt fails)."""
        item = parse_limit(expression)
        return not await self.strategy.test(item, *identifiers)

    async def hit(self, expression: str, *identifiers: str, cost: int = 1) -> RateLimitDecision:
        item = parse_limit(expression)
        allowed = await self.strategy.hit(item, *identifiers, cost=cost)
        stats = await self.strategy.get_window_stats(item, *identifiers)
        reset_in = stats.reset_time - time.time()
        if reset_in <= 0 and (not allowed or stats.remaining < item.amount):
            # limits computes the reset as "time left in the window modulo its length", which is
            # 0 on an exact window boundary (on Redis: a window whose first hit was counted in
            # the same millisecond). A window holding hits is never free "now": a full window is
            # the honest bound.
            reset_in = item.get_expiry()
        reset_after = max(1, math.ceil(reset_in))
        return RateLimitDecision(
            allowed=allowed,
            limit=item.amount,
            remaining=max(0, stats.remaining),
            reset_after=reset_after,
        )

    async def reset(self, expression: str, *identifiers: str) -> None:
        await self.strategy.clear(parse_limit(expression), *identifiers)

    async def check(self) -> bool:
        return await self.storage.check()

    async def close(self) -> None:
        """Close the storage's own connection pool (Redis); the memory storage has none."""
        bridge = getattr(self.storage, "bridge", None)
        connection = getattr(bridge, "storage", None)
        if connection is not None:
            await connection.aclose()


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.resources.rate_limiter
    return limiter


def limit_from_settings(name: str) -> Callable[[Request], str]:
    """A limit expression read from the app's settings at request time (so an app built with
    other settings, as in tests, uses its own)."""

    def expression(request: Request) -> str:
        value: str = getattr(request.app.state.settings, name)
        return value

    return expression


async def enforce(limiter: RateLimiter, expression: str, scope: str, key: str) -> None:
    """Count one hit for ``key`` (an account, a token) and raise 429 when over the limit:
    for limits whose key is only known inside the route (after reading the body)."""
    decision = await limiter.hit(expression, scope, key)
    if not decision.allowed:
        raise RateLimited(params={"retry_after": decision.reset_after}, headers=decision.headers())


def rate_limit(
    expression: str | Callable[[Request], str],
    *,
    scope: str,
    key: Callable[[Request], str] = client_ip,
) -> Callable[[Request, Response], object]:
    """A dependency limiting requests per ``key`` within ``scope`` (e.g. ``"login"``)."""

    async def dependency(request: Request, response: Response) -> None:
        limit = expression(request) if callable(expression) else expression
        decision = await get_rate_limiter(request).hit(limit, scope, key(request))
        if not decision.allowed:
            raise RateLimited(
                params={"retry_after": decision.reset_after}, headers=decision.headers()
            )
        for name, value in decision.headers().items():
            response.headers[name] = value

    return dependency
