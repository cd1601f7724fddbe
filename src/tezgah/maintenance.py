"""Housekeeping that no request triggers: expired unfinished uploads, designs past the trash
window, and the blobs nobody refers to any more.

Every server process runs it on a timer (``maintenance_interval_seconds``); a counter in the
shared cache lets one process per interval do the work. ``tezgah maintenance`` runs it once.
Blobs are deleted only after the rows that referred to them are committed, and only if no
other row refers to the same content.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from tezgah.core.cache import Cache
from tezgah.core.config import Settings
from tezgah.core.db import Database
from tezgah.core.logging import get_logger
from tezgah.core.storage import BlobStore
from tezgah.designs import repository as design_repository
from tezgah.designs import service as design_service
from tezgah.uploads import service as upload_service

log = get_logger("tezgah.maintenance")


@dataclass(frozen=True)
class MaintenanceReport:
    expired_uploads: int
    #: Files of purged designs, and how many of them nothing else used (deleted).
    freed_blobs: int
    deleted_blobs: int


async def run_once(settings: Settings, database: Database, blobs: BlobStore) -> MaintenanceReport:
    async with database.sessionmaker() as session, session.begin():
        expired = await upload_service.cleanup_expired(session, settings)
        freed = await design_service.purge_deleted(session)
    deleted = 0
    async with database.sessionmaker() as session:
        for sha256 in freed:
            deleted += await design_repository.delete_blob_if_unused(session, blobs, sha256)
    report = MaintenanceReport(expired, len(freed), deleted)
    log.info("maintenance", **report.__dict__)
    return report


async def _our_turn(cache: Cache, interval: int) -> bool:
    """True for the first process to ask in this interval."""
    key = f"maintenance:slot:{int(time.time() // interval)}"
    if await cache.backend.incr(key) != 1:
        return False
    await cache.backend.set(key, b"1", ttl=interval * 2)
    return True


async def run_periodically(
    settings: Settings, database: Database, blobs: BlobStore, cache: Cache
) -> None:
    interval = settings.maintenance_interval_seconds
    while True:
        # Wait first: a process that starts does not add work to its own start-up.
        await asyncio.sleep(interval)
        try:
            if await _our_turn(cache, interval):
                await run_once(settings, database, blobs)
        except Exception:  # housekeeping must never stop the server
            log.exception("maintenance_failed")


def start(
    settings: Settings, database: Database, blobs: BlobStore, cache: Cache
) -> asyncio.Task[None] | None:
    if settings.maintenance_interval_seconds <= 0:
        return None
    return asyncio.create_task(run_periodically(settings, database, blobs, cache))


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
