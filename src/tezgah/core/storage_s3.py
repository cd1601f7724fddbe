"""S3-compatible blob store (AWS S3, MinIO, Garage, Ceph RGW) through aiobotocore.

A blob's name is its SHA-256, known only after the whole stream has passed, so ``put`` uploads to
a temporary key (multipart, fixed-size parts: memory stays flat), then copies to ``blobs/<sha>``
unless that already exists, and removes the temporary key.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import anyio.to_thread
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError

from tezgah.core.storage import (
    BlobNotFound,
    BlobTooLarge,
    ChecksumMismatch,
    StoredBlob,
    validate_sha256,
)

PART_SIZE = 8 * 1024 * 1024  # S3 needs >= 5 MiB for every part but the last
MAX_SINGLE_COPY = 5 * 1024**3
COPY_PART_SIZE = 1024**3
READ_CHUNK = 256 * 1024


class S3BlobStore:
    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        prefix: str = "blobs/",
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._client_kwargs: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url or None,
            "aws_access_key_id": access_key_id or None,
            "aws_secret_access_key": secret_access_key or None,
            "config": Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5),
        }
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        session = get_session()
        self._client = await self._stack.enter_async_context(
            session.create_client("s3", **self._client_kwargs)
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3BlobStore.open() was not awaited")
        return self._client

    def key_for(self, sha256: str) -> str:
        return f"{self.prefix}{validate_sha256(sha256)}"

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredBlob:
        temp_key = f"tmp/{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        upload = _MultipartUpload(self.client, self.bucket, temp_key)
        size = 0
        buffer = bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(params={"limit": max_bytes})
                await anyio.to_thread.run_sync(digest.update, chunk)
                buffer.extend(chunk)
                while len(buffer) >= PART_SIZE:
                    await upload.send_part(bytes(buffer[:PART_SIZE]))
                    del buffer[:PART_SIZE]
            await upload.finish(bytes(buffer))
        except BaseException:
            await upload.abort()
            raise
        sha256 = digest.hexdigest()
        try:
            if expected_sha256 is not None and expected_sha256.lower() != sha256:
                raise ChecksumMismatch()
            if await self.size(sha256) is None:
                await self._copy(temp_key, self.key_for(sha256), size)
        finally:
            await self.client.delete_object(Bucket=self.bucket, Key=temp_key)
        return StoredBlob(sha256=sha256, size=size)

    async def _copy(self, source_key: str, target_key: str, size: int) -> None:
        source = {"Bucket": self.bucket, "Key": source_key}
        if size <= MAX_SINGLE_COPY:
            await self.client.copy_object(Bucket=self.bucket, Key=target_key, CopySource=source)
            return
        created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=target_key)
        upload_id = created["UploadId"]
        parts = []
        for number, first in enumerate(range(0, size, COPY_PART_SIZE), start=1):
            last = min(first + COPY_PART_SIZE, size) - 1
            result = await self.client.upload_part_copy(
                Bucket=self.bucket,
                Key=target_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=source,
                CopySourceRange=f"bytes={first}-{last}",
            )
            parts.append({"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]})
        await self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=target_key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )

    async def read(
        self, sha256: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key_for(sha256)}
        # S3 ignores an inverted range and sends the whole object: ask for one byte only, to
        # learn whether the blob exists, and send nothing (as the local store does).
        inverted = end is not None and end < start
        if inverted:
            arguments["Range"] = "bytes=0-0"
        elif start or end is not None:
            arguments["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            response = await self.client.get_object(**arguments)
        except ClientError as exc:
            if _is_missing(exc):
                raise BlobNotFound() from exc
            if _error_code(exc) == "InvalidRange":
                return  # the range starts at or past the end: nothing, as the local store does
            raise
        async with response["Body"] as body:
            if inverted:
                return
            async for chunk in body.iter_chunks(READ_CHUNK):
                yield chunk

    async def size(self, sha256: str) -> int | None:
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    async def delete(self, sha256: str) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))

    async def check_writable(self) -> None:
        key = f"tmp/ready-{uuid.uuid4().hex}"
        await self.client.put_object(Bucket=self.bucket, Key=key, Body=b"ok")
        await self.client.delete_object(Bucket=self.bucket, Key=key)


class _MultipartUpload:
    """Sends parts as they fill; a blob smaller than one part becomes a single PUT."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    async def send_part(self, data: bytes) -> None:
        if self.upload_id is None:
            created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        result = await self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data
        )
        self.parts.append({"PartNumber": number, "ETag": result["ETag"]})

    async def finish(self, tail: bytes) -> None:
        if self.upload_id is None:
            await self.client.put_object(Bucket=self.bucket, Key=self.key, Body=tail)
            return
        if tail:
            await self.send_part(tail)
        await self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    async def abort(self) -> None:
        if self.upload_id is not None:
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_missing(exc: ClientError) -> bool:
    return _error_code(exc) in {"404", "NoSuchKey", "NotFound"}
