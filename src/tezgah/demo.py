"""Demo data for ``tezgah demo``: each domain registers a loader that is safe to run twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.core.config import Settings
from tezgah.core.db import Database

DemoLoader = Callable[[AsyncSession], Awaitable[str]]

# Domains append their loaders here (accounts, designs, CAM examples) as they are built.
LOADERS: list[DemoLoader] = []


async def load_demo_data(settings: Settings) -> list[str]:
    """Run every loader in one transaction; returns what each one reported."""
    database = Database(settings)
    try:
        async with database.sessionmaker() as session, session.begin():
            return [await loader(session) for loader in LOADERS]
    finally:
        await database.dispose()
