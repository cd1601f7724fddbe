"""HTTP layer of share links: the workspace manages them, anyone with one may use it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Header, Request, Response, status

from tezgah.auth.dependencies import CurrentUser, KitDep, PageDep
from tezgah.core.db import SessionDep
from tezgah.core.pagination import Page, Sorting, paginate_request
from tezgah.core.ratelimit import get_rate_limiter
from tezgah.core.routing import AUTH_PROBLEM_RESPONSES, make_router, problem_doc
from tezgah.designs import service, sharing, versions
from tezgah.designs.models import ShareLink
from tezgah.designs.repository import share_links_of
from tezgah.designs.router import FILE_RESPONSES, BlobsDep, Writable
from tezgah.designs.schemas import SharedDesignOut, ShareLinkCreated, ShareLinkIn, ShareLinkOut
from tezgah.uploads.downloads import download_response

router = make_router(
    tags=["share links"],
    responses={**AUTH_PROBLEM_RESPONSES, 404: problem_doc("No such link, or it is no longer live")},
)
LINK_SORTING = Sorting(
    {"created_at": ShareLink.created_at}, default="-created_at", tiebreaker=ShareLink.id
)
SharePin = Annotated[str | None, Header(alias="X-Share-Pin", max_length=64)]


@router.get(
    "/designs/{design_id}/share-links",
    response_model=Page[ShareLinkOut],
    summary="A design's share links",
)
async def list_share_links(
    request: Request, response: Response, access: Writable, session: SessionDep, params: PageDep
) -> Page[ShareLinkOut]:
    statement = share_links_of(access.design.id)
    page = await paginate_request(request, response, session, statement, params, LINK_SORTING)
    return Page[ShareLinkOut](
        items=[sharing.link_out(link) for link in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/designs/{design_id}/share-links",
    response_model=ShareLinkCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create a share link (view only or view + download; optional expiry and PIN)",
)
async def create_share_link(
    data: ShareLinkIn, access: Writable, user: CurrentUser, session: SessionDep, kit: KitDep
) -> ShareLinkCreated:
    return await sharing.create(session, kit, access, user, data)


@router.delete(
    "/designs/{design_id}/share-links/{link_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a share link",
)
async def revoke_share_link(link_id: uuid.UUID, access: Writable, session: SessionDep) -> Response:
    sharing.revoke(await sharing.link_of(session, access, link_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/shared/{token}",
    response_model=SharedDesignOut,
    summary="Open a share link (PIN in X-Share-Pin when the link has one)",
)
async def open_share_link(
    request: Request, token: str, session: SessionDep, kit: KitDep, pin: SharePin = None
) -> SharedDesignOut:
    link, design = await sharing.open_link(session, kit, get_rate_limiter(request), token, pin)
    [item] = await service.list_items(session, [design])
    return SharedDesignOut(
        design=item.model_copy(update={"thumbnail_url": None}),
        description_html=service.description_html(design),
        can_download=link.can_download,
        download_url=f"{sharing.shared_url(token)}/file" if link.can_download else None,
    )


@router.get(
    "/shared/{token}/file",
    response_class=Response,
    summary="Download the current version through a share link that allows it",
    responses=FILE_RESPONSES,
)
async def download_shared(
    request: Request,
    token: str,
    session: SessionDep,
    kit: KitDep,
    blobs: BlobsDep,
    pin: SharePin = None,
) -> Response:
    _, design = await sharing.open_link(
        session, kit, get_rate_limiter(request), token, pin, download=True
    )
    version = await versions.current_version(session, design)
    file = versions.download_file(design, version)
    return download_response(request, blobs, file, cache_control="private, no-store")
