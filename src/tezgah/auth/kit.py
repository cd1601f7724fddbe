"""The identity domain's long-lived helpers, built once per app in the lifespan."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from tezgah.auth.passwords import PasswordHasher
from tezgah.auth.tokens import TokenService
from tezgah.core.cache import Cache
from tezgah.core.config import Settings
from tezgah.core.db import Database
from tezgah.core.mail import MailSender


@dataclass
class AuthKit:
    settings: Settings
    database: Database
    tokens: TokenService
    passwords: PasswordHasher
    mail: MailSender
    cache: Cache

    @classmethod
    def build(cls, settings: Settings, database: Database, cache: Cache) -> AuthKit:
        return cls(
            settings=settings,
            database=database,
            tokens=TokenService(settings),
            passwords=PasswordHasher(settings),
            mail=MailSender(settings, database.sessionmaker),
            cache=cache,
        )

    def close(self) -> None:
        self.passwords.close()

    # A signed-out login's access tokens are refused at once, not when they expire: the
    # login ("family") is remembered as ended for as long as one of its tokens can live.
    async def end_family_access(self, family_id: str) -> None:
        ttl = self.settings.access_token_ttl_seconds + 10
        await self.cache.set(f"auth:ended-family:{family_id}", b"1", ttl=ttl)

    async def family_ended(self, family_id: str) -> bool:
        return await self.cache.get(f"auth:ended-family:{family_id}") is not None

    @staticmethod
    def tokens_match(given: str, expected: str) -> bool:
        return hmac.compare_digest(given.encode(), expected.encode())


def get_auth_kit(request: Request) -> AuthKit:
    kit: AuthKit = request.app.state.auth
    return kit
