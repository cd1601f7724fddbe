"""Request and response models of the design hub.

Inputs forbid unknown fields; outputs declare every field they show (a version never shows the
blob store's paths, a share link never shows its token again after creation).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tezgah.designs.formats import FileFormat

NAME_PATTERN = r"\S"
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$"
MAX_TAGS = 20
MAX_CATEGORIES = 5
MAX_MATERIALS = 10


class Visibility(StrEnum):
    private = "private"
    unlisted = "unlisted"
    public = "public"


class ReportReason(StrEnum):
    spam = "spam"
    abuse = "abuse"
    off_topic = "off_topic"
    other = "other"


def normalize_tag(tag: str) -> str:
    """Tags compare without case. Dotted capital I goes to i first: Python's ``lower()`` would
    turn it into i plus a combining dot, and no locale-aware mapping is used (ARCHITECTURE)."""
    return tag.strip().replace("İ", "i").lower()


def _normalize_tags(tags: list[str]) -> list[str]:
    unique: dict[str, None] = {}
    for tag in tags:
        unique.setdefault(normalize_tag(tag), None)
    return list(unique)


Tag = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^\s*[\w][\w .+-]*\s*$")]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS), AfterValidator(_normalize_tags)]
Material = Annotated[str, Field(min_length=1, max_length=40, pattern=NAME_PATTERN)]
License = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")
]


class StrictInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DesignIn(StrictInput):
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    visibility: Visibility = Visibility.private
    workspace_id: uuid.UUID | None = Field(
        default=None, description="Defaults to your personal workspace."
    )
    slug: str | None = Field(default=None, min_length=1, max_length=120, pattern=SLUG_PATTERN)
    description: str = Field(default="", max_length=20_000, description="Markdown.")
    license: License | None = Field(default=None, description="An SPDX identifier.")
    tags: Tags = []
    category_ids: list[uuid.UUID] = Field(default=[], max_length=MAX_CATEGORIES)
    material_hints: list[Material] = Field(default=[], max_length=MAX_MATERIALS)


class DesignUpdate(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME_PATTERN)
    visibility: Visibility | None = None
    slug: str | None = Field(default=None, min_length=1, max_length=120, pattern=SLUG_PATTERN)
    description: str | None = Field(default=None, max_length=20_000)
    license: License | None = None
    tags: Tags | None = None
    category_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_CATEGORIES)
    material_hints: list[Material] | None = Field(default=None, max_length=MAX_MATERIALS)


class RemixIn(StrictInput):
    workspace_id: uuid.UUID | None = Field(
        default=None, description="Where the copy goes; defaults to your personal workspace."
    )
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME_PATTERN)


class PersonRef(BaseModel):
    id: uuid.UUID
    display_name: str


class CategoryRef(BaseModel):
    id: uuid.UUID
    slug: str
    name: str = Field(description="In the caller's language.")


class RatingSummary(BaseModel):
    average: float = Field(description="0 when nobody has rated yet.")
    count: int


class VersionSummary(BaseModel):
    id: uuid.UUID
    number: int
    message: str
    filename: str
    size: int
    sha256: str
    format: FileFormat
    media_type: str
    inspection_status: Literal["none", "ready", "failed"]
    created_at: datetime
    author: PersonRef | None


class VersionOut(VersionSummary):
    design_id: uuid.UUID
    is_current: bool
    download_url: str
    thumbnail_url: str | None
    inspection: dict[str, Any] | None = Field(
        description="FCStd only: FreeCAD version, object tree, parameters, units."
    )
    inspection_error: dict[str, Any] | None = Field(
        description="Why the file could not be inspected (error_code and detail)."
    )


class DesignListItem(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    slug: str
    name: str
    visibility: Visibility
    license: str | None
    tags: list[str]
    categories: list[CategoryRef]
    rating: RatingSummary
    current_version: VersionSummary | None
    thumbnail_url: str | None
    remixed_from_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class DesignOut(DesignListItem):
    description: str = Field(description="Markdown as written.")
    description_html: str = Field(description="The Markdown rendered to sanitised HTML.")
    material_hints: list[str]
    version_count: int
    current_version: VersionOut | None
    deleted_at: datetime | None
    can_edit: bool = Field(description="The caller may change this design.")
    can_review: bool = Field(description="The caller may review this design.")


class AttachUploadIn(StrictInput):
    upload_id: uuid.UUID
    message: str = Field(default="", max_length=500)


class FieldChange(BaseModel):
    field: str
    a: Any
    b: Any


class ParameterChange(BaseModel):
    object: str
    name: str
    change: Literal["added", "removed", "changed"]
    a: Any = None
    b: Any = None


class VersionComparison(BaseModel):
    a: VersionSummary
    b: VersionSummary
    same_content: bool
    changes: list[FieldChange]
    parameters: list[ParameterChange] = Field(description="FCStd parameters that differ.")
    objects_added: list[str]
    objects_removed: list[str]


class DownloadLinkIn(StrictInput):
    expires_in: int = Field(default=300, ge=30, le=3600, description="Seconds the link works.")


class DownloadLinkOut(BaseModel):
    url: str = Field(description="Works without a session until it expires.")
    expires_at: datetime


# Categories -----------------------------------------------------------------------------------


class CategoryIn(StrictInput):
    slug: str = Field(min_length=1, max_length=64, pattern=SLUG_PATTERN)
    name_en: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    name_tr: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    parent_id: uuid.UUID | None = None
    position: int = Field(default=0, ge=0, le=1_000_000)


class CategoryUpdate(StrictInput):
    slug: str | None = Field(default=None, min_length=1, max_length=64, pattern=SLUG_PATTERN)
    name_en: str | None = Field(default=None, min_length=1, max_length=100, pattern=NAME_PATTERN)
    name_tr: str | None = Field(default=None, min_length=1, max_length=100, pattern=NAME_PATTERN)
    parent_id: uuid.UUID | None = Field(default=None, description="null: make it a root.")
    position: int | None = Field(default=None, ge=0, le=1_000_000)


class CategoryOut(BaseModel):
    id: uuid.UUID
    parent_id: uuid.UUID | None
    slug: str
    name: str = Field(description="In the caller's language.")
    name_en: str
    name_tr: str
    position: int
    children: list[CategoryOut] = []


# Reviews --------------------------------------------------------------------------------------


class ReviewIn(StrictInput):
    rating: int = Field(ge=1, le=5)
    title: str = Field(default="", max_length=120)
    body: str = Field(default="", max_length=5000)


class ReplyIn(StrictInput):
    body: str = Field(min_length=1, max_length=5000, pattern=NAME_PATTERN)


class ReportIn(StrictInput):
    reason: ReportReason
    note: str = Field(default="", max_length=500)


class ReplyOut(BaseModel):
    body: str
    author: PersonRef | None
    replied_at: datetime


class ReviewOut(BaseModel):
    id: uuid.UUID
    design_id: uuid.UUID
    rating: int
    title: str
    body: str
    author: PersonRef | None
    reply: ReplyOut | None
    created_at: datetime
    updated_at: datetime


# Share links ----------------------------------------------------------------------------------


class ShareLinkIn(StrictInput):
    label: str = Field(default="", max_length=100)
    can_download: bool = False
    expires_at: datetime | None = Field(default=None, description="Must be in the future.")
    pin: str | None = Field(
        default=None, pattern=r"^[0-9]{4,12}$", description="4 to 12 digits asked for on use."
    )


class ShareLinkOut(BaseModel):
    id: uuid.UUID
    design_id: uuid.UUID
    label: str
    prefix: str
    can_download: bool
    has_pin: bool
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ShareLinkCreated(ShareLinkOut):
    token: str = Field(description="Shown once: only its hash is stored.")
    url: str


class SharedDesignOut(BaseModel):
    """What a share link shows: the design, never its workspace's other data."""

    design: DesignListItem
    description_html: str
    can_download: bool
    download_url: str | None
