"""HTTP layer of the category tree: anyone reads it, superusers shape it."""

from __future__ import annotations

import uuid

from fastapi import Response, status

from tezgah.auth.dependencies import CacheDep, Superuser
from tezgah.core.db import SessionDep
from tezgah.core.routing import AUTH_PROBLEM_RESPONSES, make_router, problem_doc
from tezgah.designs import categories
from tezgah.designs.schemas import CategoryIn, CategoryOut, CategoryUpdate

router = make_router(
    tags=["categories"],
    responses={**AUTH_PROBLEM_RESPONSES, 404: problem_doc("No such category")},
)


@router.get("/categories", response_model=list[CategoryOut], summary="The category tree")
async def category_tree(session: SessionDep) -> list[CategoryOut]:
    return await categories.tree(session)


@router.post(
    "/categories",
    response_model=CategoryOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a category (superusers)",
)
async def create_category(
    data: CategoryIn, _: Superuser, session: SessionDep, cache: CacheDep
) -> CategoryOut:
    return categories.category_out(await categories.create(session, cache, data))


@router.patch(
    "/categories/{category_id}",
    response_model=CategoryOut,
    summary="Rename, reorder or move a category (superusers)",
)
async def update_category(
    category_id: uuid.UUID, data: CategoryUpdate, _: Superuser, session: SessionDep, cache: CacheDep
) -> CategoryOut:
    item = await categories.category(session, category_id)
    return categories.category_out(await categories.update(session, cache, item, data))


@router.delete(
    "/categories/{category_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a category without subcategories (superusers)",
)
async def delete_category(
    category_id: uuid.UUID, _: Superuser, session: SessionDep, cache: CacheDep
) -> Response:
    item = await categories.category(session, category_id)
    await categories.delete(session, cache, item)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
