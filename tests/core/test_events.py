"""The event bus on both backends: live fan-out of JSON messages per channel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL
from tezgah.core import events
from tezgah.core.events import EventBus, MemoryEventBus, RedisEventBus

RECEIVE_TIMEOUT = 2.0


@pytest.fixture
def bus(kit_backend: str, kit_redis: Redis, kit_prefix: str) -> EventBus:
    if kit_backend == "memory":
        return MemoryEventBus()
    return RedisEventBus(kit_redis, kit_prefix)


def channel() -> str:
    return f"jobs:{uuid.uuid4().hex[:12]}"


async def receive(messages: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.wait_for(anext(messages), RECEIVE_TIMEOUT)


async def receive_many(messages: AsyncIterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    return [await receive(messages) for _ in range(count)]


async def subscriber_count(bus: EventBus, kit_redis: Redis, name: str) -> int:
    if isinstance(bus, MemoryEventBus):
        return len(bus._subscribers.get(name, ()))
    assert isinstance(bus, RedisEventBus)
    counts = await kit_redis.pubsub_numsub(bus.prefix + name)
    return int(counts[0][1])


async def test_subscriber_receives_messages_in_order(bus: EventBus) -> None:
    name = channel()
    async with bus.subscribe(name) as messages:
        for index in range(50):
            await bus.publish(name, {"seq": index, "state": "running"})
        received = await receive_many(messages, 50)
    assert received == [{"seq": index, "state": "running"} for index in range(50)]


async def test_messages_round_trip_through_json(bus: EventBus) -> None:
    """Both backends deliver JSON types: tuples become lists, unicode survives."""
    name = channel()
    async with bus.subscribe(name) as messages:
        await bus.publish(name, {"ids": (1, 2), "name": "Işık tezgahı", "nested": {"ok": None}})
        assert await receive(messages) == {
            "ids": [1, 2],
            "name": "Işık tezgahı",
            "nested": {"ok": None},
        }


async def test_publisher_changes_after_publish_do_not_leak(bus: EventBus) -> None:
    name = channel()
    payload: dict[str, Any] = {"items": [1]}
    async with bus.subscribe(name) as messages:
        await bus.publish(name, payload)
        payload["items"].append(2)
        assert await receive(messages) == {"items": [1]}


async def test_two_subscribers_both_receive(bus: EventBus) -> None:
    name = channel()
    async with bus.subscribe(name) as first, bus.subscribe(name) as second:
        for index in range(5):
            await bus.publish(name, {"n": index})
        expected = [{"n": index} for index in range(5)]
        assert await receive_many(first, 5) == expected
        assert await receive_many(second, 5) == expected


async def test_subscriber_receives_while_waiting(bus: EventBus) -> None:
    """A consumer already waiting for the next message is woken by a publish."""
    name = channel()
    async with bus.subscribe(name) as messages:
        waiting = asyncio.ensure_future(receive(messages))
        await asyncio.sleep(0.02)
        assert not waiting.done()
        await bus.publish(name, {"wake": True})
        assert await waiting == {"wake": True}


async def test_publish_without_subscribers_is_dropped(bus: EventBus) -> None:
    name = channel()
    await bus.publish(name, {"lost": True})  # no error, nobody listening
    async with bus.subscribe(name) as messages:
        await bus.publish(name, {"seen": True})
        assert await receive(messages) == {"seen": True}


async def test_channels_are_isolated(bus: EventBus) -> None:
    jobs, designs = channel(), channel()
    async with bus.subscribe(jobs) as job_messages, bus.subscribe(designs) as design_messages:
        await bus.publish(jobs, {"to": "jobs", "n": 1})
        await bus.publish(designs, {"to": "designs"})
        await bus.publish(jobs, {"to": "jobs", "n": 2})
        # Had the jobs messages leaked, they would arrive before the designs message.
        assert await receive(design_messages) == {"to": "designs"}
        assert await receive_many(job_messages, 2) == [
            {"to": "jobs", "n": 1},
            {"to": "jobs", "n": 2},
        ]
        await bus.publish(designs, {"to": "designs", "last": True})
        assert await receive(design_messages) == {"to": "designs", "last": True}


async def test_unsubscribe_on_context_exit_stops_delivery(bus: EventBus, kit_redis: Redis) -> None:
    name = channel()
    async with bus.subscribe(name) as staying:
        async with bus.subscribe(name) as leaving:
            assert await subscriber_count(bus, kit_redis, name) == 2
            await bus.publish(name, {"n": 1})
            assert await receive(leaving) == {"n": 1}
        assert await subscriber_count(bus, kit_redis, name) == 1
        await bus.publish(name, {"n": 2})
        assert await receive_many(staying, 2) == [{"n": 1}, {"n": 2}]
    assert await subscriber_count(bus, kit_redis, name) == 0
    # Nothing left listening: publishing to the channel is harmless.
    await bus.publish(name, {"n": 3})
    if isinstance(bus, MemoryEventBus):
        assert name not in bus._subscribers


async def test_unsubscribe_when_the_body_raises(bus: EventBus, kit_redis: Redis) -> None:
    name = channel()
    counts_inside: list[int] = []

    async def listen_then_fail() -> None:
        async with bus.subscribe(name):
            counts_inside.append(await subscriber_count(bus, kit_redis, name))
            raise RuntimeError("websocket closed")

    with pytest.raises(RuntimeError, match="websocket closed"):
        await listen_then_fail()
    assert counts_inside == [1]
    assert await subscriber_count(bus, kit_redis, name) == 0


async def test_resubscribe_gets_only_new_messages(bus: EventBus) -> None:
    name = channel()
    async with bus.subscribe(name) as messages:
        await bus.publish(name, {"n": 1})
        assert await receive(messages) == {"n": 1}
    await bus.publish(name, {"n": 2})  # nobody subscribed: live delivery only
    async with bus.subscribe(name) as messages:
        await bus.publish(name, {"n": 3})
        assert await receive(messages) == {"n": 3}


async def test_redis_buses_on_separate_clients_fan_out(kit_prefix: str) -> None:
    """Two servers: a message published on one reaches subscribers on the other."""
    publisher_client = Redis.from_url(REDIS_URL)
    subscriber_client = Redis.from_url(REDIS_URL)
    try:
        publisher = RedisEventBus(publisher_client, kit_prefix)
        subscriber = RedisEventBus(subscriber_client, kit_prefix)
        other_prefix = RedisEventBus(subscriber_client, kit_prefix + "other:")
        name = channel()
        async with subscriber.subscribe(name) as messages, other_prefix.subscribe(name) as other:
            await publisher.publish(name, {"from": "server-1"})
            assert await receive(messages) == {"from": "server-1"}
            # Another key prefix (another deployment on the same Redis) hears nothing.
            await RedisEventBus(publisher_client, kit_prefix + "other:").publish(name, {"x": 1})
            assert await receive(other) == {"x": 1}
    finally:
        await publisher_client.aclose()
        await subscriber_client.aclose()


async def test_memory_overflow_drops_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "SUBSCRIBER_QUEUE_SIZE", 3)
    bus = MemoryEventBus()
    name = channel()
    async with bus.subscribe(name) as slow, bus.subscribe(name) as other:
        await bus.publish(name, {"n": 0})
        assert await receive(other) == {"n": 0}
        for index in range(1, 6):
            await bus.publish(name, {"n": index})
        # Each stalled subscriber keeps the newest three; the publisher never blocked.
        assert await receive_many(slow, 3) == [{"n": 3}, {"n": 4}, {"n": 5}]
        assert await receive_many(other, 3) == [{"n": 3}, {"n": 4}, {"n": 5}]
        await bus.publish(name, {"n": 6})
        assert await receive(slow) == {"n": 6}


async def test_memory_overflow_at_the_default_queue_size() -> None:
    bus = MemoryEventBus()
    name = channel()
    total = events.SUBSCRIBER_QUEUE_SIZE + 25
    async with bus.subscribe(name) as messages:
        for index in range(total):
            await bus.publish(name, {"n": index})
        first = await receive(messages)
        assert first == {"n": 25}
        rest = await receive_many(messages, events.SUBSCRIBER_QUEUE_SIZE - 1)
        assert rest[-1] == {"n": total - 1}
