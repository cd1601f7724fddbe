"""Migrations: upgrade/downgrade round trips on SQLite and PostgreSQL, models agree with the
migrations (autogenerate finds nothing), the revision chain is linear with real downgrades,
constraint names follow the naming convention, and SQLite connections get their pragmas."""

from __future__ import annotations

import ast
import asyncio
import inspect
import sqlite3
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import CheckConstraint, ForeignKeyConstraint, UniqueConstraint, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql.elements import conv

from tests.conftest import create_postgres_database, drop_postgres_database
from tezgah.core import migrate
from tezgah.core.config import Settings
from tezgah.core.db import NAMING_CONVENTION, SQLITE_BUSY_TIMEOUT_MS, Base, Database
from tezgah.models import include_name, metadata

T = TypeVar("T")
MIGRATION_BACKENDS = ("sqlite", "postgres")


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))


def revisions_base_to_head() -> list[Script]:
    return list(reversed(list(script_directory().walk_revisions("base", "heads"))))


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None, "migrations/versions holds no revision"
    return head


HEAD = head_revision()


@pytest.fixture(params=MIGRATION_BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody has touched: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{(tmp_path / 'nested' / 'migrations.sqlite3').as_posix()}"
        return
    name = f"tezgah_migrations_{uuid.uuid4().hex[:10]}"
    url = asyncio.run(create_postgres_database(name))
    try:
        yield url
    finally:
        asyncio.run(drop_postgres_database(name))


def run_on(url: str, work: Callable[[Connection], T]) -> T:
    """Run ``work`` on a sync connection of the (async) database URL."""

    async def go() -> T:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def table_names(url: str) -> set[str]:
    """Tables the models describe or should (the full-text search tables are left out)."""

    def names(connection: Connection) -> set[str]:
        every = sa_inspect(connection).get_table_names()
        return {name for name in every if include_name(name, "table", {})}

    return run_on(url, names)


def schema_differences(url: str) -> list[Any]:
    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_name": include_name,
            },
        )
        return list(compare_metadata(context, metadata))

    return run_on(url, compare)


def model_tables() -> set[str]:
    return set(metadata.tables)


# ---------------------------------------------------------------------------------------------
# The revision scripts themselves
# ---------------------------------------------------------------------------------------------


def test_there_are_migrations_and_every_model_table_is_known() -> None:
    assert revisions_base_to_head()[-1].revision == HEAD
    assert model_tables(), "tezgah.models.metadata has no tables: models.py imports nothing"
    assert "idempotency_records" in model_tables()


def test_revision_chain_is_linear_with_one_head() -> None:
    scripts = script_directory()
    assert scripts.get_heads() == [HEAD]
    assert scripts.get_bases() == [revisions_base_to_head()[0].revision]
    chain = revisions_base_to_head()
    files = sorted(
        path
        for path in (migrate.MIGRATIONS_DIR / "versions").glob("*.py")
        if not path.name.startswith("_")
    )
    assert len(chain) == len(files), "a revision file is not on the chain from base to head"
    previous: str | None = None
    for script in chain:
        assert not isinstance(script.down_revision, tuple | list), f"{script.revision} merges"
        assert script.down_revision == previous, f"{script.revision} does not follow {previous}"
        assert not script.branch_labels, f"{script.revision} opens a branch"
        assert len(script.nextrev) <= 1, f"{script.revision} has several children"
        previous = script.revision
    assert previous == HEAD


def _statements(function: Callable[[], None]) -> list[ast.stmt]:
    """The function's body without its docstring, ``pass`` and bare ``...``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    definition = tree.body[0]
    assert isinstance(definition, ast.FunctionDef)
    return [
        statement
        for statement in definition.body
        if not isinstance(statement, ast.Pass)
        and not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant))
    ]


@pytest.mark.parametrize("script", revisions_base_to_head(), ids=lambda script: script.revision)
def test_every_migration_has_a_real_downgrade(script: Script) -> None:
    assert callable(getattr(script.module, "upgrade", None))
    assert callable(getattr(script.module, "downgrade", None))
    assert _statements(script.module.upgrade), f"{script.revision}: upgrade() is empty"
    assert _statements(script.module.downgrade), f"{script.revision}: downgrade() is empty"


def test_empty_function_detection_sees_pass_and_docstrings() -> None:
    def empty() -> None:
        """Nothing to undo."""
        pass

    def ellipsis() -> None: ...

    def real() -> None:
        print("drop table")

    assert _statements(empty) == []
    assert _statements(ellipsis) == []
    assert len(_statements(real)) == 1


# ---------------------------------------------------------------------------------------------
# Upgrade, downgrade, upgrade again, on both databases
# ---------------------------------------------------------------------------------------------


def test_round_trip(empty_database_url: str) -> None:
    url = empty_database_url
    assert migrate.current(url) == ""

    migrate.upgrade(url)
    assert migrate.current(url) == f"{HEAD} (head)"
    assert table_names(url) == model_tables() | {"alembic_version"}

    migrate.downgrade(url, "base")
    assert migrate.current(url) == ""
    assert table_names(url) <= {"alembic_version"}

    migrate.upgrade(url, "head")
    assert migrate.current(url) == f"{HEAD} (head)"
    assert table_names(url) == model_tables() | {"alembic_version"}
    assert schema_differences(url) == []


def test_one_revision_at_a_time(empty_database_url: str) -> None:
    """Each step up and each step down works on its own, not only the whole chain at once."""
    url = empty_database_url
    chain = revisions_base_to_head()
    for script in chain:
        migrate.upgrade(url, "+1")
        assert migrate.current(url).split()[0] == script.revision
    for script in reversed(chain):
        assert migrate.current(url).split()[0] == script.revision
        migrate.downgrade(url, "-1")
    assert migrate.current(url) == ""
    assert table_names(url) <= {"alembic_version"}


def test_models_match_migrations(empty_database_url: str) -> None:
    url = empty_database_url
    migrate.upgrade(url)
    assert schema_differences(url) == []


def test_comparison_reports_missing_tables(empty_database_url: str) -> None:
    """The comparison used above does see differences: at base every model table is missing."""
    migrate.upgrade(empty_database_url)
    migrate.downgrade(empty_database_url, "base")
    differences = schema_differences(empty_database_url)
    added = {diff[1].name for diff in differences if diff[0] == "add_table"}
    assert added == model_tables()


# ---------------------------------------------------------------------------------------------
# Naming convention
# ---------------------------------------------------------------------------------------------


def expected_constraint_names() -> dict[str, set[str]]:
    """Names spelled out by hand from NAMING_CONVENTION's patterns, one set per table.

    A name the model spells out itself (``Index("ix_t_a_b", "a", "b")``) is kept, but must
    still start with its kind's prefix and the table's name.
    """
    names: dict[str, set[str]] = {}
    for table in metadata.tables.values():
        expected = {f"pk_{table.name}"}
        items: list[tuple[str, Any, str]] = []
        for constraint in table.constraints:
            if isinstance(constraint, UniqueConstraint):
                columns = "_".join(column.name for column in constraint.columns)
                items.append(("uq", constraint, f"uq_{table.name}_{columns}"))
            elif isinstance(constraint, ForeignKeyConstraint):
                columns = "_".join(column.name for column in constraint.columns)
                referred = constraint.referred_table.name
                items.append(("fk", constraint, f"fk_{table.name}_{columns}_{referred}"))
            elif isinstance(constraint, CheckConstraint):
                # ck_%(table_name)s_%(constraint_name)s: only the declared suffix is known.
                items.append(("ck", constraint, str(constraint.name)))
        for index in table.indexes:
            first = next(iter(index.columns))
            items.append(("ix", index, f"ix_{table.name}_{first.name}"))
        for kind, item, by_convention in items:
            if isinstance(item.name, conv):
                expected.add(by_convention)
            else:
                assert str(item.name).startswith(f"{kind}_{table.name}_"), item.name
                expected.add(str(item.name))
        names[table.name] = expected
    return names


def reflected_constraint_names(connection: Connection) -> dict[str, set[str | None]]:
    inspector = sa_inspect(connection)
    names: dict[str, set[str | None]] = {}
    for table in metadata.tables:
        found: set[str | None] = {inspector.get_pk_constraint(table)["name"]}
        found |= {uq["name"] for uq in inspector.get_unique_constraints(table)}
        found |= {fk["name"] for fk in inspector.get_foreign_keys(table)}
        found |= {ck["name"] for ck in inspector.get_check_constraints(table)}
        # PostgreSQL lists a unique constraint's index as an index too.
        found |= {
            ix["name"] for ix in inspector.get_indexes(table) if "duplicates_constraint" not in ix
        }
        names[table] = {name for name in found if include_name(name, "index", {})}
    return names


def test_metadata_uses_the_naming_convention() -> None:
    assert Base.metadata is metadata
    assert set(NAMING_CONVENTION) == {"pk", "uq", "ix", "fk", "ck"}
    convention: dict[str, Any] = dict(metadata.naming_convention)
    assert {key: convention[key] for key in NAMING_CONVENTION} == NAMING_CONVENTION
    for table, names in expected_constraint_names().items():
        declared = {constraint.name for constraint in metadata.tables[table].constraints}
        declared |= {index.name for index in metadata.tables[table].indexes}
        assert declared == names, table


def test_migrated_constraint_names_follow_the_convention(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    assert run_on(empty_database_url, reflected_constraint_names) == expected_constraint_names()


# ---------------------------------------------------------------------------------------------
# SQLite connections made by tezgah.core.db.Database
# ---------------------------------------------------------------------------------------------


def test_sqlite_connections_get_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "var" / "pragmas.sqlite3"
    settings = Settings(
        env="test", var_dir=tmp_path / "var", database_url=f"sqlite+aiosqlite:///{path}"
    )

    async def pragmas_of_two_connections() -> list[tuple[Any, ...]]:
        database = Database(settings)
        try:
            async with database.engine.connect() as first, database.engine.connect() as second:
                results = []
                for connection in (first, second):
                    row = []
                    for pragma in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous"):
                        row.append((await connection.execute(text(f"PRAGMA {pragma}"))).scalar())
                    results.append(tuple(row))
                return results
        finally:
            await database.dispose()

    # Database creates the missing directory; a plain connection would not.
    results = asyncio.run(pragmas_of_two_connections())
    assert results == [("wal", 1, SQLITE_BUSY_TIMEOUT_MS, 1)] * 2

    # foreign_keys is per connection: a connection not made by Database does not have it.
    plain = sqlite3.connect(path)
    try:
        assert plain.execute("PRAGMA foreign_keys").fetchone() == (0,)
        # WAL is stored in the file once set.
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        plain.close()


def test_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
    settings = Settings(
        env="test",
        var_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'fk.sqlite3'}",
    )

    async def violate() -> None:
        database = Database(settings)
        try:
            async with database.engine.begin() as connection:
                await connection.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
                await connection.execute(
                    text(
                        "CREATE TABLE child (id INTEGER PRIMARY KEY, "
                        "parent_id INTEGER NOT NULL REFERENCES parent (id))"
                    )
                )
                await connection.execute(text("INSERT INTO parent (id) VALUES (1)"))
                await connection.execute(text("INSERT INTO child (id, parent_id) VALUES (1, 1)"))
            async with database.engine.begin() as connection:
                await connection.execute(text("INSERT INTO child (id, parent_id) VALUES (2, 99)"))
        finally:
            await database.dispose()

    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        asyncio.run(violate())
