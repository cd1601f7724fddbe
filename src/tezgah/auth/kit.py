"""The identity domain's long-lived helpers, built once per app in the lifespan."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from tezgah.auth.passwords import PasswordHasher
from tezgah.auth.tokens import TokenService
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

    @classmethod
    def build(cls, settings: Settings, database: Database) -> AuthKit:
        return cls(
            settings=settings,
            database=database,
            tokens=TokenService(settings),
            passwords=PasswordHasher(settings),
            mail=MailSender(settings, database.sessionmaker),
        )

    @staticmethod
    def tokens_match(given: str, expected: str) -> bool:
        return hmac.compare_digest(given.encode(), expected.encode())


def get_auth_kit(request: Request) -> AuthKit:
    kit: AuthKit = request.app.state.auth
    return kit
