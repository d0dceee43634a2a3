"""The engine's view of the database: the policy version and the enabled rules.

It reads through a small SQLAlchemy engine of its own (see :func:`create_source_engine`), not
an application's session, so the engine can run in any Flask app (or a separate API process)
that shares the database, and so the poller thread needs no application context. It needs
only ``SELECT`` on the policy tables (:mod:`.tables`).
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..delta import PolicyDelta
from ..snapshot import OriginEntry, OriginListSpec, RuleSpec
from ..vocabulary import ENFORCE, OFF
from .tables import allowed_origins as _origins
from .tables import origin_list_entries as _list_entries
from .tables import origin_lists as _lists
from .tables import policy_state as _state
from .tables import rule_drafts as _drafts
from .tables import rule_origin_lists as _uses
from .tables import rules as _rules
from .tables import tenants as _tenants

# Engines whose pooled connections a forked worker must not share with its parent
# (gunicorn --preload): the child drops them without closing the parent's sockets.
_source_engines: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def create_source_engine(url: str) -> sa.Engine:
    """A small engine for the policy poller (with the heartbeat after each check) and the
    request log's flusher, which each hold at most one connection at a time. A forked child
    starts with an empty pool of its own."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        options["connect_args"] = {"connect_timeout": 3}
        # One connection kept for the poller and one for the flusher; one more on demand.
        options["pool_size"] = 2
        options["max_overflow"] = 1
    elif url.startswith("sqlite"):
        options["connect_args"] = {"timeout": 5}
    engine = sa.create_engine(url, **options)
    _source_engines.add(engine)
    return engine


def _forget_connections_after_fork() -> None:
    for engine in list(_source_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_connections_after_fork)


class DatabasePolicySource:
    """Reads the policy with two or three small queries; never on the request path.

    The engine belongs to whoever built it (the admin application's runtime and
    :class:`~cors_control.CorsControl` in database mode each dispose theirs); a source made
    by :meth:`from_url` owns its own, and :meth:`dispose` releases it.
    """

    mode = "database"  # as CorsControl.status() reports it

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> DatabasePolicySource:
        return cls(create_source_engine(url))

    def current_version(self) -> int:
        with _reading(self.engine) as conn:
            return read_version(conn)

    def load_with_tenants(self) -> tuple[int, list[RuleSpec], list[str]]:
        # Read the version before and after the rules: if a change committed in between,
        # read again, so a snapshot never mixes two policy versions.
        for _attempt in range(5):
            with self.engine.connect() as conn:
                before = read_version(conn)
                tenants: dict[int, str] = dict(
                    conn.execute(sa.select(_tenants.c.id, _tenants.c.slug)).all())
                specs = load_rules(conn, tenants)
                if read_version(conn) == before:
                    break
        return before, specs, sorted(tenants.values())

    def load_changes(self, since: int) -> PolicyDelta | None:
        """What changed after version *since* (see :mod:`.changes_feed`)."""
        from .changes_feed import load_delta  # it reads rules with this module's queries

        with _reading(self.engine) as conn:
            return load_delta(conn, since)

    def dispose(self) -> None:
        self.engine.dispose()


def _reading(engine: sa.Engine) -> sa.Connection:
    """A connection for the small reads each process makes after every change it is told
    about (and at each poll): in autocommit, so no BEGIN and ROLLBACK round trips surround
    them; those that must agree on one version read it again (see :func:`load_delta`)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def read_version(conn: sa.Connection) -> int:
    """The policy version, as *conn* sees it now."""
    return conn.execute(sa.select(_state.c.version).where(_state.c.id == 1)).scalar() or 0


def load_rules(conn: sa.Connection, tenants: dict[int, str],
                only: Collection[int] | None = None) -> list[RuleSpec]:
    """The enabled rules as specs, or those of them whose ids are *only*."""
    def chosen(column: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
        return sa.true() if only is None else column.in_(list(only))

    # A full load streams the origins (a server-side cursor on PostgreSQL, in the load's
    # transaction); a change's few rules are read at once, in autocommit (see _reading).
    origins = _load_origins(conn, tenants, chosen(_origins.c.rule_id), stream=only is None)
    used_lists = _load_used_lists(conn, tenants, chosen(_uses.c.rule_id))
    specs = []
    # Each enforced rule with its draft, if it has one (read with the rule: one round trip
    # fewer on every change a process loads).
    with_drafts = _rules.outerjoin(
        _drafts, sa.and_(_drafts.c.rule_id == _rules.c.id, _rules.c.mode == ENFORCE))
    for row in conn.execute(sa.select(_rules, _drafts.c.body.label("draft_body"))
                            .select_from(with_drafts)
                            .where(_rules.c.mode != OFF, chosen(_rules.c.id))):
        specs.append(
            RuleSpec(
                rule_id=row.id,
                path=row.path,
                origins=tuple(origins.get(row.id, ())),
                methods=tuple(row.methods),
                allow_headers=tuple(row.allow_headers),
                expose_headers=tuple(row.expose_headers),
                supports_credentials=row.supports_credentials,
                max_age=row.max_age,
                allow_private_network=row.allow_private_network,
                mode=row.mode,
                tenant_source=row.tenant_source,
                tenant_key=row.tenant_key,
                unknown_tenant=row.unknown_tenant,
                draft=_with_lists(_draft_spec(row.draft_body), used_lists.get(row.id, ()))
                if row.mode == ENFORCE and row.draft_body is not None else None,
                origin_lists=used_lists.get(row.id, ()),
            )
        )
    return specs


# Rows fetched per round trip when reading the origins: a million rows are read in steps of
# this many, never all held at once.
ORIGIN_BATCH = 10_000


def _load_origins(conn: sa.Connection, tenants: dict[int, str],
                  chosen: sa.ColumnElement[bool], *,
                  stream: bool) -> dict[int, list[OriginEntry]]:
    """The origins of the enabled rules, by rule id, each with its expiry and tenant name.

    Nearly every origin has no expiry: the column is read as the driver returns it and only
    a value that is there goes through the column's type (a Python call per row otherwise,
    a noticeable share of loading a million origins)."""
    expires_at = _origins.c.expires_at
    to_moment = expires_at.type.dialect_impl(conn.dialect).result_processor(conn.dialect, None)
    query = sa.select(
        _origins.c.rule_id, _origins.c.value,
        sa.type_coerce(expires_at, sa.types.NullType()), _origins.c.tenant_id,
    ).join(_rules, _rules.c.id == _origins.c.rule_id).where(_rules.c.mode != OFF, chosen)
    origins: dict[int, list[OriginEntry]] = {}
    tenant_of = tenants.get  # a tenant id of None, or of no tenant, gives None
    result = conn.execution_options(yield_per=ORIGIN_BATCH).execute(query) if stream \
        else conn.execute(query)
    for rows in result.partitions(ORIGIN_BATCH):
        for rule_id, value, expires, tenant_id in rows:
            if expires is not None:
                expires = _timestamp(to_moment(expires) if to_moment else expires)
            origins.setdefault(rule_id, []).append(
                OriginEntry(value, expires, tenant_of(tenant_id)))
    return origins


def _with_lists(draft: RuleSpec | None,
                lists: tuple[OriginListSpec, ...]) -> RuleSpec | None:
    """A draft keeps the shared lists its rule uses: a draft changes the rule's own options
    and origins, and the lists' origins stay on its allowlist as they do on the rule's."""
    if draft is None or not lists:
        return draft
    return dataclasses.replace(draft, origin_lists=lists)


def _draft_spec(body: dict[str, Any]) -> RuleSpec:
    """A stored draft (validated when written, by the admin application) as a spec."""
    origins = []
    for item in body.get("origins", []):
        if isinstance(item, str):
            origins.append(OriginEntry(item))
        else:
            expires = item.get("expires_at")
            origins.append(OriginEntry(
                item["value"],
                None if not expires else datetime.fromisoformat(
                    expires.replace("Z", "+00:00")).timestamp(),
                item.get("tenant")))
    return RuleSpec(
        path="",  # the rule's own (compile_rule puts it there)
        origins=tuple(origins),
        methods=tuple(body["methods"]),
        allow_headers=tuple(body["allow_headers"]),
        expose_headers=tuple(body["expose_headers"]),
        supports_credentials=body["supports_credentials"],
        max_age=body["max_age"],
        allow_private_network=body["allow_private_network"],
    )


def _load_used_lists(conn: sa.Connection, tenants: dict[int, str],
                     chosen: sa.ColumnElement[bool]) -> dict[int, tuple[OriginListSpec, ...]]:
    """The shared lists each enabled rule uses, each list built once and shared by its
    rules (the engine merges them into each rule's allowlists when it compiles)."""
    uses = conn.execute(
        sa.select(_uses.c.rule_id, _uses.c.list_id)
        .join(_rules, _rules.c.id == _uses.c.rule_id).where(_rules.c.mode != OFF, chosen)
        .order_by(_uses.c.rule_id, _uses.c.list_id)).all()
    if not uses:
        return {}
    wanted = {list_id for _rule_id, list_id in uses}
    entries: dict[int, list[OriginEntry]] = {}
    query = sa.select(_list_entries.c.list_id, _list_entries.c.value,
                      _list_entries.c.expires_at).where(_list_entries.c.list_id.in_(wanted))
    for list_id, value, expires_at in conn.execute(query):
        entries.setdefault(list_id, []).append(OriginEntry(value, _timestamp(expires_at)))
    specs = {
        row.id: OriginListSpec(
            row.name, tuple(entries.get(row.id, ())),
            tenants.get(row.tenant_id) if row.tenant_id is not None else None)
        for row in conn.execute(sa.select(_lists.c.id, _lists.c.name, _lists.c.tenant_id)
                                .where(_lists.c.id.in_(wanted)))
    }
    used: dict[int, list[OriginListSpec]] = {}
    for rule_id, list_id in uses:
        used.setdefault(rule_id, []).append(specs[list_id])
    return {rule_id: tuple(lists) for rule_id, lists in used.items()}


def _timestamp(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()
