"""HTTP layer of reviews: write or replace yours, list, reply (the design's team), report."""

from __future__ import annotations

import uuid

from fastapi import Request, Response, status

from tezgah.auth.dependencies import CacheDep, CurrentUser, PageDep
from tezgah.core.db import SessionDep
from tezgah.core.pagination import Page, Sorting, paginate_request
from tezgah.core.routing import AUTH_PROBLEM_RESPONSES, make_router, problem_doc
from tezgah.designs import reviews
from tezgah.designs.models import Review
from tezgah.designs.repository import reviews_of
from tezgah.designs.router import Readable, Writable
from tezgah.designs.schemas import ReplyIn, ReportIn, ReviewIn, ReviewOut

router = make_router(
    tags=["reviews"],
    responses={**AUTH_PROBLEM_RESPONSES, 404: problem_doc("No such design or review")},
)
REVIEW_SORTING = Sorting(
    {"created_at": Review.created_at, "rating": Review.rating},
    default="-created_at",
    tiebreaker=Review.id,
)


@router.get(
    "/designs/{design_id}/reviews",
    response_model=Page[ReviewOut],
    summary="Reviews of a design (sort: created_at, rating)",
)
async def list_reviews(
    request: Request, response: Response, access: Readable, session: SessionDep, params: PageDep
) -> Page[ReviewOut]:
    statement = reviews_of(access.design.id)
    page = await paginate_request(request, response, session, statement, params, REVIEW_SORTING)
    return Page[ReviewOut](
        items=await reviews.review_outs(session, page.items), next_cursor=page.next_cursor
    )


@router.post(
    "/designs/{design_id}/reviews",
    response_model=ReviewOut,
    status_code=status.HTTP_201_CREATED,
    summary="Review a design (again: replaces your review, 200)",
    responses={200: {"model": ReviewOut, "description": "Your earlier review, replaced"}},
)
async def write_review(
    data: ReviewIn,
    access: Readable,
    user: CurrentUser,
    session: SessionDep,
    cache: CacheDep,
    response: Response,
) -> ReviewOut:
    review, created = await reviews.write(session, cache, access, user, data)
    if not created:
        response.status_code = status.HTTP_200_OK
    await session.flush()
    [out] = await reviews.review_outs(session, [review])
    return out


@router.delete(
    "/designs/{design_id}/reviews/{review_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a review (its author, or a superuser)",
)
async def delete_review(
    review_id: uuid.UUID,
    access: Readable,
    user: CurrentUser,
    session: SessionDep,
    cache: CacheDep,
) -> Response:
    review = await reviews.review_of(session, access, review_id)
    await reviews.delete(session, cache, access, review, user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/designs/{design_id}/reviews/{review_id}/reply",
    response_model=ReviewOut,
    summary="Answer a review of your workspace's design (once)",
)
async def reply_to_review(
    review_id: uuid.UUID, data: ReplyIn, access: Writable, user: CurrentUser, session: SessionDep
) -> ReviewOut:
    review = await reviews.review_of(session, access, review_id)
    reviews.reply(review, user, data.body)
    [out] = await reviews.review_outs(session, [review])
    return out


@router.post(
    "/designs/{design_id}/reviews/{review_id}/report",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    summary="Report a review to the moderators",
)
async def report_review(
    review_id: uuid.UUID, data: ReportIn, access: Readable, user: CurrentUser, session: SessionDep
) -> Response:
    review = await reviews.review_of(session, access, review_id)
    await reviews.report(session, review, user, data)
    return Response(status_code=status.HTTP_202_ACCEPTED)
