"""The tus 1.0 protocol against a real ``tezgah serve``, driven by the real ``tuspy`` client
where a client would do it, and by raw HTTP for what a well-behaved client never sends.

0-byte uploads are allowed: the POST creates an upload that is finished at once (the blob of
the empty content is stored), with ``Upload-Offset: 0``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tusclient.client import TusClient

from tests.uploads.conftest import (
    MAX_BYTES,
    QUOTA_BYTES,
    TUS,
    Person,
    Server,
    Sha256Uploader,
    b64,
    checksum_header,
    sign_up,
    start_server,
)

CHUNK = 256 * 1024
OFFSET = "application/offset+octet-stream"


def uploader(server: Server, person: Person, data: bytes, **kwargs: object) -> Sha256Uploader:
    client = TusClient(server.uploads_url, headers=person.headers)
    return Sha256Uploader(
        file_stream=io.BytesIO(data),
        client=client,
        chunk_size=CHUNK,
        metadata=person.metadata,
        upload_checksum=True,
        **kwargs,  # type: ignore[arg-type]
    )


def info(server: Server, person: Person, url: str) -> httpx.Response:
    return httpx.get(url, headers=person.headers)


def create(server: Server, person: Person, length: int, content: bytes = b"", **extra: str) -> str:
    response = httpx.post(
        server.uploads_url,
        headers=person.tus(
            **{
                "Upload-Length": str(length),
                "Upload-Metadata": f"workspace_id {b64(person.workspace_id)}",
                **extra,
            }
        ),
        content=content,
    )
    assert response.status_code == 201, response.text
    return server.url + response.headers["Location"]


def head(person: Person, url: str) -> httpx.Response:
    return httpx.head(url, headers=person.tus())


def patch(person: Person, url: str, offset: int, data: bytes, **extra: str) -> httpx.Response:
    headers = person.tus(**{"Upload-Offset": str(offset), "Content-Type": OFFSET, **extra})
    return httpx.patch(url, headers=headers, content=data)


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if response.request.method != "HEAD":  # a HEAD answer has headers only
        assert response.json()["error_code"] == code


def test_options_advertises_the_protocol(server: Server) -> None:
    response = httpx.options(server.uploads_url)
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    extensions = set(response.headers["Tus-Extension"].split(","))
    assert {"creation", "creation-with-upload", "termination", "checksum", "expiration"} <= (
        extensions
    )
    assert response.headers["Tus-Checksum-Algorithm"] == "sha256"
    assert response.headers["Tus-Max-Size"] == str(MAX_BYTES)


def test_full_upload_stores_the_file_with_its_sha256(server: Server, person: Person) -> None:
    data = os.urandom(CHUNK * 4 + 12345)
    tus = uploader(server, person, data)
    tus.upload()
    assert tus.url is not None
    got = info(server, person, tus.url)
    assert got.status_code == 200
    body = got.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["size"] == body["length"] == body["offset"] == len(data)
    assert body["finished_at"] is not None
    assert body["filename"] == "part.FCStd"
    sha = body["sha256"]
    blob = server.var_dir / "blobs" / sha[:2] / sha[2:4] / sha
    assert blob.read_bytes() == data
    assert not server.part_file(tus.url).exists()
    done = head(person, tus.url)
    assert done.headers["Upload-Offset"] == str(len(data))
    assert done.headers["Cache-Control"] == "no-store"


def test_interrupted_upload_resumes_after_a_server_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path / "var")
    try:
        person = sign_up(server.url)
        data = os.urandom(CHUNK * 3 + 777)
        first = uploader(server, person, data)
        first.upload(stop_at=CHUNK * 2)  # the client stops (or dies) after two chunks
        assert first.url is not None
        url_path = first.url.removeprefix(server.url)
        server.stop()
        server.start()  # a new port: same database, same part file
        url = server.url + url_path
        response = head(person, url)
        assert response.status_code == 200
        assert response.headers["Upload-Offset"] == str(CHUNK * 2)
        assert response.headers["Upload-Length"] == str(len(data))
        assert response.headers["Cache-Control"] == "no-store"
        assert "Upload-Expires" in response.headers
        resumed = uploader(server, person, data, url=url)
        assert resumed.offset == CHUNK * 2
        resumed.upload()
        body = info(server, person, url).json()
        assert body["sha256"] == hashlib.sha256(data).hexdigest()
        assert body["size"] == len(data)
    finally:
        server.stop()


def test_upload_survives_the_server_being_killed_mid_patch(tmp_path: Path) -> None:
    """SIGKILL while a PATCH is streaming in: nothing of that PATCH was committed, so the
    offset stays where the last finished PATCH left it; the bytes that reached the part file
    are cut off on resume, and the finished file's SHA-256 is the original's."""
    server = start_server(tmp_path / "var")
    try:
        person = sign_up(server.url)
        data = os.urandom(CHUNK * 7 + 321)
        first = uploader(server, person, data)
        first.upload(stop_at=CHUNK)
        # More than the server buffers before writing (1 MiB), so some of it reaches the disk.
        sent_before_the_crash = CHUNK + 5 * CHUNK
        assert first.url is not None
        url_path = first.url.removeprefix(server.url)
        part = server.var_dir / "uploads" / f"{uuid.UUID(url_path.rsplit('/', 1)[1]).hex}.part"
        body_sent = threading.Event()

        def slow_rest() -> Iterator[bytes]:
            yield data[CHUNK:sent_before_the_crash]  # reaches the part file ...
            body_sent.set()
            time.sleep(30)  # ... and the rest never comes: the server dies first
            yield data[sent_before_the_crash:]

        def send() -> None:
            headers = person.tus(**{"Upload-Offset": str(CHUNK), "Content-Type": OFFSET})
            with contextlib.suppress(httpx.HTTPError):
                httpx.patch(server.url + url_path, headers=headers, content=slow_rest(), timeout=60)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        assert body_sent.wait(10)
        deadline = time.monotonic() + 10
        while part.stat().st_size <= CHUNK and time.monotonic() < deadline:
            time.sleep(0.02)
        assert part.stat().st_size > CHUNK  # uncommitted bytes are on disk
        assert server.process is not None
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        server.process = None
        server.start()
        url = server.url + url_path
        assert head(person, url).headers["Upload-Offset"] == str(CHUNK)
        resumed = uploader(server, person, data, url=url)
        assert resumed.offset == CHUNK
        resumed.upload()
        body = info(server, person, url).json()
        assert body["sha256"] == hashlib.sha256(data).hexdigest()
        assert body["size"] == len(data)
    finally:
        server.stop()


def test_wrong_offset_is_409(server: Server, person: Person) -> None:
    url = create(server, person, 100)
    assert_problem(patch(person, url, 10, b"x" * 10), 409, "UPLOAD_OFFSET_MISMATCH")
    assert patch(person, url, 0, b"x" * 10).status_code == 204
    assert_problem(patch(person, url, 0, b"x" * 10), 409, "UPLOAD_OFFSET_MISMATCH")
    assert head(person, url).headers["Upload-Offset"] == "10"


def test_wrong_checksum_is_460_and_the_chunk_is_discarded(server: Server, person: Person) -> None:
    url = create(server, person, 100)
    assert patch(person, url, 0, b"a" * 40, **{"Upload-Checksum": checksum_header(b"a" * 40)})
    refused = patch(person, url, 40, b"b" * 30, **{"Upload-Checksum": checksum_header(b"c" * 30)})
    assert_problem(refused, 460, "UPLOAD_CHECKSUM_MISMATCH")
    assert head(person, url).headers["Upload-Offset"] == "40"
    assert server.part_file(url).stat().st_size == 40
    unknown = patch(person, url, 40, b"b" * 30, **{"Upload-Checksum": "md5 AAAA"})
    assert_problem(unknown, 400, "UNSUPPORTED_CHECKSUM")


def test_termination_removes_the_upload_and_its_part(server: Server, person: Person) -> None:
    url = create(server, person, 100)
    assert patch(person, url, 0, b"z" * 50).status_code == 204
    assert server.part_file(url).stat().st_size == 50
    deleted = httpx.delete(url, headers=person.tus())
    assert deleted.status_code == 204
    assert not server.part_file(url).exists()
    assert_problem(head(person, url), 404, "UPLOAD_NOT_FOUND")
    assert_problem(patch(person, url, 50, b"z"), 404, "UPLOAD_NOT_FOUND")


def test_an_expired_upload_is_refused(server: Server, person: Person) -> None:
    url = create(server, person, 100)
    assert "Upload-Expires" in head(person, url).headers
    upload_id = uuid.UUID(url.rsplit("/", 1)[1])
    with sqlite3.connect(server.database) as connection:
        connection.execute(
            "UPDATE uploads SET expires_at = '2000-01-01 00:00:00.000000' WHERE id = ?",
            (upload_id.hex,),
        )
    assert_problem(head(person, url), 410, "UPLOAD_EXPIRED")
    assert_problem(patch(person, url, 0, b"late"), 410, "UPLOAD_EXPIRED")


def test_max_size_and_quota_are_413(server: Server, person: Person) -> None:
    too_big = httpx.post(
        server.uploads_url,
        headers=person.tus(
            **{
                "Upload-Length": str(MAX_BYTES + 1),
                "Upload-Metadata": f"workspace_id {b64(person.workspace_id)}",
            }
        ),
    )
    assert_problem(too_big, 413, "UPLOAD_TOO_LARGE")
    half = QUOTA_BYTES // 2
    create(server, person, half)
    create(server, person, QUOTA_BYTES - half)  # exactly the quota: allowed
    over = httpx.post(
        server.uploads_url,
        headers=person.tus(
            **{"Upload-Length": "1", "Upload-Metadata": f"workspace_id {b64(person.workspace_id)}"}
        ),
    )
    assert_problem(over, 413, "UPLOAD_QUOTA_EXCEEDED")


def test_more_bytes_than_the_upload_length_is_413(server: Server, person: Person) -> None:
    url = create(server, person, 10)
    assert_problem(patch(person, url, 0, b"x" * 11), 413, "UPLOAD_TOO_LARGE")
    assert head(person, url).headers["Upload-Offset"] == "0"


def test_another_workspace_cannot_see_or_touch_the_upload(
    server: Server, person: Person, other_person: Person
) -> None:
    url = create(server, person, 100)
    assert_problem(head(other_person, url), 404, "UPLOAD_NOT_FOUND")
    assert_problem(patch(other_person, url, 0, b"x"), 404, "UPLOAD_NOT_FOUND")
    assert_problem(httpx.get(url, headers=other_person.headers), 404, "UPLOAD_NOT_FOUND")
    deleted = httpx.delete(url, headers=other_person.tus())
    assert_problem(deleted, 404, "UPLOAD_NOT_FOUND")
    # ...nor create one in a workspace they do not belong to.
    foreign = httpx.post(
        server.uploads_url,
        headers=other_person.tus(
            **{"Upload-Length": "1", "Upload-Metadata": f"workspace_id {b64(person.workspace_id)}"}
        ),
    )
    assert foreign.status_code == 404
    assert head(person, url).status_code == 200


def test_a_zero_byte_upload_is_finished_at_creation(server: Server, person: Person) -> None:
    tus = uploader(server, person, b"")
    tus.upload()
    assert tus.url is not None
    body = info(server, person, tus.url).json()
    assert body["sha256"] == hashlib.sha256(b"").hexdigest()
    assert body["size"] == 0
    assert body["finished_at"] is not None
    assert head(person, tus.url).headers["Upload-Offset"] == "0"


def test_creation_with_upload(server: Server, person: Person) -> None:
    data = b"first bytes"
    url = create(
        server,
        person,
        len(data) + 5,
        data,
        **{"Content-Type": OFFSET, "Upload-Checksum": checksum_header(data)},
    )
    assert head(person, url).headers["Upload-Offset"] == str(len(data))
    assert patch(person, url, len(data), b"12345").status_code == 204
    assert httpx.get(url, headers=person.headers).json()["sha256"] == (
        hashlib.sha256(data + b"12345").hexdigest()
    )


def test_protocol_errors(server: Server, person: Person) -> None:
    url = create(server, person, 10)
    wrong_type = httpx.patch(
        url,
        headers=person.tus(**{"Upload-Offset": "0", "Content-Type": "application/json"}),
        content=b"{}",
    )
    assert_problem(wrong_type, 415, "UNSUPPORTED_MEDIA_TYPE")
    no_version = httpx.head(url, headers=person.headers)
    assert no_version.status_code == 412
    assert no_version.headers["Tus-Version"] == "1.0.0"
    no_workspace = httpx.post(server.uploads_url, headers=person.tus(**{"Upload-Length": "5"}))
    assert_problem(no_workspace, 400, "INVALID_UPLOAD_HEADER")
    no_length = httpx.post(
        server.uploads_url,
        headers=person.tus(**{"Upload-Metadata": f"workspace_id {b64(person.workspace_id)}"}),
    )
    assert_problem(no_length, 400, "INVALID_UPLOAD_HEADER")
    anonymous = httpx.head(url, headers=TUS)
    assert anonymous.status_code == 401


@pytest.mark.parametrize("language", ["tr"])
def test_errors_are_translated(server: Server, person: Person, language: str) -> None:
    url = create(server, person, 10)
    response = httpx.patch(
        url,
        headers=person.tus(
            **{"Upload-Offset": "3", "Content-Type": OFFSET, "Accept-Language": language}
        ),
        content=b"x",
    )
    assert response.status_code == 409
    assert "yüklemenin konumu" in response.json()["detail"]
