"""Business rules of designs: who may see and change one, creating, editing, the trash, remixes,
and the list page.

Visibility: a private design is seen by its workspace's members (and its API keys with
``designs:read``); an unlisted one by anyone who has its link, but it is left out of other
people's lists; a public one by everyone. A design somebody may not see is a 404, never a 403.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth.dependencies import Principal, resolve_workspace_access
from tezgah.auth.exceptions import MissingPermission, WorkspaceNotFound
from tezgah.auth.permissions import Permission
from tezgah.core.cache import Cache
from tezgah.core.db import after_commit, utcnow
from tezgah.core.i18n import get_language
from tezgah.designs import markdown, repository
from tezgah.designs.exceptions import (
    DesignNotFound,
    NotDeleted,
    RestoreWindowOver,
    SlugTaken,
    UnknownCategories,
)
from tezgah.designs.models import Design, DesignVersion
from tezgah.designs.repository import DesignFilters, Viewer
from tezgah.designs.schemas import (
    CategoryRef,
    DesignIn,
    DesignListItem,
    DesignUpdate,
    PersonRef,
    RatingSummary,
    RemixIn,
    VersionSummary,
    Visibility,
)

TRASH_DAYS = 30
PUBLIC_LIST_NAMESPACE = "designs:public-lists"
API_PREFIX = "/api/v1"
_TURKISH_ASCII = str.maketrans("çğıİöşüÇĞÖŞÜ", "cgiIosuCGOSU")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass
class DesignAccess:
    design: Design
    permissions: frozenset[str]
    principal: Principal | None

    @property
    def can_write(self) -> bool:
        return Permission.designs_write in self.permissions

    @property
    def is_member(self) -> bool:
        return bool(self.permissions)


def viewer_of(principal: Principal | None) -> Viewer:
    if principal is None:
        return Viewer()
    key = principal.api_key
    if key is not None:
        if Permission.designs_read.value not in key.scopes:
            return Viewer()
        # Like the key's other access, bounded by its creator's membership (a key never
        # exceeds its creator's current role; every role reads designs).
        return Viewer(user_id=principal.user.id, key_workspace_id=key.workspace_id)
    return Viewer(user_id=principal.user.id)


async def permissions_in(
    session: AsyncSession, principal: Principal | None, workspace_id: uuid.UUID
) -> frozenset[str]:
    """The caller's permissions in a workspace; empty for anonymous callers and outsiders."""
    if principal is None:
        return frozenset()
    try:
        access = await resolve_workspace_access(session, principal, workspace_id)
    except WorkspaceNotFound:
        return frozenset()
    return access.permissions


async def readable(
    session: AsyncSession, principal: Principal | None, design_id: uuid.UUID
) -> DesignAccess:
    design = await repository.design_by_id(session, design_id)
    if design is None or design.deleted_at is not None:
        raise DesignNotFound()
    permissions = await permissions_in(session, principal, design.workspace_id)
    if Permission.designs_read not in permissions and design.visibility == Visibility.private:
        raise DesignNotFound()
    return DesignAccess(design, permissions, principal)


async def writable(
    session: AsyncSession, principal: Principal, design_id: uuid.UUID, *, in_trash: bool = False
) -> DesignAccess:
    """The design, if the caller may change it. ``in_trash``: the design must be deleted
    (restore); otherwise it must not be."""
    design = await repository.design_by_id(session, design_id)
    if design is None or (design.deleted_at is not None) != in_trash:
        raise DesignNotFound()
    permissions = await permissions_in(session, principal, design.workspace_id)
    if Permission.designs_write not in permissions:
        visible = Permission.designs_read in permissions or (
            not in_trash and design.visibility != Visibility.private
        )
        if not visible:
            raise DesignNotFound()
        raise MissingPermission(params={"permission": Permission.designs_write.value})
    return DesignAccess(design, permissions, principal)


async def writable_workspace(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID | None
) -> uuid.UUID:
    """The workspace a new design goes to: the one named, the API key's, or the caller's
    personal workspace; the caller needs ``designs:write`` there."""
    if workspace_id is None:
        workspace_id = await _default_workspace(session, principal)
    access = await resolve_workspace_access(session, principal, workspace_id)
    if Permission.designs_write not in access.permissions:
        raise MissingPermission(params={"permission": Permission.designs_write.value})
    return access.workspace.id


async def _default_workspace(session: AsyncSession, principal: Principal) -> uuid.UUID:
    if principal.api_key is not None:
        return principal.api_key.workspace_id
    workspace = await repository.personal_workspace(session, principal.user.id)
    if workspace is None:
        raise WorkspaceNotFound()
    return workspace.id


# Slugs and search text -------------------------------------------------------------------------


def slugify(name: str) -> str:
    """ASCII slug; Turkish letters map to their base letters (ş -> s, ı -> i)."""
    ascii_name = unicodedata.normalize("NFKD", name.translate(_TURKISH_ASCII))
    ascii_name = ascii_name.encode("ascii", "ignore").decode().lower()
    return _NOT_SLUG.sub("-", ascii_name).strip("-")[:100].strip("-") or "design"


async def unique_slug(session: AsyncSession, workspace_id: uuid.UUID, name: str) -> str:
    base = slugify(name)
    taken = await repository.slugs_like(session, workspace_id, base)
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def search_text(name: str, description: str, tags: Iterable[str]) -> str:
    return repository.search_fold("\n".join((name, description, " ".join(tags))))


async def _checked_categories(
    session: AsyncSession, category_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    unique = list(dict.fromkeys(category_ids))
    missing = set(unique) - await repository.existing_category_ids(session, unique)
    if missing:
        raise UnknownCategories(
            params={"ids": ", ".join(sorted(str(i) for i in missing))},
            field_errors={"category_ids": [str(i) for i in sorted(missing, key=str)]},
        )
    return unique


# Public list cache -----------------------------------------------------------------------------


def invalidate_lists(session: AsyncSession, cache: Cache) -> None:
    """Cached public list pages are dropped once this change is committed."""

    async def drop() -> None:
        await cache.invalidate_namespace(PUBLIC_LIST_NAMESPACE)

    after_commit(session, drop)


# Create, update, delete ------------------------------------------------------------------------


async def create(
    session: AsyncSession, cache: Cache, principal: Principal, data: DesignIn
) -> Design:
    workspace_id = await writable_workspace(session, principal, data.workspace_id)
    if data.slug is not None and await repository.slug_exists(
        session, workspace_id, data.slug, other_than=None
    ):
        raise SlugTaken(params={"slug": data.slug})
    category_ids = await _checked_categories(session, data.category_ids)
    design = Design(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        slug=data.slug or await unique_slug(session, workspace_id, data.name),
        name=data.name.strip(),
        description=data.description,
        visibility=data.visibility.value,
        license=data.license,
        material_hints=list(data.material_hints),
        created_by_id=principal.user.id,
        search_text=search_text(data.name, data.description, data.tags),
    )
    session.add(design)
    await session.flush()
    await repository.replace_tags(session, design.id, data.tags)
    await repository.replace_categories(session, design.id, category_ids)
    invalidate_lists(session, cache)
    return design


async def update(
    session: AsyncSession, cache: Cache, access: DesignAccess, data: DesignUpdate
) -> Design:
    design = access.design
    changes = data.model_dump(exclude_unset=True)
    if changes.get("slug") and await repository.slug_exists(
        session, design.workspace_id, changes["slug"], other_than=design.id
    ):
        raise SlugTaken(params={"slug": changes["slug"]})
    if data.name is not None:
        changes["name"] = data.name.strip()  # as on create
    for field in ("name", "slug", "description", "license", "material_hints"):
        if field in changes and (changes[field] is not None or field == "license"):
            setattr(design, field, changes[field])
    if data.visibility is not None:
        design.visibility = data.visibility.value
    tags = (await repository.tags_of(session, [design.id]))[design.id]
    if data.tags is not None:
        tags = list(data.tags)
        await repository.replace_tags(session, design.id, tags)
    if data.category_ids is not None:
        category_ids = await _checked_categories(session, data.category_ids)
        await repository.replace_categories(session, design.id, category_ids)
    design.search_text = search_text(design.name, design.description, tags)
    design.updated_at = utcnow()
    invalidate_lists(session, cache)
    return design


def soft_delete(session: AsyncSession, cache: Cache, access: DesignAccess) -> None:
    access.design.deleted_at = utcnow()
    invalidate_lists(session, cache)


def restore(session: AsyncSession, cache: Cache, access: DesignAccess) -> Design:
    design = access.design
    if design.deleted_at is None:
        raise NotDeleted()
    if design.deleted_at <= utcnow() - timedelta(days=TRASH_DAYS):
        raise RestoreWindowOver(params={"days": TRASH_DAYS})
    design.deleted_at = None
    invalidate_lists(session, cache)
    return design


async def remix(
    session: AsyncSession, cache: Cache, principal: Principal, source: Design, data: RemixIn
) -> Design:
    """A copy in another workspace with the source's current file as its first version."""
    from tezgah.designs import versions

    workspace_id = await writable_workspace(session, principal, data.workspace_id)
    source_tags = (await repository.tags_of(session, [source.id]))[source.id]
    source_categories = (await repository.categories_of(session, [source.id]))[source.id]
    name = (data.name or source.name).strip()
    copy = Design(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        slug=await unique_slug(session, workspace_id, name),
        name=name,
        description=source.description,
        visibility=Visibility.private.value,
        license=source.license,
        material_hints=list(source.material_hints),
        remixed_from_id=source.id,
        created_by_id=principal.user.id,
        search_text=search_text(name, source.description, source_tags),
    )
    session.add(copy)
    await session.flush()
    await repository.replace_tags(session, copy.id, source_tags)
    await repository.replace_categories(session, copy.id, [c.id for c in source_categories])
    if source.current_version_id is not None:
        await versions.copy_current(session, principal, source, copy)
    invalidate_lists(session, cache)
    return copy


async def purge_deleted(session: AsyncSession, now: datetime | None = None) -> list[str]:
    """Remove designs in the trash for longer than the restore window; returns the SHA-256s
    of the files they held, for the caller to delete from the blob store once committed (and
    only if nothing else refers to them)."""
    deleted_before = (now or utcnow()) - timedelta(days=TRASH_DAYS)
    freed: set[str] = set()
    while batch := await repository.purgeable_designs(session, deleted_before, 200):
        for design in batch:
            freed |= await repository.blobs_of_design(session, design.id)
            design.current_version_id = None
            await session.flush()
            await session.delete(design)
        await session.flush()
    return sorted(freed)


# Output ----------------------------------------------------------------------------------------


def design_url(design_id: uuid.UUID) -> str:
    return f"{API_PREFIX}/designs/{design_id}"


SUMMARY_FIELDS = (
    "id",
    "number",
    "message",
    "filename",
    "size",
    "sha256",
    "format",
    "media_type",
    "inspection_status",
    "created_at",
)


def _summary(get: Callable[[str], Any], author: PersonRef | None) -> VersionSummary:
    return VersionSummary(**{field: get(field) for field in SUMMARY_FIELDS}, author=author)


def version_summary(version: DesignVersion, names: dict[uuid.UUID, str]) -> VersionSummary:
    author = None
    if version.author_id is not None and version.author_id in names:
        author = PersonRef(id=version.author_id, display_name=names[version.author_id])
    return _summary(lambda field: getattr(version, field), author)


async def list_items(session: AsyncSession, designs: Sequence[Design]) -> list[DesignListItem]:
    """List items for designs already loaded (one design's view, a trash page): one statement."""
    if not designs:
        return []
    dialect = session.get_bind().dialect.name
    statement = repository.design_rows(dialect).where(Design.id.in_([d.id for d in designs]))
    rows = {row.id: row for row in (await session.execute(statement)).all()}
    return [item_from_row(rows[design.id]) for design in designs]


def items_from_rows(rows: Sequence[Row[Any]]) -> list[DesignListItem]:
    return [item_from_row(row) for row in rows]


def item_from_row(row: Row[Any]) -> DesignListItem:
    """One row of ``repository.design_rows``."""
    thumbnail = None
    if row.v_thumbnail_sha256 is not None:
        thumbnail = f"{design_url(row.id)}/thumbnail?v={row.v_thumbnail_sha256[:16]}"
    return DesignListItem(
        id=row.id,
        workspace_id=row.workspace_id,
        slug=row.slug,
        name=row.name,
        visibility=row.visibility,
        license=row.license,
        tags=sorted(row.tags.split(",")) if row.tags else [],
        categories=_category_refs(row.categories),
        rating=RatingSummary(average=round(row.rating_avg, 2), count=row.rating_count),
        current_version=_version_from_row(row) if row.v_id is not None else None,
        thumbnail_url=thumbnail,
        remixed_from_id=row.remixed_from_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _version_from_row(row: Row[Any]) -> VersionSummary:
    """The current version of a ``repository.design_rows`` row (its columns are ``v_*``)."""
    author = None
    if row.v_author_id is not None and row.v_author_name is not None:
        author = PersonRef(id=row.v_author_id, display_name=row.v_author_name)
    return _summary(lambda field: getattr(row, "v_" + field), author)


def _category_refs(aggregated: str | None) -> list[CategoryRef]:
    entries = sorted(orjson.loads(aggregated or "[]"), key=lambda entry: (entry[4], entry[1]))
    turkish = get_language() == "tr"
    return [
        CategoryRef(
            id=uuid.UUID(str(entry[0])), slug=entry[1], name=entry[3] if turkish else entry[2]
        )
        for entry in entries
    ]


def description_html(design: Design) -> str:
    return markdown.render(design.description)


def list_filters(filters: DesignFilters) -> DesignFilters:
    """Tags compare normalised, like they are stored."""
    from tezgah.designs.schemas import normalize_tag

    if filters.tag is None:
        return filters
    return DesignFilters(**{**filters.__dict__, "tag": normalize_tag(filters.tag)})
