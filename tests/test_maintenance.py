"""Housekeeping (``tezgah.maintenance``): designs past the trash window go with their versions,
their files are deleted unless something else still uses the same content, restorable designs
and shared files stay; expired uploads go. Both backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from tests.auth.conftest import FAST_AUTH_SETTINGS, register
from tests.designs.conftest import STEP_FILE, STL_TRIANGLE, add_file, create_design
from tezgah import maintenance
from tezgah.core.config import Settings
from tezgah.core.db import utcnow
from tezgah.designs.models import Design, DesignVersion
from tezgah.uploads.models import Upload


async def _age(app: FastAPI, design_id: str, days: int) -> None:
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        await session.execute(
            update(Design)
            .where(Design.id == uuid.UUID(design_id))
            .values(deleted_at=utcnow() - timedelta(days=days))
        )


async def test_purge_removes_old_trash_and_only_unshared_files(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    alice = await register(client)
    old = await create_design(client, alice, name="Eski")
    recent = await create_design(client, alice, name="Yeni")
    keeper = await create_design(client, alice, name="Kalan")
    # The suite shares one database: content of its own, so no other test's design holds it.
    only_old = STEP_FILE + f"/* {uuid.uuid4()} */\n".encode()
    for design, content in ((old, only_old), (old, STL_TRIANGLE), (keeper, STL_TRIANGLE)):
        assert (await add_file(client, alice, design["id"], content)).status_code == 201
    assert (await add_file(client, alice, recent["id"], STEP_FILE + b"\n")).status_code == 201
    for design in (old, recent):
        response = await client.delete(f"/api/v1/designs/{design['id']}", headers=alice.headers)
        assert response.status_code == 204
    await _age(app, old["id"], 31)
    await _age(app, recent["id"], 29)
    resources = app.state.resources
    step_sha = (await resources.blobs.put(_one(only_old))).sha256
    stl_sha = (await resources.blobs.put(_one(STL_TRIANGLE))).sha256

    report = await maintenance.run_once(resources.settings, resources.database, resources.blobs)

    # At least these two (other tests may leave old trash of their own behind).
    assert report.freed_blobs >= 2
    assert report.deleted_blobs >= 1
    assert await resources.blobs.size(step_sha) is None  # only the purged design used it
    assert await resources.blobs.size(stl_sha) == len(STL_TRIANGLE)  # the keeper uses it
    async with resources.database.sessionmaker() as session:
        assert await session.get(Design, uuid.UUID(old["id"])) is None
        remaining = await session.scalar(
            select(func.count())
            .select_from(DesignVersion)
            .where(DesignVersion.design_id == uuid.UUID(old["id"]))
        )
        ledger = await session.scalar(
            select(func.count()).select_from(Upload).where(Upload.sha256 == step_sha)
        )
    assert remaining == 0
    assert ledger == 0  # the quota no longer counts the purged files
    restored = await client.post(f"/api/v1/designs/{recent['id']}/restore", headers=alice.headers)
    assert restored.status_code == 200, restored.text
    kept = await client.get(f"/api/v1/designs/{keeper['id']}/versions", headers=alice.headers)
    download = await client.get(
        f"/api/v1/designs/{keeper['id']}/versions/{kept.json()['items'][0]['id']}/file",
        headers=alice.headers,
    )
    assert download.content == STL_TRIANGLE


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_one_process_per_interval_does_the_work(app: FastAPI) -> None:
    cache = app.state.resources.cache
    turns = [await maintenance._our_turn(cache, 3600) for _ in range(3)]
    assert turns == [True, False, False]


def test_the_timer_can_be_turned_off(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(**FAST_AUTH_SETTINGS, maintenance_interval_seconds=0)
    assert maintenance.start(settings, None, None, None) is None  # type: ignore[arg-type]
