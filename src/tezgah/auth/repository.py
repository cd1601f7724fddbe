"""Queries of the identity domain. Services call these; they never commit."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth.models import (
    ActionToken,
    ApiKey,
    Membership,
    RecoveryCode,
    RefreshToken,
    User,
    Workspace,
)


def email_key(email: str) -> str:
    """The unique form of an email: ASCII letters lower-cased, nothing else touched (Python's
    ``lower()`` would map the Turkish dotted capital I to two code points)."""
    return "".join(char.lower() if char.isascii() else char for char in email.strip())


async def user_by_id(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.scalars(select(User).where(User.email_key == email_key(email)))
    return result.first()


async def workspace_by_id(session: AsyncSession, workspace_id: uuid.UUID) -> Workspace | None:
    return await session.get(Workspace, workspace_id)


async def slug_taken(session: AsyncSession, slug: str) -> bool:
    found = await session.scalar(select(Workspace.id).where(Workspace.slug == slug))
    return found is not None


async def membership(
    session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> Membership | None:
    result = await session.scalars(
        select(Membership).where(
            Membership.workspace_id == workspace_id, Membership.user_id == user_id
        )
    )
    return result.first()


async def workspace_with_role(
    session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Workspace, str] | None:
    """The workspace and the user's role in it, in one query; None when not a member."""
    row = (
        await session.execute(
            select(Workspace, Membership.role)
            .join(Membership, Membership.workspace_id == Workspace.id)
            .where(Workspace.id == workspace_id, Membership.user_id == user_id)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def refresh_token_by_hash(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    result = await session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash)
    )
    return result.first()


async def claim_refresh_token(session: AsyncSession, token_id: uuid.UUID, now: datetime) -> bool:
    """Mark a refresh token used, only if nobody did first (two racing refreshes: one wins,
    the other is a reuse)."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    return getattr(result, "rowcount", 0) == 1


async def claim_action_token(session: AsyncSession, token_id: uuid.UUID, now: datetime) -> bool:
    """Spend an emailed token, only if nobody did first (two racing uses: one wins)."""
    result = await session.execute(
        update(ActionToken)
        .where(ActionToken.id == token_id, ActionToken.used_at.is_(None))
        .values(used_at=now)
    )
    return getattr(result, "rowcount", 0) == 1


async def claim_totp_step(session: AsyncSession, user_id: uuid.UUID, step: int) -> bool:
    """Remember ``step`` as the last accepted TOTP step, only if it is later than the one
    remembered (two requests racing with one code: one wins)."""
    result = await session.execute(
        update(User)
        .where(
            User.id == user_id,
            or_(User.mfa_last_step.is_(None), User.mfa_last_step < step),
        )
        .values(mfa_last_step=step)
    )
    return getattr(result, "rowcount", 0) == 1


async def claim_recovery_code(session: AsyncSession, code_id: uuid.UUID, now: datetime) -> bool:
    result = await session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == code_id, RecoveryCode.used_at.is_(None))
        .values(used_at=now)
    )
    return getattr(result, "rowcount", 0) == 1


async def revoke_family(
    session: AsyncSession, family_id: uuid.UUID, reason: str, now: datetime
) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )


async def revoke_user_refresh_tokens(
    session: AsyncSession, user_id: uuid.UUID, reason: str, now: datetime
) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )


async def action_token_by_hash(
    session: AsyncSession, token_hash: str, purpose: str
) -> ActionToken | None:
    result = await session.scalars(
        select(ActionToken).where(
            ActionToken.token_hash == token_hash, ActionToken.purpose == purpose
        )
    )
    return result.first()


async def expire_action_tokens(
    session: AsyncSession, user_id: uuid.UUID, purpose: str, now: datetime
) -> None:
    """A new emailed token makes the older ones of the same purpose useless."""
    await session.execute(
        update(ActionToken)
        .where(
            ActionToken.user_id == user_id,
            ActionToken.purpose == purpose,
            ActionToken.used_at.is_(None),
        )
        .values(used_at=now)
    )


async def unused_recovery_codes(session: AsyncSession, user_id: uuid.UUID) -> list[RecoveryCode]:
    result = await session.scalars(
        select(RecoveryCode).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    )
    return list(result)


async def delete_recovery_codes(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))


async def api_key_by_prefix(session: AsyncSession, prefix: str) -> ApiKey | None:
    result = await session.scalars(select(ApiKey).where(ApiKey.prefix == prefix))
    return result.first()
