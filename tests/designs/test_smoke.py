from __future__ import annotations

import httpx

from tests.auth.conftest import Account
from tests.designs.conftest import STL_TRIANGLE, add_file, create_design


async def test_create_upload_list_download(
    client: httpx.AsyncClient, alice: Account, bob: Account, fcstd_with_thumbnail: bytes
) -> None:
    design = await create_design(client, alice, tags=["Çelik", "CNC"], description="**x**")
    assert design["slug"] == "flans-adaptoru"
    response = await add_file(client, alice, design["id"], STL_TRIANGLE, "parça.stl", "ilk")
    assert response.status_code == 201, response.text
    response = await add_file(client, alice, design["id"], fcstd_with_thumbnail, "p.FCStd")
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["format"] == "fcstd"
    assert version["inspection"]["objects"]
    got = await client.get(f"/api/v1/designs/{design['id']}", headers=bob.headers)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["current_version"]["number"] == 2
    assert body["thumbnail_url"]
    thumb = await client.get(body["thumbnail_url"])
    assert thumb.status_code == 200
    listed = await client.get(
        "/api/v1/designs", params={"workspace_id": alice.personal_workspace_id}
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["id"] == design["id"]
    file = await client.get(version["download_url"], headers={"Range": "bytes=0-3"})
    assert file.status_code == 206
    assert file.content == fcstd_with_thumbnail[:4]
    review = await client.post(
        f"/api/v1/designs/{design['id']}/reviews", json={"rating": 4}, headers=bob.headers
    )
    assert review.status_code == 201, review.text
    search = await client.get(
        "/api/v1/designs",
        params={"q": "flanş", "workspace_id": alice.personal_workspace_id},
        headers=bob.headers,
    )
    assert search.status_code == 200, search.text
    assert [d["id"] for d in search.json()["items"]] == [design["id"]]
    assert search.json()["items"][0]["rating"] == {"average": 4.0, "count": 1}
