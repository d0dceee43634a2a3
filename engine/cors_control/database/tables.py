"""The columns of the admin application's database that the engine reads and writes.

These are SQLAlchemy Core descriptions of only what database mode touches: the policy
(read), ``request_log`` (refusals upserted) and ``engine_processes`` (the heartbeat). The
schema itself belongs to the admin application (its models and migrations);
``tests/test_engine_tables.py`` fails when a column described here is missing there or typed
differently, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from ..refusals import OVERFLOW
from ..vocabulary import DRAFT

metadata = sa.MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """A moment, stored as ``DateTime(timezone=True)`` and always read as an aware UTC datetime.

    SQLite keeps no time zone and returns naive values; PostgreSQL returns them in the
    session's zone. Both come back in UTC here, so no caller ever looks at ``tzinfo``. A naive
    value is refused on the way in: nothing says which zone it was meant in.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None,
                           dialect: sa.Dialect) -> datetime | None:
        return None if value is None else _utc(value)

    def process_result_value(self, value: datetime | None,
                             dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite keeps no zone: what it returns was stored in UTC by process_bind_param.
        return _utc(value if value.tzinfo is not None else value.replace(tzinfo=UTC))


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"the time {moment.isoformat()} has no time zone; pass an aware "
                         "datetime, such as one read from the database or datetime.now(UTC)")
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _column(name: str, type_: Any, *, nullable: bool = False,
            primary_key: bool = False) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=nullable, primary_key=primary_key)


policy_state = sa.Table(
    "policy_state", metadata,
    _column("id", sa.Integer, primary_key=True),
    _column("version", sa.BigInteger),
)

tenants = sa.Table(
    "tenants", metadata,
    _column("id", sa.Integer, primary_key=True),
    _column("slug", sa.String(63)),
)

rules = sa.Table(
    "rules", metadata,
    _column("id", sa.Integer, primary_key=True),
    _column("path", sa.String(500)),
    _column("methods", sa.JSON),
    _column("allow_headers", sa.JSON),
    _column("expose_headers", sa.JSON),
    _column("supports_credentials", sa.Boolean),
    _column("max_age", sa.Integer, nullable=True),
    _column("allow_private_network", sa.Boolean),
    _column("mode", sa.String(20)),
    _column("tenant_source", sa.String(20)),
    _column("tenant_key", sa.String(200)),
    _column("unknown_tenant", sa.String(20)),
)

allowed_origins = sa.Table(
    "allowed_origins", metadata,
    _column("id", sa.Integer, primary_key=True),
    _column("rule_id", sa.Integer),
    _column("value", sa.String(300)),
    _column("expires_at", UTCDateTime, nullable=True),
    _column("tenant_id", sa.Integer, nullable=True),
)

rule_drafts = sa.Table(
    "rule_drafts", metadata,
    _column("id", sa.Integer, primary_key=True),
    _column("rule_id", sa.Integer),
    _column("body", sa.JSON),
)

origin_lists = sa.Table(
    "origin_lists", metadata,
    _column("id", sa.Integer, primary_key=True),
    _column("name", sa.String(100)),
    _column("tenant_id", sa.Integer, nullable=True),
)

origin_list_entries = sa.Table(
    "origin_list_entries", metadata,
    _column("id", sa.Integer, primary_key=True),
    _column("list_id", sa.Integer),
    _column("value", sa.String(300)),
    _column("expires_at", UTCDateTime, nullable=True),
)

rule_origin_lists = sa.Table(
    "rule_origin_lists", metadata,
    _column("rule_id", sa.Integer, primary_key=True),
    _column("list_id", sa.Integer, primary_key=True),
)

# The key of a row: a refusal upserts into the row of its key (uq_request_log_key).
REQUEST_LOG_KEY = ("bucket_start", "rule_path", "tenant", "origin", "reason", "detail", "mode")


def refusal_group_key(origin: str, rule_path: str, reason: str, mode: str) -> int | None:
    """A signed 64-bit number for the refused origin, rule, reason and mode of a row that the
    admin may list among the most refused origins (it sums them on it: a number sorts much
    faster than four strings); None for the rows never listed there: the overflow row, a
    refusal without an origin, what only a draft would refuse. The same on every host and
    Python version (a hash of the UTF-8 bytes, not ``hash()``). Two groups may share a
    number: the reader sums the groups it lists on their strings, so its list is the same."""
    if reason == OVERFLOW or not origin or mode == DRAFT:
        return None
    digest = hashlib.blake2b(
        f"{origin}\x1f{rule_path}\x1f{reason}\x1f{mode}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# The change log: what each policy version changed, so a process loads only that (written by
# the admin application in the change's transaction; see changes_feed).
policy_changes = sa.Table(
    "policy_changes", metadata,
    _column("id", sa.Integer, primary_key=True),
    _column("version", sa.BigInteger),
    _column("kind", sa.String(20)),
    _column("rule_id", sa.Integer, nullable=True),
    _column("tenant_id", sa.Integer, nullable=True),
    _column("list_id", sa.Integer, nullable=True),
    _column("origin", sa.String(300), nullable=True),
    _column("recorded_at", UTCDateTime),
)

request_log = sa.Table(
    "request_log", metadata,
    _column("bucket_start", UTCDateTime),
    _column("rule_id", sa.Integer, nullable=True),
    _column("rule_path", sa.String(500)),
    _column("tenant", sa.String(100)),
    _column("origin", sa.String(300)),
    _column("reason", sa.String(40)),
    _column("detail", sa.String(200)),
    _column("mode", sa.String(20)),
    _column("count", sa.BigInteger),
    _column("first_seen", UTCDateTime),
    _column("last_seen", UTCDateTime),
    _column("path", sa.String(500)),
    _column("method", sa.String(20)),
    _column("preflight", sa.Boolean),
    _column("request_method", sa.String(40)),
    _column("request_headers", sa.String(500)),
    _column("user_agent", sa.String(300)),
    _column("referer", sa.String(500)),
    # refusal_group_key(origin, rule_path, reason, mode): NULL on rows never listed among the
    # most refused origins, and on rows an engine older than migration 0021 wrote.
    _column("group_key", sa.BigInteger, nullable=True),
    sa.UniqueConstraint(*REQUEST_LOG_KEY, name="uq_request_log_key"),
)

engine_processes = sa.Table(
    "engine_processes", metadata,
    _column("id", sa.String(200), primary_key=True),
    _column("host", sa.String(200)),
    _column("pid", sa.Integer),
    _column("policy_version", sa.BigInteger, nullable=True),
    _column("last_check", UTCDateTime),
    _column("started_at", UTCDateTime),
    _column("last_error", sa.Text),
)
