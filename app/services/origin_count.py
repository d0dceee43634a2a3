"""Each rule's number of origins (``rules.origin_count``), kept exact in the transaction of
every write that adds or removes one.

Counting a rule's 100,000 origins costs tens of milliseconds on PostgreSQL, where the
count reads the table wherever vacuum has not yet marked its pages visible, and the API
answers it with every read of the rule; the stored number costs a primary-key lookup. It is
kept here, in the three ways origins are written:

- objects the session flushes (one origin added, removed or moved): the mapper events below;
- the driver's own bulk writes of a rule's origins (:func:`added`, :func:`removed`, called by
  ``policy._write_origins``), which know how many rows they wrote;
- any other statement on ``allowed_origins`` sent through the session (a tenant's deletion,
  a script, a test): the rules it may have touched are counted again after it
  (:func:`recount`), unless it says with ``execution_options(origin_count_kept=True)`` that
  its caller keeps the count itself.

A rule's row in the session is not refreshed: read the number with :func:`origin_total`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..extensions import db
from ..models import AllowedOrigin, Rule

KEPT = "origin_count_kept"  # the execution option of statements whose caller keeps the count
_rules = Rule.__table__
_origins = AllowedOrigin.__table__
# Counting is not an edit of the rule: its updated_at (set on any UPDATE of the row by the
# column's onupdate) stays as the write that changed the rule left it.
_UNTOUCHED = {"updated_at": _rules.c.updated_at}


def origin_total(rule_id: int) -> int:
    """How many origins the rule has, as stored (every tenant's lists included)."""
    return db.session.scalar(sa.select(_rules.c.origin_count).where(_rules.c.id == rule_id)) \
        or 0


def added(rule_id: int, count: int) -> None:
    """Count *count* origins written to the rule without the session's objects."""
    _adjust(db.session.connection(), rule_id, count)


def removed(rule_id: int, count: int) -> None:
    _adjust(db.session.connection(), rule_id, -count)


def recount(connection: sa.Connection, rule_ids: Iterable[int] | None = None) -> None:
    """Count the origins of *rule_ids* (of every rule: None) again from their rows; only the
    rules whose number changed are written."""
    counted = (sa.select(sa.func.count()).select_from(_origins)
               .where(_origins.c.rule_id == _rules.c.id).scalar_subquery())
    statement = sa.update(_rules).where(_rules.c.origin_count != counted) \
        .values(origin_count=counted, **_UNTOUCHED)
    if rule_ids is not None:
        ids = sorted(set(rule_ids))
        if not ids:
            return
        for start in range(0, len(ids), 1000):  # within every database's parameter limit
            connection.execute(statement.where(_rules.c.id.in_(ids[start:start + 1000])))
        return
    connection.execute(statement)


def _adjust(connection: sa.Connection, rule_id: int, by: int) -> None:
    # The connection, not the session: a Core statement on rules through the session would
    # read, to the change log, as a change of every rule (see change_log._note_statement).
    if by:
        connection.execute(sa.update(_rules).where(_rules.c.id == rule_id)
                           .values(origin_count=_rules.c.origin_count + by, **_UNTOUCHED))


# -- objects the session flushes ---------------------------------------------------------------


@sa.event.listens_for(AllowedOrigin, "after_insert")
def _inserted(_mapper: Any, connection: sa.Connection, origin: AllowedOrigin) -> None:
    _adjust(connection, origin.rule_id, 1)


@sa.event.listens_for(AllowedOrigin, "after_delete")
def _deleted(_mapper: Any, connection: sa.Connection, origin: AllowedOrigin) -> None:
    _adjust(connection, _loaded_rule_id(origin), -1)


@sa.event.listens_for(AllowedOrigin, "after_update")
def _updated(_mapper: Any, connection: sa.Connection, origin: AllowedOrigin) -> None:
    history: orm.attributes.History = sa.inspect(origin).attrs.rule_id.history
    if history.deleted and history.deleted[0] is not None \
            and history.deleted[0] != origin.rule_id:
        _adjust(connection, history.deleted[0], -1)
        _adjust(connection, origin.rule_id, 1)


def _loaded_rule_id(origin: AllowedOrigin) -> int:
    """The rule the row was on when loaded, whatever was assigned to it since."""
    history: orm.attributes.History = sa.inspect(origin).attrs.rule_id.history
    return history.deleted[0] if history.deleted else origin.rule_id


# -- any other statement -----------------------------------------------------------------------


@sa.event.listens_for(orm.Session, "do_orm_execute")
def _count_again_after(state: orm.ORMExecuteState) -> Any:
    if not (state.is_insert or state.is_update or state.is_delete) \
            or state.execution_options.get(KEPT) or not _writes_origins(state.statement):
        return None
    result = state.invoke_statement()
    connection = state.session.connection()
    if state.is_insert:  # the rows name their rules
        params = state.parameters
        rows = params if isinstance(params, list) else [params] if params else []
        named = [row["rule_id"] for row in rows if isinstance(row, dict) and "rule_id" in row]
        recount(connection, named if len(named) == len(rows) and rows else None)
    else:
        recount(connection)
    return result


def _writes_origins(statement: Any) -> bool:
    table = getattr(statement, "table", None)
    if table is None:
        return False
    if getattr(table, "name", None) == _origins.name:
        return True
    mapper = sa.inspect(table, raiseerr=False)
    return getattr(getattr(mapper, "local_table", None), "name", None) == _origins.name
