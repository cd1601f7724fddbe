"""``Idempotency-Key`` for creating writes (IETF draft "The Idempotency-Key HTTP Header Field").

A client that retries a POST with the same key gets the first answer again, not a second object.
The key's record is written in the *same transaction* as what the request creates: if the
request fails, neither exists; if two identical requests race, the unique constraint lets one
commit and the other gets 409.

    @router.post("/things", status_code=201)
    async def create(body: ThingIn, idempotency: IdempotencyDep) -> Response:
        if (replay := await idempotency.replay()) is not None:
            return replay
        thing = await service.create(...)
        return await idempotency.remember(ThingOut.model_validate(thing), status_code=201)
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import Integer, LargeBinary, String, UniqueConstraint, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from starlette.responses import Response

from tezgah.core.db import Base, SessionDep, UTCDateTime, utcnow
from tezgah.core.errors import AppError, BadRequest, Conflict
from tezgah.core.i18n import N_
from tezgah.core.ratelimit import client_ip

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
RETENTION = timedelta(hours=24)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    scope: Mapped[str] = mapped_column(String(255), nullable=False)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), nullable=False)
    method: Mapped[str] = mapped_column(String(10), nullable=False)
    path: Mapped[str] = mapped_column(String(2048), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)


class InvalidIdempotencyKey(BadRequest):
    error_code = "INVALID_IDEMPOTENCY_KEY"
    message = N_("The Idempotency-Key header must be 1 to 255 visible ASCII characters.")


class IdempotencyKeyReused(AppError):
    status_code = 422
    error_code = "IDEMPOTENCY_KEY_REUSED"
    message = N_("This Idempotency-Key was already used for a different request.")


class IdempotencyKeyInProgress(Conflict):
    error_code = "IDEMPOTENCY_KEY_IN_PROGRESS"
    message = N_("A request with this Idempotency-Key is still being processed.")


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(33 <= ord(char) <= 126 for char in key)


class Idempotency:
    def __init__(
        self, session: AsyncSession, scope: str, key: str | None, request: Request, body: bytes
    ) -> None:
        self.session = session
        self.scope = scope
        self.key = key
        self.method = request.method
        self.path = request.url.path
        self.fingerprint = hashlib.sha256(
            self.method.encode() + b" " + self.path.encode() + b"\n" + body
        ).hexdigest()
        self.record: IdempotencyRecord | None = None

    async def replay(self) -> Response | None:
        """The stored answer of an earlier identical request, or None to go ahead."""
        if self.key is None:
            return None
        existing = await self.session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.scope == self.scope,
                IdempotencyRecord.key == self.key,
                IdempotencyRecord.expires_at > utcnow(),
            )
        )
        if existing is None:
            await self._claim()
            return None
        if existing.fingerprint != self.fingerprint:
            raise IdempotencyKeyReused()
        if existing.status_code is None or existing.response_body is None:
            raise IdempotencyKeyInProgress()
        return Response(
            existing.response_body,
            status_code=existing.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )

    async def _claim(self) -> None:
        # An expired record with the same key is replaced.
        await self.session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.scope == self.scope, IdempotencyRecord.key == self.key
            )
        )
        assert self.key is not None
        self.record = IdempotencyRecord(
            scope=self.scope,
            key=self.key,
            method=self.method,
            path=self.path,
            fingerprint=self.fingerprint,
            expires_at=utcnow() + RETENTION,
        )
        self.session.add(self.record)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise IdempotencyKeyInProgress() from exc

    async def remember(self, content: Any, *, status_code: int = 201) -> Response:
        """Answer with ``content`` and store it for replays of this key."""
        response = JSONResponse(jsonable_encoder(content), status_code=status_code)
        if self.record is not None:
            self.record.status_code = status_code
            self.record.response_body = bytes(response.body)
            await self.session.flush()
        return response


def caller_scope(request: Request) -> str:
    """Keys are private to their caller; auth later puts the principal id on request.state."""
    principal = getattr(request.state, "principal_id", None)
    if principal is not None:
        return f"principal:{principal}"
    return f"ip:{client_ip(request)}"


async def get_idempotency(request: Request, session: SessionDep) -> Idempotency:
    key = request.headers.get(HEADER)
    if key is not None and not _valid_key(key):
        raise InvalidIdempotencyKey()
    body = await request.body() if key is not None else b""
    return Idempotency(session, caller_scope(request), key, request, body)


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
