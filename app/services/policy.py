"""Every change to the policy's rules and origins goes through these functions, whatever the
channel: create, update, delete and restore a rule, add and remove an origin, purge expired
origins, import a policy file.

Each write is one :func:`~.changes.policy_change`: the version is bumped first, then the
input is validated, rules and origins change and an audit entry is recorded, all in one
transaction that is rolled back on any error. Who may change what is :mod:`.access`'s rule;
reading the policy is :mod:`.policy_read`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload

from cors_control.paths import find_tie, parse_pattern
from cors_control.vocabulary import NO_TENANT_SOURCE, OFF

from ..extensions import db
from ..models import AllowedOrigin, AuditEntry, Rule, RuleDraft, Tenant, utcnow
from ..timefmt import iso_utc
from . import change_log, origin_count
from .access import (
    SYSTEM,
    Actor,
    owns,
    require_admin,
    require_writer,
    sees,
    visible_audit_entries,
)
from .audit import (
    LaterChange,
    current_rule,
    later_entries,
    origin_delta,
    overlapping,
    recorded_state,
    reverted,
    rule_states,
    touched,
    visible_entry,
)
from .changes import Unchanged, policy_change, policy_version
from .errors import Conflict, FieldError, Forbidden, NotFound, ValidationError
from .origin_lists import check_rule_credentials
from .origin_lists_file import ListsInput, plan_lists, split_document, write_lists
from .policy_read import (
    get_rule,
    rule_input_to_dict,
    rule_state,
    rule_to_dict,
    stored_origins,
)
from .tenants import (
    check_no_overlap,
    parse_namespaces,
    require_inside,
    stored_namespaces,
    tenant_slug,
)
from .validation import (
    DRAFT_FIELDS,
    RULE_FIELDS,
    TENANT_SLUG,
    OriginInput,
    RuleInput,
    validate_draft,
    validate_origin,
    validate_rule,
)

# -- rules and origins -------------------------------------------------------------------------


def create_rule(data: Mapping[str, Any], *, actor: Actor) -> Rule:
    require_writer(actor)
    with policy_change(actor) as change:
        rule_input = _scoped_input(validate_rule(data, reserved_prefixes=_reserved()), actor)
        _check_namespace(rule_input, current=None)
        _check_no_tie(rule_input.path, exclude_id=None, field_name="path", actor=actor)
        rule = Rule()
        _apply(rule, rule_input, actor)
        db.session.add(rule)
        db.session.flush()
        change.audit("rule.create", f"created rule {rule.path}", rule=rule,
                     after=rule_to_dict(rule))
    return rule


def update_rule(
    rule_id: int, data: Mapping[str, Any], *, actor: Actor, expected_version: int | None = None
) -> Rule:
    """Change the fields present in *data*; fields left out keep their value."""
    try:
        return _update_rule(rule_id, data, actor=actor, expected_version=expected_version)
    except Unchanged as unchanged:
        return unchanged.result


def _update_rule(
    rule_id: int, data: Mapping[str, Any], *, actor: Actor, expected_version: int | None
) -> Rule:
    require_writer(actor)
    with policy_change(actor) as change:
        rule = _locked_rule(rule_id, expected_version, actor)
        if not owns(actor, rule):
            raise Forbidden(f"rule {rule.path} belongs to the platform; you can change only "
                            "your tenant's origins on it")
        before = rule_to_dict(rule)
        merged = {**before, **dict(data)}
        if "origins" not in data:
            merged["origins"] = before["origins"]
        rule_input = _scoped_input(validate_rule(merged, reserved_prefixes=_reserved()), actor)
        _check_namespace(rule_input, current=rule)
        check_rule_credentials(rule, rule_input.supports_credentials)
        if rule_input.path != rule.path:
            _check_no_tie(rule_input.path, exclude_id=rule.id, field_name="path", actor=actor)
        _apply(rule, rule_input, actor)
        db.session.flush()
        after = rule_to_dict(rule)
        if after == before:
            raise Unchanged(rule)
        change.audit("rule.update",
                     f"updated rule {rule.path}: {', '.join(_changed_fields(before, after))}",
                     rule=rule, before=before, after=after)
    return rule


def delete_rule(rule_id: int, *, actor: Actor, expected_version: int | None = None) -> None:
    require_writer(actor)
    with policy_change(actor) as change:
        rule = _locked_rule(rule_id, expected_version, actor)
        if not owns(actor, rule):
            raise Forbidden(f"rule {rule.path} belongs to the platform; you cannot delete it")
        change.audit("rule.delete", f"deleted rule {rule.path}", rule=rule,
                     before=rule_state(rule))
        _delete_rule(rule)


def add_origin(
    rule_id: int,
    value: Any,
    *,
    actor: Actor,
    note: str = "",
    expires_at: Any = None,
    tenant: str | None = None,
) -> tuple[AllowedOrigin, bool]:
    """Add one origin; adding one already present changes nothing. Returns (origin, created).

    On a tenant-selecting rule, *tenant* (a slug) names whose allowlist; a tenant role always
    adds to its own.
    """
    require_writer(actor)
    item: Any = value
    if note or expires_at is not None:
        item = {"value": value, "note": note, "expires_at": expires_at}
    try:
        with policy_change(actor) as change:
            rule = _locked_rule(rule_id, None, actor)
            origin, created = _append_origin(rule, item, tenant=tenant, actor=actor)
            if not created:
                raise Unchanged(origin)
            _touch(rule, actor)
            db.session.flush()
            db.session.refresh(origin, ["tenant"])
            change.audit("origin.add", f"allowed {origin.value} on {rule.path}"
                         + (f" for tenant {origin.tenant.slug}"
                            if origin.tenant is not None else ""),
                         rule=rule, delta=origin_delta(rule, added=[origin]),
                         tenant_id=origin.tenant_id)
    except Unchanged as unchanged:
        return unchanged.result, False
    return origin, True


def allow_request(rule_id: int, *, origin: str | None, tenant: str | None = None,
                  credentials: bool = False, actor: Actor) -> Rule:
    """The simulator's fix for one refused request, as one change (one version, one audit
    entry): allow *origin* (for *tenant*, on a rule with an allowlist per tenant) and, with
    *credentials*, let the rule support credentials. Enabling credentials changes the rule's
    options, which only its owner may do; validation refuses it on a rule that allows every
    origin with ``*``."""
    require_writer(actor)
    try:
        with policy_change(actor) as change:
            rule = _locked_rule(rule_id, None, actor)
            if credentials and not owns(actor, rule):
                raise Forbidden(f"rule {rule.path} belongs to the platform; only its owner "
                                "can let it support credentials")
            done, options, added = [], {}, []
            if credentials and not rule.supports_credentials:
                # The rule is checked as it would be saved: "*" and credentials do not mix.
                validate_rule({**rule_to_dict(rule), "supports_credentials": True},
                              reserved_prefixes=_reserved())
                check_rule_credentials(rule, True)
                rule.supports_credentials = True
                options["supports_credentials"] = (False, True)
                done.append("supports credentials")
            tenant_id = None
            if origin is not None:
                origin_row, created = _append_origin(rule, origin, tenant=tenant, actor=actor)
                tenant_id = origin_row.tenant_id
                if created:
                    added.append(origin_row)
                    done.append(f"allows {origin_row.value}"
                                + (f" for tenant {tenant}" if tenant_id and tenant else ""))
            if not done:
                raise Unchanged(rule)
            _touch(rule, actor)
            db.session.flush()
            for row in added:
                db.session.refresh(row, ["tenant"])
            change.audit("rule.update", f"rule {rule.path} now {' and '.join(done)}",
                         rule=rule, delta=origin_delta(rule, added=added, options=options),
                         tenant_id=None if credentials else tenant_id)
    except Unchanged as unchanged:
        return unchanged.result
    return rule


def remove_origin(rule_id: int, value: str, *, actor: Actor,
                  tenant: str | None = None) -> bool:
    """Remove one origin by its stored value; returns whether it was there."""
    require_writer(actor)
    try:
        with policy_change(actor) as change:
            rule = _locked_rule(rule_id, None, actor)
            tenant_id = _origin_tenant(rule, actor, tenant)
            origin = _stored_origin(rule.id, value, tenant_id)
            if origin is None:
                raise Unchanged(False)
            delta = origin_delta(rule, removed=[origin])
            db.session.delete(origin)
            _touch(rule, actor)
            db.session.flush()
            change.audit("origin.remove", f"removed {value} from {rule.path}", rule=rule,
                         delta=delta, tenant_id=tenant_id)
    except Unchanged:
        return False
    return True


def _put_back(rule: Rule | None, rule_input: RuleInput, actor: Actor) -> Rule:
    """Write a recorded state onto *rule*, or onto a new rule where it was deleted, with the
    checks of any write that places a rule: its tenant's namespaces, no tie on its path."""
    _check_namespace(rule_input, current=rule)
    _check_no_tie(rule_input.path, exclude_id=rule.id if rule else None, field_name="path",
                  actor=actor)
    if rule is None:
        rule = Rule()
        db.session.add(rule)
    _apply(rule, rule_input, actor)
    db.session.flush()
    return rule


def restore_rule(entry_id: int, *, actor: Actor, state: str = "before") -> Rule:
    """Bring a rule back to the state recorded by an audit entry (its ``before`` or ``after``).

    A deleted rule is recreated; an existing one is overwritten. The restore is itself a
    change: it bumps the version and is audited.
    """
    require_writer(actor)
    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.id == entry_id,
                                                          visible_audit_entries(actor)))
    if entry is None:
        raise NotFound(f"there is no audit entry {entry_id}")
    if state not in ("before", "after"):
        raise ValidationError([FieldError("state", "state must be before or after")])
    recorded = recorded_state(entry, state)
    if entry.rule_id is None or not recorded:
        raise ValidationError([FieldError(
            "entry", f"audit entry {entry_id} has no rule state {state} the change to restore")])
    try:
        with policy_change(actor) as change:
            rule_input = _scoped_input(validate_rule(recorded, reserved_prefixes=_reserved()),
                                       actor)
            rule = db.session.get(Rule, entry.rule_id)
            if rule is not None and rule.created_at > entry.at:
                rule = None  # SQLite reuses the ids of deleted rows: that is another rule
            rule = rule or db.session.scalar(
                sa.select(Rule).where(Rule.path == rule_input.path))
            if rule is not None and not owns(actor, rule):
                raise NotFound(f"there is no audit entry {entry_id}")
            before = rule_to_dict(rule) if rule is not None else None
            if before == recorded:
                raise Unchanged(rule)
            rule = _put_back(rule, rule_input, actor)
            change.audit("rule.restore",
                         f"restored rule {rule.path} to its state {state} audit entry "
                         f"{entry_id}", rule=rule, before=before, after=rule_to_dict(rule))
    except Unchanged as unchanged:
        return unchanged.result
    return rule


def undo_change(entry_id: int, *, actor: Actor) -> Rule | None:
    """Revert only what one audit entry changed on its rule (an origin it added is removed,
    an option it changed is set back; a rule it created is deleted, one it deleted comes
    back), leaving every other change made since in place.

    Refused, naming them, when later entries touched the same fields or origins: undoing
    then would take their changes back too (a restore does that, and says so). Returns the
    rule, or None when the undo deleted it.
    """
    require_writer(actor)
    entry = visible_entry(entry_id, actor)
    before, after = rule_states(entry, entry.rule_path)
    recorded = after if isinstance(after, Mapping) and after.get("path") else before
    if entry.rule_id is None or not isinstance(recorded, Mapping) \
            or not recorded.get("path"):
        raise ValidationError([FieldError("entry", (
            f"audit entry {entry_id} is not a change of one rule; only those can be undone "
            "one by one (restore a rule's recorded state instead)"))])
    path = recorded["path"]
    keys = touched(before, after)
    later = later_entries(entry)
    blocking = [LaterChange(e, ["the rule"]) for e in later] if not before \
        else overlapping(later, path, keys)
    if blocking:
        raise Conflict(
            f"change #{entry_id} cannot be undone alone: later changes touched the same "
            f"{'rule' if not before else 'fields'}: {'; '.join(c.text for c in blocking)}. "
            "Undo those first, or restore a recorded state (which shows what it takes back)")
    with policy_change(actor) as change:
        rule = current_rule(entry, path)
        if rule is not None and not owns(actor, rule):
            raise Forbidden(f"rule {rule.path} belongs to the platform; you can add and "
                            "remove your tenant's origins on it, not undo its changes")
        previous = rule_to_dict(rule) if rule is not None else None
        if not after:  # a deletion: the rule comes back as it was
            if rule is not None:
                raise Conflict(f"a rule for {path} exists again; change #{entry_id} (its "
                               "deletion) cannot be undone")
            target: dict[str, Any] = dict(before or {})
        elif rule is None:
            raise Conflict(f"rule {path} no longer exists; there is nothing to undo")
        elif not before:  # a creation: the rule goes
            change.audit("rule.undo", f"undid change #{entry_id}: deleted rule {rule.path}",
                         rule=rule, before=previous)
            db.session.delete(rule)
            return None
        else:
            target = reverted(previous or {}, before, after)
        rule_input = _scoped_input(validate_rule(target, reserved_prefixes=_reserved()),
                                   actor)
        rule = _put_back(rule, rule_input, actor)
        change.audit("rule.undo", f"undid change #{entry_id} on {rule.path} "
                     f"({', '.join(sorted(keys))})", rule=rule, before=previous,
                     after=rule_to_dict(rule))
    return rule


def purge_expired_origins(retention_days: float, *, actor: Actor = SYSTEM) -> int:
    """Delete origins that expired more than *retention_days* ago (they stopped matching at
    their expiry already; this only tidies the lists). Audited per rule."""
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    stale = db.session.scalars(
        sa.select(AllowedOrigin).where(AllowedOrigin.expires_at < cutoff)).all()
    if not stale:
        return 0
    by_rule: dict[int, list[AllowedOrigin]] = {}
    for origin in stale:
        by_rule.setdefault(origin.rule_id, []).append(origin)
    with policy_change(actor) as change:
        for rule_id, origins in by_rule.items():
            rule = db.session.get_one(Rule, rule_id)
            merged = [db.session.merge(origin) for origin in origins]
            delta = origin_delta(rule, removed=merged)
            for origin in merged:
                db.session.delete(origin)
            db.session.flush()
            change.audit("origin.expire",
                         f"removed {len(origins)} origin(s) of {rule.path} that expired "
                         f"before {iso_utc(cutoff)}", rule=rule, delta=delta)
    return len(stale)


# -- import ------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    tenants_added: list[str] = field(default_factory=list)
    tenants_changed: list[str] = field(default_factory=list)
    dry_run: bool = False
    policy_version: int | None = None
    lists_added: list[str] = field(default_factory=list)
    lists_changed: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.tenants_added
                    or self.tenants_changed or self.lists_added or self.lists_changed)

    def sorted(self) -> ImportResult:
        for names in (self.added, self.removed, self.unchanged):
            names.sort()
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "tenants_added": self.tenants_added,
            "tenants_changed": self.tenants_changed,
            "policy_version": self.policy_version,
            "origin_lists_added": self.lists_added,
            "origin_lists_changed": self.lists_changed,
        }


def validate_policy(document: Any) -> list[RuleInput]:
    """Validate a whole policy file; every bad entry is named by position and field."""
    if not isinstance(document, Mapping):
        raise ValidationError([FieldError("", 'a policy is a JSON object: {"rules": [...]}')])
    errors: list[FieldError] = []
    extra = [key for key in document if key not in ("rules", "tenants", "origin_lists")]
    if extra:
        errors.append(FieldError(str(extra[0]), 'unknown field; a policy has "rules", '
                                                '"tenants" and "origin_lists"'))
    errors.extend(_validate_tenant_list(document.get("tenants", [])))
    rules = document.get("rules")
    if not isinstance(rules, list):
        errors.append(FieldError("rules", "rules must be a list of rule objects"))
        raise ValidationError(errors)
    inputs: list[RuleInput] = []
    seen: dict[str, int] = {}
    for index, data in enumerate(rules):
        where = f"rules[{index}]."
        draft = data.get("draft") if isinstance(data, Mapping) else None
        if isinstance(data, Mapping) and "draft" in data:
            data = {key: value for key, value in data.items() if key != "draft"}
        try:
            rule_input = validate_rule(data, reserved_prefixes=_reserved(), where=where)
            if draft is not None:
                rule_input.draft = validate_draft(rule_input_to_dict(rule_input), draft,
                                                  reserved_prefixes=_reserved(),
                                                  where=f"{where}draft.")
        except ValidationError as exc:
            errors.extend(exc.errors)
            continue
        if rule_input.path in seen:
            errors.append(FieldError(f"{where}path", f"{rule_input.path} is already the path "
                                     f"of rules[{seen[rule_input.path]}]; merge the two"))
            continue
        seen[rule_input.path] = index
        inputs.append(rule_input)
    errors.extend(_ties_among([r.path for r in inputs], seen))
    if errors:
        raise ValidationError(errors)
    return inputs


def import_policy(
    document: Any, *, actor: Actor, replace: bool = False, dry_run: bool = False,
    expected_version: int | None = None,
) -> ImportResult:
    """Create or overwrite the rules in *document*, matched by path.

    With *replace*, rules absent from the document are deleted. With *dry_run*, the
    difference is computed and nothing is written. Either way the document is validated as a
    whole first, and one invalid entry means nothing is written. With *expected_version*
    (the policy version a preview was made on), the import is refused with
    :class:`~.errors.Conflict` when the policy has changed since: checked under the write
    lock, so what is written is what the preview showed.
    """
    require_writer(actor)
    if actor.scoped:
        raise Forbidden("importing a policy is for admins and editors; tenant roles change "
                        "their rules and origins one by one")
    # Shared origin lists are taken out first; the rest validates as before.
    document, lists = split_document(document)
    # The whole document is checked before any transaction opens, so a large file never
    # holds the write lock while it is validated, and a dry run never takes it at all.
    inputs = validate_policy(document)
    if dry_run:
        plan = _plan_import(document, inputs, replace=replace, actor=actor)
        _plan_lists(plan, lists, inputs)
        plan.result.dry_run = True
        plan.result.policy_version = policy_version()
        db.session.rollback()  # ends the read transaction
        return plan.result.sorted()
    try:
        with policy_change(actor) as change:
            if expected_version is not None and change.version - 1 != expected_version:
                raise Conflict(
                    f"the policy changed since version {expected_version} (it is at version "
                    f"{change.version - 1}); preview the import again and apply that preview",
                    current_version=change.version - 1)
            plan = _plan_import(document, inputs, replace=replace, actor=actor)
            _plan_lists(plan, lists, inputs)
            result = plan.result
            if not result.has_changes:
                raise Unchanged(result)
            _write_import(plan, inputs, document, actor)
            write_lists(lists, actor)
            change.audit("policy.import",
                         f"imported policy: {len(result.added)} added, "
                         f"{len(result.changed)} changed, {len(result.removed)} removed"
                         + (f", tenants created: {', '.join(result.tenants_added)}"
                            if result.tenants_added else "")
                         + (f", namespaces changed: {', '.join(result.tenants_changed)}"
                            if result.tenants_changed else "")
                         + (f", origin lists created: {', '.join(result.lists_added)}"
                            if result.lists_added else "")
                         + (f", origin lists changed: {', '.join(result.lists_changed)}"
                            if result.lists_changed else ""),
                         before={"rules": plan.befores}, after={"rules": plan.afters})
            result.policy_version = change.version
    except Unchanged:  # nothing to write: the version bump was rolled back
        result = plan.result
        result.policy_version = policy_version()
    return result.sorted()


def _plan_lists(plan: _ImportPlan, lists: ListsInput, inputs: list[RuleInput]) -> None:
    result = plan.result
    plan_lists(lists, inputs, added_rules=result.added, changed_rules=result.changed,
               unchanged_rules=result.unchanged, tenants_added=result.tenants_added)
    result.lists_added, result.lists_changed = sorted(lists.added), sorted(lists.changed)


@dataclass
class _ImportPlan:
    """What an import changes, found by reading only: the result it reports, the stored
    rules by path, and the before and after states the audit entry records."""

    result: ImportResult
    existing: dict[str, Rule]
    namespaces: dict[str, list[str]] = field(default_factory=dict)
    befores: dict[str, Any] = field(default_factory=dict)
    afters: dict[str, Any] = field(default_factory=dict)


def _plan_import(document: Mapping[str, Any], inputs: list[RuleInput], *,
                 replace: bool, actor: Actor) -> _ImportPlan:
    result = ImportResult(tenants_added=_missing_tenants(document, inputs))
    namespaces, result.tenants_changed = _document_namespaces(document)
    _require_admin_for_tenants(result, actor)
    check_no_overlap(namespaces, [*result.tenants_added, *result.tenants_changed],
                     field_name="tenants")
    # Rules without their origins: those are compared as plain rows (stored_origins).
    existing = {rule.path: rule for rule in db.session.scalars(
        sa.select(Rule).options(selectinload(Rule.tenant), selectinload(Rule.draft)))}
    origins = stored_origins([rule.id for rule in existing.values()])
    _check_import_namespaces(inputs, existing, namespaces)
    plan = _ImportPlan(result, existing, namespaces)
    incoming = [r.path for r in inputs]
    incoming_set = set(incoming)
    if not replace:
        kept = [p for p in existing if p not in incoming_set]
        ties = _ties_among([*incoming, *kept], {p: i for i, p in enumerate(incoming)})
        if ties:
            raise ValidationError(ties)
    for rule_input in inputs:
        rule = existing.get(rule_input.path)
        after = rule_input_to_dict(rule_input)
        incoming_draft = _draft_of_input(rule_input)
        if incoming_draft is not None:
            after["draft"] = incoming_draft
        if rule is None:
            result.added.append(rule_input.path)
            plan.afters[rule_input.path] = after
            continue
        before = {**rule_to_dict(rule, origins=[]), "origins": origins[rule.id]}
        stored_draft = stored_draft_body(rule)
        if stored_draft is not None:
            before["draft"] = stored_draft
        if before == after:
            result.unchanged.append(rule.path)
            continue
        result.changed[rule.path] = _changed_fields(before, after) + (
            ["draft"] if stored_draft != incoming_draft else [])
        plan.befores[rule.path], plan.afters[rule.path] = before, after
    if replace:
        for path, rule in existing.items():
            if path not in incoming_set:
                result.removed.append(path)
                plan.befores[path] = {**rule_to_dict(rule, origins=[]),
                                      "origins": origins[rule.id]}
    return plan


def _write_import(plan: _ImportPlan, inputs: list[RuleInput], document: Mapping[str, Any],
                  actor: Actor) -> None:
    declared = {t["slug"]: t.get("name", "") for t in document.get("tenants", [])}
    for slug in plan.result.tenants_added:
        db.session.add(Tenant(slug=slug, name=declared[slug] or slug,
                              paths=plan.namespaces[slug]))
    for tenant in db.session.scalars(
            sa.select(Tenant).where(Tenant.slug.in_(plan.result.tenants_changed))):
        tenant.paths = plan.namespaces[tenant.slug]
    db.session.flush()
    # Removed first: a new rule may take a removed one's place in a unique index.
    for path in plan.result.removed:
        _delete_rule(plan.existing[path])
    db.session.flush()
    for rule_input in inputs:
        rule = plan.existing.get(rule_input.path)
        if rule is None:
            rule = Rule()
            _apply(rule, rule_input, actor)
            _set_draft(rule, _draft_of_input(rule_input), actor)
        elif rule_input.path in plan.result.changed:
            _apply(rule, rule_input, actor)
            _set_draft(rule, _draft_of_input(rule_input), actor)
    db.session.flush()


def _document_namespaces(document: Mapping[str, Any]) -> tuple[dict[str, list[str]],
                                                                  list[str]]:
    """Every tenant's namespaces once the document is imported, and the existing tenants
    whose namespaces it changes. A tenant listed without ``paths`` keeps its own."""
    namespaces = stored_namespaces()
    changed = []
    for index, item in enumerate(document.get("tenants", [])):
        slug = item["slug"]
        if "paths" not in item:
            namespaces.setdefault(slug, [])
            continue
        paths = parse_namespaces(item["paths"], where=f"tenants[{index}].")
        if slug in namespaces and namespaces[slug] != paths:
            changed.append(slug)
        namespaces[slug] = paths
    return namespaces, sorted(changed)


def _require_admin_for_tenants(result: ImportResult, actor: Actor) -> None:
    """Creating tenants and giving them namespaces is for admins, in an import too."""
    if result.tenants_added:
        require_admin(actor, to=(
            f"create tenants: an admin must create tenant {', '.join(result.tenants_added)} "
            "first, or import the file as an admin"))
    if result.tenants_changed:
        require_admin(actor, to=(
            f"change a tenant's namespaces (the file changes those of "
            f"{', '.join(result.tenants_changed)}): leave out their paths, or import the file "
            "as an admin"))


def _check_import_namespaces(inputs: list[RuleInput], existing: Mapping[str, Rule],
                             namespaces: Mapping[str, list[str]]) -> None:
    errors = []
    for index, rule_input in enumerate(inputs):
        try:
            _check_namespace(rule_input, current=existing.get(rule_input.path),
                             namespaces=namespaces, field_name=f"rules[{index}].path")
        except ValidationError as exc:
            errors.extend(exc.errors)
    if errors:
        raise ValidationError(errors)


def stored_draft_body(rule: Rule) -> dict[str, Any] | None:
    """The rule's draft in the policy file's form (its option fields and origins), or
    None."""
    if rule.draft is None:
        return None
    return {name: rule.draft.body[name] for name in DRAFT_FIELDS if name in rule.draft.body}


def _draft_of_input(rule_input: RuleInput) -> dict[str, Any] | None:
    if rule_input.draft is None:
        return None
    data = rule_input_to_dict(rule_input.draft)
    return {name: data[name] for name in DRAFT_FIELDS}


def _set_draft(rule: Rule, body: dict[str, Any] | None, actor: Actor) -> None:
    """Give *rule* exactly the draft of the file (none when the file has none)."""
    if body is None:
        rule.draft = None
    elif rule.draft is None:
        rule.draft = RuleDraft(body=body, created_by=actor.name, updated_by=actor.name)
    elif rule.draft.body != body:
        rule.draft.body = body
        rule.draft.updated_by = actor.name
        rule.draft.updated_at = utcnow()


def apply_rule_input(rule: Rule, data: RuleInput, *, actor: Actor) -> None:
    """Write a validated rule (its options and allowlists) onto *rule*, inside the caller's
    :func:`~.changes.policy_change`: as an edit of the rule does (publishing a draft)."""
    _apply(rule, data, actor)


def reserved_prefixes() -> tuple[str, ...]:
    """The path prefixes the engine never governs (validation refuses rules under them)."""
    return _reserved()


# -- internals ---------------------------------------------------------------------------------


def _locked_rule(rule_id: int, expected_version: int | None,
                 actor: Actor | None = None) -> Rule:
    rule = get_rule(rule_id, actor)
    if expected_version is not None and rule.version != expected_version:
        raise Conflict(
            f"rule {rule.path} was changed by {rule.updated_by or 'someone'} since you loaded "
            f"it (version {rule.version}, you had {expected_version}); reload it and apply "
            "your change again",
            current_version=rule.version,
        )
    return rule


def _apply(rule: Rule, data: RuleInput, actor: Actor) -> None:
    rule.path = data.path
    rule.methods = list(data.methods)
    rule.allow_headers = list(data.allow_headers)
    rule.expose_headers = list(data.expose_headers)
    rule.supports_credentials = data.supports_credentials
    rule.max_age = data.max_age
    rule.allow_private_network = data.allow_private_network
    rule.mode = data.mode
    rule.description = data.description
    slugs = _tenant_ids([data.tenant, *(o.tenant for o in data.origins)])
    rule.tenant_id = slugs.get(data.tenant) if data.tenant else None
    rule.tenant_source = data.selector.source
    rule.tenant_key = data.selector.key
    rule.unknown_tenant = data.selector.unknown
    _touch(rule, actor)
    if rule.id is None:  # a new rule: its row first, for its origins to name
        db.session.add(rule)
        db.session.flush()
    wanted = {(slugs.get(o.tenant) if o.tenant else None, o.value): o for o in data.origins}
    _write_origins(rule, wanted, actor)


def _write_origins(rule: Rule, wanted: Mapping[tuple[int | None, str], OriginInput],
                   actor: Actor) -> None:
    """Make the rule's allowlists exactly *wanted* (by tenant id and value), as plain rows:
    only the difference is written, in one statement per kind of change, and no object is
    built per origin (a rule may have 100,000). A tenant role replaces only its own
    allowlist on a shared rule."""
    table = AllowedOrigin.__table__
    query = sa.select(table.c.id, table.c.tenant_id, table.c.value, table.c.note,
                      table.c.expires_at).where(table.c.rule_id == rule.id)
    if not owns(actor, rule):
        query = query.where(table.c.tenant_id == actor.tenant_id)
    current = {(row.tenant_id, row.value): row for row in db.session.execute(query)}
    gone = [row.id for key, row in current.items() if key not in wanted]
    new = [(key[0], o) for key, o in wanted.items() if key not in current]
    changed = [{"id": row.id, "note": o.note, "expires_at": o.expires_at}
               for key, o in wanted.items()
               if (row := current.get(key)) is not None
               and ((row.note or ""), row.expires_at) != (o.note, o.expires_at)]
    deleted = 0
    for start in range(0, len(gone), 1000):  # within every database's parameter limit
        deleted += _rowcount(db.session.execute(
            sa.delete(table).where(table.c.id.in_(gone[start:start + 1000])),
            execution_options={origin_count.KEPT: True}))
    origin_count.removed(rule.id, deleted)
    if new:
        _insert_origins(rule.id, new, actor)
    if changed:  # notes and expiries: the count stays
        db.session.execute(sa.update(AllowedOrigin), changed,
                           execution_options={origin_count.KEPT: True})
    if gone or new or changed:
        db.session.expire(rule, ["origins"])  # read again when next asked for


_ORIGIN_COLUMNS = ("rule_id", "tenant_id", "value", "kind", "note", "expires_at", "added_by",
                   "added_at")


def _insert_origins(rule_id: int, new: list[tuple[int | None, OriginInput]],
                    actor: Actor) -> None:
    """Insert origins (tenant id, input) of one rule through the driver's executemany, with
    each value converted once as its column type would: SQLAlchemy's per-row parameter
    processing costs more than the database's insert on a list of 100,000."""
    change_log.note_rule(rule_id)  # the session sees none of these rows
    origin_count.added(rule_id, len(new))
    connection = db.session.connection()
    dialect = connection.dialect
    table = AllowedOrigin.__table__
    # As SQLAlchemy would store it (on SQLite, its own text format, which queries compare).
    column_type = table.c.added_at.type.dialect_impl(dialect)
    moment = column_type.bind_processor(dialect) or (lambda value: value)
    added_at = moment(utcnow())
    rows = [(rule_id, tenant_id, o.value, o.kind, o.note,
             None if o.expires_at is None else moment(o.expires_at), actor.name, added_at)
            for tenant_id, o in new]
    columns = ", ".join(_ORIGIN_COLUMNS)
    if dialect.name == "postgresql":
        # COPY: one stream, where the server would answer each statement of an executemany.
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        f"INSERT INTO {table.name} ({columns}) "
        f"VALUES ({', '.join([mark] * len(_ORIGIN_COLUMNS))})", rows)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _delete_rule(rule: Rule) -> None:
    """Delete the rule; its origins first, in one statement (SQLite enforces no foreign
    keys here, and loading them to let the ORM delete them one by one would take minutes
    on a rule with 100,000)."""
    table = AllowedOrigin.__table__
    db.session.execute(sa.delete(table).where(table.c.rule_id == rule.id),
                       execution_options={origin_count.KEPT: True})  # it goes with its rule
    db.session.expire(rule, ["origins"])
    db.session.delete(rule)


def _touch(rule: Rule, actor: Actor) -> None:
    """Mark the rule changed, which moves its version (its allowlists are part of it). A
    tenant's change to its own list on a platform rule is not signed with the tenant user's
    name: every tenant on the rule sees who changed it last."""
    rule.updated_at = utcnow()
    if owns(actor, rule):
        rule.updated_by = actor.name


def _append_origin(rule: Rule, item: Any, *, tenant: str | None,
                   actor: Actor) -> tuple[AllowedOrigin, bool]:
    """Put one origin (validated for this rule) on *rule*'s allowlist, or *tenant*'s list on
    a rule that selects tenants; returns (origin, created), the stored one when present."""
    origin_input = validate_origin(item, credentials=rule.supports_credentials)
    tenant_id = _origin_tenant(rule, actor, tenant)
    existing = _stored_origin(rule.id, origin_input.value, tenant_id)
    if existing is not None:
        return existing, False
    origin = _new_origin(origin_input, actor)
    origin.tenant_id = tenant_id
    # Added as a row of its own: appending to rule.origins would load the whole list.
    origin.rule_id = rule.id
    db.session.add(origin)
    return origin, True


def _stored_origin(rule_id: int, value: str, tenant_id: int | None) -> AllowedOrigin | None:
    """The entry *value* on the rule's shared list (*tenant_id* None) or on that tenant's:
    one lookup in the unique index of that list."""
    same_list = AllowedOrigin.tenant_id.is_(None) if tenant_id is None \
        else AllowedOrigin.tenant_id == tenant_id
    return db.session.scalar(sa.select(AllowedOrigin).where(
        AllowedOrigin.rule_id == rule_id, AllowedOrigin.value == value, same_list))


def _new_origin(origin_input: OriginInput, actor: Actor) -> AllowedOrigin:
    return AllowedOrigin(
        value=origin_input.value,
        kind=origin_input.kind,
        note=origin_input.note,
        expires_at=origin_input.expires_at,
        added_by=actor.name,
        added_at=utcnow(),
    )


def _check_no_tie(path: str, *, exclude_id: int | None, field_name: str,
                  actor: Actor | None = None) -> None:
    candidate = parse_pattern(path)
    rows = db.session.execute(
        sa.select(Rule.id, Rule.path, Rule.tenant_id, Rule.tenant_source)).all()
    others = {row.path: row for row in rows if row.id != exclude_id}
    tie = find_tie(candidate, [parse_pattern(p) for p in others])
    if tie is None:
        return
    other = others[tie.text]
    if not sees(actor, other):
        # Paths are unique across tenants, but another tenant's rule is not named.
        raise ValidationError([FieldError(field_name, (
            f"the path {path} is taken by a rule you cannot see; choose another path"
            if tie.text == path else
            f"{path} can match the same request paths as a rule you cannot see, and is "
            "equally specific, so neither would win; make it more specific"))])
    raise ValidationError([FieldError(field_name, _tie_message(path, tie.text))])


def _ties_among(paths: list[str], positions: Mapping[str, int]) -> list[FieldError]:
    """Ties among *paths*; errors are reported on the entries of the file (*positions*)."""
    patterns = [parse_pattern(p) for p in paths]
    errors = []
    for index, pattern in enumerate(patterns):
        tie = find_tie(pattern, patterns[:index])
        if tie is not None:
            at = positions.get(pattern.text, positions.get(tie.text))
            where = f"rules[{at}].path" if at is not None else "path"
            errors.append(FieldError(where, _tie_message(pattern.text, tie.text)))
    return errors


def _tie_message(path: str, other: str) -> str:
    if path == other:
        return f"a rule for {path} already exists; edit that rule instead"
    return (
        f"{path} and the rule {other} can match the same request paths and are equally "
        "specific, so neither would win; make one of them more specific"
    )


def _changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return [name for name in RULE_FIELDS if before.get(name) != after.get(name)]


def _check_namespace(rule_input: RuleInput, *, current: Rule | None,
                     namespaces: Mapping[str, list[str]] | None = None,
                     field_name: str = "path") -> None:
    """A tenant's rule must lie inside its tenant's namespaces when it is created, moved (a
    new path or owner) or switched on; whoever writes it, an admin too. A rule left outside
    by an older version keeps working until it is moved (the overview lists it)."""
    tenant = rule_input.tenant
    if not tenant:
        return
    if current is not None and current.path == rule_input.path \
            and current.tenant is not None and current.tenant.slug == tenant \
            and not (current.mode == OFF and rule_input.mode != OFF):
        return
    known = namespaces if namespaces is not None else stored_namespaces(tenant)
    require_inside(rule_input.path, tenant, known.get(tenant, []), field_name=field_name)


def _scoped_input(rule_input: RuleInput, actor: Actor) -> RuleInput:
    """A tenant role's rules belong to its tenant and cannot select other tenants. Naming
    another tenant gets the answer any object of another tenant gets: it does not exist."""
    if not actor.scoped:
        return rule_input
    own = tenant_slug(actor.tenant_id)
    for named in (rule_input.tenant, *(o.tenant for o in rule_input.origins)):
        if named and named != own:
            raise NotFound(f"there is no tenant {named}")
    if rule_input.selector.source != NO_TENANT_SOURCE:
        raise ValidationError([FieldError(
            "tenant_selector", "only admins and editors create rules that select tenants")])
    if any(o.tenant for o in rule_input.origins):
        raise ValidationError([FieldError("origins", "origins of your rule have no tenant")])
    rule_input.tenant = tenant_slug(actor.tenant_id)
    return rule_input


def _origin_tenant(rule: Rule, actor: Actor, tenant: str | None) -> int | None:
    """Whose allowlist an origin change on *rule* is about (None: the rule's own list)."""
    if actor.scoped:
        if tenant is not None and tenant != tenant_slug(actor.tenant_id):
            raise NotFound(f"there is no tenant {tenant}")
        if rule.tenant_id == actor.tenant_id:
            return None
        return actor.tenant_id  # a shared tenant-selecting rule: the actor's own list
    if tenant is None:
        return None
    if rule.tenant_source == NO_TENANT_SOURCE:
        raise ValidationError([FieldError(
            "tenant", f"rule {rule.path} does not select tenants; add the origin without a "
                      "tenant")])
    return _tenant_ids([tenant], field_name="tenant")[tenant]


def _tenant_ids(slugs: list[str | None], *, field_name: str = "tenant") -> dict[str, int]:
    wanted = {s for s in slugs if s}
    if not wanted:
        return {}
    found = dict(db.session.execute(
        sa.select(Tenant.slug, Tenant.id).where(Tenant.slug.in_(wanted))).all())
    missing = sorted(wanted - found.keys())
    if missing:
        raise ValidationError([FieldError(field_name, f"there is no tenant {slug}; create it "
                                                      "first") for slug in missing])
    return found


def _validate_tenant_list(tenants: Any) -> list[FieldError]:
    if not isinstance(tenants, list):
        return [FieldError("tenants", 'tenants is a list of {"slug": ..., "name": ...}')]
    errors = []
    for index, item in enumerate(tenants):
        name = item.get("name", "") if isinstance(item, Mapping) else None
        if not isinstance(item, Mapping) or not isinstance(item.get("slug"), str) \
                or not TENANT_SLUG.match(item["slug"]) or set(item) - {"slug", "name", "paths"} \
                or not isinstance(name, str) or len(name) > 200 or not name.isprintable():
            errors.append(FieldError(f"tenants[{index}]", 'a tenant is {"slug": "acme", '
                                     '"name": "Acme", "paths": ["/api/t/acme/*"]}; the slug '
                                     "is lowercase letters, digits and hyphens, the name plain "
                                     "text of at most 200 characters, the paths its "
                                     "namespaces"))
            continue
        if "paths" in item:
            try:
                parse_namespaces(item["paths"], where=f"tenants[{index}].")
            except ValidationError as exc:
                errors.extend(exc.errors)
    return errors


def _missing_tenants(document: Mapping[str, Any], inputs: list[RuleInput]) -> list[str]:
    """The document's tenants that do not exist yet; references to tenants neither in the
    document nor in the database are refused."""
    declared = {t["slug"] for t in document.get("tenants", [])}
    existing = set(db.session.scalars(sa.select(Tenant.slug)))
    known = existing | declared
    errors = []
    for index, rule_input in enumerate(inputs):
        if rule_input.tenant and rule_input.tenant not in known:
            errors.append(FieldError(f"rules[{index}].tenant",
                                     f"there is no tenant {rule_input.tenant}; list it under "
                                     "tenants or create it first"))
        for position, origin in enumerate(rule_input.origins):
            if origin.tenant and origin.tenant not in known:
                errors.append(FieldError(f"rules[{index}].origins[{position}].tenant",
                                         f"there is no tenant {origin.tenant}; list it under "
                                         "tenants or create it first"))
        for position, origin in enumerate(rule_input.draft.origins if rule_input.draft
                                          else ()):
            if origin.tenant and origin.tenant not in known:
                errors.append(FieldError(f"rules[{index}].draft.origins[{position}].tenant",
                                         f"there is no tenant {origin.tenant}; list it under "
                                         "tenants or create it first"))
    if errors:
        raise ValidationError(errors)
    return sorted(declared - existing)


def _reserved() -> tuple[str, ...]:
    return tuple(current_app.config.get("CORS_EXCLUDED_PREFIXES", ()))
