"""What a server administrator (``is_superuser``) may do to accounts, and the audit trail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth import audit, repository
from tezgah.auth.audit import RequestMeta
from tezgah.auth.exceptions import CannotDemoteSelf, UserNotFound
from tezgah.auth.models import AuditEvent, User
from tezgah.auth.schemas import AdminUserUpdate, AuditEventOut
from tezgah.core.db import utcnow
from tezgah.core.pagination import Page, Sorting

USER_SORTING = Sorting(
    {"created_at": User.created_at, "email": User.email_key},
    default="-created_at",
    tiebreaker=User.id,
)
AUDIT_SORTING = Sorting(
    {"occurred_at": AuditEvent.occurred_at}, default="-occurred_at", tiebreaker=AuditEvent.id
)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def users_query(search: str | None, active: bool | None) -> Select[Any]:
    statement = select(User)
    if search:
        pattern = f"%{_escape_like(repository.email_key(search))}%"
        statement = statement.where(
            or_(
                User.email_key.like(pattern, escape="\\"),
                func.lower(User.display_name).like(pattern, escape="\\"),
            )
        )
    if active is not None:
        statement = statement.where(User.is_active.is_(active))
    return statement


async def update_user(
    session: AsyncSession,
    meta: RequestMeta,
    admin: User,
    user_id: uuid.UUID,
    data: AdminUserUpdate,
) -> User:
    user = await repository.user_by_id(session, user_id)
    if user is None:
        raise UserNotFound()
    if user.id == admin.id and (data.is_active is False or data.is_superuser is False):
        # The server must keep an administrator: nobody locks themselves out by mistake.
        raise CannotDemoteSelf()
    now = utcnow()
    if data.is_active is not None and data.is_active != user.is_active:
        user.is_active = data.is_active
        user.deactivated_at = None if data.is_active else now
        if not data.is_active:
            await repository.revoke_user_refresh_tokens(session, user.id, "deactivated", now)
            user.tokens_valid_after = now
        audit.record(
            session,
            "user.activated" if data.is_active else "user.deactivated",
            meta,
            actor_user_id=admin.id,
            subject_user_id=user.id,
            target_type="user",
            target_id=user.id,
        )
    if data.is_superuser is not None and data.is_superuser != user.is_superuser:
        user.is_superuser = data.is_superuser
        audit.record(
            session,
            "user.superuser_granted" if data.is_superuser else "user.superuser_revoked",
            meta,
            actor_user_id=admin.id,
            subject_user_id=user.id,
            target_type="user",
            target_id=user.id,
        )
    return user


def audit_query(
    *,
    workspace_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    event: str | None = None,
    since: datetime | None = None,
) -> Select[Any]:
    statement = select(AuditEvent)
    if workspace_id is not None:
        statement = statement.where(AuditEvent.workspace_id == workspace_id)
    if user_id is not None:
        statement = statement.where(
            or_(AuditEvent.actor_user_id == user_id, AuditEvent.subject_user_id == user_id)
        )
    if event:
        statement = statement.where(AuditEvent.event == event)
    if since is not None:
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)  # a time without a zone is UTC, as stored
        statement = statement.where(AuditEvent.occurred_at >= since)
    return statement


def audit_page(page: Page[Any]) -> Page[AuditEventOut]:
    items = [AuditEventOut.model_validate(row) for row in page.items]
    return Page[AuditEventOut](items=items, next_cursor=page.next_cursor)
