"""Reading the audit trail: filters, pagination and a readable field-level difference."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy.pagination import Pagination

from ..extensions import db
from ..models import AuditEntry, Rule
from .access import Actor, visible_audit_entries
from .errors import FieldError, NotFound, ValidationError
from .policy_read import rule_to_dict
from .validation import RULE_FIELDS

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class AuditFilter:
    rule: str = ""  # text contained in the rule path, case-insensitive
    actor: str = ""  # text contained in the actor's name, case-insensitive
    # An origin named by the entry: in its summary, or in the states before and after
    origin: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> AuditFilter:
        return cls(rule=(args.get("rule") or "").strip()[:500],
                   actor=(args.get("actor") or "").strip()[:200],
                   origin=(args.get("origin") or "").strip()[:300])

    def as_args(self) -> dict[str, str]:
        """The non-empty filters, as query-string arguments for links."""
        return {k: v for k, v in (("rule", self.rule), ("actor", self.actor),
                                  ("origin", self.origin)) if v}


def query_audit(filters: AuditFilter, *, page: int = 1,
                per_page: int = DEFAULT_PAGE_SIZE, actor: Actor | None = None) -> Pagination:
    """One page of the entries *actor* may see (a tenant role: its tenant's), newest first.
    The page size is capped at :data:`MAX_PAGE_SIZE`."""
    query = sa.select(AuditEntry).where(visible_audit_entries(actor)) \
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if filters.rule:
        query = query.where(sa.func.lower(AuditEntry.rule_path).like(
            _contains(filters.rule.lower()), escape="\\"))
    if filters.actor:
        query = query.where(
            sa.func.lower(AuditEntry.actor).like(_contains(filters.actor.lower()), escape="\\"))
    if filters.origin:
        # Origins are stored in canonical (lower-case) form; the states are JSON text.
        pattern = _contains(filters.origin.lower())
        query = query.where(sa.or_(*(
            sa.func.lower(column).like(pattern, escape="\\") for column in (
                AuditEntry.summary, sa.cast(AuditEntry.before, sa.Text),
                sa.cast(AuditEntry.after, sa.Text)))))
    return db.paginate(query, page=max(1, page), per_page=max(1, per_page),
                       max_per_page=MAX_PAGE_SIZE, error_out=False)


def restorable_states(entry: AuditEntry, *, tenant: str | None = None) -> list[str]:
    """The recorded rule states ``restore_rule`` can bring back: ``before`` for updates and
    deletions, ``after`` for creations and updates. Imports and user changes have none.

    With *tenant* (the slug of a tenant role's tenant), only states of that tenant's own
    rules: on a platform rule a tenant role changes its allowlist, never the whole rule.
    """
    if entry.rule_id is None:
        return []
    return [state for state, recorded in (("before", entry.before), ("after", entry.after))
            if isinstance(recorded, Mapping) and recorded.get("path")
            and (tenant is None or recorded.get("tenant") == tenant)]


def tenant_part(state: Any, tenant: str | None) -> Any:
    """A recorded rule state as *tenant* may see it: of a rule it does not own (a platform
    rule that selects tenants) only its own origins; ``tenant`` None sees everything."""
    if tenant is None or not isinstance(state, Mapping) or state.get("tenant") == tenant \
            or not isinstance(state.get("origins"), list):
        return state
    own = [o for o in state["origins"] if isinstance(o, Mapping) and o.get("tenant") == tenant]
    return {**state, "origins": own}


# -- the difference between two recorded states ------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field that differs: ``old → new`` as text ("" for a side without the field), or
    origins added and removed."""

    name: str
    old: str = ""
    new: str = ""
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # origins whose note or expiry changed

    @property
    def is_list(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass(frozen=True, slots=True)
class StateChange:
    """The fields that differ for one object; ``label`` names it when an entry covers several
    (a policy import covers every rule it touched)."""

    label: str
    fields: list[FieldChange]


def describe_changes(entry: AuditEntry, *, tenant: str | None = None) -> list[StateChange]:
    """The entry's changes, field by field; with *tenant*, as that tenant may see them
    (:func:`tenant_part`)."""
    before, after = tenant_part(entry.before, tenant), tenant_part(entry.after, tenant)
    if _is_import(before) or _is_import(after):
        rules_before = (before or {}).get("rules") or {}
        rules_after = (after or {}).get("rules") or {}
        paths = sorted(set(rules_before) | set(rules_after))
        return [StateChange(path, field_changes(rules_before.get(path), rules_after.get(path)))
                for path in paths]
    changes = field_changes(before, after)
    return [StateChange("", changes)] if changes else []


def field_changes(before: Mapping[str, Any] | None,
                  after: Mapping[str, Any] | None) -> list[FieldChange]:
    """For each key whose value differs, the old and new value; origins as added/removed.

    A creation (no *before*) or a deletion (no *after*) lists only the fields that have a
    value, so an empty description or a false option does not read as a change.
    """
    one_sided = not before or not after
    before, after = before or {}, after or {}
    known = [name for name in RULE_FIELDS if name in before or name in after]
    others = sorted(k for k in {*before, *after} if k not in RULE_FIELDS)
    changes = []
    for name in [*known, *others]:
        old, new = before.get(name), after.get(name)
        if old == new or (one_sided and _is_empty(old) and _is_empty(new)):
            continue
        if name == "origins":
            change = _origin_change(old or [], new or [])
            if change.is_list:
                changes.append(change)
        else:
            changes.append(FieldChange(name, old=_text(old, name in before),
                                       new=_text(new, name in after)))
    return changes


def _is_empty(value: Any) -> bool:
    return value is None or value is False or value in ("", [], {})  # 0 is a value


def _origin_change(old: list, new: list) -> FieldChange:
    old_by_value = {_origin_value(o): o for o in old}
    new_by_value = {_origin_value(o): o for o in new}
    return FieldChange(
        "origins",
        added=[_origin_text(new_by_value[v]) for v in sorted(new_by_value.keys() - old_by_value)],
        removed=[_origin_text(old_by_value[v])
                 for v in sorted(old_by_value.keys() - new_by_value)],
        changed=[f"{_origin_text(old_by_value[v])} → {_origin_text(new_by_value[v])}"
                 for v in sorted(v for v in old_by_value.keys() & new_by_value
                                 if old_by_value[v] != new_by_value[v])],
    )


def _origin_value(origin: Any) -> str:
    """The entry's identity within a rule: its value, and its tenant on rules that keep one
    allowlist per tenant. Most entries are plain strings (checked first: this runs for every
    origin of every entry shown)."""
    if type(origin) is str:
        return origin
    if isinstance(origin, Mapping):
        tenant = origin.get("tenant")
        value = str(origin.get("value", ""))
        return f"{value} (tenant {tenant})" if tenant else value
    return str(origin)


def _origin_text(origin: Any) -> str:
    if type(origin) is str or not isinstance(origin, Mapping):
        return str(origin)
    extras = [f"tenant: {origin['tenant']}" if origin.get("tenant") else "",
              f"note: {origin['note']}" if origin.get("note") else "",
              f"expires {origin['expires_at']}" if origin.get("expires_at") else ""]
    extra = "; ".join(e for e in extras if e)
    return f"{origin.get('value', '')} ({extra})" if extra else str(origin.get("value", ""))


def _text(value: Any, present: bool) -> str:
    if not present:
        return ""  # the state has no such field (a creation has no before)
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(empty)"
    if isinstance(value, str):
        return value if value else "(empty)"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _is_import(state: Any) -> bool:
    return isinstance(state, Mapping) and set(state) == {"rules"} \
        and isinstance(state["rules"], Mapping)


def _contains(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# -- what an entry changed, and what came after it ---------------------------------------------


def origin_key(origin: Any) -> str:
    """An origin entry's identity within a rule (its value, and its tenant on a rule with an
    allowlist per tenant), for comparing recorded states."""
    return _origin_value(origin)


def touched(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> set[str]:
    """What a change from *before* to *after* touched: the names of the fields that differ,
    and ``origin <identity>`` for each origin added, removed or changed, so two changes of
    different origins of one rule do not overlap."""
    keys = set()
    for change in field_changes(before, after):
        if change.name != "origins":
            keys.add(change.name)
    old = {origin_key(o): o for o in (before or {}).get("origins") or []}
    new = {origin_key(o): o for o in (after or {}).get("origins") or []}
    keys.update(f"origin {key}" for key in old.keys() ^ new.keys())
    keys.update(f"origin {key}" for key in old.keys() & new.keys() if old[key] != new[key])
    if not before or not after:
        keys.add("the rule itself")  # created or deleted
    return keys


def rule_states(entry: AuditEntry, path: str) -> tuple[Any, Any]:
    """The entry's before and after states of the rule at *path* (an import records every
    rule it touched under its path)."""
    if _is_import(entry.before) or _is_import(entry.after):
        return ((entry.before or {}).get("rules", {}).get(path),
                (entry.after or {}).get("rules", {}).get(path))
    return entry.before, entry.after


def later_entries(entry: AuditEntry, *, actor: Actor | None = None) -> list[AuditEntry]:
    """The entries recorded after *entry* about the same rule (by its id, or by its path in a
    policy import), oldest first, that *actor* may see."""
    paths = {p for p in (entry.rule_path, *(s.get("path") for s in (entry.before, entry.after)
                                              if isinstance(s, Mapping))) if p}
    query = sa.select(AuditEntry).where(AuditEntry.id > entry.id, visible_audit_entries(actor))
    same_rule = AuditEntry.rule_id == entry.rule_id if entry.rule_id is not None \
        else sa.false()
    query = query.where(sa.or_(same_rule, AuditEntry.action == "policy.import"))
    later = []
    for other in db.session.scalars(query.order_by(AuditEntry.id)):
        if other.action == "policy.import" and other.rule_id is None:
            if not any(any(rule_states(other, path)) for path in paths):
                continue
        later.append(other)
    return later


@dataclass(frozen=True, slots=True)
class LaterChange:
    """A later entry whose effect a restore or an undo meets: what it touched of the fields
    in question."""

    entry: AuditEntry
    fields: list[str]

    @property
    def text(self) -> str:
        return (f"#{self.entry.id} by {self.entry.actor} ({self.entry.action}, "
                f"{', '.join(self.fields)})")


def overlapping(entries: list[AuditEntry], path: str, keys: set[str]) -> list[LaterChange]:
    """Of *entries*, those that touched any of *keys* of the rule at *path*."""
    found = []
    for other in entries:
        shared = touched(*rule_states(other, path)) & keys
        if shared:
            found.append(LaterChange(other, sorted(shared)))
    return found


def visible_entry(entry_id: int, actor: Actor | None) -> AuditEntry:
    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.id == entry_id,
                                                          visible_audit_entries(actor)))
    if entry is None:
        raise NotFound(f"there is no audit entry {entry_id}")
    return entry


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """What restoring a recorded state would do: the fields it changes on the rule as it is
    now (``changes``, current → recorded), and the later entries whose effects it undoes."""

    entry: AuditEntry
    state: str
    path: str
    changes: list[FieldChange]
    undoes: list[LaterChange]


def plan_restore(entry_id: int, *, actor: Actor, state: str = "before") -> RestorePlan:
    """The difference :func:`~.policy.restore_rule` would apply, and the later changes (by
    anyone, the caller included) it would take back along the way."""
    entry = visible_entry(entry_id, actor)
    recorded = entry.before if state == "before" else entry.after if state == "after" \
        else None
    if entry.rule_id is None or not isinstance(recorded, Mapping) or not recorded.get("path"):
        raise ValidationError([FieldError(
            "entry", f"audit entry {entry_id} has no rule state {state} to restore")])
    rule = current_rule(entry, recorded["path"])
    current = rule_to_dict(rule) if rule is not None else None
    keys = touched(current, recorded)
    undoes = overlapping(later_entries(entry), recorded["path"], keys)
    return RestorePlan(entry, state, recorded["path"], field_changes(current, recorded), undoes)


def current_rule(entry: AuditEntry, path: str) -> Rule | None:
    """The rule an entry is about as it is now: by id, else by path (as a restore finds it)."""
    rule = db.session.get(Rule, entry.rule_id) if entry.rule_id is not None else None
    if rule is not None and rule.created_at > entry.at:
        rule = None  # SQLite before AUTOINCREMENT reused the ids of deleted rows
    return rule or db.session.scalar(sa.select(Rule).where(Rule.path == path))
