"""The audit trail: one row per security event, written in the same unit of work as the change
it records (a rolled-back change leaves no event; a recorded failure is committed on its own)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth.models import AuditEvent
from tezgah.core import context
from tezgah.core.db import Database
from tezgah.core.ratelimit import client_ip

USER_AGENT_MAX = 300


@dataclass(frozen=True)
class RequestMeta:
    """Who is asking from where: carried into tokens, sessions and audit events."""

    ip: str | None
    user_agent: str | None
    request_id: str | None

    @classmethod
    def from_request(cls, request: Request) -> RequestMeta:
        agent = request.headers.get("user-agent")
        return cls(
            ip=client_ip(request),
            user_agent=agent[:USER_AGENT_MAX] if agent else None,
            request_id=context.get_request_id(),
        )


def record(
    session: AsyncSession,
    event: str,
    meta: RequestMeta,
    *,
    actor_user_id: uuid.UUID | None = None,
    actor_api_key_id: uuid.UUID | None = None,
    subject_user_id: uuid.UUID | None = None,
    workspace_id: uuid.UUID | None = None,
    target_type: str | None = None,
    target_id: str | uuid.UUID | None = None,
    outcome: str = "success",
    **details: Any,
) -> AuditEvent:
    entry = AuditEvent(
        event=event,
        outcome=outcome,
        actor_user_id=actor_user_id,
        actor_api_key_id=actor_api_key_id,
        subject_user_id=subject_user_id if subject_user_id is not None else actor_user_id,
        workspace_id=workspace_id,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        ip=meta.ip,
        user_agent=meta.user_agent,
        request_id=meta.request_id,
        details=details,
    )
    session.add(entry)
    return entry


async def record_failure_apart(
    database: Database, event: str, meta: RequestMeta, **fields: Any
) -> None:
    """A failure's event, written in its own transaction: the request that caused it is about
    to fail, and its own unit of work will be rolled back."""
    async with database.sessionmaker() as session, session.begin():
        record(session, event, meta, outcome="failure", **fields)
