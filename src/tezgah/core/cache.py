"""Cache: bytes by key with a TTL, in process memory or Redis.

Explicit invalidation comes two ways: delete keys, or bump a *namespace* version so every key
cached under that namespace is ignored at once (``invalidate_namespace("designs:public")``)
without scanning Redis.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.asyncio import Redis


class CacheBackend(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl: float) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def incr(self, key: str) -> int: ...


class MemoryCacheBackend:
    """LRU dictionary with expiry; bounded so a busy process cannot grow without limit."""

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= self.clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._entries[key] = (self.clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def incr(self, key: str) -> int:
        current = await self.get(key)
        value = int(current or b"0") + 1
        # Namespace versions must outlive the entries they guard.
        await self.set(key, str(value).encode(), ttl=float("inf"))
        return value


class RedisCacheBackend:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix + "cache:"

    async def get(self, key: str) -> bytes | None:
        value = await self.redis.get(self.prefix + key)
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self.redis.set(self.prefix + key, value, px=max(1, int(ttl * 1000)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self.redis.delete(*(self.prefix + key for key in keys))

    async def incr(self, key: str) -> int:
        return int(await self.redis.incr(self.prefix + key))


class Cache:
    def __init__(self, backend: CacheBackend, default_ttl: float = 60.0) -> None:
        self.backend = backend
        self.default_ttl = default_ttl

    async def get(self, key: str) -> bytes | None:
        return await self.backend.get(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self.backend.set(key, value, ttl if ttl is not None else self.default_ttl)

    async def delete(self, *keys: str) -> None:
        await self.backend.delete(*keys)

    async def get_json(self, key: str) -> Any | None:
        raw = await self.get(key)
        return json.loads(raw) if raw is not None else None

    async def set_json(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self.set(key, json.dumps(value, separators=(",", ":")).encode(), ttl)

    async def namespaced_key(self, namespace: str, key: str) -> str:
        version = await self.backend.get(f"ns:{namespace}")
        return f"{namespace}:v{int(version or b'0')}:{key}"

    async def invalidate_namespace(self, namespace: str) -> None:
        await self.backend.incr(f"ns:{namespace}")

    async def get_or_set_bytes(
        self,
        namespace: str,
        key: str,
        factory: Callable[[], Awaitable[bytes]],
        ttl: float | None = None,
    ) -> bytes:
        """Like :meth:`get_or_set_json` for a value that is already bytes."""
        full_key = await self.namespaced_key(namespace, key)
        cached = await self.get(full_key)
        if cached is not None:
            return cached
        value = await factory()
        await self.set(full_key, value, ttl)
        return value

    async def get_or_set_json(
        self,
        namespace: str,
        key: str,
        factory: Callable[[], Awaitable[Any]],
        ttl: float | None = None,
    ) -> Any:
        """Return the cached value, or compute, store and return it."""
        full_key = await self.namespaced_key(namespace, key)
        cached = await self.get(full_key)
        if cached is not None:
            return json.loads(cached)
        value = await factory()
        await self.set_json(full_key, value, ttl)
        return value
