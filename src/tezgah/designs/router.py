"""HTTP layer of designs and their versions: CRUD, trash, remix, the list, files and links."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, ValidationError

from tezgah.auth.dependencies import (
    CacheDep,
    CurrentPrincipal,
    OptionalPrincipal,
    PageDep,
    WorkspaceAccess,
    require,
)
from tezgah.auth.permissions import Permission
from tezgah.core.config import Settings
from tezgah.core.db import ReadSessionDep, SessionDep
from tezgah.core.errors import ValidationFailed
from tezgah.core.http_cache import conditional_body
from tezgah.core.i18n import get_language
from tezgah.core.idempotency import IdempotencyDep
from tezgah.core.pagination import Page, Sorting, paginate_request, set_link_header
from tezgah.core.routing import AUTH_PROBLEM_RESPONSES, make_router, problem_doc
from tezgah.core.storage import BlobStore
from tezgah.designs import repository, service, versions
from tezgah.designs.exceptions import BadVersionRequest, MissingFilePart
from tezgah.designs.formats import FileFormat
from tezgah.designs.models import Design, DesignVersion
from tezgah.designs.repository import DesignFilters
from tezgah.designs.schemas import (
    AttachUploadIn,
    DesignIn,
    DesignListItem,
    DesignOut,
    DesignUpdate,
    DownloadLinkIn,
    DownloadLinkOut,
    RemixIn,
    VersionComparison,
    VersionOut,
    VersionSummary,
    Visibility,
)
from tezgah.designs.service import DesignAccess
from tezgah.uploads.downloads import download_response

router = make_router(
    tags=["designs"],
    responses={**AUTH_PROBLEM_RESPONSES, 404: problem_doc("No such design (or not yours to see)")},
)
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file", "content": {"application/octet-stream": {}}},
    206: {"description": "The requested byte range", "content": {"application/octet-stream": {}}},
    304: {"description": "Not modified (If-None-Match / If-Modified-Since)"},
    410: problem_doc("The link has expired"),
    416: problem_doc("The Range lies outside the file"),
}
DESIGN_SORTING = Sorting(
    {
        "created_at": Design.created_at,
        "updated_at": Design.updated_at,
        "rating": Design.rating_avg,
        "review_count": Design.rating_count,
        "name": Design.name,
    },
    default="-created_at",
    tiebreaker=Design.id,
)
VERSION_SORTING = Sorting(
    {"number": DesignVersion.number}, default="-number", tiebreaker=DesignVersion.id
)
PUBLIC_LIST_TTL = 60.0

CanWriteWorkspace = Annotated[WorkspaceAccess, Depends(require(Permission.designs_write))]


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.resources.settings
    return settings


async def _blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.resources.blobs
    return blobs


SettingsDep = Annotated[Settings, Depends(_settings)]
BlobsDep = Annotated[BlobStore, Depends(_blobs)]


async def _readable(
    design_id: uuid.UUID, principal: OptionalPrincipal, session: SessionDep
) -> DesignAccess:
    return await service.readable(session, principal, design_id)


async def _writable(
    design_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> DesignAccess:
    return await service.writable(session, principal, design_id)


Readable = Annotated[DesignAccess, Depends(_readable)]
Writable = Annotated[DesignAccess, Depends(_writable)]


async def design_out(session: SessionDep, access: DesignAccess) -> DesignOut:
    design = access.design
    current = await versions.current_version(session, design) if design.current_version_id else None
    [item] = await service.list_items(session, [design])
    current_out = await versions.version_out(session, design, current) if current else None
    principal = access.principal
    return DesignOut(
        **item.model_dump(exclude={"current_version"}),
        current_version=current_out,
        description=design.description,
        description_html=service.description_html(design),
        material_hints=list(design.material_hints),
        version_count=design.version_count,
        deleted_at=design.deleted_at,
        can_edit=access.can_write,
        can_review=principal is not None and not principal.is_api_key and not access.is_member,
    )


# The list --------------------------------------------------------------------------------------


async def list_filters(
    workspace_id: Annotated[uuid.UUID | None, Query()] = None,
    category_id: Annotated[
        uuid.UUID | None, Query(description="Includes its subcategories.")
    ] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    format: Annotated[FileFormat | None, Query(description="Of the current version.")] = None,
    min_rating: Annotated[float | None, Query(ge=0, le=5)] = None,
    visibility: Annotated[Visibility | None, Query()] = None,
    author_id: Annotated[uuid.UUID | None, Query()] = None,
    created_after: Annotated[AwareDatetime | None, Query()] = None,
    created_before: Annotated[AwareDatetime | None, Query()] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Words in name, description, tags.")
    ] = None,
) -> DesignFilters:
    """The list's filters, as plain query parameters."""
    return service.list_filters(
        DesignFilters(
            workspace_id=workspace_id,
            category_id=category_id,
            tag=tag,
            format=format.value if format else None,
            min_rating=min_rating,
            visibility=visibility.value if visibility else None,
            author_id=author_id,
            created_after=created_after,
            created_before=created_before,
            q=q,
        )
    )


@router.get(
    "/designs",
    response_model=Page[DesignListItem],
    summary="Designs you may see: public ones and your workspaces' (filters, search, sort)",
    description="Sort fields: created_at, updated_at, rating, review_count, name "
    "(prefix '-' for descending; default -created_at). Anonymous lists are cached and carry "
    "an ETag.",
)
async def list_designs(
    request: Request,
    response: Response,
    session: ReadSessionDep,
    principal: OptionalPrincipal,
    params: PageDep,
    cache: CacheDep,
    filters: Annotated[DesignFilters, Depends(list_filters)],
) -> Response:
    async def build() -> bytes:
        statement = repository.filtered_designs(
            service.viewer_of(principal), filters, session.get_bind().dialect.name
        )
        page = await paginate_request(
            request, response, session, statement, params, DESIGN_SORTING, whole_rows=True
        )
        items = service.items_from_rows(page.items)
        body = Page[DesignListItem](items=items, next_cursor=page.next_cursor).model_dump_json()
        # The cursor rides in front of the body, so a cached page can still set its Link.
        return (page.next_cursor or "").encode() + b"\n" + body.encode()

    if principal is None:
        key = f"{get_language()}:{request.url.query}"
        cached = await cache.get_or_set_bytes(
            service.PUBLIC_LIST_NAMESPACE, key, build, ttl=PUBLIC_LIST_TTL
        )
        cache_control = "public, no-cache"
    else:
        cached, cache_control = await build(), "private, no-cache"
    cursor, _, body = cached.partition(b"\n")
    answer = conditional_body(request, body, cache_control=cache_control)
    set_link_header(request, answer, cursor.decode() or None)
    # A shared cache may keep the anonymous page: never hand it to someone signed in, nor in
    # the other language.
    answer.headers["Vary"] = "Accept-Language, Authorization, Cookie, X-API-Key"
    return answer


# One design ------------------------------------------------------------------------------------


@router.post(
    "/designs",
    response_model=DesignOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a design (in your personal workspace unless workspace_id is given)",
)
async def create_design(
    data: DesignIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    cache: CacheDep,
    idempotency: IdempotencyDep,
) -> Response:
    if (replay := await idempotency.replay()) is not None:
        return replay
    design = await service.create(session, cache, principal, data)
    access = DesignAccess(design, frozenset({Permission.designs_write}), principal)
    return await idempotency.remember(await design_out(session, access), status_code=201)


@router.get(
    "/designs/{design_id}",
    response_model=DesignOut,
    summary="A design, with its current version and that version's inspection",
)
async def get_design(request: Request, access: Readable, session: SessionDep) -> Response:
    out = await design_out(session, access)
    return conditional_body(request, out.model_dump_json().encode())


@router.patch("/designs/{design_id}", response_model=DesignOut, summary="Change a design")
async def update_design(
    data: DesignUpdate, access: Writable, session: SessionDep, cache: CacheDep
) -> DesignOut:
    await service.update(session, cache, access, data)
    await session.flush()
    return await design_out(session, access)


@router.delete(
    "/designs/{design_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary=f"Move a design to the trash (restorable for {service.TRASH_DAYS} days)",
)
async def delete_design(access: Writable, session: SessionDep, cache: CacheDep) -> Response:
    service.soft_delete(session, cache, access)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/designs/{design_id}/restore",
    response_model=DesignOut,
    summary="Take a design out of the trash",
    responses={410: problem_doc("Deleted too long ago")},
)
async def restore_design(
    design_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep, cache: CacheDep
) -> DesignOut:
    access = await service.writable(session, principal, design_id, in_trash=True)
    service.restore(session, cache, access)
    return await design_out(session, access)


@router.get(
    "/workspaces/{workspace_id}/trash",
    response_model=Page[DesignListItem],
    summary="Designs of a workspace in the trash",
)
async def list_trash(
    request: Request,
    response: Response,
    access: CanWriteWorkspace,
    session: SessionDep,
    params: PageDep,
) -> Page[DesignListItem]:
    statement = repository.deleted_designs(access.workspace.id, session.get_bind().dialect.name)
    page = await paginate_request(
        request, response, session, statement, params, DESIGN_SORTING, whole_rows=True
    )
    return Page[DesignListItem](
        items=service.items_from_rows(page.items), next_cursor=page.next_cursor
    )


@router.post(
    "/designs/{design_id}/remix",
    response_model=DesignOut,
    status_code=status.HTTP_201_CREATED,
    summary="Copy a design you can see into one of your workspaces",
)
async def remix_design(
    data: RemixIn,
    access: Readable,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    cache: CacheDep,
) -> DesignOut:
    target = await service.writable_workspace(session, principal, data.workspace_id)
    await versions.check_remix_quota(session, settings, access.design, target)
    copy = await service.remix(session, cache, principal, access.design, data)
    await session.flush()
    return await design_out(session, DesignAccess(copy, frozenset({"designs:write"}), principal))


@router.get(
    "/designs/{design_id}/thumbnail",
    response_class=Response,
    summary="The current version's thumbnail (PNG)",
    responses={200: {"content": {"image/png": {}}, "description": "PNG"}},
)
async def design_thumbnail(
    request: Request, access: Readable, session: SessionDep, blobs: BlobsDep
) -> Response:
    design = access.design
    current = await versions.current_version(session, design) if design.current_version_id else None
    file = await versions.thumbnail_file(blobs, design, current)
    return download_response(
        request, blobs, file, inline=True, cache_control=_cache_control(design)
    )


def _cache_control(design: Design) -> str:
    if design.visibility == Visibility.public:
        return "public, max-age=300"
    return "private, no-cache"


# Versions --------------------------------------------------------------------------------------

VERSION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": AttachUploadIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "message": {"type": "string", "maxLength": 500},
                    },
                }
            },
        },
    }
}


@router.get(
    "/designs/{design_id}/versions",
    response_model=Page[VersionSummary],
    summary="A design's versions, newest first",
)
async def list_versions(
    request: Request,
    response: Response,
    access: Readable,
    session: SessionDep,
    params: PageDep,
) -> Page[VersionSummary]:
    statement = repository.versions_of(access.design.id)
    page = await paginate_request(request, response, session, statement, params, VERSION_SORTING)
    authors = {v.author_id for v in page.items if v.author_id is not None}
    names = await repository.people(session, authors)
    items = [service.version_summary(version, names) for version in page.items]
    return Page[VersionSummary](items=items, next_cursor=page.next_cursor)


@router.post(
    "/designs/{design_id}/versions",
    response_model=VersionOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a version: attach a finished upload (JSON) or send a small file (multipart)",
    description='JSON `{"upload_id": ..., "message": ...}` attaches a finished tus upload '
    "of the same workspace. multipart/form-data with `file` (and `message`) takes a file up to "
    "the request body limit. The format comes from the content; FCStd files are inspected.",
    openapi_extra=VERSION_BODY,
    responses={
        413: problem_doc("Over the size limit or the workspace quota"),
        415: problem_doc("Not a supported CAD format"),
        422: problem_doc("Empty file, or an FCStd file that is broken or hostile"),
    },
)
async def add_version(
    request: Request,
    access: Writable,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    cache: CacheDep,
) -> VersionOut:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        data = _attach_input(await request.body())
        version = await versions.add_from_upload(
            session, settings, blobs, access, principal, data.upload_id, data.message
        )
    elif media_type == "multipart/form-data":
        version = await _add_from_form(request, session, settings, blobs, access, principal)
    else:
        raise BadVersionRequest()
    service.invalidate_lists(session, cache)
    await session.flush()
    return await versions.version_out(session, access.design, version)


def _attach_input(body: bytes) -> AttachUploadIn:
    """The JSON body, validated like any declared body (same field names, translated)."""
    try:
        return AttachUploadIn.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from exc


async def _add_from_form(
    request: Request,
    session: SessionDep,
    settings: Settings,
    blobs: BlobStore,
    access: DesignAccess,
    principal: CurrentPrincipal,
) -> DesignVersion:
    async with request.form(max_files=1, max_fields=4) as form:
        upload = form.get("file")
        message = form.get("message")
        if upload is None or isinstance(upload, str):
            raise MissingFilePart(field_errors={"file": []})
        text = message if isinstance(message, str) else ""
        if len(text) > 500:
            raise ValidationFailed(field_errors={"message": []})
        return await versions.add_from_stream(
            session,
            settings,
            blobs,
            access,
            principal,
            upload.file,
            filename=upload.filename or "",
            message=text,
        )


@router.get(
    "/designs/{design_id}/versions/{version_id}",
    response_model=VersionOut,
    summary="One version, with its inspection",
)
async def get_version(
    request: Request, version_id: uuid.UUID, access: Readable, session: SessionDep
) -> Response:
    version = await versions.version_of(session, access.design, version_id)
    out = await versions.version_out(session, access.design, version)
    return conditional_body(request, out.model_dump_json().encode())


@router.post(
    "/designs/{design_id}/versions/{version_id}/current",
    response_model=DesignOut,
    summary="Make this version the current one",
)
async def make_current(
    version_id: uuid.UUID, access: Writable, session: SessionDep, cache: CacheDep
) -> DesignOut:
    version = await versions.version_of(session, access.design, version_id)
    versions.mark_current(access.design, version)
    service.invalidate_lists(session, cache)
    await session.flush()
    return await design_out(session, access)


@router.get(
    "/designs/{design_id}/versions/{version_id}/file",
    response_class=Response,
    summary="Download a version (Range, ETag, If-None-Match supported)",
    responses=FILE_RESPONSES,
)
async def download_version(
    request: Request,
    version_id: uuid.UUID,
    access: Readable,
    session: SessionDep,
    blobs: BlobsDep,
) -> Response:
    version = await versions.version_of(session, access.design, version_id)
    return download_response(request, blobs, versions.download_file(access.design, version))


@router.get(
    "/designs/{design_id}/versions/{version_id}/thumbnail",
    response_class=Response,
    summary="A version's thumbnail (PNG)",
    responses={200: {"content": {"image/png": {}}, "description": "PNG"}},
)
async def version_thumbnail(
    request: Request,
    version_id: uuid.UUID,
    access: Readable,
    session: SessionDep,
    blobs: BlobsDep,
) -> Response:
    version = await versions.version_of(session, access.design, version_id)
    file = await versions.thumbnail_file(blobs, access.design, version)
    return download_response(
        request, blobs, file, inline=True, cache_control=_cache_control(access.design)
    )


@router.post(
    "/designs/{design_id}/versions/{version_id}/download-link",
    response_model=DownloadLinkOut,
    summary="A short-lived signed link to the file, usable without signing in",
)
async def create_download_link(
    version_id: uuid.UUID,
    data: DownloadLinkIn,
    access: Readable,
    session: SessionDep,
    settings: SettingsDep,
) -> DownloadLinkOut:
    version = await versions.version_of(session, access.design, version_id)
    return versions.download_link(settings, version, data.expires_in)


@router.get(
    "/designs/{design_id}/compare",
    response_model=VersionComparison,
    summary="Compare two versions' metadata (size, format, FCStd objects and parameters)",
)
async def compare_versions(
    a: Annotated[uuid.UUID, Query(description="The older version.")],
    b: Annotated[uuid.UUID, Query(description="The newer version.")],
    access: Readable,
    session: SessionDep,
) -> VersionComparison:
    first = await versions.version_of(session, access.design, a)
    second = await versions.version_of(session, access.design, b)
    authors = {v.author_id for v in (first, second) if v.author_id is not None}
    return versions.compare(first, second, await repository.people(session, authors))


@router.get(
    "/downloads/{token}",
    response_class=Response,
    summary="Download through a signed link (no session needed)",
    responses={**FILE_RESPONSES, 403: problem_doc("The link is invalid")},
)
async def download_by_link(
    request: Request, token: str, session: SessionDep, settings: SettingsDep, blobs: BlobsDep
) -> Response:
    design, version = await versions.version_for_link(session, settings, token)
    file = versions.download_file(design, version)
    return download_response(request, blobs, file, cache_control="private, no-store")
