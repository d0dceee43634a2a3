"""The engine's description of the tables it reads and writes (cors_control.database.tables)
matches the admin app's models, column by column, so the two cannot drift apart."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from cors_control.database import tables

ENGINE_COLUMNS = [
    (table.name, column.name)
    for table in tables.metadata.sorted_tables
    for column in table.columns
]
DIALECTS = (postgresql.dialect(), sqlite.dialect())


def _app_table(name: str) -> sa.Table:
    import app.models  # noqa: F401  (declares the tables on db.metadata)

    table = db.metadata.tables.get(name)
    assert table is not None, (
        f"the engine reads table {name!r}, which app.models does not declare: add it to the "
        f"models (and a migration), or drop it from cors_control/database/tables.py")
    return table


def _ddl(column: sa.Column) -> tuple[str, ...]:
    return tuple(column.type.compile(dialect=dialect) for dialect in DIALECTS)


def test_the_engine_describes_every_table_it_touches():
    assert {table.name for table in tables.metadata.sorted_tables} == {
        "policy_state", "tenants", "rules", "allowed_origins", "rule_drafts", "origin_lists",
        "origin_list_entries", "rule_origin_lists", "request_log", "engine_processes",
        "policy_changes"}


@pytest.mark.parametrize(("table", "column"), ENGINE_COLUMNS)
def test_each_engine_column_is_in_the_models_with_the_same_type(table, column):
    ours = tables.metadata.tables[table].c[column]
    theirs = _app_table(table).c.get(column)
    assert theirs is not None, (
        f"cors_control.database.tables reads {table}.{column}, which app.models does not "
        f"declare: the engine would fail on a database migrated by the admin app")
    assert _ddl(ours) == _ddl(theirs), f"{table}.{column} is typed differently"
    assert type(ours.type) is type(theirs.type), f"{table}.{column} reads as another type"
    assert ours.nullable == theirs.nullable, f"{table}.{column}: nullable differs"
    assert ours.primary_key == theirs.primary_key, f"{table}.{column}: primary key differs"


def test_the_request_log_key_is_the_models_unique_key():
    """The engine's upsert names the conflict target; it must be the models' unique key."""
    unique = {tuple(c.name for c in constraint.columns)
              for constraint in _app_table("request_log").constraints
              if isinstance(constraint, sa.UniqueConstraint)}
    assert tables.REQUEST_LOG_KEY in unique


def test_a_drifted_column_is_caught():
    """The comparison itself can fail: a column typed differently does not pass."""
    drifted = sa.Column("path", sa.String(499), nullable=False)
    assert _ddl(drifted) != _ddl(_app_table("rules").c.path)
