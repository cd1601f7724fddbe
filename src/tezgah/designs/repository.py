"""Queries of the design hub. Everything a list page shows comes from one statement (joins and
per-row aggregates), so a page costs the same number of statements whatever its size."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    cast,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from tezgah.auth.models import Membership, User, Workspace
from tezgah.core.storage import BlobStore
from tezgah.designs.models import (
    Category,
    Design,
    DesignCategory,
    DesignTag,
    DesignVersion,
    Review,
    ReviewReport,
    ShareLink,
)

# Letters and digits: the underscore is punctuation to both full-text engines (a term of
# underscores alone would match nothing, one with inner underscores would be a phrase).
SEARCH_TERM = re.compile(r"[^\W_]+", re.UNICODE)
MAX_SEARCH_TERMS = 8
# The databases fold I to i (never to dotless ı) and keep ı apart from i, so "ışık" would not
# find "Işık" nor "IŞIK": every Turkish I goes to plain i in the stored text and in queries.
_SEARCH_FOLD = str.maketrans({"I": "i", "İ": "i", "ı": "i"})


def search_fold(text: str) -> str:
    """Text as the full-text index holds it (and queries compare): Turkish I's as i."""
    return text.translate(_SEARCH_FOLD)


@dataclass(frozen=True)
class Viewer:
    """Whose list it is: nobody, a person (their workspaces), or an API key (its workspace,
    when it may read designs and its creator is still a member: ``user_id`` is the creator)."""

    user_id: uuid.UUID | None = None
    key_workspace_id: uuid.UUID | None = None


@dataclass(frozen=True)
class DesignFilters:
    workspace_id: uuid.UUID | None = None
    category_id: uuid.UUID | None = None
    tag: str | None = None
    format: str | None = None
    min_rating: float | None = None
    visibility: str | None = None
    author_id: uuid.UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    q: str | None = None


# Designs ---------------------------------------------------------------------------------------


async def design_by_id(session: AsyncSession, design_id: uuid.UUID) -> Design | None:
    return await session.get(Design, design_id)


async def slug_exists(
    session: AsyncSession, workspace_id: uuid.UUID, slug: str, *, other_than: uuid.UUID | None
) -> bool:
    statement = select(Design.id).where(Design.workspace_id == workspace_id, Design.slug == slug)
    if other_than is not None:
        statement = statement.where(Design.id != other_than)
    return (await session.scalar(statement.limit(1))) is not None


async def slugs_like(session: AsyncSession, workspace_id: uuid.UUID, base: str) -> set[str]:
    rows = await session.scalars(
        select(Design.slug).where(
            Design.workspace_id == workspace_id,
            or_(Design.slug == base, Design.slug.like(base + "-%")),
        )
    )
    return set(rows.all())


def member_workspaces(user_id: uuid.UUID) -> Select[uuid.UUID]:
    return select(Membership.workspace_id).where(Membership.user_id == user_id)


def visible_to(viewer: Viewer, *, listed: bool) -> ColumnElement[bool]:
    """Designs ``viewer`` may see. ``listed``: in lists, unlisted designs of other workspaces
    stay out (they are reachable only by their link)."""
    shown = ("public",) if listed else ("public", "unlisted")
    condition: ColumnElement[bool] = Design.visibility.in_(shown)
    if viewer.user_id is not None:
        workspaces = member_workspaces(viewer.user_id)
        if viewer.key_workspace_id is not None:
            # A key sees its own workspace, and only while its creator is a member there.
            workspaces = workspaces.where(Membership.workspace_id == viewer.key_workspace_id)
        condition = or_(condition, Design.workspace_id.in_(workspaces))
    return condition


def category_subtree(category_id: uuid.UUID) -> Select[uuid.UUID]:
    """The category and all its descendants (a recursive query; the tree is small)."""
    tree = select(Category.id).where(Category.id == category_id).cte("subtree", recursive=True)
    tree = tree.union_all(select(Category.id).where(Category.parent_id == tree.c.id))
    return select(tree.c.id)


def search_condition(dialect: str, query: str) -> ColumnElement[bool] | None:
    """Full-text match on name, description and tags: every word, as a prefix."""
    terms = SEARCH_TERM.findall(search_fold(query))[:MAX_SEARCH_TERMS]
    if not terms:
        return None
    if dialect == "postgresql":
        tsquery = " & ".join(f"{term}:*" for term in terms)
        vector = func.to_tsvector(literal_column("'simple'"), Design.search_text)
        return vector.op("@@")(func.to_tsquery(literal_column("'simple'"), tsquery))
    match = " ".join(f'"{term}"*' for term in terms)
    matching = text("SELECT design_id FROM designs_fts WHERE designs_fts MATCH :match").bindparams(
        match=match
    )
    return Design.id.in_(matching.columns(design_id=Design.id.type))


def filtered_designs(viewer: Viewer, filters: DesignFilters, dialect: str) -> Select[Any]:
    """The list's query before sorting and paging: rows of :func:`design_rows`."""
    statement = design_rows(dialect).where(
        Design.deleted_at.is_(None), visible_to(viewer, listed=True)
    )
    return statement.where(*_filter_conditions(filters, dialect))


# Current-version columns of a list row, by the name they carry in the row.
VERSION_COLUMNS = {
    "v_id": DesignVersion.id,
    "v_number": DesignVersion.number,
    "v_message": DesignVersion.message,
    "v_filename": DesignVersion.filename,
    "v_size": DesignVersion.size,
    "v_sha256": DesignVersion.sha256,
    "v_format": DesignVersion.format,
    "v_media_type": DesignVersion.media_type,
    "v_inspection_status": DesignVersion.inspection_status,
    "v_created_at": DesignVersion.created_at,
    "v_author_id": DesignVersion.author_id,
    "v_thumbnail_sha256": DesignVersion.thumbnail_sha256,
}


@lru_cache(maxsize=4)
def design_rows(dialect: str) -> Select[Any]:
    """Everything a list item shows, in one statement of plain columns (no ORM objects to
    build): the design's, its current version's and that version's author's name (outer
    joins), and its tags and categories aggregated per row. The sort columns keep their own
    names, so the page's cursor reads them from the last row."""
    columns: list[Any] = [
        Design.id,
        Design.workspace_id,
        Design.slug,
        Design.name,
        Design.visibility,
        Design.license,
        Design.rating_avg,
        Design.rating_count,
        Design.remixed_from_id,
        Design.created_at,
        Design.updated_at,
        *(column.label(name) for name, column in VERSION_COLUMNS.items()),
        User.display_name.label("v_author_name"),
        _tags_column(dialect).label("tags"),
        _categories_column(dialect).label("categories"),
    ]
    statement: Select[Any] = (
        select(*columns)
        .select_from(Design)
        .outerjoin(DesignVersion, DesignVersion.id == Design.current_version_id)
        .outerjoin(User, User.id == DesignVersion.author_id)
    )
    return statement


def _tags_column(dialect: str) -> Any:
    """Comma-joined tags (a tag cannot hold a comma)."""
    joined = (
        func.string_agg(DesignTag.tag, literal_column("','"))
        if dialect == "postgresql"
        else func.group_concat(DesignTag.tag, ",")
    )
    return select(joined).where(DesignTag.design_id == Design.id).scalar_subquery()


def _categories_column(dialect: str) -> Any:
    """The design's categories as a JSON array of ``[id, slug, name_en, name_tr, position]``."""
    fields = (Category.id, Category.slug, Category.name_en, Category.name_tr, Category.position)
    if dialect == "postgresql":
        aggregated: Any = cast(func.json_agg(func.json_build_array(*fields)), Text)
    else:
        aggregated = func.json_group_array(func.json_array(*fields))
    return (
        select(aggregated)
        .select_from(DesignCategory)
        .join(Category, Category.id == DesignCategory.category_id)
        .where(DesignCategory.design_id == Design.id)
        .scalar_subquery()
    )


def _filter_conditions(filters: DesignFilters, dialect: str) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.workspace_id is not None:
        conditions.append(Design.workspace_id == filters.workspace_id)
    if filters.visibility is not None:
        conditions.append(Design.visibility == filters.visibility)
    if filters.author_id is not None:
        conditions.append(Design.created_by_id == filters.author_id)
    if filters.min_rating is not None:
        conditions.append(Design.rating_avg >= filters.min_rating)
    if filters.created_after is not None:
        conditions.append(Design.created_at >= filters.created_after)
    if filters.created_before is not None:
        conditions.append(Design.created_at < filters.created_before)
    if filters.tag is not None:
        conditions.append(
            exists().where(DesignTag.design_id == Design.id, DesignTag.tag == filters.tag)
        )
    if filters.category_id is not None:
        in_tree = DesignCategory.category_id.in_(category_subtree(filters.category_id))
        conditions.append(exists().where(DesignCategory.design_id == Design.id, in_tree))
    if filters.format is not None:
        # The current version is joined in by design_rows.
        conditions.append(DesignVersion.format == filters.format)
    if filters.q:
        matched = search_condition(dialect, filters.q)
        if matched is not None:
            conditions.append(matched)
    return conditions


def deleted_designs(workspace_id: uuid.UUID, dialect: str) -> Select[Any]:
    """A workspace's trash, as rows of :func:`design_rows`."""
    return design_rows(dialect).where(
        Design.workspace_id == workspace_id, Design.deleted_at.is_not(None)
    )


async def purgeable_designs(
    session: AsyncSession, deleted_before: datetime, limit: int
) -> list[Design]:
    rows = await session.scalars(
        select(Design).where(Design.deleted_at < deleted_before).limit(limit)
    )
    return list(rows.all())


# What a page of designs shows ------------------------------------------------------------------


async def categories_of(
    session: AsyncSession, design_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Category]]:
    found: dict[uuid.UUID, list[Category]] = defaultdict(list)
    if not design_ids:
        return found
    rows = await session.execute(
        select(DesignCategory.design_id, Category)
        .join(Category, Category.id == DesignCategory.category_id)
        .where(DesignCategory.design_id.in_(design_ids))
        .order_by(Category.position, Category.slug)
    )
    for design_id, category in rows.all():
        found[design_id].append(category)
    return found


async def tags_of(
    session: AsyncSession, design_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    found: dict[uuid.UUID, list[str]] = defaultdict(list)
    if not design_ids:
        return found
    rows = await session.execute(
        select(DesignTag.design_id, DesignTag.tag)
        .where(DesignTag.design_id.in_(design_ids))
        .order_by(DesignTag.tag)
    )
    for design_id, tag in rows.all():
        found[design_id].append(tag)
    return found


async def people(session: AsyncSession, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Display names by user id."""
    if not user_ids:
        return {}
    rows = await session.execute(select(User.id, User.display_name).where(User.id.in_(user_ids)))
    return {user_id: name for user_id, name in rows.all()}  # noqa: C416 - rows, not pairs


async def replace_tags(session: AsyncSession, design_id: uuid.UUID, tags: Sequence[str]) -> None:
    await session.execute(delete(DesignTag).where(DesignTag.design_id == design_id))
    session.add_all(DesignTag(design_id=design_id, tag=tag) for tag in tags)


async def replace_categories(
    session: AsyncSession, design_id: uuid.UUID, category_ids: Sequence[uuid.UUID]
) -> None:
    await session.execute(delete(DesignCategory).where(DesignCategory.design_id == design_id))
    session.add_all(
        DesignCategory(design_id=design_id, category_id=category_id) for category_id in category_ids
    )


async def is_member(session: AsyncSession, user_id: uuid.UUID, workspace_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(Membership.id).where(
            Membership.user_id == user_id, Membership.workspace_id == workspace_id
        )
    )
    return found is not None


async def personal_workspace(session: AsyncSession, user_id: uuid.UUID) -> Workspace | None:
    return await session.scalar(
        select(Workspace)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user_id, Workspace.is_personal.is_(True))
        .order_by(Workspace.created_at)
        .limit(1)
    )


# Versions --------------------------------------------------------------------------------------


async def version_of(
    session: AsyncSession, design_id: uuid.UUID, version_id: uuid.UUID
) -> DesignVersion | None:
    version = await session.get(DesignVersion, version_id)
    return version if version is not None and version.design_id == design_id else None


def versions_of(design_id: uuid.UUID) -> Select[DesignVersion]:
    return (
        select(DesignVersion)
        .options(
            defer(DesignVersion.inspection, raiseload=True),
            defer(DesignVersion.inspection_error, raiseload=True),
        )
        .where(DesignVersion.design_id == design_id)
    )


async def next_version_number(session: AsyncSession, design_id: uuid.UUID) -> int:
    """Counted up in the design row itself: two writers serialize on that row."""
    number = await session.scalar(
        update(Design)
        .where(Design.id == design_id)
        .values(version_count=Design.version_count + 1)
        .returning(Design.version_count)
    )
    return int(number or 1)


async def blob_in_use(session: AsyncSession, sha256: str) -> bool:
    from tezgah.uploads.models import Upload

    version = select(DesignVersion.id).where(
        or_(DesignVersion.sha256 == sha256, DesignVersion.thumbnail_sha256 == sha256)
    )
    upload = select(Upload.id).where(Upload.sha256 == sha256)
    return bool(await session.scalar(select(or_(exists(version), exists(upload)))))


async def delete_blob_if_unused(session: AsyncSession, blobs: BlobStore, sha256: str) -> bool:
    """Delete a stored file no version, thumbnail or upload refers to (any more); True if it
    went. Call it after the rows that referred to it are gone for good (committed)."""
    if await blob_in_use(session, sha256):
        return False
    await blobs.delete(sha256)
    return True


async def blobs_of_design(session: AsyncSession, design_id: uuid.UUID) -> set[str]:
    rows = await session.execute(
        select(DesignVersion.sha256, DesignVersion.thumbnail_sha256).where(
            DesignVersion.design_id == design_id
        )
    )
    found: set[str] = set()
    for sha256, thumbnail in rows.all():
        found.add(sha256)
        if thumbnail:
            found.add(thumbnail)
    return found


# Categories ------------------------------------------------------------------------------------


async def all_categories(session: AsyncSession) -> list[Category]:
    rows = await session.scalars(select(Category).order_by(Category.position, Category.slug))
    return list(rows.all())


async def category_by_id(session: AsyncSession, category_id: uuid.UUID) -> Category | None:
    return await session.get(Category, category_id)


async def category_slug_exists(
    session: AsyncSession, slug: str, *, other_than: uuid.UUID | None
) -> bool:
    statement = select(Category.id).where(Category.slug == slug)
    if other_than is not None:
        statement = statement.where(Category.id != other_than)
    return (await session.scalar(statement.limit(1))) is not None


async def existing_category_ids(
    session: AsyncSession, category_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    if not category_ids:
        return set()
    rows = await session.scalars(select(Category.id).where(Category.id.in_(category_ids)))
    return set(rows.all())


async def has_children(session: AsyncSession, category_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(Category.id).where(Category.parent_id == category_id).limit(1)
    )
    return found is not None


async def ancestors(session: AsyncSession, category_id: uuid.UUID) -> set[uuid.UUID]:
    """The category and everything above it."""
    tree = select(Category.id, Category.parent_id).where(Category.id == category_id)
    up = tree.cte("ancestors", recursive=True)
    up = up.union_all(select(Category.id, Category.parent_id).where(Category.id == up.c.parent_id))
    rows = await session.scalars(select(up.c.id))
    return set(rows.all())


# Reviews ---------------------------------------------------------------------------------------


async def review_of(
    session: AsyncSession, design_id: uuid.UUID, review_id: uuid.UUID
) -> Review | None:
    review = await session.get(Review, review_id)
    return review if review is not None and review.design_id == design_id else None


async def review_by_author(
    session: AsyncSession, design_id: uuid.UUID, user_id: uuid.UUID
) -> Review | None:
    return await session.scalar(
        select(Review).where(Review.design_id == design_id, Review.user_id == user_id)
    )


def reviews_of(design_id: uuid.UUID) -> Select[Review]:
    return select(Review).where(Review.design_id == design_id)


async def move_rating(
    session: AsyncSession, design_id: uuid.UUID, *, count: int, total: int
) -> None:
    """Move a design's rating count and sum, and the average with them, in one statement:
    concurrent reviews cannot lose each other's update."""
    new_count = Design.rating_count + count
    new_sum = Design.rating_sum + total
    average: Any = func.coalesce((new_sum * 1.0) / func.nullif(new_count, 0), literal_column("0.0"))
    await session.execute(
        update(Design)
        .where(Design.id == design_id)
        .values(rating_count=new_count, rating_sum=new_sum, rating_avg=average)
        .execution_options(synchronize_session=False)
    )


# Share links -----------------------------------------------------------------------------------


def share_links_of(design_id: uuid.UUID) -> Select[ShareLink]:
    return select(ShareLink).where(ShareLink.design_id == design_id)


async def share_link_of(
    session: AsyncSession, design_id: uuid.UUID, link_id: uuid.UUID
) -> ShareLink | None:
    link = await session.get(ShareLink, link_id)
    return link if link is not None and link.design_id == design_id else None


async def share_link_by_hash(session: AsyncSession, token_hash: str) -> ShareLink | None:
    return await session.scalar(select(ShareLink).where(ShareLink.token_hash == token_hash))


async def review_reported_by(
    session: AsyncSession, review_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    found = await session.scalar(
        select(ReviewReport.id).where(
            ReviewReport.review_id == review_id, ReviewReport.user_id == user_id
        )
    )
    return found is not None
