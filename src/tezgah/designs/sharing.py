"""Share links: a workspace hands one design to people outside it, to view or also to
download, optionally until a date and behind a PIN; revocable at any time.

Only the token's SHA-256 is stored (it is shown once). A PIN is hashed like a password and its
guesses are rate-limited per link, so a 4-digit PIN cannot be walked through.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth.kit import AuthKit
from tezgah.auth.models import User
from tezgah.core.db import utcnow
from tezgah.core.ratelimit import RateLimiter, enforce
from tezgah.designs import repository
from tezgah.designs.exceptions import (
    ExpiryInPast,
    ShareLinkNoDownload,
    ShareLinkNotFound,
    ShareLinkPinRequired,
    ShareLinkPinWrong,
)
from tezgah.designs.models import Design, ShareLink
from tezgah.designs.schemas import ShareLinkCreated, ShareLinkIn, ShareLinkOut
from tezgah.designs.service import API_PREFIX, DesignAccess

TOKEN_PREFIX = "tzs_"  # noqa: S105 - a marker, not a secret
PIN_GUESSES = ("5/minute", "20/hour")
PIN_SCOPE = "share-pin"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def shared_url(token: str) -> str:
    return f"{API_PREFIX}/shared/{token}"


async def create(
    session: AsyncSession, kit: AuthKit, access: DesignAccess, user: User, data: ShareLinkIn
) -> ShareLinkCreated:
    expires_at = data.expires_at
    if expires_at is not None and expires_at.tzinfo is None:
        # Documented as UTC (like API keys); a naive value would not compare with an aware one.
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at is not None and expires_at <= utcnow():
        raise ExpiryInPast(field_errors={"expires_at": []})
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    link = ShareLink(
        id=uuid.uuid4(),
        design_id=access.design.id,
        created_by_id=user.id,
        label=data.label.strip(),
        token_hash=token_hash(token),
        prefix=token[:12],
        can_download=data.can_download,
        pin_hash=await kit.passwords.hash(data.pin) if data.pin else None,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(link)
    await session.flush()
    return ShareLinkCreated(**link_out(link).model_dump(), token=token, url=shared_url(token))


def link_out(link: ShareLink) -> ShareLinkOut:
    return ShareLinkOut(
        id=link.id,
        design_id=link.design_id,
        label=link.label,
        prefix=link.prefix,
        can_download=link.can_download,
        has_pin=link.pin_hash is not None,
        created_at=link.created_at,
        expires_at=link.expires_at,
        revoked_at=link.revoked_at,
        last_used_at=link.last_used_at,
    )


async def link_of(session: AsyncSession, access: DesignAccess, link_id: uuid.UUID) -> ShareLink:
    link = await repository.share_link_of(session, access.design.id, link_id)
    if link is None:
        raise ShareLinkNotFound()
    return link


def revoke(link: ShareLink) -> None:
    if link.revoked_at is None:
        link.revoked_at = utcnow()


async def open_link(
    session: AsyncSession,
    kit: AuthKit,
    limiter: RateLimiter,
    token: str,
    pin: str | None,
    *,
    download: bool = False,
) -> tuple[ShareLink, Design]:
    """The link and its design, if the link is live (and the PIN right)."""
    link = await repository.share_link_by_hash(session, token_hash(token))
    now = utcnow()
    if link is None or link.revoked_at is not None:
        raise ShareLinkNotFound()
    if link.expires_at is not None and link.expires_at <= now:
        raise ShareLinkNotFound()
    design = await repository.design_by_id(session, link.design_id)
    if design is None or design.deleted_at is not None:
        raise ShareLinkNotFound()
    if link.pin_hash is not None:
        await _check_pin(kit, limiter, link, pin)
    if download and not link.can_download:
        raise ShareLinkNoDownload()
    if link.last_used_at is None or now - link.last_used_at > LAST_USED_RESOLUTION:
        link.last_used_at = now
    return link, design


async def _check_pin(kit: AuthKit, limiter: RateLimiter, link: ShareLink, pin: str | None) -> None:
    """Only wrong PINs count against the link's limit: a link handed to many people, or a
    download that resumes, keeps working; a guesser is stopped after a few tries."""
    if not pin:
        raise ShareLinkPinRequired()
    key = str(link.id)
    for limit in PIN_GUESSES:
        if await limiter.exhausted(limit, PIN_SCOPE, key):
            await enforce(limiter, limit, PIN_SCOPE, key)  # answers 429 with Retry-After
    valid, _ = await kit.passwords.verify(pin[:64], link.pin_hash)
    if not valid:
        for limit in PIN_GUESSES:
            await limiter.hit(limit, PIN_SCOPE, key)
        raise ShareLinkPinWrong()
