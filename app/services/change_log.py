"""The policy's change log: what each version changed, recorded in the change's transaction.

While a :func:`~.changes.policy_change` that moves the version is open, every flush of the
session is watched: the rows it writes, deleted or changed among the policy's tables become
keys (a rule to compile again, one tenant's allowlist on a rule, a shared list, the tenant
names). Just before the commit, :func:`record` writes them to ``policy_changes`` under the new
version, one row at least per version, so a reader can tell a complete log from a gap.
Statements that write many rows at once (not through the session's objects) cannot be told
apart and are recorded as ``full``: processes then load the whole policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..extensions import db
from ..models import (
    AllowedOrigin,
    OriginList,
    OriginListEntry,
    PolicyChange,
    Rule,
    RuleDraft,
    RuleOriginList,
    Tenant,
    utcnow,
)

# The columns of a rule that its compiled form depends on (not its notes, owner or times).
RULE_COLUMNS = ("path", "methods", "allow_headers", "expose_headers", "supports_credentials",
                "max_age", "allow_private_network", "mode", "tenant_source", "tenant_key",
                "unknown_tenant")
ORIGIN_COLUMNS = ("value", "expires_at", "tenant_id", "rule_id")
POLICY_TABLES = frozenset(model.__tablename__ for model in (
    Rule, AllowedOrigin, RuleDraft, OriginList, OriginListEntry, RuleOriginList, Tenant))
# Past these, a change is recorded coarser: one tenant's allowlists become their rule, and
# a change touching more than MAX_ROWS keys becomes one full reload.
MAX_ALLOWLISTS_PER_RULE = 200
MAX_ROWS = 1000

Key = tuple[Any, ...]
_keys: ContextVar[dict[Key, set[str]] | None] = ContextVar("policy_change_keys", default=None)


@contextmanager
def watching() -> Iterator[None]:
    """Collect the keys of what the session flushes in this block (see :func:`record`)."""
    token = _keys.set({})
    try:
        yield
    finally:
        _keys.reset(token)


def note_rule(rule_id: int) -> None:
    """Record that *rule_id* must be compiled again, for a write the session cannot see: the
    driver's own executemany or COPY of a rule's origins (see policy._insert_origins)."""
    keys = _keys.get()
    if keys is not None:
        keys[("rule", rule_id)] = set()


def record(version: int) -> None:
    """Flush, then write the change log rows of *version* from what was flushed."""
    db.session.flush()
    keys = _keys.get()
    if keys is None:
        raise RuntimeError("record() runs inside watching()")
    db.session.execute(sa.insert(PolicyChange), _rows(version, keys))


def _rows(version: int, keys: dict[Key, set[str]]) -> list[dict[str, Any]]:
    if ("full",) in keys:
        return [_row(version, "full")]
    per_rule: dict[int, int] = {}
    for key in keys:
        if key[0] == "allowlist":
            per_rule[key[1]] = per_rule.get(key[1], 0) + 1
    crowded = {rule_id for rule_id, count in per_rule.items()
               if count > MAX_ALLOWLISTS_PER_RULE}
    rows: dict[Key, dict[str, Any]] = {}
    for key, origins in keys.items():
        kind = key[0]
        if kind == "allowlist" and key[1] in crowded:
            rows[("rule", key[1])] = _row(version, "rule", rule_id=key[1])
        elif kind == "allowlist":
            rows[key] = _row(version, kind, rule_id=key[1], tenant_id=key[2],
                             origin=next(iter(origins)) if len(origins) == 1 else None)
        elif kind == "rule":
            rows[key] = _row(version, kind, rule_id=key[1])
        elif kind == "list":
            rows[key] = _row(version, kind, list_id=key[1])
        else:
            rows[key] = _row(version, kind)
    if len(rows) > MAX_ROWS:
        return [_row(version, "full")]
    return list(rows.values()) or [_row(version, "none")]


def _row(version: int, kind: str, *, rule_id: int | None = None, tenant_id: int | None = None,
         list_id: int | None = None, origin: str | None = None) -> dict[str, Any]:
    return {"version": version, "kind": kind, "rule_id": rule_id, "tenant_id": tenant_id,
            "list_id": list_id, "origin": origin}


def _noting(how: str) -> Any:
    def note(_mapper: Any, _connection: Any, obj: object) -> None:
        keys = _keys.get()
        if keys is not None:
            _note(keys, obj, how)
    return note


# Mapper events see every row a flush writes, orphans and cascades included.
for _model in (AllowedOrigin, Rule, RuleDraft, RuleOriginList, OriginList, OriginListEntry,
               Tenant):
    sa.event.listen(_model, "after_insert", _noting("new"))
    sa.event.listen(_model, "after_update", _noting("dirty"))
    sa.event.listen(_model, "after_delete", _noting("deleted"))


@sa.event.listens_for(orm.Session, "do_orm_execute")
def _note_statement(state: orm.ORMExecuteState) -> None:
    keys = _keys.get()
    if keys is None or not (state.is_update or state.is_delete or state.is_insert):
        return
    name = _table_name(state.statement)
    if name is None or name in POLICY_TABLES:  # unknown: assume the worst
        keys[("full",)] = set()


def _table_name(statement: Any) -> str | None:
    table = getattr(statement, "table", None)
    name = getattr(table, "name", None)
    if name is None and table is not None:  # an ORM entity rather than its table
        name = getattr(getattr(sa.inspect(table, raiseerr=False), "local_table", None),
                       "name", None)
    return name


def _note(keys: dict[Key, set[str]], obj: object, how: str) -> None:
    if isinstance(obj, AllowedOrigin):
        if how == "dirty" and not _changed(obj, ORIGIN_COLUMNS):
            return
        for rule_id, tenant_id, value in _old_and_new(obj, ("rule_id", "tenant_id", "value")):
            keys.setdefault(("allowlist", rule_id, tenant_id), set()).add(value)
    elif isinstance(obj, Rule):
        if how != "dirty" or _changed(obj, RULE_COLUMNS):
            keys[("rule", obj.id)] = set()
    elif isinstance(obj, (RuleDraft, RuleOriginList)):
        for (rule_id,) in _old_and_new(obj, ("rule_id",)):
            keys[("rule", rule_id)] = set()
    elif isinstance(obj, OriginList):
        if how != "new":  # a new list is used by no rule yet
            keys[("list", obj.id)] = set()
    elif isinstance(obj, OriginListEntry):
        for (list_id,) in _old_and_new(obj, ("list_id",)):
            keys[("list", list_id)] = set()
    elif isinstance(obj, Tenant):
        if how == "new":
            keys[("tenants",)] = set()
        elif how == "deleted" or _changed(obj, ("slug",)):
            # Its name is a key of every tenant-selecting rule's allowlists.
            keys[("full",)] = set()


def _changed(obj: object, columns: tuple[str, ...]) -> bool:
    attrs = sa.inspect(obj).attrs
    return any(attrs[name].history.has_changes() for name in columns)


def _old_and_new(obj: object, columns: tuple[str, ...]) -> set[tuple[Any, ...]]:
    """The values of *columns* now and, where a flush changed them, before."""
    attrs = sa.inspect(obj).attrs
    now = tuple(getattr(obj, name) for name in columns)
    found = {now}
    if any(attrs[name].history.deleted for name in columns):
        found.add(tuple(attrs[name].history.deleted[0] if attrs[name].history.deleted
                        else getattr(obj, name) for name in columns))
    return found


def prune_change_log(*, keep_hours: float = 24.0) -> int:
    """Delete the log of versions recorded more than *keep_hours* ago, whole versions only;
    returns the rows deleted. A process that far behind finds the gap and loads in full."""
    cutoff = utcnow() - timedelta(hours=keep_hours)
    last = db.session.scalar(sa.select(sa.func.max(PolicyChange.version))
                             .where(PolicyChange.recorded_at < cutoff))
    if last is None:
        return 0
    deleted = db.session.execute(sa.delete(PolicyChange).where(PolicyChange.version <= last))
    db.session.commit()
    return int(getattr(deleted, "rowcount", 0) or 0)
