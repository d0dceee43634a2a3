"""Reading the audit trail: filters, pagination and a readable field-level difference.

An entry records a rule's states ``before`` and ``after`` the change, or, for a change of its
origins, only its ``delta`` (:func:`origin_delta`): the origins added and removed and the
options changed. Everything here reads both kinds: a delta is read as two partial states
(:func:`delta_sides`), which compare like full ones; a full state around a delta entry, for a
restore, is rebuilt from the rule as it is now by taking back every later change
(:func:`recorded_state`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy.pagination import Pagination

from ..extensions import db
from ..models import AllowedOrigin, AuditEntry, Rule
from .access import Actor, visible_audit_entries
from .errors import FieldError, NotFound, ValidationError
from .policy_read import origin_to_json, rule_to_dict
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
                sa.cast(AuditEntry.after, sa.Text), sa.cast(AuditEntry.delta, sa.Text)))))
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
    if entry.delta is not None:  # rebuilt on demand (recorded_state)
        return ["before", "after"] if tenant is None or entry.delta.get("tenant") == tenant \
            else []
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
    before, after = entry_sides(entry)
    before, after = tenant_part(before, tenant), tenant_part(after, tenant)
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
    rule it touched under its path; a delta entry's are partial, :func:`delta_sides`)."""
    if entry.delta is not None:
        return delta_sides(entry.delta)
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
    recorded = recorded_state(entry, state)
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


# -- entries that record a delta -----------------------------------------------------------


def origin_delta(rule: Rule, *, added: list[AllowedOrigin] | None = None,
                 removed: list[AllowedOrigin] | None = None,
                 options: Mapping[str, tuple[Any, Any]] | None = None) -> dict[str, Any]:
    """What an audit entry of an origin change records: the rule's path (and owner), the
    origins *added* and *removed* in the policy file's form, and the *options* changed
    (name: (before, after)). Written instead of the whole rule twice, which on a rule with
    many origins would cost far more than the change."""
    delta: dict[str, Any] = {"path": rule.path}
    if rule.tenant is not None:
        delta["tenant"] = rule.tenant.slug
    origins = {}
    if added:
        origins["added"] = [origin_to_json(o) for o in added]
    if removed:
        origins["removed"] = [origin_to_json(o) for o in removed]
    delta["origins"] = origins
    if options:
        delta["options"] = {name: {"before": old, "after": new}
                            for name, (old, new) in options.items()}
    return delta


def delta_sides(delta: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A delta as two partial rule states: both with the rule's path (and owner), *before*
    with the options' old values and the origins removed, *after* with their new values and
    the origins added. Compared like full states (:func:`field_changes`, :func:`touched`,
    :func:`reverted`) they give exactly the delta."""
    common: dict[str, Any] = {"path": delta.get("path", "")}
    if delta.get("tenant"):
        common["tenant"] = delta["tenant"]
    origins = delta.get("origins") or {}
    options = delta.get("options") or {}
    before = {**common, **{name: value.get("before") for name, value in options.items()},
              "origins": list(origins.get("removed") or [])}
    after = {**common, **{name: value.get("after") for name, value in options.items()},
             "origins": list(origins.get("added") or [])}
    return before, after


def entry_sides(entry: AuditEntry) -> tuple[Any, Any]:
    """What the entry compares: its states before and after, or its delta's sides."""
    if entry.delta is not None:
        return delta_sides(entry.delta)
    return entry.before, entry.after


def tenant_delta(delta: Any, tenant: str | None) -> Any:
    """A delta as *tenant* may see it (:func:`tenant_part`): on a rule it does not own, only
    the origins of its own list."""
    if tenant is None or not isinstance(delta, Mapping) or delta.get("tenant") == tenant:
        return delta
    origins = delta.get("origins") or {}
    own = {side: [o for o in items if isinstance(o, Mapping) and o.get("tenant") == tenant]
           for side, items in origins.items()}
    return {**delta, "origins": {side: items for side, items in own.items() if items}}


class _State:
    """A rule state being taken back change by change: its options, and its origins by
    identity, so each step costs the size of the change (:func:`reverted`)."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.fields = {name: value for name, value in state.items() if name != "origins"}
        self.origins = {origin_key(o): o for o in state.get("origins") or []}

    def take_back(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        for name in {*before, *after} - {"origins"}:
            if before.get(name) != after.get(name):
                if name in before:
                    self.fields[name] = before[name]
                else:
                    self.fields.pop(name, None)
        old = {origin_key(o): o for o in before.get("origins") or []}
        new = {origin_key(o): o for o in after.get("origins") or []}
        for key in new.keys() - old.keys():
            self.origins.pop(key, None)
        for key, origin in old.items():
            if new.get(key) != origin:
                self.origins[key] = origin

    def state(self) -> dict[str, Any]:
        """In :func:`~.policy_read.rule_to_dict`'s form: origins sorted by tenant, value."""
        origins = sorted(self.origins.values(), key=_origin_order)
        return {**self.fields, "origins": origins}


def _origin_order(origin: Any) -> tuple[str, str]:
    if isinstance(origin, Mapping):
        return (str(origin.get("tenant") or ""), str(origin.get("value", "")))
    return ("", str(origin))


def reverted(current: Mapping[str, Any], before: Mapping[str, Any],
             after: Mapping[str, Any]) -> dict[str, Any]:
    """*current* with the change from *before* to *after* taken back, and nothing else: the
    fields it changed set back, the origins it added removed, those it removed or changed
    put back as they were. *before* and *after* may be full states or a delta's sides."""
    state = _State(current)
    state.take_back(before, after)
    return state.state()


def recorded_state(entry: AuditEntry, state: str) -> Mapping[str, Any] | None:
    """The rule's state *state* (``before`` or ``after``) the entry: as it recorded it, or
    for a delta entry rebuilt (:func:`_state_after`)."""
    if state not in ("before", "after"):
        return None
    if entry.delta is None:
        return entry.before if state == "before" else entry.after
    after = _state_after(entry)
    if state == "after" or after is None:
        return after
    return reverted(after, *delta_sides(entry.delta))


def _state_after(entry: AuditEntry) -> dict[str, Any] | None:
    """The rule as *entry* left it, rebuilt from the rule as it is now (always complete)
    by taking back each later change to it, newest first: a delta, or the difference of two
    full states (an entry of a tenant role records only its own list, so its states are
    never used whole). A later deletion gives the state it recorded; a later creation means
    the rule did not exist. None when the rule did not exist after *entry*."""
    path = entry.rule_path
    rule = db.session.get(Rule, entry.rule_id) if entry.rule_id is not None else None
    if rule is not None and rule.created_at > entry.at:
        rule = None  # SQLite before AUTOINCREMENT reused the ids of deleted rows
    current = _State(rule_to_dict(rule)) if rule is not None else None
    for later in reversed(later_entries(entry)):
        before, after = rule_states(later, path)
        if not before and not after:
            continue
        if not after:  # deleted later: as it was then
            current = _State(before)
        elif not before:  # created later: it did not exist before that
            current = None
        elif current is not None:
            current.take_back(before, after)
    return current.state() if current is not None else None
