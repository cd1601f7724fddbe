"""Blob stores: the local directory and S3 (against a real S3 HTTP server, moto), same contract."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from tests.core.conftest import S3Server, create_bucket
from tezgah.core.config import Settings
from tezgah.core.storage import (
    FILE_CHUNK_SIZE,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    ChecksumMismatch,
    LocalBlobStore,
    StoredBlob,
    iterate_bytes,
)
from tezgah.core.storage_s3 import PART_SIZE, S3BlobStore
from tezgah.main import create_app

PROBLEM = "application/problem+json"
BIG_SIZE = 17 * 1024 * 1024  # two full S3 parts and a tail


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def generated(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


async def odd_chunks(data: bytes) -> AsyncIterator[bytes]:
    """Chunks of uneven sizes (including empty ones), as a network stream delivers them."""
    sizes = [1, 0, 7, 4096, 3, 65_537]
    offset, index = 0, 0
    while offset < len(data):
        size = sizes[index % len(sizes)]
        yield data[offset : offset + size]
        offset += size
        index += 1


async def read_all(store: BlobStore, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(sha256, start=start, end=end)])


# -- fixtures --------------------------------------------------------------------------------


class StoreHandle:
    """A store plus a way to list what it holds besides finished blobs (temporary data)."""

    def __init__(self, store: BlobStore, leftovers: Callable[[], Awaitable[list[str]]]) -> None:
        self.store = store
        self._leftovers = leftovers

    async def leftovers(self) -> list[str]:
        return sorted(await self._leftovers())


def _local_leftovers(root: Path) -> Callable[[], Awaitable[list[str]]]:
    async def leftovers() -> list[str]:
        tmp = root / "tmp"
        return [path.name for path in tmp.iterdir()] if tmp.exists() else []

    return leftovers


async def _s3_keys(s3_server: S3Server, bucket: str, prefix: str = "") -> list[str]:
    async with s3_server.client() as client:
        keys: list[str] = []
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        uploads = await client.list_multipart_uploads(Bucket=bucket)
        keys.extend(f"multipart:{upload['Key']}" for upload in uploads.get("Uploads", []))
        return keys


@pytest.fixture(params=["local", "s3"])
async def handle(
    request: pytest.FixtureRequest, tmp_path: Path, s3_server: S3Server
) -> AsyncIterator[StoreHandle]:
    if request.param == "local":
        root = tmp_path / "blobs"
        yield StoreHandle(LocalBlobStore(root), _local_leftovers(root))
        return
    bucket = await create_bucket(s3_server)
    store = S3BlobStore(
        bucket=bucket,
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    await store.open()

    async def leftovers() -> list[str]:
        return [
            key for key in await _s3_keys(s3_server, bucket) if not key.startswith(store.prefix)
        ]

    try:
        yield StoreHandle(store, leftovers)
    finally:
        await store.close()


@pytest.fixture
def store(handle: StoreHandle) -> BlobStore:
    return handle.store


# -- put -------------------------------------------------------------------------------------


async def test_put_returns_sha256_and_size(store: BlobStore) -> None:
    data = generated(300_000)
    stored = await store.put(odd_chunks(data))
    assert stored == StoredBlob(sha256=sha256_of(data), size=len(data))
    assert await store.size(stored.sha256) == len(data)
    assert await read_all(store, stored.sha256) == data


async def test_put_empty_blob(store: BlobStore) -> None:
    stored = await store.put(iterate_bytes(b""))
    assert stored == StoredBlob(sha256=sha256_of(b""), size=0)
    assert await store.size(stored.sha256) == 0
    assert await read_all(store, stored.sha256) == b""


async def test_same_content_is_stored_once(store: BlobStore, handle: StoreHandle) -> None:
    data = b"G21 G90\nG0 X0 Y0\n" * 1000
    first = await store.put(iterate_bytes(data, chunk_size=1000))
    second = await store.put(odd_chunks(data))
    assert first == second
    assert await read_all(store, first.sha256) == data
    assert await handle.leftovers() == []
    other = await store.put(iterate_bytes(data + b"M30\n"))
    assert other.sha256 != first.sha256
    assert await read_all(store, first.sha256) == data


async def test_same_content_stored_once_on_disk(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    data = b"solid cube\n" * 100
    first = await store.put(iterate_bytes(data))
    await store.put(iterate_bytes(data))
    files = [path for path in (tmp_path / "blobs").rglob("*") if path.is_file()]
    assert files == [store.path_for(first.sha256)]
    assert store.path_for(first.sha256).relative_to(tmp_path / "blobs").parts == (
        first.sha256[:2],
        first.sha256[2:4],
        first.sha256,
    )


async def test_same_content_stored_once_in_the_bucket(s3_server: S3Server, s3_bucket: str) -> None:
    store = S3BlobStore(
        bucket=s3_bucket,
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    await store.open()
    try:
        data = b"solid cube\n" * 100
        first = await store.put(iterate_bytes(data))
        await store.put(iterate_bytes(data))
        assert await _s3_keys(s3_server, s3_bucket) == [f"blobs/{first.sha256}"]
    finally:
        await store.close()


async def test_expected_sha256_matching_is_accepted(store: BlobStore) -> None:
    data = b"matching content"
    stored = await store.put(iterate_bytes(data), expected_sha256=sha256_of(data).upper())
    assert stored.sha256 == sha256_of(data)
    assert await read_all(store, stored.sha256) == data


async def test_checksum_mismatch_stores_nothing(store: BlobStore, handle: StoreHandle) -> None:
    data = generated(100_000)
    wrong = sha256_of(b"something else")
    with pytest.raises(ChecksumMismatch) as info:
        await store.put(odd_chunks(data), expected_sha256=wrong)
    assert info.value.status_code == 400
    assert info.value.error_code == "CHECKSUM_MISMATCH"
    assert await store.size(sha256_of(data)) is None
    assert await store.size(wrong) is None
    assert await handle.leftovers() == []


async def test_max_bytes_exceeded_stores_nothing(store: BlobStore, handle: StoreHandle) -> None:
    data = generated(10_001)
    with pytest.raises(BlobTooLarge) as info:
        await store.put(iterate_bytes(data, chunk_size=1000), max_bytes=10_000)
    assert info.value.status_code == 413
    assert info.value.error_code == "PAYLOAD_TOO_LARGE"
    assert info.value.params == {"limit": 10_000}
    assert await store.size(sha256_of(data)) is None
    assert await handle.leftovers() == []


async def test_max_bytes_exactly_reached_is_accepted(store: BlobStore) -> None:
    data = generated(10_000)
    stored = await store.put(iterate_bytes(data, chunk_size=999), max_bytes=10_000)
    assert stored.size == 10_000


async def test_failing_stream_stores_nothing(store: BlobStore, handle: StoreHandle) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 50_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put(broken())
    assert await handle.leftovers() == []


# -- read ------------------------------------------------------------------------------------


@pytest.fixture
async def stored_data(store: BlobStore) -> tuple[str, bytes]:
    data = generated(600_000, seed=11)
    stored = await store.put(iterate_bytes(data))
    return stored.sha256, data


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, None),
        (0, 0),
        (0, 99),
        (100, 199),
        (599_999, 599_999),
        (262_143, 262_145),  # across a local chunk boundary
        (1000, None),
        (0, 599_999),
        (500_000, 700_000),  # end beyond the blob: up to its last byte
    ],
)
async def test_read_ranges_are_inclusive(
    store: BlobStore, stored_data: tuple[str, bytes], start: int, end: int | None
) -> None:
    sha256, data = stored_data
    expected = data[start:] if end is None else data[start : end + 1]
    assert await read_all(store, sha256, start=start, end=end) == expected


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (600_000, None),  # starts at the end
        (600_000, 600_100),
        (700_000, None),  # starts past the end
        (100, 99),  # inverted: nothing, never the whole blob
        (5, 0),
    ],
)
async def test_unsatisfiable_ranges_read_nothing(
    store: BlobStore, stored_data: tuple[str, bytes], start: int, end: int | None
) -> None:
    sha256, _data = stored_data
    assert await read_all(store, sha256, start=start, end=end) == b""


async def test_ranges_of_an_empty_blob_read_nothing(store: BlobStore) -> None:
    stored = await store.put(iterate_bytes(b""))
    assert await read_all(store, stored.sha256, start=0, end=0) == b""
    assert await read_all(store, stored.sha256, start=3) == b""


async def test_unsatisfiable_range_of_a_missing_blob_is_not_found(store: BlobStore) -> None:
    missing = sha256_of(b"not stored either")
    for start, end in ((5, 1), (10**9, None)):
        with pytest.raises(BlobNotFound):
            await read_all(store, missing, start=start, end=end)


async def test_read_streams_in_bounded_chunks(store: BlobStore) -> None:
    data = generated(2 * FILE_CHUNK_SIZE + 300_000, seed=11)  # more than two local read chunks
    sha256 = (await store.put(iterate_bytes(data))).sha256
    chunks = [chunk async for chunk in store.read(sha256)]
    assert len(chunks) >= 2
    assert max(len(chunk) for chunk in chunks) <= FILE_CHUNK_SIZE
    assert b"".join(chunks) == data


async def test_missing_blob(store: BlobStore) -> None:
    missing = sha256_of(b"never stored")
    assert await store.size(missing) is None
    with pytest.raises(BlobNotFound) as info:
        await read_all(store, missing)
    assert info.value.status_code == 404
    assert info.value.error_code == "BLOB_NOT_FOUND"
    with pytest.raises(BlobNotFound):
        await read_all(store, missing, start=10, end=20)
    await store.delete(missing)  # deleting what is not there is fine


# -- delete ----------------------------------------------------------------------------------


async def test_delete(store: BlobStore) -> None:
    keep = await store.put(iterate_bytes(b"keep me"))
    drop = await store.put(iterate_bytes(b"drop me"))
    await store.delete(drop.sha256)
    assert await store.size(drop.sha256) is None
    with pytest.raises(BlobNotFound):
        await read_all(store, drop.sha256)
    assert await read_all(store, keep.sha256) == b"keep me"
    # Stored again after deletion: back.
    again = await store.put(iterate_bytes(b"drop me"))
    assert again == drop
    assert await read_all(store, drop.sha256) == b"drop me"


# -- invalid names ---------------------------------------------------------------------------


INVALID_SHAS = [
    "../../etc/passwd",
    "../" + "a" * 61,
    "a" * 63,
    "a" * 65,
    "A" * 64,  # names are lower-case hex only
    "g" * 64,
    "a" * 62 + "/x",
    "",
    "a" * 64 + "\n",
]


@pytest.mark.parametrize("sha256", INVALID_SHAS)
async def test_invalid_sha256_is_not_found(store: BlobStore, sha256: str) -> None:
    with pytest.raises(BlobNotFound):
        await read_all(store, sha256)
    with pytest.raises(BlobNotFound):
        await store.size(sha256)
    with pytest.raises(BlobNotFound):
        await store.delete(sha256)


async def test_path_traversal_never_reaches_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    store = LocalBlobStore(root)
    for name in ("../secret.txt", "../../secret.txt", str(secret)):
        with pytest.raises(BlobNotFound):
            await read_all(store, name)
        with pytest.raises(BlobNotFound):
            await store.delete(name)
    assert secret.read_text() == "do not read"


# -- check_writable --------------------------------------------------------------------------


async def test_check_writable(store: BlobStore, handle: StoreHandle) -> None:
    await store.check_writable()
    assert await handle.leftovers() == []


async def test_local_check_writable_fails_when_root_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    root.write_text("not a directory")
    with pytest.raises((FileExistsError, NotADirectoryError)):
        await LocalBlobStore(root).check_writable()


async def test_s3_check_writable_fails_without_bucket(s3_server: S3Server) -> None:
    from botocore.exceptions import ClientError

    store = S3BlobStore(
        bucket="tezgah-test-no-such-bucket",
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    await store.open()
    try:
        with pytest.raises(ClientError):
            await store.check_writable()
    finally:
        await store.close()


async def test_s3_store_must_be_opened() -> None:
    store = S3BlobStore(
        bucket="b",
        endpoint_url=None,
        region="us-east-1",
        access_key_id=None,
        secret_access_key=None,
    )
    with pytest.raises(RuntimeError, match="open"):
        await store.size("a" * 64)


# -- large blobs (S3 multipart) --------------------------------------------------------------


@pytest.fixture(scope="module")
def big_data() -> bytes:
    return generated(BIG_SIZE, seed=3)


async def test_large_blob_round_trip(
    store: BlobStore, handle: StoreHandle, big_data: bytes
) -> None:
    assert len(big_data) > 2 * PART_SIZE
    stored = await store.put(iterate_bytes(big_data, chunk_size=1024 * 1024 + 3))
    assert stored == StoredBlob(sha256=sha256_of(big_data), size=len(big_data))
    assert await store.size(stored.sha256) == len(big_data)
    assert await read_all(store, stored.sha256) == big_data
    # A range across the first part boundary.
    start, end = PART_SIZE - 10, PART_SIZE + 10
    assert await read_all(store, stored.sha256, start=start, end=end) == big_data[start : end + 1]
    assert await handle.leftovers() == []


async def test_large_blob_goes_through_multipart(
    s3_server: S3Server, s3_bucket: str, big_data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tezgah.core import storage_s3

    part_sizes: list[int] = []
    original = storage_s3._MultipartUpload.send_part

    async def counting_send_part(self: storage_s3._MultipartUpload, data: bytes) -> None:
        part_sizes.append(len(data))
        await original(self, data)

    monkeypatch.setattr(storage_s3._MultipartUpload, "send_part", counting_send_part)
    store = S3BlobStore(
        bucket=s3_bucket,
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    await store.open()
    try:
        stored = await store.put(iterate_bytes(big_data))
        assert part_sizes == [PART_SIZE, PART_SIZE, BIG_SIZE - 2 * PART_SIZE]
        assert await read_all(store, stored.sha256) == big_data
        assert await _s3_keys(s3_server, s3_bucket) == [f"blobs/{stored.sha256}"]
    finally:
        await store.close()


async def test_large_blob_too_large_aborts_the_multipart_upload(
    store: BlobStore, handle: StoreHandle, big_data: bytes
) -> None:
    with pytest.raises(BlobTooLarge):
        await store.put(iterate_bytes(big_data), max_bytes=PART_SIZE + PART_SIZE // 2)
    assert await store.size(sha256_of(big_data)) is None
    assert await handle.leftovers() == []


async def test_large_blob_checksum_mismatch_stores_nothing(
    store: BlobStore, handle: StoreHandle, big_data: bytes
) -> None:
    with pytest.raises(ChecksumMismatch):
        await store.put(iterate_bytes(big_data), expected_sha256="0" * 64)
    assert await store.size(sha256_of(big_data)) is None
    assert await handle.leftovers() == []


# -- the application with S3 settings --------------------------------------------------------


@pytest.fixture
def s3_settings_factory(
    settings_factory: Callable[..., Settings], s3_server: S3Server
) -> Callable[[str], Settings]:
    def build(bucket: str) -> Settings:
        return settings_factory(
            s3_bucket=bucket,
            s3_endpoint_url=s3_server.endpoint_url,
            s3_region=s3_server.region,
            s3_access_key_id=s3_server.access_key_id,
            s3_secret_access_key=s3_server.secret_access_key,
        )

    return build


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 51000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


@pytest.fixture
def s3_app_settings(s3_settings_factory: Callable[[str], Settings], s3_bucket: str) -> Settings:
    return s3_settings_factory(s3_bucket)


@pytest.fixture
def missing_bucket_settings(s3_settings_factory: Callable[[str], Settings]) -> Settings:
    return s3_settings_factory("tezgah-test-missing-bucket")


async def test_app_with_s3_settings_is_ready_and_reports_s3(
    s3_app_settings: Settings, s3_server: S3Server, backend: str
) -> None:
    async with app_client(s3_app_settings) as (application, client):
        ready = await client.get("/ready")
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert checks["storage"]["status"] == "ok"
        assert checks["database"]["status"] == "ok"
        meta = await client.get("/api/v1/meta")
        assert meta.status_code == 200
        backends = meta.json()["backends"]
        assert backends["blobs"] == "s3"
        assert backends["cache"] == ("redis" if backend == "postgres" else "memory")

        # The app's store really writes to the configured bucket.
        blobs = application.state.resources.blobs
        assert isinstance(blobs, S3BlobStore)
        stored = await blobs.put(iterate_bytes(b"through the app"))
        keys = await _s3_keys(s3_server, s3_app_settings.s3_bucket)
        assert f"blobs/{stored.sha256}" in keys
        assert not [key for key in keys if key.startswith("tmp/")]


async def test_app_not_ready_when_bucket_is_missing(missing_bucket_settings: Settings) -> None:
    async with app_client(missing_bucket_settings) as (_application, client):
        ready = await client.get("/ready", headers={"Accept-Language": "en"})
        assert ready.status_code == 503
        assert ready.headers["content-type"].startswith(PROBLEM)
        assert ready.headers["Retry-After"] == "5"
        body = ready.json()
        assert body["error_code"] == "DEPENDENCY_UNAVAILABLE"
        assert body["status"] == 503
        assert "storage" in body["detail"]
        assert body["checks"]["storage"]["status"] == "failed"
        assert body["checks"]["storage"]["error"] in {"NoSuchBucket", "ClientError"}
        assert body["checks"]["database"]["status"] == "ok"
        meta = await client.get("/api/v1/meta")
        assert meta.json()["backends"]["blobs"] == "s3"


async def test_adopt_moves_a_local_file_in_and_dedupes(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    data = generated(FILE_CHUNK_SIZE + 10, seed=5)
    first, second = tmp_path / "a.part", tmp_path / "b.part"
    first.write_bytes(data)
    second.write_bytes(data)
    stored = await store.adopt(first)
    assert stored == StoredBlob(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    assert not first.exists()  # moved, not copied
    assert store.path_for(stored.sha256).read_bytes() == data
    assert await store.adopt(second) == stored  # same content: stored once
    assert not second.exists()
    third = tmp_path / "c.part"
    third.write_bytes(data + b"x")
    with pytest.raises(BlobTooLarge):
        await store.adopt(third, max_bytes=len(data))
    assert third.exists()  # refused: left for its owner
