"""Response models of the uploads domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel


class UploadOut(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    length: int
    offset: int
    filename: str | None
    content_type: str | None
    created_at: datetime
    expires_at: datetime | None
    finished_at: datetime | None
    sha256: str | None
    size: int | None
