"""Password hashing (Argon2 via pwdlib, off the event loop) and the password policy."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from tezgah.core.config import Settings
from tezgah.core.i18n import N_

T = TypeVar("T")
COMMON_PASSWORDS_FILE = Path(__file__).parent / "data" / "common-passwords.txt"
MAX_PASSWORD_LENGTH = 256  # Argon2 takes any length; this bounds the work per attempt


HASHING_NICENESS = 19  # the lowest priority: hashing yields to everything else


def _lower_thread_priority() -> None:
    """Linux schedules threads one by one: raise this one's nice value (allowed without
    privileges). Elsewhere the call fails and hashing runs at normal priority."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


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
        # Argon2 is CPU and memory bound: a login storm must not take the CPU from the event
        # loop. Hashes queue for a few threads of their own, which run at a lower scheduling
        # priority, so a request that is ready always gets a core before the next hash step.
        concurrency = settings.password_hash_concurrency or max(1, (os.cpu_count() or 2) - 1)
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency,
            thread_name_prefix="tezgah-argon2",
            initializer=_lower_thread_priority,
        )

    async def _run(self, function: Callable[..., T], *args: str) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

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
