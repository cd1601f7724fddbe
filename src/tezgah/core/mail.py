"""Outgoing mail through an outbox table.

A service adds a row with :func:`enqueue` inside its unit of work, so a mail exists exactly when
the transaction that caused it committed. :class:`MailSender` (started in the app's lifespan)
claims due rows, delivers them over SMTP when ``TEZGAH_SMTP_HOST`` is set or writes them to the
log otherwise, and retries failures with back-off. Several processes may run senders: a row is
claimed with a conditional UPDATE, so each mail goes out once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
from sqlalchemy import Integer, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from tezgah.core.config import Settings
from tezgah.core.db import Base, UTCDateTime, UUIDPrimaryKey, utcnow
from tezgah.core.logging import get_logger

log = get_logger("tezgah.mail")
MAX_ATTEMPTS = 8
CLAIM_SECONDS = 120
BATCH_SIZE = 20
STOP_GRACE_SECONDS = 3.0  # a mail being handed to the SMTP server may finish


class OutboxMail(UUIDPrimaryKey, Base):
    """Mail waits here until the sender delivers it (SMTP) or logs it: a mail is never lost to
    a failed SMTP call, and never sent for a transaction that rolled back."""

    __tablename__ = "mail_outbox"

    to_address: Mapped[str] = mapped_column(String(320), nullable=False)
    subject: Mapped[str] = mapped_column(String(200), nullable=False)
    body_text: Mapped[str] = mapped_column(Text, nullable=False)
    language: Mapped[str] = mapped_column(String(5), nullable=False)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    next_attempt_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, nullable=False, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)


def enqueue(
    session: AsyncSession, *, to: str, subject: str, body: str, language: str, kind: str
) -> OutboxMail:
    mail = OutboxMail(to_address=to, subject=subject, body_text=body, language=language, kind=kind)
    session.add(mail)
    return mail


def build_message(mail: OutboxMail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to_address
    message["Subject"] = mail.subject
    message["Message-ID"] = make_msgid(domain="tezgah")
    message.set_content(mail.body_text)  # UTF-8: Turkish letters intact
    # After set_content: it clears every Content-* header set before it.
    message["Content-Language"] = mail.language
    return message


def retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(3600, 15 * 2 ** max(0, attempts - 1)))


class MailSender:
    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="tezgah-mail-sender")

    async def stop(self) -> None:
        """Let the mail being sent finish, then stop; cancel only what takes too long.

        Cancelling in the middle of SMTP DATA leaves the server waiting for the end of the
        message, and the client's QUIT then waits out the whole SMTP timeout. And on Python
        3.11 ``asyncio.wait_for`` (inside the database and SMTP clients) can swallow a
        cancellation, so the loop also stops on the flag.
        """
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=STOP_GRACE_SECONDS)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """Called after a commit that queued mail: deliver now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.deliver_due()
            except Exception:  # the loop must survive a database blip
                log.exception("mail_sender_failed")
            with contextlib.suppress(TimeoutError):  # not wait_for (see stop)
                async with asyncio.timeout(self.settings.mail_poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    async def deliver_due(self) -> int:
        """Deliver every mail that is due; returns how many went out."""
        delivered = 0
        for mail_id in await self._due_ids():
            if self._stopping:
                break
            mail = await self._claim(mail_id)
            if mail is not None and await self._deliver(mail):
                delivered += 1
        return delivered

    async def _due_ids(self) -> list[uuid.UUID]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(OutboxMail.id)
                .where(
                    OutboxMail.sent_at.is_(None),
                    OutboxMail.next_attempt_at <= utcnow(),
                    OutboxMail.attempts < MAX_ATTEMPTS,
                )
                .order_by(OutboxMail.next_attempt_at)
                .limit(BATCH_SIZE)
            )
            return list(rows)

    async def _claim(self, mail_id: uuid.UUID) -> OutboxMail | None:
        """Push the row's next attempt into the future; whoever moves it owns this attempt."""
        now = utcnow()
        async with self.sessionmaker() as session, session.begin():
            result = await session.execute(
                update(OutboxMail)
                .where(
                    OutboxMail.id == mail_id,
                    OutboxMail.sent_at.is_(None),
                    OutboxMail.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
            )
            if getattr(result, "rowcount", 0) != 1:
                return None
            return await session.get(OutboxMail, mail_id)

    async def _deliver(self, mail: OutboxMail) -> bool:
        error: str | None = None
        try:
            await self._transport(mail)
        except (aiosmtplib.SMTPException, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        async with self.sessionmaker() as session, session.begin():
            attempts = mail.attempts + 1
            values: dict[str, object] = {"attempts": attempts, "last_error": error}
            if error is None:
                values["sent_at"] = utcnow()
                # Delivered: the body (with its single-use links) need not outlive the
                # delivery in a table anyone with database access can read.
                values["body_text"] = ""
            else:
                values["next_attempt_at"] = utcnow() + retry_delay(attempts)
                log.warning("mail_failed", mail_id=str(mail.id), attempts=attempts, error=error)
            await session.execute(update(OutboxMail).where(OutboxMail.id == mail.id).values(values))
        return error is None

    async def _transport(self, mail: OutboxMail) -> None:
        settings = self.settings
        if not settings.smtp_host:
            # No SMTP configured: outside production the mail goes to the log, body included,
            # so a developer can follow its link; production logs only that it was dropped.
            body = None if settings.is_production else mail.body_text
            log.info(
                "mail_logged", to=mail.to_address, subject=mail.subject, kind=mail.kind, body=body
            )
            return
        await aiosmtplib.send(
            build_message(mail, settings.mail_from),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=settings.smtp_password.get_secret_value() or None,
            start_tls=settings.smtp_starttls,
            use_tls=settings.smtp_tls,
            timeout=settings.smtp_timeout,
        )
