"""What changed in the policy since a version, read from the change log (``policy_changes``).

:func:`load_delta` turns the log rows after a process's version into a
:class:`~cors_control.delta.PolicyDelta`: the rules to compile again, read as the full load
reads them (:mod:`.source`), and the single tenant allowlists to build again, read with
one query each for their origins and their tenant's lists. It answers None (load in full)
when the log does not hold every version in between: pruned, or written before the log was.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..delta import AllowlistSpec, PolicyDelta
from ..snapshot import OriginEntry, OriginListSpec
from ..vocabulary import NO_TENANT_SOURCE, OFF
from .source import load_rules, read_version
from .tables import allowed_origins as _origins
from .tables import origin_list_entries as _list_entries
from .tables import origin_lists as _lists
from .tables import policy_changes as _log
from .tables import policy_state as _state
from .tables import rule_origin_lists as _uses
from .tables import rules as _rules
from .tables import tenants as _tenants

ATTEMPTS = 5


def load_delta(conn: sa.Connection, since: int) -> PolicyDelta | None:
    """The changes after version *since*, up to the current version, or None when the log
    cannot say (a gap, or a change recorded as needing a full load)."""
    for _attempt in range(ATTEMPTS):
        version, rows = _version_and_log(conn, since)
        delta = _read(conn, since, version, rows)
        # A change committed while reading: read again, so no delta mixes two versions.
        if read_version(conn) == version:
            return delta
        conn.rollback()
    return None


# The policy version and the log rows after a version up to it, in one round trip (each
# process runs it after every change it is told about): the state's row is the one without
# a kind. Built once; only *since* is bound per call.
_VERSION_AND_LOG = sa.union_all(
    sa.select(_state.c.version, sa.cast(sa.null(), _log.c.kind.type).label("kind"),
              sa.cast(sa.null(), sa.Integer).label("rule_id"),
              sa.cast(sa.null(), sa.Integer).label("tenant_id"),
              sa.cast(sa.null(), sa.Integer).label("list_id"))
    .where(_state.c.id == 1),
    sa.select(_log.c.version, _log.c.kind, _log.c.rule_id, _log.c.tenant_id, _log.c.list_id)
    .where(_log.c.version > sa.bindparam("since", type_=sa.BigInteger),
           _log.c.version <= sa.select(_state.c.version).where(_state.c.id == 1)
           .scalar_subquery()),
)


def _version_and_log(conn: sa.Connection, since: int) -> tuple[int, list[sa.Row[Any]]]:
    version = 0
    rows = []
    for row in conn.execute(_VERSION_AND_LOG, {"since": since}):
        if row.kind is None:
            version = row.version or 0
        else:
            rows.append(row)
    # Both parts read the state row; without a snapshot (SQLite, autocommit) a change may
    # commit between them: keep only the rows up to the version read.
    return version, [row for row in rows if row.version <= version]


def _read(conn: sa.Connection, since: int, version: int,
          rows: list[sa.Row[Any]]) -> PolicyDelta | None:
    if version <= since:
        return PolicyDelta(version=version)
    if len({row.version for row in rows}) != version - since:
        return None  # pruned, or versions written without a log: the log has a gap
    if any(row.kind == "full" for row in rows):
        return None
    rule_ids = {row.rule_id for row in rows if row.kind == "rule"}
    list_ids = {row.list_id for row in rows if row.kind == "list"}
    if list_ids:
        rule_ids.update(conn.scalars(
            sa.select(_uses.c.rule_id).where(_uses.c.list_id.in_(list_ids))))
    wanted = {(row.rule_id, row.tenant_id) for row in rows
              if row.kind == "allowlist" and row.rule_id not in rule_ids}
    tenant_keys = _tenant_allowlists(conn, wanted, rule_ids)
    whole_tenants = bool(rule_ids) or any(row.kind == "tenants" for row in rows)
    tenants = _tenant_names(conn, None if whole_tenants
                            else {tenant_id for _rule_id, tenant_id in tenant_keys})
    if any(tenant_id not in tenants for _rule_id, tenant_id in tenant_keys):
        return None  # a tenant gone meanwhile: its deletion asks for a full load anyway
    specs = {spec.rule_id: spec for spec in load_rules(conn, tenants, rule_ids)
             if spec.rule_id is not None} if rule_ids else {}
    return PolicyDelta(
        version=version,
        rules={rule_id: specs.get(rule_id) for rule_id in rule_ids},
        allowlists=_allowlists(conn, tenant_keys, tenants),
        tenants=frozenset(tenants.values())
        if any(row.kind == "tenants" for row in rows) else None,
    )


def _tenant_allowlists(conn: sa.Connection, wanted: set[tuple[int, int | None]],
                       rule_ids: set[int]) -> set[tuple[int, int]]:
    """Of the allowlists *wanted*, those to build alone: one tenant's, on an enabled rule
    that selects tenants. The others make their rule compile whole (added to *rule_ids*):
    the rule's shared allowlist is in every tenant's."""
    if not wanted:
        return set()
    rules = {row.id: row for row in conn.execute(
        sa.select(_rules.c.id, _rules.c.tenant_source, _rules.c.mode)
        .where(_rules.c.id.in_({rule_id for rule_id, _tenant in wanted})))}
    alone: set[tuple[int, int]] = set()
    for rule_id, tenant_id in wanted:
        rule = rules.get(rule_id)
        if rule is not None and rule.mode == OFF:
            continue  # not compiled; switching it on compiles it whole
        if rule is None or tenant_id is None or rule.tenant_source == NO_TENANT_SOURCE:
            rule_ids.add(rule_id)
        else:
            alone.add((rule_id, tenant_id))
    return {key for key in alone if key[0] not in rule_ids}


def _tenant_names(conn: sa.Connection, ids: set[int] | None) -> dict[int, str]:
    query = sa.select(_tenants.c.id, _tenants.c.slug)
    if ids is not None:
        if not ids:
            return {}
        query = query.where(_tenants.c.id.in_(ids))
    return {tenant_id: slug for tenant_id, slug in conn.execute(query)}


def _allowlists(conn: sa.Connection, keys: set[tuple[int, int]],
                tenants: dict[int, str]) -> tuple[AllowlistSpec, ...]:
    if not keys:
        return ()
    by_rule: dict[int, list[int]] = {}
    for rule_id, tenant_id in sorted(keys):
        by_rule.setdefault(rule_id, []).append(tenant_id)
    # One (rule_id, tenant_id) lookup per rule on the unique index of a tenant's entries;
    # a row-value IN would be read by SQLite from the rule's index: every tenant's rows.
    wanted = sa.or_(*(sa.and_(_origins.c.rule_id == rule_id, _origins.c.tenant_id.in_(ids))
                      for rule_id, ids in by_rule.items()))
    origins: dict[tuple[int, int], list[OriginEntry]] = {key: [] for key in keys}
    for rule_id, tenant_id, value, expires_at in conn.execute(
            sa.select(_origins.c.rule_id, _origins.c.tenant_id, _origins.c.value,
                      _origins.c.expires_at).where(wanted)):
        origins[(rule_id, tenant_id)].append(
            OriginEntry(value, _timestamp(expires_at), tenants[tenant_id]))
    lists = _tenant_lists(conn, keys, tenants)
    return tuple(
        AllowlistSpec(rule_id, tenants[tenant_id], tuple(origins[(rule_id, tenant_id)]),
                      lists.get((rule_id, tenant_id), ()))
        for rule_id, tenant_id in sorted(keys))


def _tenant_lists(conn: sa.Connection, keys: set[tuple[int, int]], tenants: dict[int, str]
                  ) -> dict[tuple[int, int], tuple[OriginListSpec, ...]]:
    """The lists each tenant owns among those its rule uses, with their entries."""
    uses = conn.execute(
        sa.select(_uses.c.rule_id, _lists.c.tenant_id, _lists.c.id, _lists.c.name)
        .join(_lists, _lists.c.id == _uses.c.list_id)
        .where(_uses.c.rule_id.in_({rule_id for rule_id, _tenant in keys}),
               _lists.c.tenant_id.in_({tenant_id for _rule, tenant_id in keys}))
        .order_by(_uses.c.rule_id, _uses.c.list_id)).all()
    uses = [use for use in uses if (use.rule_id, use.tenant_id) in keys]
    if not uses:
        return {}
    entries = _entries(conn, {use.id for use in uses})
    found: dict[tuple[int, int], list[OriginListSpec]] = {}
    for use in uses:
        found.setdefault((use.rule_id, use.tenant_id), []).append(
            OriginListSpec(use.name, tuple(entries.get(use.id, ())), tenants[use.tenant_id]))
    return {key: tuple(lists) for key, lists in found.items()}


def _entries(conn: sa.Connection, list_ids: Iterable[int]) -> dict[int, list[OriginEntry]]:
    entries: dict[int, list[OriginEntry]] = {}
    for list_id, value, expires_at in conn.execute(
            sa.select(_list_entries.c.list_id, _list_entries.c.value,
                      _list_entries.c.expires_at)
            .where(_list_entries.c.list_id.in_(list(list_ids)))):
        entries.setdefault(list_id, []).append(OriginEntry(value, _timestamp(expires_at)))
    return entries


def _timestamp(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()
