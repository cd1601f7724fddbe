"""HTTP layer of resumable uploads: the tus 1.0 protocol under ``/api/v1/uploads``.

Extensions: creation, creation-with-upload, termination, checksum (sha256), expiration. The
workspace an upload belongs to is named in ``Upload-Metadata`` (``workspace_id``, base64) and the
caller needs ``designs:write`` there. Errors are problem+json with the statuses tus prescribes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response, status
from starlette.requests import ClientDisconnect

from tezgah.auth.dependencies import CurrentPrincipal
from tezgah.core.config import Settings
from tezgah.core.db import SessionDep
from tezgah.core.routing import AUTH_PROBLEM_RESPONSES, make_router, problem_doc
from tezgah.core.storage import BlobStore
from tezgah.uploads import service
from tezgah.uploads.exceptions import TUS_VERSION, UploadContentType
from tezgah.uploads.models import Upload
from tezgah.uploads.schemas import UploadOut

TUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_PROBLEM_RESPONSES,
    404: problem_doc("No such upload (or it belongs to a workspace you are not in)"),
    410: problem_doc("The upload expired"),
    412: problem_doc("Tus-Resumable is missing or not 1.0.0"),
    413: problem_doc("Larger than the maximum file size, the upload's length or the quota"),
    415: problem_doc("The body is not application/offset+octet-stream"),
    460: problem_doc("The chunk does not match its Upload-Checksum"),
}
# The PATCH (and a creating POST's) body is raw bytes, ``application/offset+octet-stream``, read
# from the stream: it is described in words, not as a requestBody schema (fuzzers cannot
# serialize that media type, and FastAPI must not try to parse it).

router = make_router(tags=["uploads"], responses=TUS_RESPONSES)

TusResumable = Annotated[str | None, Header(alias="Tus-Resumable")]
UploadChecksum = Annotated[str | None, Header(alias="Upload-Checksum")]


async def _part_locks() -> AsyncIterator[service.PartLocks]:
    """Entered before the database session, so it exits after the commit."""
    locks = service.PartLocks()
    try:
        yield locks
    finally:
        await locks.release()


PartLocksDep = Annotated[service.PartLocks, Depends(_part_locks)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.resources.settings
    return settings


def _blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.resources.blobs
    return blobs


def _tus_headers(upload: Upload | None = None) -> dict[str, str]:
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if upload is not None:
        headers["Upload-Offset"] = str(upload.offset)
        headers["Upload-Length"] = str(upload.length)
        if upload.finished_at is None:
            headers["Upload-Expires"] = service.http_date(upload.expires_at)
    return headers


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; a client that goes away keeps what it sent (tus)."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        return


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() != "0"
    return "transfer-encoding" in request.headers


def _chunk(request: Request, checksum: str | None) -> service.Chunk:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != service.OFFSET_MEDIA_TYPE:
        raise UploadContentType(params={"expected": service.OFFSET_MEDIA_TYPE})
    declared = request.headers.get("content-length")
    return service.Chunk(
        stream=_body(request),
        checksum=service.parse_checksum(checksum),
        declared_length=int(declared) if declared and declared.isdigit() else None,
    )


@router.options(
    "/uploads",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="tus: what this server supports",
)
async def tus_options(request: Request) -> Response:
    settings = _settings(request)
    return Response(
        status_code=status.HTTP_204_NO_CONTENT,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": service.TUS_EXTENSIONS,
            "Tus-Checksum-Algorithm": service.TUS_CHECKSUM_ALGORITHMS,
            "Tus-Max-Size": str(settings.upload_max_bytes),
        },
    )


@router.post(
    "/uploads",
    status_code=status.HTTP_201_CREATED,
    response_class=Response,
    summary="tus: create an upload (optionally with its first bytes)",
    description="Headers: Tus-Resumable, Upload-Length, Upload-Metadata (workspace_id, base64, "
    "required; filename, filetype). A body of type application/offset+octet-stream is the first "
    "chunk (creation-with-upload).",
)
async def create_upload(
    locks: PartLocksDep,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    tus_resumable: TusResumable = None,
    upload_length: Annotated[str | None, Header(alias="Upload-Length")] = None,
    upload_metadata: Annotated[str | None, Header(alias="Upload-Metadata")] = None,
    upload_checksum: UploadChecksum = None,
) -> Response:
    service.check_version(tus_resumable)
    length = service.parse_length(upload_length, "Upload-Length")
    metadata = service.parse_metadata(upload_metadata)
    chunk = _chunk(request, upload_checksum) if _has_body(request) else None
    upload = await service.create(
        session,
        _settings(request),
        _blobs(request),
        principal,
        length=length,
        metadata=metadata,
        chunk=chunk,
        locks=locks,
    )
    headers = _tus_headers(upload)
    headers["Location"] = f"{request.url.path.rstrip('/')}/{upload.id}"
    return Response(status_code=status.HTTP_201_CREATED, headers=headers)


@router.head(
    "/uploads/{upload_id}",
    response_class=Response,
    summary="tus: the upload's offset and length",
)
async def upload_offset(
    upload_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    tus_resumable: TusResumable = None,
) -> Response:
    service.check_version(tus_resumable)
    upload = await service.upload_for(session, principal, upload_id)
    return Response(status_code=status.HTTP_200_OK, headers=_tus_headers(upload))


@router.patch(
    "/uploads/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="tus: append bytes at Upload-Offset",
    description="The body is application/offset+octet-stream; Upload-Checksum: sha256 <base64> "
    "is checked (460 on mismatch, the chunk is discarded).",
)
async def append_to_upload(
    locks: PartLocksDep,
    request: Request,
    upload_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    tus_resumable: TusResumable = None,
    upload_offset: Annotated[str | None, Header(alias="Upload-Offset")] = None,
    upload_checksum: UploadChecksum = None,
) -> Response:
    service.check_version(tus_resumable)
    chunk = _chunk(request, upload_checksum)
    offset = service.parse_length(upload_offset, "Upload-Offset")
    upload = await service.upload_for(session, principal, upload_id)
    await service.append(session, _settings(request), _blobs(request), upload, offset, chunk, locks)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=_tus_headers(upload))


@router.delete(
    "/uploads/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="tus: terminate an upload",
)
async def terminate_upload(
    request: Request,
    upload_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    tus_resumable: TusResumable = None,
) -> Response:
    service.check_version(tus_resumable)
    upload = await service.upload_for(session, principal, upload_id, live=False)
    await service.terminate(session, _settings(request), upload, _blobs(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Tus-Resumable": TUS_VERSION})


@router.get(
    "/uploads/{upload_id}",
    response_model=UploadOut,
    summary="An upload: progress, and the stored file's SHA-256 once finished",
)
async def get_upload(
    upload_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep, response: Response
) -> UploadOut:
    upload = await service.upload_for(session, principal, upload_id, live=False)
    response.headers["Cache-Control"] = "no-store"
    return UploadOut(
        id=upload.id,
        workspace_id=upload.workspace_id,
        length=upload.length,
        offset=upload.offset,
        filename=upload.filename,
        content_type=upload.content_type,
        created_at=upload.created_at,
        expires_at=None if upload.finished_at else upload.expires_at,
        finished_at=upload.finished_at,
        sha256=upload.sha256,
        size=upload.size,
    )
