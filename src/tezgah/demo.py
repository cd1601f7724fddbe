"""Demo data for ``tezgah demo``: each domain registers a loader that is safe to run twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth.provisioning import load_demo_accounts
from tezgah.core.config import Settings
from tezgah.core.db import Database

DemoLoader = Callable[[AsyncSession, Settings], Awaitable[str]]

# Domains append their loaders here (designs, CAM examples) as they are built.
LOADERS: list[DemoLoader] = [load_demo_accounts]


async def load_demo_data(settings: Settings) -> list[str]:
    """Run every loader in one transaction; returns what each one reported."""
    database = Database(settings)
    try:
        async with database.sessionmaker() as session, session.begin():
            return [await loader(session, settings) for loader in LOADERS]
    finally:
        await database.dispose()
