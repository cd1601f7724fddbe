"""Queries of the uploads domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.uploads.models import Upload


async def upload_by_id(session: AsyncSession, upload_id: uuid.UUID) -> Upload | None:
    return await session.get(Upload, upload_id)


async def workspace_bytes(session: AsyncSession, workspace_id: uuid.UUID, now: datetime) -> int:
    """Bytes the workspace holds: finished uploads and unfinished ones that have not expired
    (an unfinished upload reserves its whole declared length)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Upload.length), 0)).where(
            Upload.workspace_id == workspace_id,
            or_(Upload.finished_at.is_not(None), Upload.expires_at > now),
        )
    )
    return int(total or 0)


async def expired_uploads(session: AsyncSession, now: datetime, limit: int) -> Sequence[Upload]:
    result = await session.scalars(
        select(Upload)
        .where(and_(Upload.finished_at.is_(None), Upload.expires_at <= now))
        .order_by(Upload.expires_at)
        .limit(limit)
    )
    return result.all()
