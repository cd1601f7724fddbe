"""Test fixtures: every app-level test runs on both backends.

``backend`` is parametrized over ``sqlite`` (embedded default: SQLite file, memory cache, local
blobs) and ``postgres`` (scaled: PostgreSQL + Redis). Each session creates its own PostgreSQL
database and Redis key prefix and removes them at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis

from tezgah.core import migrate
from tezgah.core.config import Settings
from tezgah.main import create_app

POSTGRES_ADMIN_DSN = os.environ.get(
    "TEZGAH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEZGAH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = ("sqlite", "postgres")


def _asyncpg_url(dsn: str, database: str) -> str:
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


async def create_postgres_database(name: str) -> str:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return _asyncpg_url(POSTGRES_ADMIN_DSN, name)


async def drop_postgres_database(name: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def delete_redis_prefix(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
async def postgres_url(run_id: str) -> AsyncIterator[str]:
    name = f"tezgah_test_{run_id}"
    url = await create_postgres_database(name)
    # Alembic's env runs its own event loop: keep it off this one.
    await asyncio.to_thread(migrate.upgrade, url)
    yield url
    await drop_postgres_database(name)


@pytest.fixture(scope="session")
async def redis_prefix(run_id: str) -> AsyncIterator[str]:
    prefix = f"tezgah-test-{run_id}:"
    yield prefix
    await delete_redis_prefix(prefix)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "tezgah.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    # Alembic's env runs its own event loop: in a thread, this works even when the fixture is
    # first requested from inside a running test loop.
    with ThreadPoolExecutor(max_workers=1) as executor:
        executor.submit(migrate.upgrade, url).result()
    return url


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_factory(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[..., Settings]:
    """Build Settings for the current backend; keyword arguments override fields."""

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "env": "test",
            "var_dir": tmp_path / "var",
            "log_json": True,
            "secret_key": "test-secret-key-0123456789abcdef0123",
        }
        if backend == "postgres":
            values["database_url"] = request.getfixturevalue("postgres_url")
            values["redis_url"] = REDIS_URL
            values["redis_key_prefix"] = (
                request.getfixturevalue("redis_prefix") + uuid.uuid4().hex[:6] + ":"
            )
        else:
            values["database_url"] = request.getfixturevalue("sqlite_url")
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return build


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
