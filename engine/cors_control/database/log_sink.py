"""The refusals written to the database's ``request_log``: the sink of a
:class:`~cors_control.refusals.RefusalRecorder` in database mode (and in the admin
application).

Each row is upserted on its key (``uq_request_log_key``): a stored row of the same key gets
the row's count added and its first and last seen widened. It needs ``INSERT`` and ``UPDATE``
on ``request_log``. PostgreSQL and SQLite only (each has its own upsert).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..refusals import SinkUnavailable
from ..wire import RefusalRow
from .tables import REQUEST_LOG_KEY, refusal_group_key
from .tables import request_log as _table

# The database could not be reached or could not take the write now (down, restarting,
# locked, a deadlock victim): worth retrying the same rows later. Anything else (DataError,
# IntegrityError, other DBAPI errors, errors binding a value) is about the rows.
CONNECTIVITY_FAILURES = (sa.exc.OperationalError, sa.exc.InterfaceError,
                         sa.exc.DisconnectionError, sa.exc.TimeoutError)
_DIALECTS = ("postgresql", "sqlite")


class DatabaseRefusalSink:
    """Writes refusal rows to ``request_log`` through *engine*, one transaction a batch.

    The engine belongs to whoever made it; the sink never disposes it. :attr:`engine` may be
    replaced (a test pointing it at an unreachable database).
    """

    def __init__(self, engine: sa.Engine) -> None:
        dialect = engine.dialect.name
        if dialect not in _DIALECTS:
            raise ValueError(f"the request log supports PostgreSQL and SQLite, not {dialect}: "
                             "point database_url at the admin application's database")
        self.engine = engine

    def write(self, rows: Sequence[RefusalRow]) -> None:
        """Upsert *rows* in one transaction, in the order given.

        :raises SinkUnavailable: on a connectivity failure (the cause is chained).
        """
        if not rows:
            return
        try:
            with self.engine.begin() as conn:
                upsert_refusals(conn, rows)
        except CONNECTIVITY_FAILURES as exc:
            raise SinkUnavailable(f"the request log's database is unreachable: "
                                  f"{type(exc).__name__}") from exc


_UPSERTS: dict[str, sa.Insert] = {}


def upsert_refusals(conn: sa.Connection, rows: Sequence[RefusalRow]) -> None:
    """Merge *rows* into ``request_log`` in *conn*'s transaction, in the order given (give
    them in key order: concurrent writers then take their row locks in the same order).

    One compiled upsert per dialect, executed once per row (executemany): compiling a
    multi-row VALUES statement per flush cost more than writing the rows."""
    if not rows:
        return
    dialect = conn.dialect.name
    statement = _UPSERTS.get(dialect)
    if statement is None:
        statement = _UPSERTS[dialect] = _upsert(dialect)
    conn.execute(statement, [_values(row) for row in rows])


def _upsert(dialect: str) -> sa.Insert:
    """The insert that adds to the row of the same key: its count, its first and last seen."""
    if dialect == "postgresql":
        on_postgresql = postgresql.insert(_table)
        return on_postgresql.on_conflict_do_update(
            index_elements=list(REQUEST_LOG_KEY), set_=_merged(on_postgresql.excluded))
    if dialect == "sqlite":
        on_sqlite = sqlite.insert(_table)
        return on_sqlite.on_conflict_do_update(
            index_elements=list(REQUEST_LOG_KEY), set_=_merged(on_sqlite.excluded))
    raise RuntimeError(f"the request log supports PostgreSQL and SQLite, not {dialect}")


def _merged(excluded: Any) -> dict[str, Any]:
    stored = _table.c
    return {
        "count": stored.count + excluded.count,
        "last_seen": sa.case((excluded.last_seen > stored.last_seen, excluded.last_seen),
                             else_=stored.last_seen),
        "first_seen": sa.case((excluded.first_seen < stored.first_seen, excluded.first_seen),
                              else_=stored.first_seen),
    }


def _values(row: RefusalRow) -> dict[str, Any]:
    # Spelled out: a flush converts thousands of rows, and a loop over the fields with
    # getattr() costs a third more.
    return {
        "bucket_start": datetime.fromtimestamp(row.bucket_start, UTC),
        "rule_path": row.rule_path,
        "tenant": row.tenant,
        "origin": row.origin,
        "reason": row.reason,
        "detail": row.detail,
        "mode": row.mode,
        "rule_id": row.rule_id,
        "count": row.count,
        "first_seen": datetime.fromtimestamp(row.first_seen, UTC),
        "last_seen": datetime.fromtimestamp(row.last_seen, UTC),
        "path": row.path,
        "method": row.method,
        "preflight": row.preflight,
        "request_method": row.request_method,
        "request_headers": row.request_headers,
        "user_agent": row.user_agent,
        "referer": row.referer,
        "group_key": refusal_group_key(row.origin, row.rule_path, row.reason, row.mode),
    }
