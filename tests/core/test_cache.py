"""The cache kit on both backends: bytes by key with a TTL, deletes, namespaces, get-or-set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL
from tezgah.core.cache import Cache, MemoryCacheBackend, RedisCacheBackend

# Redis TTLs are real time: keep them short, and wait well past them.
SHORT_TTL = 0.08
PAST_SHORT_TTL = 0.25


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def cache(
    kit_backend: str, clock: FakeClock, kit_redis: Redis, kit_prefix: str
) -> AsyncIterator[Cache]:
    if kit_backend == "memory":
        yield Cache(MemoryCacheBackend(clock=clock), default_ttl=30.0)
    else:
        yield Cache(RedisCacheBackend(kit_redis, kit_prefix), default_ttl=30.0)


async def expire(cache: Cache, clock: FakeClock, seconds: float) -> None:
    """Let ``seconds`` pass: the fake clock for memory, real time (short) for Redis."""
    if isinstance(cache.backend, MemoryCacheBackend):
        clock.advance(seconds)
    else:
        await asyncio.sleep(seconds)


class Factory:
    """An async factory that counts its calls."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        return self.value


# -- get / set / delete ----------------------------------------------------------------------


async def test_missing_key_is_none(cache: Cache) -> None:
    assert await cache.get("nothing-here") is None
    assert await cache.get_json("nothing-here") is None


async def test_set_then_get_returns_the_same_bytes(cache: Cache) -> None:
    value = bytes(range(256)) * 4  # every byte value, not only text
    await cache.set("blob", value)
    assert await cache.get("blob") == value
    await cache.set("blob", b"replaced")
    assert await cache.get("blob") == b"replaced"


async def test_keys_are_independent(cache: Cache) -> None:
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    assert await cache.get("a") == b"1"
    assert await cache.get("b") == b"2"


async def test_json_round_trip_is_compact(cache: Cache) -> None:
    value = {"name": "Şaft adaptörü", "sizes": [1, 2.5, None], "ok": True}
    await cache.set_json("doc", value)
    assert await cache.get_json("doc") == value
    raw = await cache.get("doc")
    assert raw is not None
    assert b", " not in raw
    assert b": " not in raw


async def test_delete_removes_several_keys_and_ignores_missing(cache: Cache) -> None:
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    await cache.set("c", b"3")
    await cache.delete("a", "b", "never-set")
    await cache.delete()  # no keys: nothing to do, no error
    assert await cache.get("a") is None
    assert await cache.get("b") is None
    assert await cache.get("c") == b"3"


# -- TTL -------------------------------------------------------------------------------------


async def test_entry_expires_after_its_ttl(cache: Cache, clock: FakeClock) -> None:
    await cache.set("short", b"x", ttl=SHORT_TTL)
    await cache.set("long", b"y", ttl=60)
    assert await cache.get("short") == b"x"
    await expire(cache, clock, PAST_SHORT_TTL)
    assert await cache.get("short") is None
    assert await cache.get("long") == b"y"


async def test_json_entry_expires(cache: Cache, clock: FakeClock) -> None:
    await cache.set_json("j", [1, 2], ttl=SHORT_TTL)
    assert await cache.get_json("j") == [1, 2]
    await expire(cache, clock, PAST_SHORT_TTL)
    assert await cache.get_json("j") is None


async def test_memory_ttl_boundary_and_default_ttl(clock: FakeClock) -> None:
    cache = Cache(MemoryCacheBackend(clock=clock), default_ttl=30.0)
    await cache.set("k", b"v", ttl=10)
    await cache.set("d", b"v")  # default TTL
    clock.advance(9.999)
    assert await cache.get("k") == b"v"
    clock.advance(0.001)  # exactly at expiry: gone
    assert await cache.get("k") is None
    assert await cache.get("d") == b"v"
    clock.advance(20.0)
    assert await cache.get("d") is None


async def test_memory_expired_entry_is_removed_on_read(clock: FakeClock) -> None:
    backend = MemoryCacheBackend(clock=clock)
    await backend.set("k", b"v", ttl=1)
    clock.advance(2)
    assert await backend.get("k") is None
    assert "k" not in backend._entries


async def test_redis_uses_prefix_and_millisecond_ttl(kit_redis: Redis, kit_prefix: str) -> None:
    cache = Cache(RedisCacheBackend(kit_redis, kit_prefix), default_ttl=30.0)
    await cache.set("k", b"v")
    await cache.set("short", b"v", ttl=0.25)
    assert await kit_redis.get(f"{kit_prefix}cache:k") == b"v"
    default_pttl = await kit_redis.pttl(f"{kit_prefix}cache:k")
    assert 29_000 < default_pttl <= 30_000
    short_pttl = await kit_redis.pttl(f"{kit_prefix}cache:short")
    assert 0 < short_pttl <= 250
    # A TTL shorter than a millisecond still expires (never "no expiry").
    await cache.set("tiny", b"v", ttl=0.0001)
    assert await kit_redis.pttl(f"{kit_prefix}cache:tiny") in (-2, 0, 1)


async def test_redis_backend_accepts_decoded_responses(kit_prefix: str) -> None:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        backend = RedisCacheBackend(client, kit_prefix)
        await backend.set("text", "Iğdır".encode(), ttl=5)
        assert await backend.get("text") == "Iğdır".encode()
    finally:
        await client.aclose()


# -- LRU bound (memory) ------------------------------------------------------------------------


async def test_memory_backend_is_bounded_and_evicts_least_recently_used(
    clock: FakeClock,
) -> None:
    backend = MemoryCacheBackend(max_entries=3, clock=clock)
    await backend.set("a", b"1", ttl=60)
    await backend.set("b", b"2", ttl=60)
    await backend.set("c", b"3", ttl=60)
    assert await backend.get("a") == b"1"  # "a" is now the most recently used
    await backend.set("d", b"4", ttl=60)
    assert len(backend._entries) == 3
    assert await backend.get("b") is None  # least recently used: evicted
    assert await backend.get("a") == b"1"
    assert await backend.get("c") == b"3"
    assert await backend.get("d") == b"4"


async def test_memory_backend_overwrite_refreshes_recency(clock: FakeClock) -> None:
    backend = MemoryCacheBackend(max_entries=2, clock=clock)
    await backend.set("a", b"1", ttl=60)
    await backend.set("b", b"2", ttl=60)
    await backend.set("a", b"1b", ttl=60)
    await backend.set("c", b"3", ttl=60)
    assert await backend.get("b") is None
    assert await backend.get("a") == b"1b"
    assert await backend.get("c") == b"3"


async def test_memory_backend_stays_bounded_under_many_writes(clock: FakeClock) -> None:
    backend = MemoryCacheBackend(max_entries=100, clock=clock)
    for index in range(1000):
        await backend.set(f"k{index}", b"x", ttl=60)
    assert len(backend._entries) == 100
    assert await backend.get("k899") is None
    assert await backend.get("k900") == b"x"
    assert await backend.get("k999") == b"x"


# -- incr ------------------------------------------------------------------------------------


async def test_incr_counts_from_one_and_never_expires(
    cache: Cache, clock: FakeClock, kit_redis: Redis, kit_prefix: str
) -> None:
    assert await cache.backend.incr("counter") == 1
    assert await cache.backend.incr("counter") == 2
    assert await cache.backend.incr("counter") == 3
    if isinstance(cache.backend, MemoryCacheBackend):
        clock.advance(10 * 365 * 24 * 3600)
    else:
        assert await kit_redis.pttl(f"{kit_prefix}cache:counter") == -1  # no expiry
    assert await cache.backend.incr("counter") == 4


# -- namespaces ------------------------------------------------------------------------------


async def test_namespaced_key_changes_after_invalidation(cache: Cache) -> None:
    first = await cache.namespaced_key("designs:public", "page-1")
    assert first == "designs:public:v0:page-1"
    await cache.invalidate_namespace("designs:public")
    second = await cache.namespaced_key("designs:public", "page-1")
    assert second == "designs:public:v1:page-1"
    assert await cache.namespaced_key("designs:other", "page-1") == "designs:other:v0:page-1"


async def test_invalidate_namespace_drops_only_that_namespace(cache: Cache) -> None:
    public = Factory({"items": [1, 2]})
    private = Factory({"items": [3]})
    assert await cache.get_or_set_json("designs:public", "list", public) == {"items": [1, 2]}
    assert await cache.get_or_set_json("designs:private", "list", private) == {"items": [3]}
    assert (public.calls, private.calls) == (1, 1)

    await cache.invalidate_namespace("designs:public")
    public.value = {"items": [1, 2, 4]}
    assert await cache.get_or_set_json("designs:public", "list", public) == {"items": [1, 2, 4]}
    assert await cache.get_or_set_json("designs:private", "list", private) == {"items": [3]}
    assert (public.calls, private.calls) == (2, 1)

    # Every key of the invalidated namespace is recomputed, and cached again afterwards.
    other = Factory("x")
    await cache.get_or_set_json("designs:public", "other", other)
    await cache.invalidate_namespace("designs:public")
    await cache.get_or_set_json("designs:public", "other", other)
    await cache.get_or_set_json("designs:public", "other", other)
    assert other.calls == 2


async def test_namespace_version_outlives_cached_entries(cache: Cache, clock: FakeClock) -> None:
    factory = Factory("old")
    await cache.get_or_set_json("ns", "k", factory, ttl=60)
    await cache.invalidate_namespace("ns")
    await expire(cache, clock, PAST_SHORT_TTL)
    if isinstance(cache.backend, MemoryCacheBackend):
        clock.advance(24 * 3600)  # far beyond any entry's TTL
    factory.value = "new"
    assert await cache.get_or_set_json("ns", "k", factory, ttl=60) == "new"
    assert await cache.namespaced_key("ns", "k") == "ns:v1:k"


# -- get_or_set_json --------------------------------------------------------------------------


async def test_get_or_set_json_calls_the_factory_once(cache: Cache) -> None:
    factory = Factory({"total": 3, "names": ["çark", "dişli"]})
    for _ in range(5):
        assert await cache.get_or_set_json("stats", "totals", factory) == {
            "total": 3,
            "names": ["çark", "dişli"],
        }
    assert factory.calls == 1


@pytest.mark.parametrize("value", [None, 0, False, "", [], {}])
async def test_get_or_set_json_caches_falsy_values(cache: Cache, value: Any) -> None:
    factory = Factory(value)
    assert await cache.get_or_set_json("ns", "falsy", factory) == value
    assert await cache.get_or_set_json("ns", "falsy", factory) == value
    assert factory.calls == 1


async def test_get_or_set_json_recomputes_after_expiry(cache: Cache, clock: FakeClock) -> None:
    factory = Factory(1)
    assert await cache.get_or_set_json("ns", "k", factory, ttl=SHORT_TTL) == 1
    factory.value = 2
    assert await cache.get_or_set_json("ns", "k", factory, ttl=SHORT_TTL) == 1
    await expire(cache, clock, PAST_SHORT_TTL)
    assert await cache.get_or_set_json("ns", "k", factory, ttl=SHORT_TTL) == 2
    assert factory.calls == 2


async def test_get_or_set_json_different_keys_call_factory_each(cache: Cache) -> None:
    factory_a = Factory("a")
    factory_b = Factory("b")
    assert await cache.get_or_set_json("ns", "a", factory_a) == "a"
    assert await cache.get_or_set_json("ns", "b", factory_b) == "b"
    assert await cache.get_or_set_json("ns", "a", factory_a) == "a"
    assert (factory_a.calls, factory_b.calls) == (1, 1)


async def test_get_or_set_json_factory_error_caches_nothing(cache: Cache) -> None:
    async def failing() -> Any:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        await cache.get_or_set_json("ns", "k", failing)
    factory = Factory("recovered")
    assert await cache.get_or_set_json("ns", "k", factory) == "recovered"
    assert factory.calls == 1
