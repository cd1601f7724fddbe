"""The category tree: superusers shape it, everyone reads it in their language."""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.core.cache import Cache
from tezgah.core.i18n import get_language
from tezgah.designs import repository
from tezgah.designs.exceptions import (
    CategoryCycle,
    CategoryInUse,
    CategoryNotFound,
    CategorySlugTaken,
)
from tezgah.designs.models import Category
from tezgah.designs.schemas import CategoryIn, CategoryOut, CategoryUpdate
from tezgah.designs.service import invalidate_lists


async def category(session: AsyncSession, category_id: uuid.UUID) -> Category:
    found = await repository.category_by_id(session, category_id)
    if found is None:
        raise CategoryNotFound()
    return found


async def tree(session: AsyncSession) -> list[CategoryOut]:
    """Every category, nested under its parent, siblings by position then slug."""
    categories = await repository.all_categories(session)
    children: dict[uuid.UUID | None, list[Category]] = defaultdict(list)
    for item in categories:
        children[item.parent_id].append(item)

    def build(parent: uuid.UUID | None) -> list[CategoryOut]:
        return [category_out(item, build(item.id)) for item in children.get(parent, [])]

    return build(None)


def category_out(item: Category, children: list[CategoryOut] | None = None) -> CategoryOut:
    return CategoryOut(
        id=item.id,
        parent_id=item.parent_id,
        slug=item.slug,
        name=item.name_tr if get_language() == "tr" else item.name_en,
        name_en=item.name_en,
        name_tr=item.name_tr,
        position=item.position,
        children=children or [],
    )


async def create(session: AsyncSession, cache: Cache, data: CategoryIn) -> Category:
    if await repository.category_slug_exists(session, data.slug, other_than=None):
        raise CategorySlugTaken(params={"slug": data.slug})
    if data.parent_id is not None:
        await category(session, data.parent_id)
    item = Category(
        id=uuid.uuid4(),
        parent_id=data.parent_id,
        slug=data.slug,
        name_en=data.name_en.strip(),
        name_tr=data.name_tr.strip(),
        position=data.position,
    )
    session.add(item)
    await session.flush()
    invalidate_lists(session, cache)
    return item


async def update(
    session: AsyncSession, cache: Cache, item: Category, data: CategoryUpdate
) -> Category:
    changes = data.model_dump(exclude_unset=True)
    if changes.get("slug") and await repository.category_slug_exists(
        session, changes["slug"], other_than=item.id
    ):
        raise CategorySlugTaken(params={"slug": changes["slug"]})
    if "parent_id" in changes:
        await _check_parent(session, item, data.parent_id)
        item.parent_id = data.parent_id
    for field in ("slug", "name_en", "name_tr", "position"):
        if changes.get(field) is not None:
            value = changes[field]
            setattr(item, field, value.strip() if field.startswith("name_") else value)
    await session.flush()
    invalidate_lists(session, cache)
    return item


async def _check_parent(session: AsyncSession, item: Category, parent_id: uuid.UUID | None) -> None:
    """A new parent must exist and must not sit below the category (no cycles)."""
    if parent_id is None:
        return
    await category(session, parent_id)
    if item.id in await repository.ancestors(session, parent_id):
        raise CategoryCycle()


async def delete(session: AsyncSession, cache: Cache, item: Category) -> None:
    """Only a leaf can go; designs filed under it simply lose that category."""
    if await repository.has_children(session, item.id):
        raise CategoryInUse()
    await session.delete(item)
    invalidate_lists(session, cache)
