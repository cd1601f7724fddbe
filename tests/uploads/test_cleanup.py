"""Expired unfinished uploads are removed with their part files by ``cleanup_expired``; finished
uploads stay. Runs in process on both backends (SQLite + memory, PostgreSQL + Redis)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from tests.auth.conftest import register
from tests.uploads.conftest import TUS, b64
from tezgah.core.db import utcnow
from tezgah.uploads import service
from tezgah.uploads.models import Upload


async def test_cleanup_removes_expired_uploads_and_their_parts(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await register(client)
    headers = {**account.headers, **TUS}
    metadata = f"workspace_id {b64(account.personal_workspace_id)}"

    async def create(length: int) -> str:
        response = await client.post(
            "/api/v1/uploads",
            headers={**headers, "Upload-Length": str(length), "Upload-Metadata": metadata},
        )
        assert response.status_code == 201, response.text
        return response.headers["Location"]

    stale, fresh, done = await create(10), await create(10), await create(3)
    for url, data in ((stale, b"abc"), (done, b"xyz")):
        patched = await client.patch(
            url,
            headers={**headers, "Upload-Offset": "0", "Content-Type": service.OFFSET_MEDIA_TYPE},
            content=data,
        )
        assert patched.status_code == 204, patched.text
    settings = app.state.resources.settings
    stale_id = uuid.UUID(stale.rsplit("/", 1)[1])
    assert service.part_path(settings, stale_id).exists()
    database = app.state.resources.database
    past = utcnow() - timedelta(seconds=1)
    async with database.sessionmaker() as session, session.begin():
        ids = [uuid.UUID(u.rsplit("/", 1)[1]) for u in (stale, done)]
        await session.execute(update(Upload).where(Upload.id.in_(ids)).values(expires_at=past))
    assert (await client.head(stale, headers=headers)).status_code == 410
    async with database.sessionmaker() as session, session.begin():
        removed = await service.cleanup_expired(session, settings)
    assert removed >= 1
    assert not service.part_path(settings, stale_id).exists()
    assert (await client.head(stale, headers=headers)).status_code == 404
    assert (await client.head(fresh, headers=headers)).status_code == 200
    finished = await client.get(done, headers=account.headers)
    assert finished.status_code == 200
    assert finished.json()["finished_at"] is not None


async def test_terminating_a_finished_upload_deletes_its_file_unless_shared(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await register(client)
    headers = {**account.headers, **TUS}
    metadata = f"workspace_id {b64(account.personal_workspace_id)}"

    async def finished(data: bytes) -> str:
        response = await client.post(
            "/api/v1/uploads",
            headers={
                **headers,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata,
                "Content-Type": service.OFFSET_MEDIA_TYPE,
            },
            content=data,
        )
        assert response.status_code == 201, response.text
        return response.headers["Location"]

    blobs = app.state.resources.blobs
    alone, shared_a, shared_b = (
        await finished(b"only me"),
        await finished(b"twice"),
        await finished(b"twice"),
    )
    only_sha = (await client.get(alone, headers=account.headers)).json()["sha256"]
    shared_sha = (await client.get(shared_a, headers=account.headers)).json()["sha256"]
    assert (await client.delete(alone, headers=headers)).status_code == 204
    assert await blobs.size(only_sha) is None
    assert (await client.delete(shared_a, headers=headers)).status_code == 204
    assert await blobs.size(shared_sha) == len(b"twice")  # the other upload still holds it
    assert (await client.delete(shared_b, headers=headers)).status_code == 204
    assert await blobs.size(shared_sha) is None
