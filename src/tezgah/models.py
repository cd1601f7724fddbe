"""Imports every module that defines tables, so ``Base.metadata`` is complete for Alembic and
for the test that compares models with migrations. Domains add their ``models`` here."""

from __future__ import annotations

from tezgah.auth import models as _auth_models  # noqa: F401
from tezgah.core import idempotency as _idempotency  # noqa: F401
from tezgah.core import mail as _mail  # noqa: F401
from tezgah.core.db import Base
from tezgah.designs import models as _design_models  # noqa: F401
from tezgah.uploads import models as _upload_models  # noqa: F401

metadata = Base.metadata

# Full-text search objects made by raw SQL in migration 0004 (an FTS5 table and its shadow
# tables on SQLite, an expression GIN index on PostgreSQL): not models, so the comparison of
# models with the database leaves them out.
UNMODELLED_PREFIXES = ("designs_fts", "ix_designs_search")


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic hook: False for the schema objects the models do not describe."""
    return not (name or "").startswith(UNMODELLED_PREFIXES)
