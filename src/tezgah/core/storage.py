"""Blob storage, content-addressed by SHA-256: a local directory or an S3-compatible store.

Blobs are written from a stream and read as a stream (optionally a byte range), so a file of any
size passes through in fixed-size chunks. The same content is stored once. Hashing and disk I/O
run in worker threads, never on the event loop.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import anyio
import anyio.to_thread

from tezgah.core.errors import AppError, PayloadTooLarge
from tezgah.core.i18n import N_

CHUNK_SIZE = 256 * 1024
# Local files are read and hashed in larger pieces: fewer thread hand-offs per gigabyte.
FILE_CHUNK_SIZE = 1024 * 1024
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


class BlobNotFound(AppError):
    status_code = 404
    error_code = "BLOB_NOT_FOUND"
    message = N_("The stored file was not found.")


class ChecksumMismatch(AppError):
    status_code = 400
    error_code = "CHECKSUM_MISMATCH"
    message = N_("The uploaded data does not match the expected SHA-256 checksum.")


class BlobTooLarge(PayloadTooLarge):
    pass


def validate_sha256(sha256: str) -> str:
    if not SHA256_PATTERN.fullmatch(sha256):
        raise BlobNotFound()
    return sha256


class BlobStore(Protocol):
    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredBlob: ...

    def read(
        self, sha256: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]: ...

    async def size(self, sha256: str) -> int | None: ...

    async def delete(self, sha256: str) -> None: ...

    async def check_writable(self) -> None: ...


class LocalBlobStore:
    """Blobs at ``<root>/<aa>/<bb>/<sha256>``; written to a temp file, then renamed atomically,
    so a crash never leaves a partial blob under its final name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def path_for(self, sha256: str) -> Path:
        validate_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredBlob:
        await anyio.to_thread.run_sync(lambda: self.tmp.mkdir(parents=True, exist_ok=True))
        temp_path = self.tmp / f"{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        size = 0
        handle: IO[bytes] = await anyio.to_thread.run_sync(temp_path.open, "wb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(params={"limit": max_bytes})
                await anyio.to_thread.run_sync(_write_and_hash, handle, digest, chunk)
            await anyio.to_thread.run_sync(_flush_and_sync, handle)
        except BaseException:
            await anyio.to_thread.run_sync(_close_and_remove, handle, temp_path)
            raise
        await anyio.to_thread.run_sync(handle.close)
        sha256 = digest.hexdigest()
        if expected_sha256 is not None and expected_sha256.lower() != sha256:
            await anyio.to_thread.run_sync(_close_and_remove, handle, temp_path)
            raise ChecksumMismatch()
        await anyio.to_thread.run_sync(self._move_into_place, temp_path, sha256)
        return StoredBlob(sha256=sha256, size=size)

    async def adopt(self, path: Path, *, max_bytes: int | None = None) -> StoredBlob:
        """Store a finished local file by moving it into place (hashing it on the way), not
        by copying it: a large upload's last step costs one read instead of a read and a
        write. Falls back to a copy when ``path`` is on another filesystem."""
        sha256, size = await anyio.to_thread.run_sync(_hash_file, path)
        if max_bytes is not None and size > max_bytes:
            raise BlobTooLarge(params={"limit": max_bytes})
        try:
            await anyio.to_thread.run_sync(self._move_into_place, path, sha256)
        except OSError:
            return await self.put(file_chunks(path), max_bytes=max_bytes)
        return StoredBlob(sha256=sha256, size=size)

    def _move_into_place(self, temp_path: Path, sha256: str) -> None:
        final = self.path_for(sha256)
        if final.exists():
            temp_path.unlink(missing_ok=True)  # same content already stored
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, final)

    async def read(
        self, sha256: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` inclusive (HTTP Range semantics), in chunks."""
        path = self.path_for(sha256)
        try:
            handle: IO[bytes] = await anyio.to_thread.run_sync(path.open, "rb")
        except FileNotFoundError as exc:
            raise BlobNotFound() from exc
        try:
            await anyio.to_thread.run_sync(handle.seek, start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                want = FILE_CHUNK_SIZE if remaining is None else min(FILE_CHUNK_SIZE, remaining)
                chunk = await anyio.to_thread.run_sync(handle.read, want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await anyio.to_thread.run_sync(handle.close)

    async def size(self, sha256: str) -> int | None:
        path = self.path_for(sha256)
        try:
            stat = await anyio.to_thread.run_sync(path.stat)
        except FileNotFoundError:
            return None
        return stat.st_size

    async def delete(self, sha256: str) -> None:
        path = self.path_for(sha256)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

    async def check_writable(self) -> None:
        def probe() -> None:
            self.tmp.mkdir(parents=True, exist_ok=True)
            probe_path = self.tmp / f"ready-{uuid.uuid4().hex}"
            probe_path.write_bytes(b"ok")
            probe_path.unlink()

        await anyio.to_thread.run_sync(probe)


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(FILE_CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def handle_chunks(handle: IO[bytes]) -> AsyncIterator[bytes]:
    """An open file's remaining bytes, read in worker threads (feed them to ``put``)."""
    while chunk := await anyio.to_thread.run_sync(handle.read, FILE_CHUNK_SIZE):
        yield chunk


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle: IO[bytes] = await anyio.to_thread.run_sync(path.open, "rb")
    try:
        async for chunk in handle_chunks(handle):
            yield chunk
    finally:
        await anyio.to_thread.run_sync(handle.close)


def _write_and_hash(handle: IO[bytes], digest: hashlib._Hash, chunk: bytes) -> None:
    handle.write(chunk)
    digest.update(chunk)


def _flush_and_sync(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _close_and_remove(handle: IO[bytes], path: Path) -> None:
    handle.close()
    path.unlink(missing_ok=True)


async def iterate_bytes(data: bytes, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    """Feed in-memory bytes to ``BlobStore.put`` (tests, small generated files)."""
    for offset in range(0, len(data), chunk_size):
        yield data[offset : offset + chunk_size]
