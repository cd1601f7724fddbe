"""The category tree: read by everyone in their language, shaped by superusers only; the design
list's category filter covers a category's whole subtree.

The tree is shared by the session's tests: each test looks only at the categories it made.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from tests.auth.conftest import Account
from tests.designs.conftest import make_superuser
from tests.designs.test_designs import (
    API,
    EN,
    TR,
    create_category,
    create_design,
    list_ids,
    problem,
)


def find(tree: list[dict[str, Any]], category_id: str) -> dict[str, Any] | None:
    for node in tree:
        if node["id"] == category_id:
            return node
        found = find(node["children"], category_id)
        if found is not None:
            return found
    return None


async def tree_of(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> Any:
    response = await client.get(f"{API}/categories", headers=headers or {})
    assert response.status_code == 200, response.text
    return response.json()


async def test_only_superusers_shape_the_tree(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    body = {"slug": f"c-{uuid.uuid4().hex[:10]}", "name_en": "Jigs", "name_tr": " Aparatlar "}
    problem(await client.post(f"{API}/categories", json=body), 401, "UNAUTHORIZED")
    problem(
        await client.post(f"{API}/categories", json=body, headers=bob.headers),
        403,
        "SUPERUSER_REQUIRED",
    )
    await make_superuser(app, alice)
    created = await client.post(f"{API}/categories", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    category = created.json()
    assert category["parent_id"] is None
    assert category["name_tr"] == "Aparatlar"
    assert category["children"] == []
    url = f"{API}/categories/{category['id']}"

    problem(await client.patch(url, json={"name_en": "x"}), 401, "UNAUTHORIZED")
    problem(
        await client.patch(url, json={"name_en": "x"}, headers=bob.headers),
        403,
        "SUPERUSER_REQUIRED",
    )
    problem(await client.delete(url), 401, "UNAUTHORIZED")
    problem(await client.delete(url, headers=bob.headers), 403, "SUPERUSER_REQUIRED")
    assert find(await tree_of(client), category["id"])["name_en"] == "Jigs"  # type: ignore[index]

    # An API key never acts as its superuser creator.
    key = await client.post(
        f"{API}/workspaces/{alice.personal_workspace_id}/api-keys",
        json={"name": "k", "scopes": ["designs:write"]},
        headers=alice.headers,
    )
    assert key.status_code == 201, key.text
    keyed = await client.patch(url, json={"name_en": "x"}, headers={"X-API-Key": key.json()["key"]})
    assert keyed.status_code == 403, keyed.text

    patched = await client.patch(url, json={"name_en": "  Fixtures "}, headers=alice.headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["name_en"] == "Fixtures"
    assert patched.json()["name_tr"] == "Aparatlar"  # untouched
    assert patched.json()["slug"] == body["slug"]
    deleted = await client.delete(url, headers=alice.headers)
    assert deleted.status_code == 204, deleted.text
    assert find(await tree_of(client), category["id"]) is None
    problem(await client.delete(url, headers=alice.headers), 404, "CATEGORY_NOT_FOUND")
    problem(
        await client.patch(url, json={"name_en": "x"}, headers=alice.headers),
        404,
        "CATEGORY_NOT_FOUND",
    )


async def test_tree_is_nested_ordered_and_in_the_callers_language(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await make_superuser(app, alice)
    root = await create_category(client, alice, name_en="Machine parts", name_tr="Makine parçaları")
    rid = root["id"]
    # Siblings go by position, then slug; created in another order on purpose.
    b = await create_category(client, alice, parent_id=rid, position=2, slug=f"b-{rid[:8]}")
    c = await create_category(client, alice, parent_id=rid, position=1, slug=f"c-{rid[:8]}")
    a = await create_category(client, alice, parent_id=rid, position=1, slug=f"a-{rid[:8]}")
    leaf = await create_category(
        client, alice, parent_id=c["id"], name_en="Gears", name_tr="Dişliler"
    )

    english = find(await tree_of(client, EN), rid)
    assert english is not None
    assert english["name"] == "Machine parts"
    assert [child["id"] for child in english["children"]] == [a["id"], c["id"], b["id"]]
    middle = english["children"][1]
    assert [grandchild["id"] for grandchild in middle["children"]] == [leaf["id"]]
    assert middle["children"][0]["name"] == "Gears"
    assert middle["children"][0]["parent_id"] == c["id"]
    # The tree lists each category once, at its place only.
    whole = await tree_of(client, EN)
    assert leaf["id"] not in [node["id"] for node in whole]

    turkish = find(await tree_of(client, TR), rid)
    assert turkish is not None
    assert turkish["name"] == "Makine parçaları"
    assert turkish["children"][1]["children"][0]["name"] == "Dişliler"
    assert turkish["name_en"] == "Machine parts"  # both names are there for editors

    # A new position reorders the siblings.
    moved = await client.patch(
        f"{API}/categories/{b['id']}", json={"position": 0}, headers=alice.headers
    )
    assert moved.status_code == 200, moved.text
    again = find(await tree_of(client), rid)
    assert again is not None
    assert [child["id"] for child in again["children"]] == [b["id"], a["id"], c["id"]]

    # Designs show their categories in the caller's language too.
    design = await create_design(client, alice, category_ids=[leaf["id"]])
    for headers, name in ((EN, "Gears"), (TR, "Dişliler")):
        got = await client.get(f"{API}/designs/{design['id']}", headers=headers)
        assert got.json()["categories"] == [{"id": leaf["id"], "slug": leaf["slug"], "name": name}]


async def test_slugs_are_unique_and_the_tree_has_no_cycles(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await make_superuser(app, alice)
    root = await create_category(client, alice)
    child = await create_category(client, alice, parent_id=root["id"])
    grandchild = await create_category(client, alice, parent_id=child["id"])
    other = await create_category(client, alice)

    duplicate = {"slug": root["slug"], "name_en": "x", "name_tr": "y"}
    for headers in (EN, TR):
        body = problem(
            await client.post(
                f"{API}/categories", json=duplicate, headers={**alice.headers, **headers}
            ),
            409,
            "CATEGORY_SLUG_TAKEN",
        )
        assert root["slug"] in body["detail"]
    problem(
        await client.patch(
            f"{API}/categories/{other['id']}", json={"slug": root["slug"]}, headers=alice.headers
        ),
        409,
        "CATEGORY_SLUG_TAKEN",
    )
    # Keeping one's own slug is not a conflict.
    same = await client.patch(
        f"{API}/categories/{root['id']}", json={"slug": root["slug"]}, headers=alice.headers
    )
    assert same.status_code == 200, same.text

    for target, new_parent in (
        (root, grandchild["id"]),
        (root, child["id"]),
        (root, root["id"]),
        (child, grandchild["id"]),
    ):
        response = await client.patch(
            f"{API}/categories/{target['id']}",
            json={"parent_id": new_parent},
            headers=alice.headers,
        )
        problem(response, 409, "CATEGORY_CYCLE")
    problem(
        await client.patch(
            f"{API}/categories/{child['id']}",
            json={"parent_id": str(uuid.uuid4())},
            headers=alice.headers,
        ),
        404,
        "CATEGORY_NOT_FOUND",
    )
    problem(
        await client.post(
            f"{API}/categories",
            json={
                "slug": f"c-{uuid.uuid4().hex[:8]}",
                "name_en": "x",
                "name_tr": "y",
                "parent_id": str(uuid.uuid4()),
            },
            headers=alice.headers,
        ),
        404,
        "CATEGORY_NOT_FOUND",
    )
    tree = await tree_of(client)
    node = find(tree, root["id"])
    assert node is not None
    assert node["parent_id"] is None
    assert node["children"][0]["children"][0]["id"] == grandchild["id"]

    # Moving a subtree elsewhere, and a category back to the top, are fine.
    moved = await client.patch(
        f"{API}/categories/{child['id']}", json={"parent_id": other["id"]}, headers=alice.headers
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["parent_id"] == other["id"]
    lifted = await client.patch(
        f"{API}/categories/{grandchild['id']}", json={"parent_id": None}, headers=alice.headers
    )
    assert lifted.status_code == 200, lifted.text
    tree = await tree_of(client)
    assert find(tree, other["id"])["children"][0]["id"] == child["id"]  # type: ignore[index]
    assert find(tree, child["id"])["children"] == []  # type: ignore[index]
    assert grandchild["id"] in [n["id"] for n in tree]

    for bad in (
        {"slug": "Büyük", "name_en": "x", "name_tr": "y"},
        {"slug": "ok-slug", "name_en": "", "name_tr": "y"},
        {"slug": "ok-slug", "name_en": "x"},
        {"slug": "ok-slug", "name_en": "x", "name_tr": "y", "position": -1},
        {"slug": "ok-slug", "name_en": "x", "name_tr": "y", "colour": "red"},
    ):
        problem(
            await client.post(f"{API}/categories", json=bad, headers=alice.headers),
            422,
            "VALIDATION_ERROR",
        )


async def test_only_leaves_can_be_deleted_and_designs_lose_them(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await make_superuser(app, alice)
    root = await create_category(client, alice)
    leaf = await create_category(client, alice, parent_id=root["id"])
    design = await create_design(client, alice, category_ids=[root["id"], leaf["id"]])

    for headers in (EN, TR):
        problem(
            await client.delete(
                f"{API}/categories/{root['id']}", headers={**alice.headers, **headers}
            ),
            409,
            "CATEGORY_HAS_CHILDREN",
        )
    assert find(await tree_of(client), leaf["id"]) is not None
    deleted = await client.delete(f"{API}/categories/{leaf['id']}", headers=alice.headers)
    assert deleted.status_code == 204, deleted.text
    got = await client.get(f"{API}/designs/{design['id']}", headers=alice.headers)
    assert [c["id"] for c in got.json()["categories"]] == [root["id"]]
    # Now a leaf itself, the root can go.
    assert (
        await client.delete(f"{API}/categories/{root['id']}", headers=alice.headers)
    ).status_code == 204
    got = await client.get(f"{API}/designs/{design['id']}", headers=alice.headers)
    assert got.json()["categories"] == []


async def test_the_category_filter_covers_the_whole_subtree(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    await make_superuser(app, alice)
    root = await create_category(client, alice)
    child = await create_category(client, alice, parent_id=root["id"])
    grandchild = await create_category(client, alice, parent_id=child["id"])
    sibling = await create_category(client, alice, parent_id=root["id"])
    elsewhere = await create_category(client, alice)

    deep = await create_design(client, alice, name="Derin", category_ids=[grandchild["id"]])
    middle = await create_design(client, alice, name="Orta", category_ids=[child["id"]])
    side = await create_design(client, alice, name="Yan", category_ids=[sibling["id"]])
    top = await create_design(client, alice, name="Kök", category_ids=[root["id"]])
    away = await create_design(client, alice, name="Uzak", category_ids=[elsewhere["id"]])
    both = await create_design(
        client, alice, name="İkisi", category_ids=[grandchild["id"], elsewhere["id"]]
    )
    bobs = await create_design(client, bob, name="Bobun", category_ids=[grandchild["id"]])
    await create_design(client, alice, name="Kategorisiz")

    async def in_category(category: dict[str, Any], **extra: Any) -> set[str]:
        return set(await list_ids(client, alice.headers, category_id=category["id"], **extra))

    mine = {"workspace_id": alice.personal_workspace_id}
    assert await in_category(root, **mine) == {
        deep["id"],
        middle["id"],
        side["id"],
        top["id"],
        both["id"],
    }
    assert await in_category(child, **mine) == {deep["id"], middle["id"], both["id"]}
    assert await in_category(grandchild, **mine) == {deep["id"], both["id"]}
    assert await in_category(sibling, **mine) == {side["id"]}
    assert await in_category(elsewhere, **mine) == {away["id"], both["id"]}
    # Other workspaces' public designs in the subtree are there too (each design once).
    everyone = await list_ids(client, None, category_id=root["id"])
    assert len(everyone) == len(set(everyone)) == 6
    assert bobs["id"] in everyone
    assert await list_ids(client, None, category_id=str(uuid.uuid4())) == []

    # Moving the grandchild under another root moves its designs out of this subtree.
    await client.patch(
        f"{API}/categories/{grandchild['id']}",
        json={"parent_id": elsewhere["id"]},
        headers=alice.headers,
    )
    assert await in_category(root, **mine) == {middle["id"], side["id"], top["id"]}
    assert await in_category(elsewhere, **mine) == {away["id"], both["id"], deep["id"]}
