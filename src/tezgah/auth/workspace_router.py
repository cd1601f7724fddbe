"""HTTP layer of workspaces, members, invitations, API keys and the workspace audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Query, Request, Response, status

from tezgah.auth import admin_service, apikey_service, workspace_service
from tezgah.auth.dependencies import (
    CurrentUser,
    KitDep,
    MetaDep,
    PageDep,
    WorkspaceAccess,
    require,
    require_person,
)
from tezgah.auth.models import Invitation
from tezgah.auth.permissions import Permission, Role
from tezgah.auth.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    AuditEventOut,
    InvitationIn,
    InvitationOut,
    MemberOut,
    MemberUpdate,
    TokenIn,
    WorkspaceIn,
    WorkspaceOut,
    WorkspaceUpdate,
)
from tezgah.core.db import SessionDep
from tezgah.core.pagination import Page, paginate_request
from tezgah.core.routing import AUTH_PROBLEM_RESPONSES, make_router

router = make_router(tags=["workspaces"], responses=AUTH_PROBLEM_RESPONSES)


# What each route needs, resolved once per request from the path's workspace_id.
CanRead = Annotated[WorkspaceAccess, Depends(require(Permission.workspace_read))]
PersonInWorkspace = Annotated[WorkspaceAccess, Depends(require_person(Permission.workspace_read))]
CanManageWorkspace = Annotated[
    WorkspaceAccess, Depends(require_person(Permission.workspace_manage))
]
CanDeleteWorkspace = Annotated[
    WorkspaceAccess, Depends(require_person(Permission.workspace_delete))
]
CanReadMembers = Annotated[WorkspaceAccess, Depends(require(Permission.members_read))]
CanSeeInvitations = Annotated[WorkspaceAccess, Depends(require(Permission.members_manage))]
CanManageMembers = Annotated[WorkspaceAccess, Depends(require_person(Permission.members_manage))]
CanSeeKeys = Annotated[WorkspaceAccess, Depends(require(Permission.keys_manage))]
CanManageKeys = Annotated[WorkspaceAccess, Depends(require_person(Permission.keys_manage))]
CanReadAudit = Annotated[WorkspaceAccess, Depends(require_person(Permission.audit_read))]


def invitation_out(invitation: Invitation) -> InvitationOut:
    return InvitationOut(
        id=invitation.id,
        workspace_id=invitation.workspace_id,
        email=invitation.email,
        role=Role(invitation.role),
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
        accepted_at=invitation.accepted_at,
        revoked_at=invitation.revoked_at,
    )


# Workspaces ---------------------------------------------------------------------------------


@router.get("/workspaces", response_model=Page[WorkspaceOut], summary="My workspaces")
async def list_workspaces(user: CurrentUser, session: SessionDep) -> Page[WorkspaceOut]:
    return Page[WorkspaceOut](items=await workspace_service.list_for_user(session, user))


@router.post(
    "/workspaces",
    response_model=WorkspaceOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a team workspace (you become its owner)",
)
async def create_workspace(
    data: WorkspaceIn, user: CurrentUser, session: SessionDep, meta: MetaDep
) -> WorkspaceOut:
    return await workspace_service.create_team(session, meta, user, data)


@router.get("/workspaces/{workspace_id}", response_model=WorkspaceOut, summary="A workspace")
async def get_workspace(
    access: CanRead,
) -> WorkspaceOut:
    return workspace_service.workspace_out(access.workspace, access.role)


@router.patch("/workspaces/{workspace_id}", response_model=WorkspaceOut, summary="Rename")
async def update_workspace(
    data: WorkspaceUpdate,
    access: CanManageWorkspace,
) -> WorkspaceOut:
    workspace_service.update(access, data)
    return workspace_service.workspace_out(access.workspace, access.role)


@router.delete(
    "/workspaces/{workspace_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a team workspace and everything in it",
)
async def delete_workspace(
    access: CanDeleteWorkspace,
    session: SessionDep,
    meta: MetaDep,
) -> Response:
    await workspace_service.delete(session, meta, access)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Members ------------------------------------------------------------------------------------


@router.get("/workspaces/{workspace_id}/members", response_model=Page[MemberOut], summary="Members")
async def list_members(
    request: Request,
    response: Response,
    access: CanReadMembers,
    session: SessionDep,
    params: PageDep,
) -> Page[MemberOut]:
    statement = workspace_service.members_query(access.workspace.id)
    page = await paginate_request(
        request, response, session, statement, params, workspace_service.MEMBER_SORTING
    )
    items = await workspace_service.member_outs(session, page.items)
    return Page[MemberOut](items=items, next_cursor=page.next_cursor)


@router.patch(
    "/workspaces/{workspace_id}/members/{user_id}",
    response_model=MemberOut,
    summary="Change a member's role",
)
async def change_member_role(
    user_id: uuid.UUID,
    data: MemberUpdate,
    access: CanManageMembers,
    session: SessionDep,
    meta: MetaDep,
) -> MemberOut:
    return await workspace_service.change_role(session, meta, access, user_id, data.role)


@router.delete(
    "/workspaces/{workspace_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member (or leave, with your own id)",
)
async def remove_member(
    user_id: uuid.UUID,
    access: PersonInWorkspace,
    session: SessionDep,
    meta: MetaDep,
) -> Response:
    await workspace_service.remove_member(session, meta, access, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Invitations --------------------------------------------------------------------------------


@router.post(
    "/workspaces/{workspace_id}/invitations",
    response_model=InvitationOut,
    status_code=status.HTTP_201_CREATED,
    summary="Invite someone by email",
)
async def create_invitation(
    data: InvitationIn,
    access: CanManageMembers,
    session: SessionDep,
    kit: KitDep,
    meta: MetaDep,
    tasks: BackgroundTasks,
) -> InvitationOut:
    invitation = await workspace_service.invite(session, kit, meta, access, data)
    tasks.add_task(kit.mail.wake)
    return invitation_out(invitation)


@router.get(
    "/workspaces/{workspace_id}/invitations",
    response_model=Page[InvitationOut],
    summary="Invitations of a workspace",
)
async def list_invitations(
    request: Request,
    response: Response,
    access: CanSeeInvitations,
    session: SessionDep,
    params: PageDep,
) -> Page[InvitationOut]:
    statement = workspace_service.invitations_query(access.workspace.id)
    page = await paginate_request(
        request, response, session, statement, params, workspace_service.INVITATION_SORTING
    )
    items = [invitation_out(invitation) for invitation in page.items]
    return Page[InvitationOut](items=items, next_cursor=page.next_cursor)


@router.delete(
    "/workspaces/{workspace_id}/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Withdraw an invitation",
)
async def revoke_invitation(
    invitation_id: uuid.UUID,
    access: CanManageMembers,
    session: SessionDep,
    meta: MetaDep,
) -> Response:
    await workspace_service.revoke_invitation(session, meta, access, invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/invitations/accept",
    response_model=WorkspaceOut,
    summary="Accept an invitation sent to your email address",
)
async def accept_invitation(
    data: TokenIn, user: CurrentUser, session: SessionDep, kit: KitDep, meta: MetaDep
) -> WorkspaceOut:
    return await workspace_service.accept_invitation(session, kit, meta, user, data.token)


# API keys -----------------------------------------------------------------------------------


@router.get(
    "/workspaces/{workspace_id}/api-keys", response_model=Page[ApiKeyOut], summary="API keys"
)
async def list_api_keys(
    request: Request,
    response: Response,
    access: CanSeeKeys,
    session: SessionDep,
    params: PageDep,
) -> Page[ApiKeyOut]:
    statement = apikey_service.keys_query(access.workspace.id)
    page = await paginate_request(
        request, response, session, statement, params, apikey_service.API_KEY_SORTING
    )
    items = [apikey_service.api_key_out(key) for key in page.items]
    return Page[ApiKeyOut](items=items, next_cursor=page.next_cursor)


@router.post(
    "/workspaces/{workspace_id}/api-keys",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key (the key is shown once)",
)
async def create_api_key(
    data: ApiKeyIn,
    access: CanManageKeys,
    session: SessionDep,
    kit: KitDep,
    meta: MetaDep,
) -> ApiKeyCreated:
    return await apikey_service.create(session, kit, meta, access, data)


@router.delete(
    "/workspaces/{workspace_id}/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key",
)
async def revoke_api_key(
    key_id: uuid.UUID,
    access: CanManageKeys,
    session: SessionDep,
    meta: MetaDep,
) -> Response:
    await apikey_service.revoke(session, meta, access, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Audit --------------------------------------------------------------------------------------


@router.get(
    "/workspaces/{workspace_id}/audit-events",
    response_model=Page[AuditEventOut],
    summary="Security events of this workspace (owners)",
)
async def workspace_audit_events(
    request: Request,
    response: Response,
    access: CanReadAudit,
    session: SessionDep,
    params: PageDep,
    event: Annotated[str | None, Query(max_length=60)] = None,
    since: datetime | None = None,
) -> Page[AuditEventOut]:
    statement = admin_service.audit_query(
        workspace_id=access.workspace.id, event=event, since=since
    )
    page = await paginate_request(
        request, response, session, statement, params, admin_service.AUDIT_SORTING
    )
    return admin_service.audit_page(page)
