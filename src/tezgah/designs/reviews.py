"""Reviews and ratings: one review per person per design, replaced on update.

The design's rating count, sum and average move in the same statement that writes a review
(see ``repository.move_rating``), so reading a rating never aggregates over reviews.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth.models import User
from tezgah.core.cache import Cache
from tezgah.core.db import utcnow
from tezgah.core.errors import RaceLost
from tezgah.designs import repository
from tezgah.designs.exceptions import (
    AlreadyReplied,
    AlreadyReported,
    NotReviewAuthor,
    OwnDesignReview,
    ReviewNotFound,
)
from tezgah.designs.models import Review, ReviewReport
from tezgah.designs.schemas import PersonRef, ReplyOut, ReportIn, ReviewIn, ReviewOut
from tezgah.designs.service import DesignAccess, invalidate_lists


async def review_of(session: AsyncSession, access: DesignAccess, review_id: uuid.UUID) -> Review:
    review = await repository.review_of(session, access.design.id, review_id)
    if review is None:
        raise ReviewNotFound()
    return review


async def write(
    session: AsyncSession, cache: Cache, access: DesignAccess, user: User, data: ReviewIn
) -> tuple[Review, bool]:
    """Create the caller's review, or replace it; True when it is new."""
    if access.is_member:
        raise OwnDesignReview()
    design_id = access.design.id
    review = await repository.review_by_author(session, design_id, user.id)
    created = review is None
    if review is None:
        review = Review(id=uuid.uuid4(), design_id=design_id, user_id=user.id, rating=data.rating)
        session.add(review)
        await session.flush()
        await repository.move_rating(session, design_id, count=1, total=data.rating)
    else:
        if not await _lock(session, review):
            raise RaceLost()
        await repository.move_rating(session, design_id, count=0, total=data.rating - review.rating)
        review.rating = data.rating
        review.updated_at = utcnow()
    review.title, review.body = data.title.strip(), data.body.strip()
    invalidate_lists(session, cache)
    return review, created


async def delete(
    session: AsyncSession, cache: Cache, access: DesignAccess, review: Review, user: User
) -> None:
    """The author takes their review back; a superuser removes one (moderation)."""
    if review.user_id != user.id and not user.is_superuser:
        raise NotReviewAuthor()
    if not await _lock(session, review):
        raise ReviewNotFound()  # deleted by a concurrent request
    await repository.move_rating(session, access.design.id, count=-1, total=-review.rating)
    await session.delete(review)
    invalidate_lists(session, cache)


async def _lock(session: AsyncSession, review: Review) -> bool:
    """Hold the review's row (a concurrent change of the same review waits here) and read its
    rating again: the design's rating sum then moves by what the review really held, and the
    review is always locked before the design (no deadlock). False if it is gone."""
    locked = await session.execute(
        update(Review)
        .where(Review.id == review.id)
        .values(rating=Review.rating)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], locked).rowcount != 1:
        return False
    await session.refresh(review, ["rating"])
    return True


def reply(review: Review, user: User, body: str) -> Review:
    """The design's workspace answers a review, once."""
    if review.reply_body is not None:
        raise AlreadyReplied()
    review.reply_body = body.strip()
    review.reply_by_id = user.id
    review.replied_at = utcnow()
    return review


async def report(session: AsyncSession, review: Review, user: User, data: ReportIn) -> None:
    if await repository.review_reported_by(session, review.id, user.id):
        raise AlreadyReported()
    session.add(
        ReviewReport(review_id=review.id, user_id=user.id, reason=data.reason.value, note=data.note)
    )
    await session.execute(
        update(Review)
        .where(Review.id == review.id)
        .values(report_count=Review.report_count + 1)
        .execution_options(synchronize_session=False)
    )


async def review_outs(session: AsyncSession, reviews: Sequence[Review]) -> list[ReviewOut]:
    """Reviews with their authors' and repliers' names, in one extra statement."""
    wanted = {r.user_id for r in reviews} | {r.reply_by_id for r in reviews if r.reply_by_id}
    names = await repository.people(session, wanted)
    return [_review_out(review, names) for review in reviews]


def _person(user_id: uuid.UUID | None, names: dict[uuid.UUID, str]) -> PersonRef | None:
    if user_id is None or user_id not in names:
        return None
    return PersonRef(id=user_id, display_name=names[user_id])


def _review_out(review: Review, names: dict[uuid.UUID, str]) -> ReviewOut:
    reply_out = None
    if review.reply_body is not None and review.replied_at is not None:
        reply_out = ReplyOut(
            body=review.reply_body,
            author=_person(review.reply_by_id, names),
            replied_at=review.replied_at,
        )
    return ReviewOut(
        id=review.id,
        design_id=review.design_id,
        rating=review.rating,
        title=review.title,
        body=review.body,
        author=_person(review.user_id, names),
        reply=reply_out,
        created_at=review.created_at,
        updated_at=review.updated_at,
    )
