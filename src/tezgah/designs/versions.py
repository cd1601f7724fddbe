"""Versions: files attached to a design, immutable once written.

A file enters as a finished tus upload or a small multipart form. Its format is decided by its
content (never its name); an FCStd file is inspected (object tree, parameters, thumbnail) before
the version exists, so a hostile archive is refused and nothing is half-written. Every version
keeps an upload row as the workspace's record of stored bytes: the quota counts it.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, cast

import anyio
import anyio.to_thread
from sqlalchemy import CursorResult, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from tezgah.auth.dependencies import Principal
from tezgah.core.config import Settings
from tezgah.core.db import utcnow
from tezgah.core.signing import SignedTokens
from tezgah.core.storage import BlobStore, LocalBlobStore, handle_chunks, iterate_bytes
from tezgah.designs import repository
from tezgah.designs.exceptions import (
    EmptyFile,
    FileTooLarge,
    NoVersionYet,
    ThumbnailNotFound,
    UnsupportedFileFormat,
    UploadAlreadyUsed,
    UploadNotReady,
    VersionNotFound,
)
from tezgah.designs.formats import HEAD_BYTES, Detected, FileFormat, detect_format
from tezgah.designs.models import Design, DesignVersion
from tezgah.designs.schemas import (
    DownloadLinkOut,
    FieldChange,
    ParameterChange,
    VersionComparison,
    VersionOut,
)
from tezgah.designs.service import API_PREFIX, DesignAccess, design_url, version_summary
from tezgah.freecad.fcstd import inspect_fcstd
from tezgah.uploads import repository as upload_repository
from tezgah.uploads import service as upload_service
from tezgah.uploads.downloads import DownloadFile, safe_filename
from tezgah.uploads.exceptions import UploadQuotaExceeded
from tezgah.uploads.models import Upload

DOWNLOAD_PURPOSE = "design-download"
EXTENSIONS = {
    FileFormat.fcstd: "FCStd",
    FileFormat.step: "step",
    FileFormat.stl: "stl",
    FileFormat.obj: "obj",
    FileFormat.brep: "brep",
    FileFormat.iges: "iges",
}


# Reading what was stored ----------------------------------------------------------------------


async def _head(blobs: BlobStore, sha256: str, size: int) -> bytes:
    wanted = min(size, HEAD_BYTES)
    if wanted == 0:
        return b""
    parts = [chunk async for chunk in blobs.read(sha256, start=0, end=wanted - 1)]
    return b"".join(parts)


async def detect(blobs: BlobStore, sha256: str, size: int) -> Detected:
    if size == 0:
        raise EmptyFile()
    detected = detect_format(await _head(blobs, sha256, size), size)
    if detected is None:
        raise UnsupportedFileFormat()
    return detected


@contextlib.asynccontextmanager
async def local_file(settings: Settings, blobs: BlobStore, sha256: str) -> AsyncIterator[Path]:
    """A seekable path to a blob: the blob itself on local storage, a temporary copy otherwise."""
    if isinstance(blobs, LocalBlobStore):
        yield blobs.path_for(sha256)
        return
    directory = settings.var_dir / "tmp"
    await anyio.to_thread.run_sync(lambda: directory.mkdir(parents=True, exist_ok=True))
    fd, name = tempfile.mkstemp(dir=directory, suffix=".blob")
    handle: IO[bytes] = os.fdopen(fd, "wb")
    try:
        async for chunk in blobs.read(sha256):
            await anyio.to_thread.run_sync(handle.write, chunk)
        await anyio.to_thread.run_sync(handle.close)
        yield Path(name)
    finally:
        handle.close()
        await anyio.to_thread.run_sync(lambda: Path(name).unlink(missing_ok=True))


def _json_safe(value: Any) -> Any:
    """JSON columns refuse NaN and infinities (PostgreSQL): they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


async def _inspect(
    settings: Settings, blobs: BlobStore, sha256: str
) -> tuple[dict[str, Any], str | None]:
    """The FCStd inspection (raises the reader's 4xx error for a bad file) and the stored
    thumbnail's SHA-256."""
    async with local_file(settings, blobs, sha256) as path:
        result = await anyio.to_thread.run_sync(inspect_fcstd, path)
    thumbnail_sha256 = None
    if result.thumbnail is not None:
        stored = await blobs.put(iterate_bytes(result.thumbnail.png))
        thumbnail_sha256 = stored.sha256
    data = asdict(result)
    data.pop("thumbnail", None)
    return _json_safe(data), thumbnail_sha256


# Adding versions -------------------------------------------------------------------------------


async def add_from_upload(
    session: AsyncSession,
    settings: Settings,
    blobs: BlobStore,
    access: DesignAccess,
    principal: Principal,
    upload_id: uuid.UUID,
    message: str,
) -> DesignVersion:
    upload = await upload_service.upload_for(session, principal, upload_id, live=False)
    if upload.design_version_id is not None or upload.workspace_id != access.design.workspace_id:
        raise UploadAlreadyUsed()
    if not upload.is_finished or upload.sha256 is None or upload.size is None:
        raise UploadNotReady()
    filename = upload.filename or ""
    return await _add(
        session, settings, blobs, access, principal, upload, filename=filename, message=message
    )


async def add_from_stream(
    session: AsyncSession,
    settings: Settings,
    blobs: BlobStore,
    access: DesignAccess,
    principal: Principal,
    file: IO[bytes],
    *,
    filename: str,
    message: str,
) -> DesignVersion:
    """A small file sent as a form: checked before anything is stored, then stored once."""
    head = await anyio.to_thread.run_sync(file.read, HEAD_BYTES)
    size = await anyio.to_thread.run_sync(_remaining_size, file, len(head))
    if size == 0:
        raise EmptyFile()
    if size > settings.upload_max_bytes:
        raise FileTooLarge(params={"limit": settings.upload_max_bytes})
    if detect_format(head, size) is None:
        raise UnsupportedFileFormat()
    await _check_quota(session, settings, access.design.workspace_id, size)
    await anyio.to_thread.run_sync(file.seek, 0)
    stored = await blobs.put(handle_chunks(file), max_bytes=settings.upload_max_bytes)
    upload = _ledger_row(access.design.workspace_id, principal, stored.sha256, stored.size)
    upload.filename = filename[:255] or None
    session.add(upload)
    try:
        return await _add(
            session, settings, blobs, access, principal, upload, filename=filename, message=message
        )
    except BaseException:
        session.expunge(upload)  # pending: a query would flush it and count it as a user
        await repository.delete_blob_if_unused(session, blobs, stored.sha256)
        raise


def _remaining_size(file: IO[bytes], already: int) -> int:
    file.seek(0, os.SEEK_END)
    size = file.tell()
    return max(size, already)


async def _check_quota(
    session: AsyncSession, settings: Settings, workspace_id: uuid.UUID, size: int
) -> None:
    used = await upload_repository.workspace_bytes(session, workspace_id, utcnow())
    if used + size > settings.upload_quota_bytes:
        raise UploadQuotaExceeded(params={"limit": settings.upload_quota_bytes})


def _ledger_row(workspace_id: uuid.UUID, principal: Principal, sha256: str, size: int) -> Upload:
    now = utcnow()
    return Upload(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        created_by_id=principal.user.id,
        length=size,
        offset=size,
        upload_metadata={},
        expires_at=now,
        finished_at=now,
        sha256=sha256,
        size=size,
    )


def _filename(design: Design, given: str, detected: Detected) -> str:
    name = safe_filename(given) if given.strip() else ""
    if name in ("", "download"):
        return f"{design.slug}.{EXTENSIONS[detected.format]}"
    return name[:255]


async def _add(
    session: AsyncSession,
    settings: Settings,
    blobs: BlobStore,
    access: DesignAccess,
    principal: Principal,
    upload: Upload,
    *,
    filename: str,
    message: str,
) -> DesignVersion:
    assert upload.sha256 is not None  # a finished upload (checked by the callers)
    assert upload.size is not None
    design = access.design
    detected = await detect(blobs, upload.sha256, upload.size)
    inspection: dict[str, Any] | None = None
    thumbnail: str | None = None
    if detected.format is FileFormat.fcstd:
        inspection, thumbnail = await _inspect(settings, blobs, upload.sha256)
    version = DesignVersion(
        id=uuid.uuid4(),
        design_id=design.id,
        number=await repository.next_version_number(session, design.id),
        message=message.strip(),
        author_id=principal.user.id,
        filename=_filename(design, filename, detected),
        size=upload.size,
        sha256=upload.sha256,
        media_type=detected.media_type,
        format=detected.format.value,
        inspection_status="ready" if inspection is not None else "none",
        inspection=inspection,
        thumbnail_sha256=thumbnail,
    )
    session.add(version)
    await session.flush()
    await _claim(session, upload, version)
    _make_current(design, version)
    return version


async def _claim(session: AsyncSession, upload: Upload, version: DesignVersion) -> None:
    """Link the upload to its version, if no concurrent request did first: the condition is
    checked by the database row by row, so of two requests attaching one upload, one wins and
    the other is refused (and rolled back), on both databases."""
    claimed = await session.execute(
        update(Upload)
        .where(Upload.id == upload.id, Upload.design_version_id.is_(None))
        .values(design_version_id=version.id)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], claimed).rowcount != 1:
        raise UploadAlreadyUsed()
    set_committed_value(upload, "design_version_id", version.id)


def _make_current(design: Design, version: DesignVersion) -> None:
    design.current_version_id = version.id
    design.updated_at = utcnow()


async def copy_current(
    session: AsyncSession, principal: Principal, source: Design, copy: Design
) -> None:
    """A remix starts from the source's current file (the same blob: nothing is copied)."""
    assert source.current_version_id is not None
    original = await session.get(DesignVersion, source.current_version_id)
    if original is None:
        return
    version = DesignVersion(
        id=uuid.uuid4(),
        design_id=copy.id,
        number=await repository.next_version_number(session, copy.id),
        message=original.message,
        author_id=principal.user.id,
        filename=original.filename,
        size=original.size,
        sha256=original.sha256,
        media_type=original.media_type,
        format=original.format,
        inspection_status=original.inspection_status,
        inspection=original.inspection,
        inspection_error=original.inspection_error,
        thumbnail_sha256=original.thumbnail_sha256,
    )
    session.add(version)
    await session.flush()
    ledger = _ledger_row(copy.workspace_id, principal, original.sha256, original.size)
    ledger.design_version_id = version.id
    session.add(ledger)
    _make_current(copy, version)


async def check_remix_quota(
    session: AsyncSession, settings: Settings, source: Design, workspace_id: uuid.UUID
) -> None:
    if source.current_version_id is None:
        return
    original = await session.get(DesignVersion, source.current_version_id)
    if original is not None:
        await _check_quota(session, settings, workspace_id, original.size)


# Reading versions ------------------------------------------------------------------------------


async def version_of(session: AsyncSession, design: Design, version_id: uuid.UUID) -> DesignVersion:
    version = await repository.version_of(session, design.id, version_id)
    if version is None:
        raise VersionNotFound()
    return version


def mark_current(design: Design, version: DesignVersion) -> None:
    _make_current(design, version)


def download_url(version: DesignVersion) -> str:
    return f"{design_url(version.design_id)}/versions/{version.id}/file"


async def version_out(session: AsyncSession, design: Design, version: DesignVersion) -> VersionOut:
    names = await repository.people(session, {version.author_id} if version.author_id else set())
    summary = version_summary(version, names)
    thumbnail = None
    if version.thumbnail_sha256 is not None:
        thumbnail = f"{design_url(design.id)}/versions/{version.id}/thumbnail"
    return VersionOut(
        **summary.model_dump(),
        design_id=design.id,
        is_current=design.current_version_id == version.id,
        download_url=download_url(version),
        thumbnail_url=thumbnail,
        inspection=version.inspection,
        inspection_error=version.inspection_error,
    )


def download_file(design: Design, version: DesignVersion) -> DownloadFile:
    return DownloadFile(
        sha256=version.sha256,
        size=version.size,
        filename=version.filename,
        media_type=version.media_type,
        last_modified=version.created_at,
    )


async def thumbnail_file(
    blobs: BlobStore, design: Design, version: DesignVersion | None
) -> DownloadFile:
    if version is None or version.thumbnail_sha256 is None:
        raise ThumbnailNotFound()
    size = await blobs.size(version.thumbnail_sha256)
    if size is None:
        raise ThumbnailNotFound()
    return DownloadFile(
        sha256=version.thumbnail_sha256,
        size=size,
        filename=f"{design.slug}.png",
        media_type="image/png",
        last_modified=version.created_at,
    )


async def current_version(session: AsyncSession, design: Design) -> DesignVersion:
    if design.current_version_id is None:
        raise NoVersionYet()
    version = await session.get(DesignVersion, design.current_version_id)
    if version is None:
        raise NoVersionYet()
    return version


# Signed download links -------------------------------------------------------------------------


def _signer(settings: Settings) -> SignedTokens:
    return SignedTokens(settings.secret_key.get_secret_value(), DOWNLOAD_PURPOSE)


def download_link(settings: Settings, version: DesignVersion, expires_in: int) -> DownloadLinkOut:
    expires_at = utcnow() + timedelta(seconds=expires_in)
    token = _signer(settings).sign({"v": str(version.id)}, expires_at)
    return DownloadLinkOut(url=f"{API_PREFIX}/downloads/{token}", expires_at=expires_at)


async def version_for_link(
    session: AsyncSession, settings: Settings, token: str
) -> tuple[Design, DesignVersion]:
    """The version a signed link names (raises for a forged or expired link); a link to a
    design since deleted is a 404."""
    data = _signer(settings).verify(token)
    try:
        version_id = uuid.UUID(data.get("v", ""))
    except ValueError as exc:
        raise VersionNotFound() from exc
    version = await session.get(DesignVersion, version_id)
    design = await session.get(Design, version.design_id) if version is not None else None
    if version is None or design is None or design.deleted_at is not None:
        raise VersionNotFound()
    return design, version


# Comparing two versions ------------------------------------------------------------------------

COMPARED_FIELDS = ("filename", "size", "sha256", "format", "media_type", "message")
COMPARED_INSPECTION = ("program_version", "unit_system", "label")


def compare(a: DesignVersion, b: DesignVersion, names: dict[uuid.UUID, str]) -> VersionComparison:
    changes = [
        FieldChange(field=field, a=getattr(a, field), b=getattr(b, field))
        for field in COMPARED_FIELDS
        if getattr(a, field) != getattr(b, field)
    ]
    inspection_a, inspection_b = a.inspection or {}, b.inspection or {}
    changes += [
        FieldChange(field=f"inspection.{key}", a=inspection_a.get(key), b=inspection_b.get(key))
        for key in COMPARED_INSPECTION
        if inspection_a.get(key) != inspection_b.get(key)
    ]
    objects_a = {o["name"] for o in inspection_a.get("objects", [])}
    objects_b = {o["name"] for o in inspection_b.get("objects", [])}
    return VersionComparison(
        a=version_summary(a, names),
        b=version_summary(b, names),
        same_content=a.sha256 == b.sha256,
        changes=changes,
        parameters=_parameter_changes(inspection_a, inspection_b),
        objects_added=sorted(objects_b - objects_a),
        objects_removed=sorted(objects_a - objects_b),
    )


def _parameters(inspection: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["object"], p["name"]): p for p in inspection.get("parameters", [])}


def _parameter_changes(a: dict[str, Any], b: dict[str, Any]) -> list[ParameterChange]:
    before, after = _parameters(a), _parameters(b)
    changes: list[ParameterChange] = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is None:
            changes.append(
                ParameterChange(object=key[0], name=key[1], change="added", b=_shown(new))
            )
        elif new is None:
            changes.append(
                ParameterChange(object=key[0], name=key[1], change="removed", a=_shown(old))
            )
        elif _shown(old) != _shown(new):
            changes.append(
                ParameterChange(
                    object=key[0], name=key[1], change="changed", a=_shown(old), b=_shown(new)
                )
            )
    return changes


def _shown(parameter: dict[str, Any] | None) -> Any:
    if parameter is None:
        return None
    return {key: parameter.get(key) for key in ("value", "unit", "expression")}
