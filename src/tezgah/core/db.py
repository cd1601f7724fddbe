"""Database: SQLAlchemy 2 async engine and sessions, SQLite (default) or PostgreSQL.

One unit of work per request: :func:`get_session` yields a session and commits once after the
endpoint returns (before the response is sent), or rolls back on error. Services never commit.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from tezgah.core.config import Settings
from tezgah.core.errors import DatabaseUnavailable, is_connection_failure

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLITE_BUSY_TIMEOUT_MS = 10_000


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()


def ensure_sqlite_directory(database_url: str) -> None:
    """SQLite creates its file but not the directory: on a fresh checkout ``var/`` is missing."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        ensure_sqlite_directory(settings.effective_database_url)
        engine = create_async_engine(
            url,
            echo=settings.database_echo,
            hide_parameters=True,  # echo and errors never print values (tokens, hashes)
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_timeout=settings.database_pool_timeout,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        echo=settings.database_echo,
        hide_parameters=True,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_pool_timeout,
        pool_pre_ping=True,
        connect_args={"timeout": settings.database_pool_timeout},
    )


class Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def get_database(request: Request) -> Database:
    database: Database = request.app.state.resources.database
    return database


AFTER_COMMIT = "tezgah_after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], Awaitable[None]]) -> None:
    """Run ``callback`` once the request's unit of work is committed (never if it rolls back):
    cache invalidation must not run before the data it describes is visible to others."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


async def _run_after_commit(session: AsyncSession) -> None:
    callbacks: list[Callable[[], Awaitable[None]]] = session.info.pop(AFTER_COMMIT, [])
    for callback in callbacks:
        await callback()


async def _session_scope(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_database(request).sessionmaker() as session:
        try:
            yield session
            await session.commit()
            await _run_after_commit(session)
        except OSError as exc:
            # The driver raises plain socket errors when it cannot connect at all.
            await _rollback_quietly(session)
            if is_connection_failure(exc):
                raise DatabaseUnavailable(headers={"Retry-After": "5"}) from exc
            raise
        except BaseException:
            await _rollback_quietly(session)
            raise


async def _rollback_quietly(session: AsyncSession) -> None:
    # The connection may already be gone; the original error is what matters.
    with contextlib.suppress(OSError, SQLAlchemyError):
        await session.rollback()


async def get_session(
    session: Annotated[AsyncSession, Depends(_session_scope, scope="function")],
) -> AsyncSession:
    return session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_read_session(session: SessionDep) -> AsyncSession:
    """The request's session, for a route that only reads: statements run without a
    transaction around them (no BEGIN and COMMIT round trips). Declare it before any other
    dependency that queries, so it is set before the first statement."""
    if not session.in_transaction():
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]
