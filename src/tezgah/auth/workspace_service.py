"""Workspaces, members, roles and invitations: who belongs where, and who may change that."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth import audit, repository
from tezgah.auth.audit import RequestMeta
from tezgah.auth.dependencies import WorkspaceAccess
from tezgah.auth.exceptions import (
    AlreadyMember,
    InvitationForSomeoneElse,
    InvitationInvalid,
    InvitationNotFound,
    LastOwner,
    MemberNotFound,
    MissingPermission,
    PersonalWorkspace,
    RoleTooHigh,
    SlugTaken,
)
from tezgah.auth.kit import AuthKit
from tezgah.auth.models import Invitation, Membership, User, Workspace
from tezgah.auth.permissions import ROLE_LABELS, Permission, Role, outranks_or_equals
from tezgah.auth.schemas import (
    InvitationIn,
    MemberOut,
    WorkspaceIn,
    WorkspaceOut,
    WorkspaceUpdate,
)
from tezgah.auth.service import create_workspace
from tezgah.core import mail
from tezgah.core.db import utcnow
from tezgah.core.i18n import N_, translate
from tezgah.core.pagination import Sorting


def workspace_out(workspace: Workspace, role: str) -> WorkspaceOut:
    return WorkspaceOut(
        id=workspace.id,
        slug=workspace.slug,
        name=workspace.name,
        is_personal=workspace.is_personal,
        role=Role(role),
        created_at=workspace.created_at,
    )


async def list_for_user(session: AsyncSession, user: User) -> list[WorkspaceOut]:
    rows = await session.execute(
        select(Workspace, Membership.role)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user.id)
        .order_by(Workspace.is_personal.desc(), Workspace.name, Workspace.id)
    )
    return [workspace_out(workspace, role) for workspace, role in rows.all()]


async def create_team(
    session: AsyncSession, meta: RequestMeta, user: User, data: WorkspaceIn
) -> WorkspaceOut:
    if data.slug is not None and await repository.slug_taken(session, data.slug):
        raise SlugTaken(params={"slug": data.slug})
    workspace = await create_workspace(
        session, user, data.name.strip(), personal=False, slug=data.slug
    )
    audit.record(
        session, "workspace.created", meta, actor_user_id=user.id, workspace_id=workspace.id
    )
    return workspace_out(workspace, Role.owner)


def update(access: WorkspaceAccess, data: WorkspaceUpdate) -> Workspace:
    if data.name is not None:
        access.workspace.name = data.name.strip()
    return access.workspace


async def delete(session: AsyncSession, meta: RequestMeta, access: WorkspaceAccess) -> None:
    if access.workspace.is_personal:
        raise PersonalWorkspace()
    audit.record(
        session,
        "workspace.deleted",
        meta,
        actor_user_id=access.user.id,
        workspace_id=access.workspace.id,
        name=access.workspace.name,
    )
    await session.delete(access.workspace)


def member_out(membership: Membership, user: User) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        display_name=user.display_name,
        email=user.email,
        role=Role(membership.role),
        joined_at=membership.created_at,
    )


MEMBER_SORTING = Sorting(
    {"joined_at": Membership.created_at}, default="joined_at", tiebreaker=Membership.id
)
INVITATION_SORTING = Sorting(
    {"created_at": Invitation.created_at}, default="-created_at", tiebreaker=Invitation.id
)


def members_query(workspace_id: uuid.UUID) -> Select[Any]:
    return select(Membership).where(Membership.workspace_id == workspace_id)


async def member_outs(session: AsyncSession, memberships: list[Membership]) -> list[MemberOut]:
    """The page's people, in one query whatever the page size."""
    user_ids = [membership.user_id for membership in memberships]
    users = {
        user.id: user for user in await session.scalars(select(User).where(User.id.in_(user_ids)))
    }
    return [member_out(membership, users[membership.user_id]) for membership in memberships]


async def _lock_owners(session: AsyncSession, workspace_id: uuid.UUID) -> list[uuid.UUID]:
    """The owners, row-locked in a fixed order (PostgreSQL): two owners demoting each other at
    the same moment are served one after the other, and the second sees the first's change."""
    rows = await session.scalars(
        select(Membership.user_id)
        .where(Membership.workspace_id == workspace_id, Membership.role == Role.owner.value)
        .order_by(Membership.id)
        .with_for_update()
    )
    return list(rows)


async def _ensure_an_owner_remains(session: AsyncSession, workspace_id: uuid.UUID) -> None:
    """Counted again after the change, inside the writing transaction (SQLite has one writer
    at a time, so this count sees every change committed before ours)."""
    await session.flush()
    if await _owner_count(session, workspace_id) == 0:
        raise LastOwner()


async def _owner_count(session: AsyncSession, workspace_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.workspace_id == workspace_id, Membership.role == Role.owner.value)
    )
    return int(count or 0)


async def _target_membership(
    session: AsyncSession, access: WorkspaceAccess, user_id: uuid.UUID
) -> Membership:
    target = await repository.membership(session, access.workspace.id, user_id)
    if target is None:
        raise MemberNotFound()
    return target


async def change_role(
    session: AsyncSession,
    meta: RequestMeta,
    access: WorkspaceAccess,
    user_id: uuid.UUID,
    role: Role,
) -> MemberOut:
    """Nobody grants above their own role or changes someone who outranks them; the last
    owner stays an owner."""
    target = await _target_membership(session, access, user_id)
    if not outranks_or_equals(access.role, role) or not outranks_or_equals(
        access.role, target.role
    ):
        raise RoleTooHigh()
    demotes_owner = target.role == Role.owner and role != Role.owner
    if demotes_owner and len(await _lock_owners(session, access.workspace.id)) <= 1:
        raise LastOwner()
    previous = target.role
    target.role = role.value
    if demotes_owner:
        await _ensure_an_owner_remains(session, access.workspace.id)
    audit.record(
        session,
        "member.role_changed",
        meta,
        actor_user_id=access.user.id,
        subject_user_id=user_id,
        workspace_id=access.workspace.id,
        target_type="user",
        target_id=user_id,
        previous_role=previous,
        role=role.value,
    )
    user = await repository.user_by_id(session, user_id)
    if user is None:
        raise MemberNotFound()
    return member_out(target, user)


async def remove_member(
    session: AsyncSession, meta: RequestMeta, access: WorkspaceAccess, user_id: uuid.UUID
) -> None:
    """Anyone may leave; removing somebody else needs ``members:manage`` and a rank at least
    theirs."""
    leaving = user_id == access.user.id
    if not leaving and Permission.members_manage not in access.permissions:
        raise MissingPermission(params={"permission": Permission.members_manage.value})
    target = await _target_membership(session, access, user_id)
    if not leaving and not outranks_or_equals(access.role, target.role):
        raise RoleTooHigh()
    removes_owner = target.role == Role.owner
    if removes_owner and len(await _lock_owners(session, access.workspace.id)) <= 1:
        raise LastOwner()
    await session.delete(target)
    if removes_owner:
        await _ensure_an_owner_remains(session, access.workspace.id)
    audit.record(
        session,
        "member.left" if leaving else "member.removed",
        meta,
        actor_user_id=access.user.id,
        subject_user_id=user_id,
        workspace_id=access.workspace.id,
        target_type="user",
        target_id=user_id,
    )


# Invitations --------------------------------------------------------------------------------


def invitation_link(kit: AuthKit, token: str) -> str:
    return f"{kit.settings.base_url.rstrip('/')}/invitations#token={token}"


async def invite(
    session: AsyncSession,
    kit: AuthKit,
    meta: RequestMeta,
    access: WorkspaceAccess,
    data: InvitationIn,
) -> Invitation:
    workspace = access.workspace
    if workspace.is_personal:
        raise PersonalWorkspace()
    if not outranks_or_equals(access.role, data.role):
        raise RoleTooHigh()
    email = str(data.email)
    existing = await repository.user_by_email(session, email)
    if existing is not None and await repository.membership(session, workspace.id, existing.id):
        raise AlreadyMember()
    token, token_hash = kit.tokens.new_secret()
    invitation = Invitation(
        workspace_id=workspace.id,
        email=email,
        email_key=repository.email_key(email),
        role=data.role.value,
        token_hash=token_hash,
        invited_by_id=access.user.id,
        expires_at=utcnow() + timedelta(seconds=kit.settings.invitation_ttl_seconds),
    )
    session.add(invitation)
    await session.flush()
    language = existing.language if existing is not None else access.user.language
    body = translate(
        N_(
            '{inviter} invited you to the workspace "{workspace}" on tezgah as {role}.\n\n'
            "Accept with this link (sign in or create an account with this address first):\n"
            "{link}\n\nOr send this code to the API: {token}"
        ),
        language,
        inviter=access.user.display_name,
        workspace=workspace.name,
        role=translate(ROLE_LABELS[data.role.value], language),
        link=invitation_link(kit, token),
        token=token,
    )
    mail.enqueue(
        session,
        to=email,
        subject=translate(
            N_("Invitation to {workspace} on tezgah"), language, workspace=workspace.name
        ),
        body=body,
        language=language,
        kind="invitation",
    )
    audit.record(
        session,
        "invitation.created",
        meta,
        actor_user_id=access.user.id,
        workspace_id=workspace.id,
        target_type="invitation",
        target_id=invitation.id,
        role=data.role.value,
    )
    return invitation


def invitations_query(workspace_id: uuid.UUID) -> Select[Any]:
    return select(Invitation).where(Invitation.workspace_id == workspace_id)


async def revoke_invitation(
    session: AsyncSession, meta: RequestMeta, access: WorkspaceAccess, invitation_id: uuid.UUID
) -> None:
    invitation = await session.get(Invitation, invitation_id)
    if invitation is None or invitation.workspace_id != access.workspace.id:
        raise InvitationNotFound()
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = utcnow()
        audit.record(
            session,
            "invitation.revoked",
            meta,
            actor_user_id=access.user.id,
            workspace_id=access.workspace.id,
            target_type="invitation",
            target_id=invitation.id,
        )


async def accept_invitation(
    session: AsyncSession, kit: AuthKit, meta: RequestMeta, user: User, token: str
) -> WorkspaceOut:
    result = await session.scalars(
        select(Invitation).where(Invitation.token_hash == kit.tokens.hash_secret(token))
    )
    invitation = result.first()
    now = utcnow()
    if (
        invitation is None
        or invitation.accepted_at is not None
        or invitation.revoked_at is not None
        or invitation.expires_at <= now
    ):
        raise InvitationInvalid()
    if invitation.email_key != user.email_key:
        raise InvitationForSomeoneElse()
    if await repository.membership(session, invitation.workspace_id, user.id) is not None:
        raise AlreadyMember()
    workspace = await repository.workspace_by_id(session, invitation.workspace_id)
    if workspace is None:
        raise InvitationInvalid()
    invitation.accepted_at = now
    session.add(Membership(workspace_id=workspace.id, user_id=user.id, role=invitation.role))
    audit.record(
        session,
        "invitation.accepted",
        meta,
        actor_user_id=user.id,
        workspace_id=workspace.id,
        target_type="invitation",
        target_id=invitation.id,
        role=invitation.role,
    )
    return workspace_out(workspace, invitation.role)
