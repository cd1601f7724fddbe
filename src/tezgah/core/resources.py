"""The process-wide backends, chosen once from settings: this is the only place that knows the
difference between the embedded default and the scaled mode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from tezgah.core import metrics
from tezgah.core.cache import Cache, MemoryCacheBackend, RedisCacheBackend
from tezgah.core.config import Settings
from tezgah.core.db import Database
from tezgah.core.events import EventBus, MemoryEventBus, RedisEventBus
from tezgah.core.pagination import CursorCodec
from tezgah.core.ratelimit import RateLimiter
from tezgah.core.storage import BlobStore, LocalBlobStore
from tezgah.core.storage_s3 import S3BlobStore


@dataclass
class Resources:
    settings: Settings
    database: Database
    cache: Cache
    rate_limiter: RateLimiter
    blobs: BlobStore
    events: EventBus
    cursors: CursorCodec
    redis: Redis | None = None
    _closers: list[Any] = field(default_factory=list)

    def describe(self) -> dict[str, str]:
        """Which backend serves each concern (for /api/v1/meta and `tezgah doctor`)."""
        return {
            "database": self.database.dialect,
            "cache": "redis" if self.redis else "memory",
            "rate_limits": "redis" if self.redis else "memory",
            "events": "redis" if self.redis else "memory",
            "blobs": "s3" if isinstance(self.blobs, S3BlobStore) else "local",
        }

    async def close(self) -> None:
        for close in reversed(self._closers):
            await close()


def build_blob_store(settings: Settings) -> BlobStore:
    if settings.s3_bucket:
        return S3BlobStore(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id.get_secret_value() or None,
            secret_access_key=settings.s3_secret_access_key.get_secret_value() or None,
        )
    return LocalBlobStore(settings.effective_storage_dir)


async def open_resources(settings: Settings) -> Resources:
    database = Database(settings)
    if settings.metrics_enabled:
        metrics.instrument_pool(database.engine, settings.database_pool_size)
    redis: Redis | None = None
    if settings.redis_url:
        # One waiting pool shared by the cache, the event bus and the rate limiter: under a burst
        # requests queue for a connection rather than fail ("too many connections").
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_pool_timeout,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=30,
        )
        redis = Redis(connection_pool=pool)
        cache = Cache(
            RedisCacheBackend(redis, settings.redis_key_prefix), settings.cache_default_ttl
        )
        rate_limiter = RateLimiter.redis(settings.redis_url, settings.redis_key_prefix, pool)
        events: EventBus = RedisEventBus(redis, settings.redis_key_prefix)
    else:
        cache = Cache(MemoryCacheBackend(), settings.cache_default_ttl)
        rate_limiter = RateLimiter.in_memory()
        events = MemoryEventBus()
    blobs = build_blob_store(settings)
    resources = Resources(
        settings=settings,
        database=database,
        cache=cache,
        rate_limiter=rate_limiter,
        blobs=blobs,
        events=events,
        cursors=CursorCodec(settings.secret_key.get_secret_value()),
        redis=redis,
    )
    resources._closers.append(database.dispose)
    if redis is not None:
        # Closed in reverse: the clients first, then the pool they share.
        resources._closers.append(pool.aclose)
        resources._closers.append(redis.aclose)
        resources._closers.append(rate_limiter.close)
    if isinstance(blobs, S3BlobStore):
        await blobs.open()
        resources._closers.append(blobs.close)
    return resources
