"""Accounts made by an operator rather than through the API: ``tezgah users`` and the demo."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth import repository
from tezgah.auth.models import User
from tezgah.auth.passwords import PasswordHasher, policy_violations
from tezgah.auth.service import create_workspace
from tezgah.core.config import Settings
from tezgah.core.db import utcnow
from tezgah.core.i18n import translate

DEMO_EMAIL = "demo@tezgah.local"
DEMO_PASSWORD = "tezgah-demo-2026"  # noqa: S105 - the documented demo account
DEMO_TEAM = "Demo Atölyesi"


class ProvisioningError(ValueError):
    """The account cannot be created as asked (taken email, weak password)."""


async def create_account(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    display_name: str,
    superuser: bool = False,
    language: str = "en",
) -> User:
    if await repository.user_by_email(session, email) is not None:
        raise ProvisioningError(f"an account with {email} exists already")
    problems = policy_violations(password, email=email, min_length=settings.password_min_length)
    if problems:
        raise ProvisioningError(
            "; ".join(
                translate(p, "en", min_length=settings.password_min_length, max_length=256)
                for p in problems
            )
        )
    now = utcnow()
    user = User(
        email=email,
        email_key=repository.email_key(email),
        display_name=display_name,
        language=language,
        password_hash=await PasswordHasher(settings).hash(password),
        is_superuser=superuser,
        email_verified_at=now,  # made by the operator: nobody to send a mail to first
        tokens_valid_after=now,
    )
    session.add(user)
    await session.flush()
    await create_workspace(session, user, display_name, personal=True)
    return user


async def set_superuser(session: AsyncSession, email: str, value: bool) -> User:
    user = await repository.user_by_email(session, email)
    if user is None:
        raise ProvisioningError(f"no account with {email}")
    user.is_superuser = value
    return user


async def load_demo_accounts(session: AsyncSession, settings: Settings) -> str:
    """A superuser demo account with a team workspace; does nothing the second time."""
    if await repository.user_by_email(session, DEMO_EMAIL) is not None:
        return f"demo account {DEMO_EMAIL} exists (password {DEMO_PASSWORD})"
    user = await create_account(
        session,
        settings,
        email=DEMO_EMAIL,
        password=DEMO_PASSWORD,
        display_name="Demo",
        superuser=True,
        language="tr",
    )
    await create_workspace(session, user, DEMO_TEAM, personal=False)
    return f"demo account {DEMO_EMAIL} / {DEMO_PASSWORD} (superuser, team '{DEMO_TEAM}')"
