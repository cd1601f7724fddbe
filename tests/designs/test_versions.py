"""Versions of a design through the API: multipart and tus, format from content, deduplicated
blobs, FCStd inspection, thumbnails, comparison, quotas and limits, hostile FCStd files (refused
with nothing stored or changed), downloads (Range, ETag, Content-Disposition) and signed links.

The blob store is looked at on disk (content-addressed files under the storage directory): what
a refused file leaves behind is counted, not assumed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import random
import re
import stat
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.auth.conftest import (  # noqa: F401 - start_app is a fixture used here
    FAST_AUTH_SETTINGS,
    Account,
    StartApp,
    db_scalars,
    register,
    start_app,
)
from tests.auth.test_workspaces import create_team
from tests.designs.conftest import STEP_FILE, STL_TRIANGLE, add_file, create_design
from tests.freecad.test_fcstd import (
    BILLION_LAUGHS,
    design_with,
    document_xml,
    fcstd_xml,
    make_png,
    make_zip,
    patch_central,
)
from tezgah.core.config import Settings
from tezgah.core.signing import SignedTokens
from tezgah.designs.models import DesignVersion
from tezgah.freecad.fcstd import inspect_fcstd
from tezgah.uploads.models import Upload

API = "/api/v1"
TUS = {"Tus-Resumable": "1.0.0"}
MiB = 1024 * 1024
TURKISH_NAME = "Çerçeve ığdır.FCStd"
DISPOSITION = re.compile(r'^attachment; filename="([^"]*)"; filename\*=UTF-8\'\'(\S+)$')


# Helpers -------------------------------------------------------------------------------------


async def new_design(
    client: httpx.AsyncClient, account: Account, name: str = "Sürüm", **fields: Any
) -> dict[str, Any]:
    """A design whose name no other test searches for (the database is shared)."""
    return await create_design(client, account, name=f"{name} {uuid.uuid4().hex[:8]}", **fields)


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code, body
    assert body["status"] == status
    return body


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_root(settings: Settings) -> Path:
    return settings.effective_storage_dir


def blob_files(settings: Settings) -> set[str]:
    """The names (SHA-256s) of every stored blob, and any temporary file left in the store."""
    root = blob_root(settings)
    if not root.exists():
        return set()
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def stored_blobs(settings: Settings) -> set[str]:
    return {Path(name).name for name in blob_files(settings) if not name.startswith("tmp")}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def tus_upload(
    client: httpx.AsyncClient,
    account: Account,
    workspace_id: str,
    data: bytes,
    filename: str = "part.stl",
    *,
    send: int | None = None,
) -> str:
    """A tus upload of ``data`` (only its first ``send`` bytes when given); its id."""
    created = await client.post(
        f"{API}/uploads",
        headers={
            **account.headers,
            **TUS,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": f"workspace_id {b64(workspace_id)},filename {b64(filename)}",
        },
    )
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    body = data if send is None else data[:send]
    if body:
        patched = await client.patch(
            location,
            content=body,
            headers={
                **account.headers,
                **TUS,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": "0",
            },
        )
        assert patched.status_code == 204, patched.text
    return location.rsplit("/", 1)[1]


async def attach(
    client: httpx.AsyncClient, account: Account, design_id: str, upload_id: str, message: str = ""
) -> httpx.Response:
    return await client.post(
        f"{API}/designs/{design_id}/versions",
        json={"upload_id": upload_id, "message": message},
        headers=account.headers,
    )


async def get_design(
    client: httpx.AsyncClient, design_id: str, account: Account | None = None
) -> dict[str, Any]:
    response = await client.get(
        f"{API}/designs/{design_id}", headers=account.headers if account else {}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def version_numbers(client: httpx.AsyncClient, account: Account, design_id: str) -> list[int]:
    response = await client.get(f"{API}/designs/{design_id}/versions", headers=account.headers)
    assert response.status_code == 200, response.text
    return [item["number"] for item in response.json()["items"]]


async def added(
    client: httpx.AsyncClient,
    account: Account,
    design_id: str,
    content: bytes,
    filename: str = "part.stl",
    message: str = "",
) -> dict[str, Any]:
    response = await add_file(client, account, design_id, content, filename, message)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def workspace_upload_rows(app: FastAPI, workspace_id: str) -> int:
    [count] = await db_scalars(
        app,
        select(func.count(Upload.id)).where(Upload.workspace_id == uuid.UUID(workspace_id)),
    )
    return int(count)


def with_document(design: bytes, xml: bytes) -> bytes:
    """A copy of an FCStd file whose Document.xml is replaced (it stays the first entry)."""
    with zipfile.ZipFile(io.BytesIO(design)) as archive:
        entries: list[tuple[str | zipfile.ZipInfo, bytes]] = [
            (info.filename, xml if info.filename == "Document.xml" else archive.read(info))
            for info in archive.infolist()
        ]
    return make_zip(entries)


def edited_design(design: bytes) -> bytes:
    """The real design with the spreadsheet's ``width`` changed from 60 mm to 75 mm, the
    scripted object removed and an empty group added."""
    xml = document_xml(design)
    cell = b'content="=60mm" alias="width"'
    assert cell in xml
    xml = xml.replace(cell, b'content="=75mm" alias="width"')
    xml, declared = re.subn(
        rb'\s*<Object type="App::FeaturePython" name="Scripted"[^>]*/>', b"", xml
    )
    xml, data = re.subn(rb'\s*<Object name="Scripted">.*?\n        </Object>', b"", xml, flags=re.S)
    assert declared == data == 1
    xml = xml.replace(
        b"    </Objects>",
        b'        <Object type="App::DocumentObjectGroup" name="Extra" id="9999" />\n'
        b"    </Objects>",
    )
    return with_document(design, xml)


def ascii_stl(size: int) -> bytes:
    """A valid ASCII STL of exactly ``size`` bytes (trailing blanks pad it)."""
    assert size >= len(STL_TRIANGLE)
    return STL_TRIANGLE + b" " * (size - len(STL_TRIANGLE))


# Adding versions -----------------------------------------------------------------------------


async def test_multipart_versions_count_up_and_move_current(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    design = await new_design(client, alice)
    assert design["current_version"] is None
    assert design["version_count"] == 0
    previous = datetime.fromisoformat(design["updated_at"])
    contents = [STL_TRIANGLE, STEP_FILE, ascii_stl(len(STL_TRIANGLE) + 3)]
    ids = []
    for number, content in enumerate(contents, start=1):
        version = await added(
            client, alice, design["id"], content, f"v{number}.dat", f" v{number} "
        )
        assert version["number"] == number
        assert version["is_current"] is True
        assert version["message"] == f"v{number}"  # stripped
        assert (version["size"], version["sha256"]) == (len(content), sha256(content))
        assert version["filename"] == f"v{number}.dat"
        assert version["author"]["display_name"] == "Alice Çelik"
        assert version["design_id"] == design["id"]
        assert version["download_url"].endswith(f"/versions/{version['id']}/file")
        ids.append(version["id"])
        body = await get_design(client, design["id"], alice)
        assert body["current_version"]["id"] == version["id"]
        assert body["version_count"] == number
        moment = datetime.fromisoformat(body["updated_at"])
        assert moment > previous
        previous = moment
    assert await version_numbers(client, alice, design["id"]) == [3, 2, 1]
    first = await client.get(f"{API}/designs/{design['id']}/versions/{ids[0]}")
    assert first.status_code == 200, first.text
    assert (first.json()["is_current"], first.json()["format"]) == (False, "stl")
    # Keyset pages of the version list.
    page = await client.get(f"{API}/designs/{design['id']}/versions", params={"limit": 2})
    assert [v["number"] for v in page.json()["items"]] == [3, 2]
    cursor = page.json()["next_cursor"]
    assert cursor
    rest = await client.get(
        f"{API}/designs/{design['id']}/versions", params={"limit": 2, "cursor": cursor}
    )
    assert [v["number"] for v in rest.json()["items"]] == [1]
    assert rest.json()["next_cursor"] is None
    # Somebody else cannot add a version to a public design; nobody can without signing in.
    problem(await add_file(client, bob, design["id"], STL_TRIANGLE), 403, "MISSING_PERMISSION")
    anonymous = await client.post(
        f"{API}/designs/{design['id']}/versions", files={"file": ("a.stl", STL_TRIANGLE)}
    )
    assert anonymous.status_code == 401
    assert (await get_design(client, design["id"]))["version_count"] == 3
    # Versions added at the same moment get distinct, consecutive numbers.
    at_once = await asyncio.gather(
        *(add_file(client, alice, design["id"], ascii_stl(200 + i)) for i in range(4))
    )
    assert [r.status_code for r in at_once] == [201] * 4, [r.text for r in at_once]
    assert sorted(r.json()["number"] for r in at_once) == [4, 5, 6, 7]
    assert await version_numbers(client, alice, design["id"]) == [7, 6, 5, 4, 3, 2, 1]
    body = await get_design(client, design["id"])
    assert body["version_count"] == 7
    # The design row serializes the writers, so the last number is the last one committed.
    assert body["current_version"]["number"] == 7
    await check_mark_current(client, alice, bob)


async def check_mark_current(client: httpx.AsyncClient, alice: Account, bob: Account) -> None:
    design = await new_design(client, alice)
    other = await new_design(client, alice, name="Başka")
    first = await added(client, alice, design["id"], STL_TRIANGLE)
    second = await added(client, alice, design["id"], STEP_FILE)
    foreign = await added(client, alice, other["id"], STEP_FILE)
    url = f"{API}/designs/{design['id']}/versions"
    marked = await client.post(f"{url}/{first['id']}/current", headers=alice.headers)
    assert marked.status_code == 200, marked.text
    assert marked.json()["current_version"]["id"] == first["id"]
    assert marked.json()["current_version"]["number"] == 1
    body = await get_design(client, design["id"])
    assert (body["current_version"]["id"], body["version_count"]) == (first["id"], 2)
    assert body["current_version"]["is_current"] is True
    got = await client.get(f"{url}/{second['id']}")
    assert got.json()["is_current"] is False
    # Nothing new was written: still two versions, numbered as before.
    assert await version_numbers(client, alice, design["id"]) == [2, 1]
    problem(
        await client.post(f"{url}/{foreign['id']}/current", headers=alice.headers),
        404,
        "VERSION_NOT_FOUND",
    )
    problem(
        await client.post(f"{url}/{second['id']}/current", headers=bob.headers),
        403,
        "MISSING_PERMISSION",
    )
    assert (await get_design(client, design["id"]))["current_version"]["id"] == first["id"]
    # The next version still gets the next number and becomes current.
    third = await added(client, alice, design["id"], STL_TRIANGLE)
    assert third["number"] == 3
    assert (await get_design(client, design["id"]))["current_version"]["id"] == third["id"]


async def test_attach_a_finished_tus_upload(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, settings: Settings
) -> None:
    design = await new_design(client, alice)
    other = await new_design(client, alice, name="İkinci")
    upload_id = await tus_upload(
        client, alice, alice.personal_workspace_id, STEP_FILE, "flanş.step"
    )
    version = await attach(client, alice, design["id"], upload_id, "tus ile")
    assert version.status_code == 201, version.text
    body = version.json()
    assert body["sha256"] == sha256(STEP_FILE)
    assert (body["size"], body["filename"], body["format"]) == (
        len(STEP_FILE),
        "flanş.step",
        "step",
    )
    assert (body["message"], body["number"], body["media_type"]) == ("tus ile", 1, "model/step")
    file = await client.get(body["download_url"])
    assert file.content == STEP_FILE
    # The same upload cannot become a second version, here or in another design.
    problem(await attach(client, alice, design["id"], upload_id), 409, "UPLOAD_ALREADY_ATTACHED")
    problem(await attach(client, alice, other["id"], upload_id), 409, "UPLOAD_ALREADY_ATTACHED")
    # An upload still missing bytes.
    partial = await tus_upload(
        client, alice, alice.personal_workspace_id, STL_TRIANGLE, send=len(STL_TRIANGLE) // 2
    )
    problem(await attach(client, alice, design["id"], partial), 409, "UPLOAD_NOT_FINISHED")
    # Another person's upload is not even visible; one of another workspace of alice's is refused.
    bobs = await tus_upload(client, bob, bob.personal_workspace_id, STL_TRIANGLE)
    problem(await attach(client, alice, design["id"], bobs), 404, "UPLOAD_NOT_FOUND")
    team = await create_team(client, alice, "Atölye")
    teams = await tus_upload(client, alice, team["id"], STL_TRIANGLE)
    problem(await attach(client, alice, design["id"], teams), 409, "UPLOAD_ALREADY_ATTACHED")
    problem(await attach(client, alice, design["id"], str(uuid.uuid4())), 404, "UPLOAD_NOT_FOUND")
    # A malformed JSON body.
    bad = await client.post(
        f"{API}/designs/{design['id']}/versions",
        json={"upload_id": "nope"},
        headers=alice.headers,
    )
    problem(bad, 422, "VALIDATION_ERROR")
    assert "upload_id" in bad.json()["field_errors"]
    # Neither JSON nor a form.
    problem(
        await client.post(
            f"{API}/designs/{design['id']}/versions",
            content=STEP_FILE,
            headers={**alice.headers, "Content-Type": "application/octet-stream"},
        ),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    after = await get_design(client, design["id"])
    assert (after["version_count"], after["current_version"]["id"]) == (1, body["id"])
    # The attached upload is the version's record: still exactly one row links to it.
    linked = await db_scalars(
        app, select(Upload.id).where(Upload.design_version_id == uuid.UUID(body["id"]))
    )
    assert [str(row) for row in linked] == [upload_id]
    # Bob's upload is still his to attach.
    bobs_design = await new_design(client, bob, name="Bob'un")
    assert (await attach(client, bob, bobs_design["id"], bobs)).status_code == 201
    await check_identical_content_is_stored_once(app, client, alice, bob, settings)
    await check_one_upload_attached_twice_at_once(app, client, alice)


async def check_one_upload_attached_twice_at_once(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    """Two requests racing to attach one upload (to one design, or to two): one wins, the other
    is a 409, and exactly one version exists for it."""
    first = await new_design(client, alice, name="Yarış")
    second = await new_design(client, alice, name="Yarış iki")
    for targets in ((first, first), (first, second)):
        upload_id = await tus_upload(client, alice, alice.personal_workspace_id, STL_TRIANGLE)
        responses = await asyncio.gather(
            *(attach(client, alice, design["id"], upload_id) for design in targets)
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201, 409], [response.text for response in responses]
        [winner] = [response.json() for response in responses if response.status_code == 201]
        linked = await db_scalars(
            app, select(Upload.design_version_id).where(Upload.id == uuid.UUID(upload_id))
        )
        assert [str(row) for row in linked] == [winner["id"]]
    counts = [(await get_design(client, d["id"]))["version_count"] for d in (first, second)]
    assert counts == [2, 0] or counts == [1, 1], counts
    for design in (first, second):
        numbers = await version_numbers(client, alice, design["id"])
        assert numbers == list(range(len(numbers), 0, -1))


async def test_format_comes_from_the_content_not_the_name(
    client: httpx.AsyncClient, alice: Account, settings: Settings
) -> None:
    design = await new_design(client, alice)
    version = await added(client, alice, design["id"], STL_TRIANGLE, "x.FCStd")
    assert (version["format"], version["media_type"]) == ("stl", "model/stl")
    assert version["filename"] == "x.FCStd"
    assert version["inspection"] is None
    assert version["inspection_status"] == "none"
    before = stored_blobs(settings)
    assert before == {sha256(STL_TRIANGLE)}
    noise = random.Random(11).randbytes(4096)
    refusals = [
        (noise, "a.step", 415, "UNSUPPORTED_FILE_FORMAT"),
        (b"", "empty.stl", 422, "EMPTY_FILE"),
        (b"hello, I am a FreeCAD file\n", "p.FCStd", 415, "UNSUPPORTED_FILE_FORMAT"),
        # A zip without Document.xml, and something that only starts like a zip.
        (make_zip([("PartShape.brp", b"DBRep_DrawableShape\n")]), "p.FCStd", 415, None),
        (b"PK\x03\x04" + bytes(200), "p.FCStd", 415, None),
        (make_zip([("sub/Document.xml", fcstd_xml("")), ("a", b"b")]), "p.FCStd", 415, None),
    ]
    for content, name, status, code in refusals:
        response = await add_file(client, alice, design["id"], content, name)
        problem(response, status, code or "UNSUPPORTED_FILE_FORMAT")
    # A form without its file part.
    missing = await client.post(
        f"{API}/designs/{design['id']}/versions",
        data={"message": "no file"},
        files={"other": ("x", b"y")},
        headers=alice.headers,
    )
    problem(missing, 422, "FILE_REQUIRED")
    # A finished 0-byte tus upload is empty too.
    empty = await tus_upload(client, alice, alice.personal_workspace_id, b"", "empty.FCStd")
    problem(await attach(client, alice, design["id"], empty), 422, "EMPTY_FILE")
    noisy = await tus_upload(client, alice, alice.personal_workspace_id, noise, "a.step")
    problem(await attach(client, alice, design["id"], noisy), 415, "UNSUPPORTED_FILE_FORMAT")
    body = await get_design(client, design["id"])
    assert (body["version_count"], body["current_version"]["id"]) == (1, version["id"])
    # The refused multipart files left nothing in the store (tus uploads keep their bytes).
    assert stored_blobs(settings) == before | {sha256(b""), sha256(noise)}
    assert not [name for name in blob_files(settings) if name.startswith("tmp")]


async def check_identical_content_is_stored_once(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, settings: Settings
) -> None:
    step = STEP_FILE.replace(b"'tezgah'", b"'same content'")
    assert step != STEP_FILE
    first = await new_design(client, alice)
    second = await new_design(client, bob, name="Kopya değil")
    before = stored_blobs(settings)
    one = await added(client, alice, first["id"], step, "a.step")
    two = await added(client, bob, second["id"], step, "b.stp")
    upload_id = await tus_upload(client, alice, alice.personal_workspace_id, step, "c.step")
    three = await attach(client, alice, first["id"], upload_id)
    assert three.status_code == 201, three.text
    assert one["sha256"] == two["sha256"] == three.json()["sha256"] == sha256(step)
    assert stored_blobs(settings) - before == {sha256(step)}
    path = blob_root(settings) / sha256(step)[:2] / sha256(step)[2:4] / sha256(step)
    assert path.read_bytes() == step
    assert not [name for name in blob_files(settings) if name.startswith("tmp")]
    rows = await db_scalars(
        app, select(DesignVersion.id).where(DesignVersion.sha256 == sha256(step))
    )
    assert len(rows) >= 3
    # Each design downloads its own copy of the shared bytes under its own name.
    download = await client.get(two["download_url"])
    assert download.content == step
    assert "b.stp" in download.headers["content-disposition"]


# FCStd: inspection, thumbnails, comparison ---------------------------------------------------


async def test_fcstd_inspection_and_thumbnail(
    client: httpx.AsyncClient,
    alice: Account,
    bob: Account,
    fcstd_with_thumbnail: bytes,
    settings: Settings,
    design_bytes: bytes,
) -> None:
    design = await new_design(client, alice)
    expected = inspect_fcstd(io.BytesIO(fcstd_with_thumbnail))
    assert expected.program_version
    version = await added(client, alice, design["id"], fcstd_with_thumbnail, TURKISH_NAME)
    assert (version["format"], version["media_type"]) == ("fcstd", "application/x-extension-fcstd")
    assert version["inspection_status"] == "ready"
    assert version["filename"] == TURKISH_NAME

    def check(inspection: dict[str, Any]) -> None:
        assert inspection["program_version"] == expected.program_version
        objects = {o["name"]: o for o in inspection["objects"]}
        assert (objects["Box"]["type"], objects["Box"]["label"]) == ("Part::Box", "Gövde Işık")
        assert objects["Params"]["label"] == "Ölçüler"
        assert len(objects) == len(expected.objects)
        parameters = {(p["object"], p["name"]): p for p in inspection["parameters"]}
        length = parameters["Params", "length"]
        assert (length["source"], length["value"], length["unit"]) == ("spreadsheet", 100, "mm")
        assert parameters["Params", "malzeme"]["value"] == "çelik"
        assert parameters["Settings", "Thickness"]["value"] == 5.0
        [sheet] = inspection["spreadsheets"]
        assert [a["alias"] for a in sheet["aliases"]] == [
            "length",
            "width",
            "hole_d",
            "malzeme",
            "double_length",
        ]
        assert "thumbnail" not in inspection  # the PNG bytes are a blob, not JSON

    check(version["inspection"])
    body = await get_design(client, design["id"], bob)
    assert body["current_version"]["id"] == version["id"]
    check(body["current_version"]["inspection"])
    got = await client.get(f"{API}/designs/{design['id']}/versions/{version['id']}")
    assert got.status_code == 200
    check(got.json()["inspection"])
    # Lists carry summaries only.
    listed = await client.get(f"{API}/designs/{design['id']}/versions")
    assert "inspection" not in listed.json()["items"][0]
    # The thumbnail: stored as its own blob, served as PNG for the version and the design.
    png = make_png(8, 8)
    assert sha256(png) in stored_blobs(settings)
    assert version["thumbnail_url"] == (
        f"{API}/designs/{design['id']}/versions/{version['id']}/thumbnail"
    )
    for url in (version["thumbnail_url"], body["thumbnail_url"]):
        thumbnail = await client.get(url)
        assert thumbnail.status_code == 200, thumbnail.text
        assert thumbnail.headers["content-type"] == "image/png"
        assert thumbnail.headers["content-disposition"].startswith("inline;")
        assert thumbnail.content == png
    # A mesh has no thumbnail.
    mesh = await added(client, alice, design["id"], STL_TRIANGLE)
    assert mesh["thumbnail_url"] is None
    problem(await client.get(f"{mesh['download_url'][:-5]}/thumbnail"), 404, "THUMBNAIL_NOT_FOUND")
    problem(await client.get(f"{API}/designs/{design['id']}/thumbnail"), 404, "THUMBNAIL_NOT_FOUND")
    await check_compare_two_fcstd_versions(client, alice, design_bytes)


async def check_compare_two_fcstd_versions(
    client: httpx.AsyncClient, alice: Account, design_bytes: bytes
) -> None:
    design = await new_design(client, alice)
    other = await new_design(client, alice, name="Diğer")
    v1 = await added(client, alice, design["id"], design_bytes, "tasarim.FCStd", "ilk")
    v2 = await added(client, alice, design["id"], edited_design(design_bytes), "tasarim.FCStd")
    v3 = await added(client, alice, design["id"], design_bytes, "tasarim.FCStd", "ilk")
    url = f"{API}/designs/{design['id']}/compare"
    response = await client.get(url, params={"a": v1["id"], "b": v2["id"]})
    assert response.status_code == 200, response.text
    comparison = response.json()
    assert comparison["same_content"] is False
    assert (comparison["a"]["number"], comparison["b"]["number"]) == (1, 2)
    assert comparison["objects_added"] == ["Extra"]
    assert comparison["objects_removed"] == ["Scripted"]
    [width] = comparison["parameters"]
    assert (width["object"], width["name"], width["change"]) == ("Params", "width", "changed")
    assert (width["a"]["value"], width["a"]["unit"]) == (60, "mm")
    assert (width["b"]["value"], width["b"]["unit"]) == (75, "mm")
    changed = {change["field"]: change for change in comparison["changes"]}
    assert {"sha256", "message"} <= set(changed)
    assert (changed["sha256"]["a"], changed["sha256"]["b"]) == (v1["sha256"], v2["sha256"])
    assert "filename" not in changed
    assert "format" not in changed
    # Backwards, the object lists swap.
    backwards = (await client.get(url, params={"a": v2["id"], "b": v1["id"]})).json()
    assert (backwards["objects_added"], backwards["objects_removed"]) == (["Scripted"], ["Extra"])
    # The same bytes again: nothing differs.
    same = (await client.get(url, params={"a": v1["id"], "b": v3["id"]})).json()
    assert same["same_content"] is True
    assert (same["changes"], same["parameters"]) == ([], [])
    assert (same["objects_added"], same["objects_removed"]) == ([], [])
    # An FCStd file against a mesh: the format differs and every parameter is gone.
    mesh = await added(client, alice, design["id"], STL_TRIANGLE)
    against = (await client.get(url, params={"a": v1["id"], "b": mesh["id"]})).json()
    assert {"field": "format", "a": "fcstd", "b": "stl"} in against["changes"]
    assert against["parameters"]
    assert {p["change"] for p in against["parameters"]} == {"removed"}
    # Versions of another design, or no version at all.
    foreign = await added(client, alice, other["id"], STL_TRIANGLE)
    problem(
        await client.get(url, params={"a": v1["id"], "b": foreign["id"]}),
        404,
        "VERSION_NOT_FOUND",
    )
    problem(
        await client.get(url, params={"a": v1["id"], "b": str(uuid.uuid4())}),
        404,
        "VERSION_NOT_FOUND",
    )
    assert (await client.get(url, params={"a": v1["id"]})).status_code == 422


# Quotas and limits ---------------------------------------------------------------------------


async def test_quota_and_size_limits_refuse_and_store_nothing(
    start_app: StartApp,  # noqa: F811 - the fixture imported above
    settings_factory: Callable[..., Settings],
) -> None:
    quota = 3000
    settings = settings_factory(
        **FAST_AUTH_SETTINGS,
        upload_quota_bytes=quota,
        upload_max_bytes=2048,
        max_body_bytes=64 * 1024,
    )
    app, client = await start_app(settings)
    carol = await register(client, display_name="Carol")
    design = await new_design(client, carol)
    rows = await workspace_upload_rows(app, carol.personal_workspace_id)

    async def nothing_stored(count: int, current: str | None) -> None:
        body = await get_design(client, design["id"])
        assert body["version_count"] == count
        assert (body["current_version"] or {}).get("id") == current
        assert await workspace_upload_rows(app, carol.personal_workspace_id) == rows + count
        assert stored_blobs(settings) == stored
        assert not [name for name in blob_files(settings) if name.startswith("tmp")]

    stored: set[str] = set()
    # Over the request body limit: refused by the server before the route reads it.
    problem(
        await add_file(client, carol, design["id"], ascii_stl(100 * 1024)), 413, "PAYLOAD_TOO_LARGE"
    )
    await nothing_stored(0, None)
    # Under the body limit but over the largest file allowed.
    too_big = await add_file(client, carol, design["id"], ascii_stl(2049))
    assert too_big.status_code == 413, too_big.text
    assert too_big.headers["content-type"].startswith("application/problem+json")
    await nothing_stored(0, None)
    # The largest file allowed, and a small one: 2048 + len(STEP_FILE) of the quota used.
    largest = await added(client, carol, design["id"], ascii_stl(2048))
    first = await added(client, carol, design["id"], STEP_FILE)
    stored = {largest["sha256"], first["sha256"]}
    used = 2048 + len(STEP_FILE)
    # One byte over the quota.
    over = ascii_stl(quota - used + 1)
    problem(await add_file(client, carol, design["id"], over), 413, "UPLOAD_QUOTA_EXCEEDED")
    await nothing_stored(2, first["id"])
    assert await version_numbers(client, carol, design["id"]) == [2, 1]
    # Exactly up to the quota is allowed; then not one byte more.
    fits = await added(client, carol, design["id"], ascii_stl(quota - used))
    assert fits["number"] == 3
    stored.add(fits["sha256"])
    problem(await add_file(client, carol, design["id"], STL_TRIANGLE), 413, "UPLOAD_QUOTA_EXCEEDED")
    await nothing_stored(3, fits["id"])
    # A tus upload and a remix into the full workspace count against the quota too.
    refused = await client.post(
        f"{API}/uploads",
        headers={
            **carol.headers,
            **TUS,
            "Upload-Length": "1",
            "Upload-Metadata": f"workspace_id {b64(carol.personal_workspace_id)}",
        },
    )
    problem(refused, 413, "UPLOAD_QUOTA_EXCEEDED")
    dave = await register(client, display_name="Dave")
    source = await new_design(client, dave, name="Kaynak")
    await added(client, dave, source["id"], STEP_FILE)
    problem(
        await client.post(f"{API}/designs/{source['id']}/remix", json={}, headers=carol.headers),
        413,
        "UPLOAD_QUOTA_EXCEEDED",
    )
    await nothing_stored(3, fits["id"])


# Hostile FCStd files -------------------------------------------------------------------------


def _zip_bomb(design: bytes) -> bytes:
    """16 MiB of zeros (about 16 KB compressed) beside a real-looking Document.xml."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("Document.xml", document_xml(design))
        archive.writestr("PartShape.brp", bytes(16 * MiB))
    return buffer.getvalue()


def _declared_huge(design: bytes) -> bytes:
    noise = random.Random(5).randbytes(20_000)
    data = design_with(design, ("PartShape9.brp", noise))
    return patch_central(data, "PartShape9.brp", file_size=0xFFFF_FFF0)


def _symlink(design: bytes) -> bytes:
    link = zipfile.ZipInfo("PartShape9.brp")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return design_with(design, (link, b"/etc/passwd"))


HOSTILE: dict[str, tuple[Callable[[bytes], bytes], int, str]] = {
    "zip_bomb": (_zip_bomb, 422, "FCSTD_COMPRESSION_RATIO"),
    "declared_4_gib": (_declared_huge, 413, "FCSTD_TOO_LARGE"),
    "path_traversal": (
        lambda d: design_with(d, ("../../etc/cron.d/evil", b"* * * * * root sh")),
        422,
        "FCSTD_UNSAFE_ENTRY",
    ),
    "symlink": (_symlink, 422, "FCSTD_UNSAFE_ENTRY"),
    "billion_laughs": (
        lambda d: make_zip([("Document.xml", BILLION_LAUGHS)]),
        422,
        "FCSTD_XML_FORBIDDEN",
    ),
    "truncated": (lambda d: d[: len(d) // 2], 422, "FCSTD_TRUNCATED"),
    "not_a_zip": (lambda d: b"FreeCAD Document.xml\n" * 20, 415, "UNSUPPORTED_FILE_FORMAT"),
}


async def test_hostile_fcstd_is_refused_and_changes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    fcstd_with_thumbnail: bytes,
    settings: Settings,
) -> None:
    design = await new_design(client, alice)
    good = await added(client, alice, design["id"], fcstd_with_thumbnail, "iyi.FCStd")
    blobs = stored_blobs(settings)
    rows = await workspace_upload_rows(app, alice.personal_workspace_id)

    async def unchanged() -> None:
        body = await get_design(client, design["id"])
        assert (body["version_count"], body["current_version"]["id"]) == (1, good["id"])
        assert body["current_version"]["inspection"] == good["inspection"]
        assert await version_numbers(client, alice, design["id"]) == [1]

    for case, (build, status, code) in HOSTILE.items():
        hostile = build(fcstd_with_thumbnail)
        response = await add_file(client, alice, design["id"], hostile, "kötü.FCStd")
        assert response.status_code == status, (case, response.text)
        body = problem(response, status, code)
        assert body["request_id"]
        await unchanged()
        assert stored_blobs(settings) == blobs, case
        assert not [name for name in blob_files(settings) if name.startswith("tmp")], case
        assert await workspace_upload_rows(app, alice.personal_workspace_id) == rows, case
        rows += 1  # the tus upload's row
        # Through tus: the upload keeps its bytes (they are the client's until it deletes the
        # upload); attaching them is refused alike.
        upload_id = await tus_upload(
            client, alice, alice.personal_workspace_id, hostile, "kötü.FCStd"
        )
        problem(await attach(client, alice, design["id"], upload_id), status, code)
        await unchanged()
        upload = await client.get(f"{API}/uploads/{upload_id}", headers=alice.headers)
        assert upload.json()["sha256"] == sha256(hostile)
        blobs.add(sha256(hostile))
        assert stored_blobs(settings) == blobs, case
    # The refused files are not even in the thumbnail or version tables' blobs.
    versions = await db_scalars(
        app,
        select(DesignVersion.sha256).where(DesignVersion.design_id == uuid.UUID(design["id"])),
    )
    assert versions == [good["sha256"]]
    # The design still takes a good file afterwards.
    assert (await added(client, alice, design["id"], STL_TRIANGLE))["number"] == 2


# Downloads -----------------------------------------------------------------------------------


async def test_download_headers_ranges_and_conditional_requests(
    client: httpx.AsyncClient, alice: Account, fcstd_with_thumbnail: bytes, bob: Account
) -> None:
    data = fcstd_with_thumbnail
    size = len(data)
    design = await new_design(client, alice)
    version = await added(client, alice, design["id"], data, TURKISH_NAME)
    url = version["download_url"]
    full = await client.get(url)
    assert full.status_code == 200, full.text
    assert full.content == data
    headers = full.headers
    assert headers["etag"] == f'"{sha256(data)}"'
    assert headers["accept-ranges"] == "bytes"
    assert headers["content-length"] == str(size)
    assert headers["content-type"] == "application/x-extension-fcstd"
    assert headers.get_list("x-content-type-options") == ["nosniff"]  # once, not twice
    modified = parsedate_to_datetime(headers["last-modified"])
    created = datetime.fromisoformat(version["created_at"])
    assert abs((modified - created).total_seconds()) < 1
    match = DISPOSITION.fullmatch(headers["content-disposition"])
    assert match, headers["content-disposition"]
    assert match.group(1) == "Cerceve igdir.FCStd"
    assert unquote(match.group(2), encoding="utf-8", errors="strict") == TURKISH_NAME
    # Ranges.
    part = await client.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.content == data[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{size}"
    assert part.headers["content-length"] == "90"
    tail = await client.get(url, headers={"Range": "bytes=-7"})
    assert (tail.status_code, tail.content) == (206, data[-7:])
    clamped = await client.get(url, headers={"Range": f"bytes={size - 3}-{size + 100}"})
    assert (clamped.status_code, clamped.content) == (206, data[-3:])
    for past in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}"):
        refused = await client.get(url, headers={"Range": past})
        problem(refused, 416, "RANGE_NOT_SATISFIABLE")
        assert refused.headers["content-range"] == f"bytes */{size}"
    # Conditional requests.
    etag = headers["etag"]
    cached = await client.get(url, headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag
    assert (await client.get(url, headers={"If-None-Match": '"other"'})).status_code == 200
    since = await client.get(url, headers={"If-Modified-Since": headers["last-modified"]})
    assert since.status_code == 304
    # If-Range with a stale validator gets the whole file.
    stale = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert (stale.status_code, stale.content) == (200, data)
    fresh = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert (fresh.status_code, fresh.content) == (206, data[:10])
    await check_who_may_download(client, alice, bob)


async def check_who_may_download(client: httpx.AsyncClient, alice: Account, bob: Account) -> None:
    public = await new_design(client, alice, visibility="public")
    private = await new_design(client, alice, name="Gizli", visibility="private")
    unlisted = await new_design(client, alice, name="Liste dışı", visibility="unlisted")
    files = {
        key: await added(client, alice, design["id"], STEP_FILE)
        for key, design in (("public", public), ("private", private), ("unlisted", unlisted))
    }
    for key in ("public", "unlisted"):
        anonymous = await client.get(files[key]["download_url"])
        assert (anonymous.status_code, anonymous.content) == (200, STEP_FILE)
    private_url = files["private"]["download_url"]
    problem(await client.get(private_url), 404, "DESIGN_NOT_FOUND")
    problem(await client.get(private_url, headers=bob.headers), 404, "DESIGN_NOT_FOUND")
    assert (await client.get(private_url, headers=alice.headers)).content == STEP_FILE
    # A version id under the wrong design is not found.
    wrong = f"{API}/designs/{public['id']}/versions/{files['private']['id']}/file"
    problem(await client.get(wrong, headers=alice.headers), 404, "VERSION_NOT_FOUND")
    # A deleted design's files are gone for everybody.
    assert (await client.delete(f"{API}/designs/{public['id']}", headers=alice.headers)).is_success
    problem(await client.get(files["public"]["download_url"]), 404, "DESIGN_NOT_FOUND")


# Signed download links -----------------------------------------------------------------------


async def test_signed_download_links(
    client: httpx.AsyncClient, alice: Account, bob: Account, settings: Settings
) -> None:
    design = await new_design(client, alice, visibility="private")
    version = await added(client, alice, design["id"], STEP_FILE, "flanş.step")
    link_url = f"{API}/designs/{design['id']}/versions/{version['id']}/download-link"
    created = await client.post(link_url, json={}, headers=alice.headers)
    assert created.status_code == 200, created.text
    link = created.json()
    expires_at = datetime.fromisoformat(link["expires_at"])
    assert timedelta(seconds=290) < expires_at - datetime.now(UTC) <= timedelta(seconds=300)
    url = link["url"]
    assert url.startswith(f"{API}/downloads/")
    token = url.rsplit("/", 1)[1]
    # No session needed.
    response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.content == STEP_FILE
    assert response.headers["cache-control"] == "private, no-store"
    assert "flan%C5%9F.step" in response.headers["content-disposition"]
    ranged = await client.get(url, headers={"Range": "bytes=0-9"})
    assert (ranged.status_code, ranged.content) == (206, STEP_FILE[:10])
    # Longer and shorter lifetimes within bounds; outside them, a validation error.
    longer = await client.post(link_url, json={"expires_in": 3600}, headers=alice.headers)
    assert longer.status_code == 200
    for bad in ({"expires_in": 10}, {"expires_in": 7200}, {"other": 1}):
        problem(
            await client.post(link_url, json=bad, headers=alice.headers), 422, "VALIDATION_ERROR"
        )
    # Outsiders cannot mint a link to a private design.
    problem(await client.post(link_url, json={}, headers=bob.headers), 404, "DESIGN_NOT_FOUND")
    problem(await client.post(link_url, json={}), 404, "DESIGN_NOT_FOUND")
    # Tampering: every single changed character is refused.
    for position in (0, len(token) // 2, len(token) - 2):
        swapped = "A" if token[position] != "A" else "B"
        forged = token[:position] + swapped + token[position + 1 :]
        problem(await client.get(f"{API}/downloads/{forged}"), 403, "LINK_INVALID")
    problem(await client.get(f"{API}/downloads/{token}x"), 403, "LINK_INVALID")
    problem(await client.get(f"{API}/downloads/not-a-token"), 403, "LINK_INVALID")
    secret = settings.secret_key.get_secret_value()
    future = datetime.now(UTC) + timedelta(minutes=5)
    other_purpose = SignedTokens(secret, "share").sign({"v": version["id"]}, future)
    problem(await client.get(f"{API}/downloads/{other_purpose}"), 403, "LINK_INVALID")
    other_secret = SignedTokens("another-secret-0123456789", "design-download")
    forged_key = other_secret.sign({"v": version["id"]}, future)
    problem(await client.get(f"{API}/downloads/{forged_key}"), 403, "LINK_INVALID")
    # Expired (signed with the server's key, so it is genuine).
    signer = SignedTokens(secret, "design-download")
    expired = signer.sign({"v": version["id"]}, datetime.now(UTC) - timedelta(seconds=1))
    problem(await client.get(f"{API}/downloads/{expired}"), 410, "LINK_EXPIRED")
    # Genuine tokens naming nothing.
    for data in ({"v": str(uuid.uuid4())}, {"v": "not-a-uuid"}, {}):
        missing = signer.sign(data, future)
        problem(await client.get(f"{API}/downloads/{missing}"), 404, "VERSION_NOT_FOUND")
    # The design deleted: its links stop working.
    deleted = await client.delete(f"{API}/designs/{design['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    problem(await client.get(url), 404, "VERSION_NOT_FOUND")
    # Restored, they work again (the link names the version, which never changed).
    restored = await client.post(f"{API}/designs/{design['id']}/restore", headers=alice.headers)
    assert restored.status_code == 200, restored.text
    assert (await client.get(url)).content == STEP_FILE
    await check_anyone_who_sees_a_public_design_may_mint_a_link(client, alice)


async def check_anyone_who_sees_a_public_design_may_mint_a_link(
    client: httpx.AsyncClient, alice: Account
) -> None:
    design = await new_design(client, alice, visibility="public")
    version = await added(client, alice, design["id"], STL_TRIANGLE)
    link_url = f"{API}/designs/{design['id']}/versions/{version['id']}/download-link"
    created = await client.post(link_url, json={"expires_in": 60})
    assert created.status_code == 200, created.text
    assert (await client.get(created.json()["url"])).content == STL_TRIANGLE
    wrong = f"{API}/designs/{design['id']}/versions/{uuid.uuid4()}/download-link"
    problem(await client.post(wrong, json={}), 404, "VERSION_NOT_FOUND")
