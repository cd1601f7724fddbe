"""The upload table: one row per tus upload, from creation to the stored blob."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tezgah.core.db import Base, Timestamps, UTCDateTime, UUIDPrimaryKey


class Upload(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_workspace_id_finished_at", "workspace_id", "finished_at"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    length: Mapped[int] = mapped_column(BigInteger, nullable=False)
    offset: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    filename: Mapped[str | None] = mapped_column(String(255), nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    upload_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Set once the file became a design version: the row stays as the workspace's record of
    # stored bytes (the quota), and goes with the version.
    design_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("design_versions.id", ondelete="CASCADE"), nullable=True, unique=True
    )

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None
