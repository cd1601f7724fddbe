"""Server administration (superusers only): accounts and the whole audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Query, Request, Response

from tezgah.auth import admin_service
from tezgah.auth.audit import RequestMeta
from tezgah.auth.dependencies import PageDep, Superuser
from tezgah.auth.router import user_out
from tezgah.auth.schemas import AdminUserUpdate, AuditEventOut, UserOut
from tezgah.core.db import SessionDep
from tezgah.core.pagination import Page, paginate_request
from tezgah.core.routing import AUTH_PROBLEM_RESPONSES, make_router

router = make_router(prefix="/admin", tags=["admin"], responses=AUTH_PROBLEM_RESPONSES)


@router.get("/users", response_model=Page[UserOut], summary="List and search accounts")
async def list_users(
    request: Request,
    response: Response,
    admin: Superuser,
    session: SessionDep,
    params: PageDep,
    q: Annotated[str | None, Query(max_length=100, description="Part of email or name.")] = None,
    active: bool | None = None,
) -> Page[UserOut]:
    statement = admin_service.users_query(q, active)
    page = await paginate_request(
        request, response, session, statement, params, admin_service.USER_SORTING
    )
    return Page[UserOut](
        items=[user_out(user) for user in page.items], next_cursor=page.next_cursor
    )


@router.patch("/users/{user_id}", response_model=UserOut, summary="Deactivate or change role")
async def update_user(
    user_id: uuid.UUID,
    data: AdminUserUpdate,
    request: Request,
    admin: Superuser,
    session: SessionDep,
) -> UserOut:
    meta = RequestMeta.from_request(request)
    return user_out(await admin_service.update_user(session, meta, admin, user_id, data))


@router.get("/audit-events", response_model=Page[AuditEventOut], summary="The audit trail")
async def audit_events(
    request: Request,
    response: Response,
    admin: Superuser,
    session: SessionDep,
    params: PageDep,
    user_id: uuid.UUID | None = None,
    workspace_id: uuid.UUID | None = None,
    event: Annotated[str | None, Query(max_length=60)] = None,
    since: datetime | None = None,
) -> Page[AuditEventOut]:
    statement = admin_service.audit_query(
        workspace_id=workspace_id, user_id=user_id, event=event, since=since
    )
    page = await paginate_request(
        request, response, session, statement, params, admin_service.AUDIT_SORTING
    )
    return admin_service.audit_page(page)
