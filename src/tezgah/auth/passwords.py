"""Password hashing (Argon2 via pwdlib, off the event loop) and the password policy."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio.to_thread
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from tezgah.core.config import Settings
from tezgah.core.i18n import N_

T = TypeVar("T")
COMMON_PASSWORDS_FILE = Path(__file__).parent / "data" / "common-passwords.txt"
MAX_PASSWORD_LENGTH = 256  # Argon2 takes any length; this bounds the work per attempt


class PasswordHasher:
    """Hashes with the configured Argon2 parameters; verifies any Argon2 hash and says when a
    stored hash was made with other parameters (it is then rehashed on login)."""

    def __init__(self, settings: Settings) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.argon2_time_cost,
                    memory_cost=settings.argon2_memory_cost_kib,
                    parallelism=settings.argon2_parallelism,
                ),
            )
        )
        # Verified when the account does not exist, so both paths cost one Argon2 run.
        self._dummy_hash = self._hash.hash("tezgah-timing-equaliser")
        # Argon2 is CPU and memory bound: a login storm must not take every core from the
        # event loop, so hashes queue for a few threads instead of anyio's default forty.
        concurrency = settings.password_hash_concurrency or max(1, (os.cpu_count() or 2) - 1)
        self._limiter = anyio.CapacityLimiter(concurrency)

    async def _run(self, function: Callable[..., T], *args: str) -> T:
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    async def hash(self, password: str) -> str:
        return await self._run(self._hash.hash, password)

    async def verify(self, password: str, stored: str | None) -> tuple[bool, str | None]:
        """(matches, new hash if the stored one should be replaced)."""
        target = stored or self._dummy_hash
        valid, updated = await self._run(self._hash.verify_and_update, password, target)
        if stored is None:
            return False, None
        return bool(valid), updated

    async def burn(self, password: str) -> None:
        """One verification against nothing: makes an unknown email cost what a known one does."""
        await self._run(self._hash.verify, password, self._dummy_hash)


@functools.cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().casefold() for line in lines if line and not line.startswith("#"))


def policy_violations(password: str, *, email: str, min_length: int) -> list[str]:
    """Message ids (translated by the caller) of every rule the password breaks."""
    problems: list[str] = []
    if len(password) < min_length:
        problems.append(N_("Use at least {min_length} characters."))
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(N_("Use at most {max_length} characters."))
    lowered = password.casefold()
    local_part = email.split("@", 1)[0].casefold()
    if lowered == email.casefold() or (len(local_part) >= 4 and lowered == local_part):
        problems.append(N_("The password must not be your email address."))
    if lowered in common_passwords():
        problems.append(N_("This password is too common; choose another."))
    if password.strip() == "" and password:
        problems.append(N_("The password must not be only spaces."))
    return problems
