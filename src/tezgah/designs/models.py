"""Tables of the design hub: designs, their immutable versions, categories, tags, reviews and
share links.

A version points at its file by SHA-256 (the blob store is content-addressed, so identical
content is stored once). A design keeps its rating count, sum and average itself, moved by the
same statement that writes a review, so reading them never aggregates over reviews.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tezgah.core.db import Base, Timestamps, UTCDateTime, UUIDPrimaryKey, utcnow


class Category(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "categories"

    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    slug: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name_en: Mapped[str] = mapped_column(String(100), nullable=False)
    name_tr: Mapped[str] = mapped_column(String(100), nullable=False)
    position: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class Design(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "designs"
    __table_args__ = (
        UniqueConstraint("workspace_id", "slug"),
        CheckConstraint("visibility IN ('private', 'unlisted', 'public')", name="visibility"),
        # One index per sort order of the list (keyset pages walk them), id as tie-breaker.
        Index("ix_designs_created_at_id", "created_at", "id"),
        Index("ix_designs_updated_at_id", "updated_at", "id"),
        Index("ix_designs_rating_avg_id", "rating_avg", "id"),
        Index("ix_designs_rating_count_id", "rating_count", "id"),
        Index("ix_designs_name_id", "name", "id"),
        Index("ix_designs_workspace_id_created_at", "workspace_id", "created_at"),
        Index("ix_designs_deleted_at", "deleted_at"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    slug: Mapped[str] = mapped_column(String(120), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    visibility: Mapped[str] = mapped_column(String(10), default="private", nullable=False)
    license: Mapped[str | None] = mapped_column(String(64), nullable=True)
    material_hints: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    current_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(
            "design_versions.id",
            ondelete="SET NULL",
            use_alter=True,
            name="fk_designs_current_version_id_design_versions",
        ),
        nullable=True,
    )
    remixed_from_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("designs.id", ondelete="SET NULL"), nullable=True
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    version_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    rating_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    rating_avg: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    # Name, description and tags in one column: the full-text index covers it (see 0004).
    search_text: Mapped[str] = mapped_column(Text, default="", nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DesignVersion(UUIDPrimaryKey, Base):
    """Immutable once written: a new file is a new version."""

    __tablename__ = "design_versions"
    __table_args__ = (UniqueConstraint("design_id", "number"),)

    design_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("designs.id", ondelete="CASCADE"), nullable=False
    )
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    message: Mapped[str] = mapped_column(String(500), default="", nullable=False)
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    media_type: Mapped[str] = mapped_column(String(100), nullable=False)
    format: Mapped[str] = mapped_column(String(10), nullable=False)
    # FCStd only: "ready" with the inspection, or "failed" with the error; "none" otherwise.
    inspection_status: Mapped[str] = mapped_column(String(10), default="none", nullable=False)
    inspection: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    inspection_error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    thumbnail_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class DesignCategory(Base):
    __tablename__ = "design_categories"

    design_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("designs.id", ondelete="CASCADE"), primary_key=True
    )
    category_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class DesignTag(Base):
    __tablename__ = "design_tags"

    design_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("designs.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)


class Review(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("design_id", "user_id"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating"),
        Index("ix_reviews_design_id_created_at", "design_id", "created_at"),
    )

    design_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("designs.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    rating: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    title: Mapped[str] = mapped_column(String(120), default="", nullable=False)
    body: Mapped[str] = mapped_column(Text, default="", nullable=False)
    reply_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    reply_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    report_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class ReviewReport(UUIDPrimaryKey, Base):
    __tablename__ = "review_reports"
    __table_args__ = (UniqueConstraint("review_id", "user_id"),)

    review_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reviews.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    reason: Mapped[str] = mapped_column(String(20), nullable=False)
    note: Mapped[str] = mapped_column(String(500), default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class ShareLink(UUIDPrimaryKey, Base):
    """A link to one design for people outside the workspace; only the token's hash is kept."""

    __tablename__ = "share_links"

    design_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("designs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    label: Mapped[str] = mapped_column(String(100), default="", nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    can_download: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    pin_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
