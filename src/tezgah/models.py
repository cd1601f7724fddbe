"""Imports every module that defines tables, so ``Base.metadata`` is complete for Alembic and
for the test that compares models with migrations. Domains add their ``models`` here."""

from __future__ import annotations

from tezgah.auth import models as _auth_models  # noqa: F401
from tezgah.core import idempotency as _idempotency  # noqa: F401
from tezgah.core import mail as _mail  # noqa: F401
from tezgah.core.db import Base
from tezgah.uploads import models as _upload_models  # noqa: F401

metadata = Base.metadata
