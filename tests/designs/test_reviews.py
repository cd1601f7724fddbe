"""Reviews and ratings through the API: one review per person and design (a second one replaces
the first), who may not review, the rating kept on the design (exact under concurrency, shown
on the design and in lists), replies by the design's team, reports, deletion and moderation,
and the paged, sorted list."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from tests.auth.conftest import Account, db_scalars, register
from tests.auth.test_workspaces import add_member, create_team
from tests.designs.conftest import make_superuser
from tests.designs.test_versions import API, new_design, problem
from tezgah.designs.models import Review, ReviewReport


async def post_review(
    client: httpx.AsyncClient, account: Account | None, design_id: str, **fields: Any
) -> httpx.Response:
    return await client.post(
        f"{API}/designs/{design_id}/reviews",
        json=fields,
        headers=account.headers if account else {},
    )


async def reviewed(
    client: httpx.AsyncClient, account: Account, design_id: str, rating: int, **fields: Any
) -> dict[str, Any]:
    response = await post_review(client, account, design_id, rating=rating, **fields)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def rating_of(
    client: httpx.AsyncClient, design_id: str, account: Account | None = None
) -> dict[str, Any]:
    response = await client.get(
        f"{API}/designs/{design_id}", headers=account.headers if account else {}
    )
    assert response.status_code == 200, response.text
    rating: dict[str, Any] = response.json()["rating"]
    return rating


async def listed_rating(
    client: httpx.AsyncClient, design_id: str, account: Account | None = None
) -> dict[str, Any]:
    """The rating the design list shows (anonymous lists come from the shared cache)."""
    response = await client.get(
        f"{API}/designs",
        params={"limit": 100, "sort": "-created_at"},
        headers=account.headers if account else {},
    )
    assert response.status_code == 200, response.text
    [item] = [item for item in response.json()["items"] if item["id"] == design_id]
    rating: dict[str, Any] = item["rating"]
    return rating


async def people(client: httpx.AsyncClient, count: int, name: str = "Yorumcu") -> list[Account]:
    return [await register(client, display_name=f"{name} {i}") for i in range(count)]


def expected(*ratings: int) -> dict[str, Any]:
    if not ratings:
        return {"average": 0.0, "count": 0}
    return {"average": round(sum(ratings) / len(ratings), 2), "count": len(ratings)}


async def test_one_review_per_person_and_who_may_not_review(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    design = await new_design(client, alice, visibility="public")
    url = f"{API}/designs/{design['id']}"
    first = await post_review(client, bob, design["id"], rating=4, title=" İyi ", body="Güzel iş.")
    assert first.status_code == 201, first.text
    review = first.json()
    assert (review["rating"], review["title"], review["body"]) == (4, "İyi", "Güzel iş.")
    assert review["author"] == {"id": bob.id, "display_name": "Bob Işık"}
    assert (review["design_id"], review["reply"]) == (design["id"], None)
    assert await rating_of(client, design["id"]) == expected(4)
    # Again: the same review, replaced (200), still one review.
    again = await post_review(client, bob, design["id"], rating=2, body="Kırıldı.")
    assert again.status_code == 200, again.text
    replaced = again.json()
    assert replaced["id"] == review["id"]
    assert (replaced["rating"], replaced["title"], replaced["body"]) == (2, "", "Kırıldı.")
    assert replaced["updated_at"] > review["updated_at"]
    assert replaced["created_at"] == review["created_at"]
    assert await rating_of(client, design["id"]) == expected(2)
    listed = (await client.get(f"{url}/reviews")).json()["items"]
    assert [item["id"] for item in listed] == [review["id"]]
    rows = await db_scalars(
        app, select(Review.id).where(Review.design_id == uuid.UUID(design["id"]))
    )
    assert len(rows) == 1
    # Who may review: shown on the design.
    assert (await client.get(url, headers=bob.headers)).json()["can_review"] is True
    assert (await client.get(url, headers=alice.headers)).json()["can_review"] is False
    assert (await client.get(url)).json()["can_review"] is False
    # Members of the design's workspace, whatever their role, cannot review it.
    problem(await post_review(client, alice, design["id"], rating=5), 403, "OWN_DESIGN_REVIEW")
    team = await create_team(client, alice, f"Ekip {uuid.uuid4().hex[:6]}")
    team_design = await new_design(client, alice, workspace_id=team["id"], visibility="public")
    viewer = await register(client, display_name="İzleyici")
    await add_member(app, team["id"], viewer.id, "viewer")
    problem(
        await post_review(client, viewer, team_design["id"], rating=5), 403, "OWN_DESIGN_REVIEW"
    )
    assert (await client.get(f"{API}/designs/{team_design['id']}", headers=viewer.headers)).json()[
        "can_review"
    ] is False
    # The viewer may review designs of other workspaces.
    assert (await post_review(client, viewer, design["id"], rating=5)).status_code == 201
    # API keys are machines, not people.
    created = await client.post(
        f"{API}/workspaces/{bob.personal_workspace_id}/api-keys",
        json={"name": "cnc", "scopes": ["designs:read"]},
        headers=bob.headers,
    )
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"]}
    by_key = await client.post(f"{url}/reviews", json={"rating": 5}, headers=key)
    problem(by_key, 403, "API_KEY_NOT_ALLOWED")
    problem(await post_review(client, None, design["id"], rating=5), 401, "UNAUTHORIZED")
    # A private design is not there for outsiders; a deleted one is not there at all.
    private = await new_design(client, alice, visibility="private")
    problem(await post_review(client, bob, private["id"], rating=5), 404, "DESIGN_NOT_FOUND")
    assert await rating_of(client, design["id"]) == expected(2, 5)
    # Ratings are whole stars from 1 to 5; unknown fields and overlong texts are refused.
    for bad in (
        {"rating": 0},
        {"rating": 6},
        {"rating": -1},
        {"rating": "beş"},
        {"rating": 3.5},
        {},
        {"rating": 3, "stars": 3},
        {"rating": 3, "title": "x" * 121},
    ):
        response = await client.post(f"{url}/reviews", json=bad, headers=bob.headers)
        problem(response, 422, "VALIDATION_ERROR")
    assert await rating_of(client, design["id"]) == expected(2, 5)


async def test_rating_follows_reviews_updates_and_deletes(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    design = await new_design(client, alice, visibility="public")
    design_id = design["id"]
    url = f"{API}/designs/{design_id}/reviews"
    assert await rating_of(client, design_id) == expected()
    # Fill the anonymous list cache first: every change below must show through it.
    assert await listed_rating(client, design_id) == expected()
    carol, dave, erin = await people(client, 3)
    ratings = {bob.id: 5, carol.id: 4, dave.id: 2}
    reviews = {}
    for account in (bob, carol, dave):
        reviews[account.id] = await reviewed(client, account, design_id, ratings[account.id])
    assert await rating_of(client, design_id) == expected(5, 4, 2)  # 3.67
    assert await listed_rating(client, design_id) == expected(5, 4, 2)
    assert await listed_rating(client, design_id, bob) == expected(5, 4, 2)
    # An update moves the average, not the count.
    await reviewed(client, dave, design_id, 5)
    assert await rating_of(client, design_id) == expected(5, 4, 5)
    assert await listed_rating(client, design_id) == expected(5, 4, 5)
    # Rating filters follow too.
    high = await client.get(f"{API}/designs", params={"min_rating": 4.6, "limit": 100})
    assert design_id in [item["id"] for item in high.json()["items"]]
    # Only the author (or a superuser) deletes a review; the design's owner cannot.
    for someone in (alice, erin):
        problem(
            await client.delete(f"{url}/{reviews[bob.id]['id']}", headers=someone.headers),
            403,
            "NOT_REVIEW_AUTHOR",
        )
    assert await rating_of(client, design_id) == expected(5, 4, 5)
    deleted = await client.delete(f"{url}/{reviews[bob.id]['id']}", headers=bob.headers)
    assert deleted.status_code == 204, deleted.text
    assert await rating_of(client, design_id) == expected(4, 5)
    assert await listed_rating(client, design_id) == expected(4, 5)
    problem(
        await client.delete(f"{url}/{reviews[bob.id]['id']}", headers=bob.headers),
        404,
        "REVIEW_NOT_FOUND",
    )
    problem(
        await client.delete(f"{url}/{uuid.uuid4()}", headers=bob.headers), 404, "REVIEW_NOT_FOUND"
    )
    # Bob may review again: a new review.
    fresh = await post_review(client, bob, design_id, rating=1)
    assert fresh.status_code == 201
    assert fresh.json()["id"] != reviews[bob.id]["id"]
    assert await rating_of(client, design_id) == expected(4, 5, 1)
    # Moderation: a superuser removes anybody's review.
    await make_superuser(app, erin)
    removed = await client.delete(f"{url}/{reviews[carol.id]['id']}", headers=erin.headers)
    assert removed.status_code == 204, removed.text
    assert await rating_of(client, design_id) == expected(5, 1)
    for account in (bob, dave):
        mine = [
            r for r in (await client.get(url)).json()["items"] if r["author"]["id"] == account.id
        ]
        assert (
            await client.delete(f"{url}/{mine[0]['id']}", headers=account.headers)
        ).status_code == 204
    assert await rating_of(client, design_id) == expected()
    assert await listed_rating(client, design_id) == expected()
    assert (await client.get(url)).json()["items"] == []
    # A review id of another design is not found under this one.
    other = await new_design(client, alice, visibility="public")
    elsewhere = await reviewed(client, bob, other["id"], 3)
    problem(
        await client.delete(f"{url}/{elsewhere['id']}", headers=bob.headers),
        404,
        "REVIEW_NOT_FOUND",
    )
    assert await rating_of(client, other["id"]) == expected(3)


async def test_concurrent_reviews_keep_the_rating_exact(
    client: httpx.AsyncClient, alice: Account, bob: Account, backend: str
) -> None:
    design = await new_design(client, alice, visibility="public")
    design_id = design["id"]
    url = f"{API}/designs/{design_id}/reviews"
    reviewers = await people(client, 8)
    first = [1 + i % 5 for i in range(len(reviewers))]
    responses = await asyncio.gather(
        *(
            post_review(client, account, design_id, rating=rating)
            for account, rating in zip(reviewers, first, strict=True)
        )
    )
    assert [r.status_code for r in responses] == [201] * len(reviewers), [r.text for r in responses]
    assert await rating_of(client, design_id) == expected(*first)
    # Everybody changes their mind at once.
    second = [5 - i % 5 for i in range(len(reviewers))]
    responses = await asyncio.gather(
        *(
            post_review(client, account, design_id, rating=rating)
            for account, rating in zip(reviewers, second, strict=True)
        )
    )
    assert [r.status_code for r in responses] == [200] * len(reviewers)
    assert await rating_of(client, design_id) == expected(*second)
    # Half of them withdraw at once, while newcomers write.
    ids = {r.json()["author"]["id"]: r.json()["id"] for r in responses}
    leaving = reviewers[: len(reviewers) // 2]
    newcomers = await people(client, 3, "Yeni")
    results = await asyncio.gather(
        *(client.delete(f"{url}/{ids[a.id]}", headers=a.headers) for a in leaving),
        *(post_review(client, a, design_id, rating=3) for a in newcomers),
    )
    assert [r.status_code for r in results] == [204] * len(leaving) + [201] * len(newcomers)
    remaining = second[len(leaving) :] + [3] * len(newcomers)
    assert await rating_of(client, design_id) == expected(*remaining)
    # One person sending the same review twice at once still has one review.
    doubled = await asyncio.gather(
        post_review(client, bob, design_id, rating=5), post_review(client, bob, design_id, rating=5)
    )
    statuses = sorted(r.status_code for r in doubled)
    assert statuses in ([200, 201], [201, 409]), [r.text for r in doubled]
    if statuses == [201, 409]:  # the loser is told to try again, nothing half-written
        problem(next(r for r in doubled if r.status_code == 409), 409, "CONFLICT")
    assert await rating_of(client, design_id) == expected(*remaining, 5)
    # The same person changing their rating twice at once: the rating matches whichever won.
    changed = await asyncio.gather(
        post_review(client, bob, design_id, rating=1), post_review(client, bob, design_id, rating=3)
    )
    assert all(r.status_code in (200, 409) for r in changed), [r.text for r in changed]
    [mine] = [
        r
        for r in (await client.get(url, params={"limit": 100})).json()["items"]
        if r["author"]["id"] == bob.id
    ]
    assert mine["rating"] in (1, 3)
    assert await rating_of(client, design_id) == expected(*remaining, mine["rating"])
    # Withdrawn twice at once (or withdrawn while being changed): counted out exactly once.
    gone = await asyncio.gather(
        client.delete(f"{url}/{mine['id']}", headers=bob.headers),
        client.delete(f"{url}/{mine['id']}", headers=bob.headers),
        post_review(client, bob, design_id, rating=2),
    )
    assert sorted(r.status_code for r in gone[:2]) == [204, 404], [r.text for r in gone]
    assert gone[2].status_code in (200, 201, 409), gone[2].text
    left = [
        r["rating"]
        for r in (await client.get(url, params={"limit": 100})).json()["items"]
        if r["author"]["id"] == bob.id
    ]
    assert await rating_of(client, design_id) == expected(*remaining, *left)


async def test_the_design_team_replies_once(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    team = await create_team(client, alice, f"Atölye {uuid.uuid4().hex[:6]}")
    engineer, viewer, outsider = await people(client, 3, "Ekip")
    await add_member(app, team["id"], engineer.id, "engineer")
    await add_member(app, team["id"], viewer.id, "viewer")
    design = await new_design(client, alice, workspace_id=team["id"], visibility="public")
    review = await reviewed(client, bob, design["id"], 2, body="Ölçüler tutmuyor.")
    url = f"{API}/designs/{design['id']}/reviews/{review['id']}/reply"
    problem(
        await client.post(url, json={"body": "Bakacağız."}, headers=viewer.headers),
        403,
        "MISSING_PERMISSION",
    )
    problem(
        await client.post(url, json={"body": "Ben de!"}, headers=outsider.headers),
        403,
        "MISSING_PERMISSION",
    )
    problem(
        await client.post(url, json={"body": "Kendime"}, headers=bob.headers),
        403,
        "MISSING_PERMISSION",
    )
    assert (await client.post(url, json={"body": "x"})).status_code == 401
    for bad in ({"body": ""}, {"body": "   "}, {}, {"body": "x" * 5001}):
        problem(await client.post(url, json=bad, headers=engineer.headers), 422, "VALIDATION_ERROR")
    replied = await client.post(
        url, json={"body": " Düzelttik, v2'ye bakın. "}, headers=engineer.headers
    )
    assert replied.status_code == 200, replied.text
    reply = replied.json()["reply"]
    assert reply["body"] == "Düzelttik, v2'ye bakın."
    assert reply["author"] == {"id": engineer.id, "display_name": "Ekip 0"}
    assert reply["replied_at"]
    # Once: not again, not by the owner either.
    problem(
        await client.post(url, json={"body": "Ek"}, headers=alice.headers), 409, "ALREADY_REPLIED"
    )
    problem(
        await client.post(url, json={"body": "Ek"}, headers=engineer.headers),
        409,
        "ALREADY_REPLIED",
    )
    [listed] = (await client.get(f"{API}/designs/{design['id']}/reviews")).json()["items"]
    assert listed["reply"]["body"] == "Düzelttik, v2'ye bakın."
    # A reply does not move the rating; the reviewer replacing their review keeps the reply.
    assert await rating_of(client, design["id"]) == expected(2)
    updated = await reviewed(client, bob, design["id"], 4)
    assert updated["reply"]["body"] == "Düzelttik, v2'ye bakın."
    # Unknown reviews, and a review of another design under this one.
    problem(
        await client.post(
            f"{API}/designs/{design['id']}/reviews/{uuid.uuid4()}/reply",
            json={"body": "?"},
            headers=alice.headers,
        ),
        404,
        "REVIEW_NOT_FOUND",
    )
    other = await new_design(client, alice, workspace_id=team["id"], visibility="public")
    problem(
        await client.post(
            f"{API}/designs/{other['id']}/reviews/{review['id']}/reply",
            json={"body": "?"},
            headers=alice.headers,
        ),
        404,
        "REVIEW_NOT_FOUND",
    )
    # On a private design, outsiders do not learn that it exists.
    hidden = await new_design(client, alice, workspace_id=team["id"], visibility="private")
    problem(
        await client.post(
            f"{API}/designs/{hidden['id']}/reviews/{review['id']}/reply",
            json={"body": "?"},
            headers=outsider.headers,
        ),
        404,
        "DESIGN_NOT_FOUND",
    )


async def test_report_a_review_once(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    design = await new_design(client, alice, visibility="public")
    review = await reviewed(client, bob, design["id"], 1, body="Spam spam")
    url = f"{API}/designs/{design['id']}/reviews/{review['id']}/report"
    carol, dave = await people(client, 2, "Okur")
    first = await client.post(url, json={"reason": "spam", "note": "reklam"}, headers=carol.headers)
    assert first.status_code == 202, first.text
    assert first.content == b""
    problem(
        await client.post(url, json={"reason": "abuse"}, headers=carol.headers),
        409,
        "ALREADY_REPORTED",
    )
    # The design's owner may report too; so may the author of the review (odd, but harmless).
    assert (
        await client.post(url, json={"reason": "off_topic"}, headers=alice.headers)
    ).status_code == 202
    for bad in ({"reason": "boring"}, {}, {"reason": "other", "note": "x" * 501}):
        problem(await client.post(url, json=bad, headers=dave.headers), 422, "VALIDATION_ERROR")
    assert (await client.post(url, json={"reason": "spam"})).status_code == 401
    problem(
        await client.post(
            f"{API}/designs/{design['id']}/reviews/{uuid.uuid4()}/report",
            json={"reason": "spam"},
            headers=dave.headers,
        ),
        404,
        "REVIEW_NOT_FOUND",
    )
    [count] = await db_scalars(
        app, select(Review.report_count).where(Review.id == uuid.UUID(review["id"]))
    )
    assert count == 2
    reports = await db_scalars(
        app,
        select(ReviewReport.reason).where(ReviewReport.review_id == uuid.UUID(review["id"])),
    )
    assert sorted(reports) == ["off_topic", "spam"]
    # Reporting does not hide or change the review.
    [listed] = (await client.get(f"{API}/designs/{design['id']}/reviews")).json()["items"]
    assert listed["id"] == review["id"]
    assert "report_count" not in listed


async def test_list_pages_with_a_cursor_and_sorts_by_rating(
    client: httpx.AsyncClient, alice: Account
) -> None:
    design = await new_design(client, alice, visibility="public")
    url = f"{API}/designs/{design['id']}/reviews"
    reviewers = await people(client, 5, "Sıra")
    ratings = [3, 1, 5, 2, 4]
    written = []
    for account, rating in zip(reviewers, ratings, strict=True):
        written.append((await reviewed(client, account, design["id"], rating))["id"])

    async def walk(**params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        pages = 0
        while True:
            query = {"limit": 2, **params, **({"cursor": cursor} if cursor else {})}
            response = await client.get(url, params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= 2
            items += page["items"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                assert "link" not in response.headers
                break
            assert 'rel="next"' in response.headers["link"]
        assert pages == 3
        return items

    newest_first = await walk()
    assert [item["id"] for item in newest_first] == written[::-1]
    by_rating = await walk(sort="rating")
    assert [item["rating"] for item in by_rating] == [1, 2, 3, 4, 5]
    best_first = await walk(sort="-rating")
    assert [item["rating"] for item in best_first] == [5, 4, 3, 2, 1]
    assert {item["author"]["display_name"] for item in best_first} == {
        f"Sıra {i}" for i in range(5)
    }
    problem(await client.get(url, params={"sort": "body"}), 400, "INVALID_SORT")
    problem(await client.get(url, params={"cursor": "bozuk"}), 400, "INVALID_CURSOR")
    # A private design's reviews are as hidden as the design.
    private = await new_design(client, alice, visibility="private")
    problem(await client.get(f"{API}/designs/{private['id']}/reviews"), 404, "DESIGN_NOT_FOUND")
