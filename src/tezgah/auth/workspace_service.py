"""Workspaces, members, roles and invitations: who belongs where, and who may change that."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select
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
    PersonalWorkspace,
    RoleTooHigh,
    SlugTaken,
)
from tezgah.auth.kit import AuthKit
from tezgah.auth.models import Invitation, Membership, User, Workspace
from tezgah.auth.permissions import ROLE_LABELS, Role, outranks_or_equals
from tezgah.auth.schemas import InvitationIn, MemberOut, WorkspaceIn, WorkspaceOut
from tezgah.auth.service import create_workspace
from tezgah.core import mail
from tezgah.core.db import utcnow
from tezgah.core.i18n import N_, translate


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


async def members(session: AsyncSession, workspace_id: uuid.UUID) -> list[MemberOut]:
    rows = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == workspace_id)
        .order_by(Membership.created_at, Membership.id)
    )
    return [member_out(membership, user) for membership, user in rows.all()]


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
    if demotes_owner and await _owner_count(session, access.workspace.id) <= 1:
        raise LastOwner()
    previous = target.role
    target.role = role.value
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
    target = await _target_membership(session, access, user_id)
    leaving = user_id == access.user.id
    if not leaving and not outranks_or_equals(access.role, target.role):
        raise RoleTooHigh()
    if target.role == Role.owner and await _owner_count(session, access.workspace.id) <= 1:
        raise LastOwner()
    await session.delete(target)
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


async def list_invitations(session: AsyncSession, workspace_id: uuid.UUID) -> list[Invitation]:
    rows = await session.scalars(
        select(Invitation)
        .where(Invitation.workspace_id == workspace_id)
        .order_by(Invitation.created_at.desc(), Invitation.id)
    )
    return list(rows)


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
