"""Business rules of resumable uploads (tus 1.0: core, creation, creation-with-upload,
termination, checksum, expiration).

Bytes go to a part file under ``<var_dir>/uploads`` as they arrive (never held in memory); the
offset in the database is the truth, the part file is truncated to it before each write, so a
write cut short by a crash or a refused checksum leaves nothing behind. A lock on the part file
keeps two writers (in any process) apart. When the last byte arrives, the part file is streamed
into the content-addressed blob store, which computes the SHA-256 on the way: nothing about the
hash has to survive a restart. A 0-byte upload is allowed and finishes at creation.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import os
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import anyio
import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth.dependencies import Principal, WorkspaceAccess, resolve_workspace_access
from tezgah.auth.exceptions import MissingPermission, WorkspaceNotFound
from tezgah.auth.permissions import Permission
from tezgah.core.config import Settings
from tezgah.core.db import after_commit, utcnow
from tezgah.core.storage import BlobStore, LocalBlobStore, file_chunks, iterate_bytes
from tezgah.designs import repository as design_repository
from tezgah.uploads import repository
from tezgah.uploads.exceptions import (
    TUS_VERSION,
    InvalidUploadHeader,
    TusVersionUnsupported,
    UnsupportedChecksum,
    UploadBusy,
    UploadChecksumMismatch,
    UploadExpired,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadQuotaExceeded,
    UploadTooLarge,
)
from tezgah.uploads.models import Upload

TUS_EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
TUS_CHECKSUM_ALGORITHMS = "sha256"
OFFSET_MEDIA_TYPE = "application/offset+octet-stream"
MAX_METADATA_LENGTH = 4096
CLEANUP_BATCH = 500
WRITE_BUFFER = 1024 * 1024


@dataclass
class Chunk:
    """What a PATCH (or a POST with data) brings: its bytes and their declared checksum."""

    stream: AsyncIterable[bytes]
    checksum: bytes | None = None
    declared_length: int | None = None


class PartLocks:
    """Part files whose lock is held until the request's unit of work is committed: a second
    writer cannot slip in between the write and the commit of the new offset."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []

    def hold(self, part: _Part) -> None:
        self.parts.append(part)

    async def release(self) -> None:
        while self.parts:
            await anyio.to_thread.run_sync(self.parts.pop().close)


def check_version(tus_resumable: str | None) -> None:
    if tus_resumable != TUS_VERSION:
        raise TusVersionUnsupported(
            params={"version": TUS_VERSION}, headers={"Tus-Version": TUS_VERSION}
        )


def parse_length(value: str | None, header: str) -> int:
    if value is None or not value.isdigit() or len(value) > 19:
        raise InvalidUploadHeader(params={"header": header})
    return int(value)


def parse_metadata(value: str | None) -> dict[str, str]:
    """``key base64,key base64,flag`` into a dict of decoded (UTF-8) strings."""
    if not value:
        return {}
    if len(value) > MAX_METADATA_LENGTH:
        raise InvalidUploadHeader(params={"header": "Upload-Metadata"})
    result: dict[str, str] = {}
    for pair in value.split(","):
        parts = pair.strip().split(" ")
        if not parts[0] or len(parts) > 2 or parts[0] in result:
            raise InvalidUploadHeader(params={"header": "Upload-Metadata"})
        try:
            decoded = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
            result[parts[0]] = decoded.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidUploadHeader(params={"header": "Upload-Metadata"}) from exc
    return result


def parse_checksum(value: str | None) -> bytes | None:
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm.lower() != "sha256":
        raise UnsupportedChecksum()
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error as exc:
        raise UnsupportedChecksum() from exc
    if len(digest) != hashlib.sha256().digest_size:
        raise UnsupportedChecksum()
    return digest


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def part_path(settings: Settings, upload_id: uuid.UUID) -> Path:
    return settings.upload_dir / f"{upload_id.hex}.part"


def is_expired(upload: Upload, now: datetime | None = None) -> bool:
    return upload.finished_at is None and upload.expires_at <= (now or utcnow())


async def workspace_access(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID
) -> WorkspaceAccess:
    access = await resolve_workspace_access(session, principal, workspace_id)
    if Permission.designs_write not in access.permissions:
        raise MissingPermission(params={"permission": Permission.designs_write.value})
    return access


async def upload_for(
    session: AsyncSession, principal: Principal, upload_id: uuid.UUID, *, live: bool = True
) -> Upload:
    """The upload, if the caller may write in its workspace; another workspace's upload is a
    404 like a missing one. ``live``: an expired unfinished upload is 410."""
    upload = await repository.upload_by_id(session, upload_id)
    if upload is None:
        raise UploadNotFound()
    try:
        await workspace_access(session, principal, upload.workspace_id)
    except WorkspaceNotFound as exc:
        raise UploadNotFound() from exc
    if live and is_expired(upload):
        raise UploadExpired()
    return upload


async def create(
    session: AsyncSession,
    settings: Settings,
    blobs: BlobStore,
    principal: Principal,
    *,
    length: int,
    metadata: dict[str, str],
    chunk: Chunk | None,
    locks: PartLocks | None = None,
) -> Upload:
    try:
        workspace_id = uuid.UUID(metadata.get("workspace_id", ""))
    except ValueError as exc:
        raise InvalidUploadHeader(params={"header": "Upload-Metadata"}) from exc
    access = await workspace_access(session, principal, workspace_id)
    if length > settings.upload_max_bytes:
        raise UploadTooLarge(params={"limit": settings.upload_max_bytes})
    now = utcnow()
    used = await repository.workspace_bytes(session, access.workspace.id, now)
    if used + length > settings.upload_quota_bytes:
        raise UploadQuotaExceeded(params={"limit": settings.upload_quota_bytes})
    upload = Upload(
        id=uuid.uuid4(),
        workspace_id=access.workspace.id,
        created_by_id=principal.user.id,
        length=length,
        offset=0,
        filename=(metadata.get("filename") or metadata.get("name") or None),
        content_type=(metadata.get("filetype") or metadata.get("content_type") or None),
        upload_metadata=metadata,
        expires_at=now + timedelta(seconds=settings.upload_expiry_seconds),
    )
    if upload.filename is not None:
        upload.filename = upload.filename[:255]
    if upload.content_type is not None:
        upload.content_type = upload.content_type[:255]
    session.add(upload)
    await session.flush()
    if length == 0:
        await _finish(settings, blobs, upload)
    elif chunk is not None:
        await append(session, settings, blobs, upload, 0, chunk, locks)
    return upload


async def append(
    session: AsyncSession,
    settings: Settings,
    blobs: BlobStore,
    upload: Upload,
    offset: int,
    chunk: Chunk,
    locks: PartLocks | None = None,
) -> Upload:
    if offset != upload.offset:
        raise UploadOffsetMismatch(params={"given": offset, "expected": upload.offset})
    if chunk.declared_length is not None and offset + chunk.declared_length > upload.length:
        raise UploadTooLarge(params={"limit": upload.length})
    if upload.is_finished:
        return upload
    path = part_path(settings, upload.id)
    handle = await anyio.to_thread.run_sync(_open_locked, path)
    try:
        await anyio.to_thread.run_sync(_truncate, handle, offset)
        written = await _write(handle, chunk, upload.length - offset)
        if chunk.checksum is not None and written[1] != chunk.checksum:
            await anyio.to_thread.run_sync(_truncate, handle, offset)
            raise UploadChecksumMismatch()
        upload.offset = offset + written[0]
        upload.expires_at = utcnow() + timedelta(seconds=settings.upload_expiry_seconds)
        if upload.offset == upload.length:
            await _finish(settings, blobs, upload)
    except BaseException:
        await anyio.to_thread.run_sync(handle.close)
        raise
    if locks is not None:
        locks.hold(handle)
    else:
        await anyio.to_thread.run_sync(handle.close)
    return upload


async def _write(handle: _Part, chunk: Chunk, room: int) -> tuple[int, bytes]:
    """Append the chunk's bytes, in pieces of about a mebibyte (a request arrives in pieces of
    a few kilobytes: one thread hand-off each would cost more than the writing)."""
    digest = hashlib.sha256()
    written = 0
    pending: list[bytes] = []
    pending_size = 0
    async for data in chunk.stream:
        if not data:
            continue
        written += len(data)
        if written > room:
            await anyio.to_thread.run_sync(_truncate, handle, handle.start)
            raise UploadTooLarge(params={"limit": room + handle.start})
        pending.append(data)
        pending_size += len(data)
        if pending_size >= WRITE_BUFFER:
            await anyio.to_thread.run_sync(_write_and_hash, handle, digest, pending)
            pending, pending_size = [], 0
    if pending:
        await anyio.to_thread.run_sync(_write_and_hash, handle, digest, pending)
    await anyio.to_thread.run_sync(handle.sync)
    return written, digest.digest()


def _write_and_hash(handle: _Part, digest: hashlib._Hash, pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    handle.write(data)
    digest.update(data)


async def _finish(settings: Settings, blobs: BlobStore, upload: Upload) -> None:
    path = part_path(settings, upload.id)
    exists = await anyio.to_thread.run_sync(path.exists)
    if not exists:  # a 0-byte upload never wrote a part file
        stored = await blobs.put(iterate_bytes(b""), max_bytes=upload.length)
    elif isinstance(blobs, LocalBlobStore):
        stored = await blobs.adopt(path, max_bytes=upload.length)
    else:
        stored = await blobs.put(file_chunks(path), max_bytes=upload.length)
    upload.sha256 = stored.sha256
    upload.size = stored.size
    upload.offset = stored.size
    upload.finished_at = utcnow()
    await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))


async def terminate(
    session: AsyncSession, settings: Settings, upload: Upload, blobs: BlobStore | None = None
) -> None:
    """Termination: the row and the part file go. A finished upload's file goes too once this
    is committed (``blobs`` given), unless a version or another upload holds the same content
    (the blob store is content-addressed)."""
    await _remove_part(settings, upload.id)
    await session.delete(upload)
    if blobs is not None and upload.sha256 is not None:
        _delete_blob_if_unused(session, blobs, upload.sha256)


def _delete_blob_if_unused(session: AsyncSession, blobs: BlobStore, sha256: str) -> None:
    bind = session.bind

    async def delete() -> None:
        async with AsyncSession(bind) as check:
            await design_repository.delete_blob_if_unused(check, blobs, sha256)

    after_commit(session, delete)


async def _remove_part(settings: Settings, upload_id: uuid.UUID) -> None:
    path = part_path(settings, upload_id)
    await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))


async def cleanup_expired(
    session: AsyncSession, settings: Settings, now: datetime | None = None
) -> int:
    """Remove unfinished uploads past their expiry and their part files; returns how many.
    Run it periodically (the caller commits)."""
    removed = 0
    moment = now or utcnow()
    while True:
        batch = await repository.expired_uploads(session, moment, CLEANUP_BATCH)
        for upload in batch:
            await terminate(session, settings, upload)
        await session.flush()
        removed += len(batch)
        if len(batch) < CLEANUP_BATCH:
            return removed


# Part files --------------------------------------------------------------------------------


class _Part:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.start = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            done = os.write(self.fd, view)
            view = view[done:]

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)  # closing releases the lock


def _open_locked(path: Path) -> _Part:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise UploadBusy() from exc
    return _Part(fd)


def _truncate(part: _Part, offset: int) -> None:
    part.start = offset
    os.ftruncate(part.fd, offset)
    os.lseek(part.fd, offset, os.SEEK_SET)
