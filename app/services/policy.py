"""Every change to the policy goes through these functions, whatever the channel.

Each write is one transaction that (1) bumps the policy version first, which also serialises
concurrent policy writers on the version row, (2) validates, (3) changes rules and origins,
(4) records an audit entry, and commits. On any error the transaction is rolled back and
nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from ..cors.paths import find_tie, parse_pattern
from ..extensions import db
from ..models import AllowedOrigin, AuditEntry, PolicyState, Rule, utcnow
from .errors import Conflict, FieldError, NotFound, ValidationError
from .validation import RULE_FIELDS, OriginInput, RuleInput, validate_origin, validate_rule


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, and through which channel (dashboard, cli, import, api)."""

    name: str
    channel: str


SYSTEM = Actor("system", "cli")


# -- reading -----------------------------------------------------------------------------------


def policy_version() -> int:
    return db.session.scalar(sa.select(PolicyState.version).where(PolicyState.id == 1)) or 0


def get_rule(rule_id: int) -> Rule:
    rule = db.session.get(Rule, rule_id)
    if rule is None:
        raise NotFound(f"there is no rule with id {rule_id}")
    return rule


def get_rule_by_path(path: str) -> Rule:
    rule = db.session.scalar(sa.select(Rule).where(Rule.path == path))
    if rule is None:
        raise NotFound(f"there is no rule for the path {path}")
    return rule


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """A rule in the policy file's format: deterministic, so exports diff cleanly."""
    return {
        "path": rule.path,
        "origins": [origin_to_json(o) for o in sorted(rule.origins, key=lambda o: o.value)],
        "methods": list(rule.methods),
        "allow_headers": list(rule.allow_headers),
        "expose_headers": list(rule.expose_headers),
        "supports_credentials": rule.supports_credentials,
        "max_age": rule.max_age,
        "allow_private_network": rule.allow_private_network,
        "mode": rule.mode,
        "description": rule.description or "",
    }


def origin_to_json(origin: AllowedOrigin | OriginInput) -> str | dict[str, Any]:
    """A bare string, or an object when the entry has a note or an expiry."""
    if not origin.note and origin.expires_at is None:
        return origin.value
    entry: dict[str, Any] = {"value": origin.value}
    if origin.note:
        entry["note"] = origin.note
    if origin.expires_at is not None:
        entry["expires_at"] = _iso(origin.expires_at)
    return entry


def export_policy() -> dict[str, Any]:
    rules = db.session.scalars(
        sa.select(Rule).options(selectinload(Rule.origins)).order_by(Rule.path)
    ).all()
    return {"rules": [rule_to_dict(rule) for rule in rules]}


# -- writing -----------------------------------------------------------------------------------


def create_rule(data: Mapping[str, Any], *, actor: Actor) -> Rule:
    with _change() as version:
        rule_input = validate_rule(data, reserved_prefixes=_reserved())
        _check_no_tie(rule_input.path, exclude_id=None, field_name="path")
        rule = Rule()
        _apply(rule, rule_input, actor)
        db.session.add(rule)
        db.session.flush()
        _audit(actor, "rule.create", rule, None, rule_to_dict(rule), version,
               f"created rule {rule.path}")
    return rule


def update_rule(
    rule_id: int, data: Mapping[str, Any], *, actor: Actor, expected_version: int | None = None
) -> Rule:
    """Change the fields present in *data*; fields left out keep their value."""
    try:
        return _update_rule(rule_id, data, actor=actor, expected_version=expected_version)
    except _Unchanged as unchanged:
        return unchanged.obj  # type: ignore[return-value]


def _update_rule(
    rule_id: int, data: Mapping[str, Any], *, actor: Actor, expected_version: int | None
) -> Rule:
    with _change() as version:
        rule = _locked_rule(rule_id, expected_version)
        before = rule_to_dict(rule)
        merged = {**before, **dict(data)}
        if "origins" not in data:
            merged["origins"] = before["origins"]
        rule_input = validate_rule(merged, reserved_prefixes=_reserved())
        if rule_input.path != rule.path:
            _check_no_tie(rule_input.path, exclude_id=rule.id, field_name="path")
        _apply(rule, rule_input, actor)
        db.session.flush()
        after = rule_to_dict(rule)
        if after == before:
            raise _Unchanged(rule)
        _audit(actor, "rule.update", rule, before, after, version,
               f"updated rule {rule.path}: {', '.join(_changed_fields(before, after))}")
    return rule


def delete_rule(rule_id: int, *, actor: Actor, expected_version: int | None = None) -> None:
    with _change() as version:
        rule = _locked_rule(rule_id, expected_version)
        before = rule_to_dict(rule)
        _audit(actor, "rule.delete", rule, before, None, version, f"deleted rule {rule.path}")
        db.session.delete(rule)


def add_origin(
    rule_id: int,
    value: Any,
    *,
    actor: Actor,
    note: str = "",
    expires_at: Any = None,
) -> tuple[AllowedOrigin, bool]:
    """Add one origin; adding one already present changes nothing. Returns (origin, created)."""
    item: Any = value
    if note or expires_at is not None:
        item = {"value": value, "note": note, "expires_at": expires_at}
    try:
        with _change() as version:
            rule = _locked_rule(rule_id, None)
            origin_input = validate_origin(item, credentials=rule.supports_credentials)
            existing = next((o for o in rule.origins if o.value == origin_input.value), None)
            if existing is not None:
                raise _Unchanged(existing)
            before = rule_to_dict(rule)
            origin = _new_origin(origin_input, actor)
            rule.origins.append(origin)
            _touch(rule, actor)
            db.session.flush()
            _audit(actor, "origin.add", rule, before, rule_to_dict(rule), version,
                   f"allowed {origin.value} on {rule.path}")
    except _Unchanged as unchanged:
        return unchanged.obj, False  # type: ignore[return-value]
    return origin, True


def remove_origin(rule_id: int, value: str, *, actor: Actor) -> bool:
    """Remove one origin by its stored value; returns whether it was there."""
    try:
        with _change() as version:
            rule = _locked_rule(rule_id, None)
            origin = next((o for o in rule.origins if o.value == value), None)
            if origin is None:
                raise _Unchanged(rule)
            before = rule_to_dict(rule)
            rule.origins.remove(origin)
            _touch(rule, actor)
            db.session.flush()
            _audit(actor, "origin.remove", rule, before, rule_to_dict(rule), version,
                   f"removed {value} from {rule.path}")
    except _Unchanged:
        return False
    return True


def restore_rule(entry_id: int, *, actor: Actor, state: str = "before") -> Rule:
    """Bring a rule back to the state recorded by an audit entry (its ``before`` or ``after``).

    A deleted rule is recreated; an existing one is overwritten. The restore is itself a
    change: it bumps the version and is audited.
    """
    entry = db.session.get(AuditEntry, entry_id)
    if entry is None:
        raise NotFound(f"there is no audit entry {entry_id}")
    if state not in ("before", "after"):
        raise ValidationError([FieldError("state", "state must be before or after")])
    recorded = entry.before if state == "before" else entry.after
    if entry.rule_id is None or not recorded:
        raise ValidationError([FieldError(
            "entry", f"audit entry {entry_id} has no rule state {state} the change to restore")])
    try:
        with _change() as version:
            rule_input = validate_rule(recorded, reserved_prefixes=_reserved())
            rule = db.session.get(Rule, entry.rule_id) or db.session.scalar(
                sa.select(Rule).where(Rule.path == rule_input.path))
            before = rule_to_dict(rule) if rule is not None else None
            if before == recorded:
                raise _Unchanged(rule)
            _check_no_tie(rule_input.path, exclude_id=rule.id if rule else None,
                          field_name="path")
            if rule is None:
                rule = Rule()
                db.session.add(rule)
            _apply(rule, rule_input, actor)
            db.session.flush()
            _audit(actor, "rule.restore", rule, before, rule_to_dict(rule), version,
                   f"restored rule {rule.path} to its state {state} audit entry {entry_id}")
    except _Unchanged as unchanged:
        return unchanged.obj  # type: ignore[return-value]
    return rule


# -- import ------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    dry_run: bool = False
    policy_version: int | None = None

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "policy_version": self.policy_version,
        }


def validate_policy(document: Any) -> list[RuleInput]:
    """Validate a whole policy file; every bad entry is named by position and field."""
    if not isinstance(document, Mapping):
        raise ValidationError([FieldError("", 'a policy is a JSON object: {"rules": [...]}')])
    errors: list[FieldError] = []
    extra = [key for key in document if key != "rules"]
    if extra:
        errors.append(FieldError(str(extra[0]), 'unknown field; a policy has only "rules"'))
    rules = document.get("rules")
    if not isinstance(rules, list):
        errors.append(FieldError("rules", "rules must be a list of rule objects"))
        raise ValidationError(errors)
    inputs: list[RuleInput] = []
    seen: dict[str, int] = {}
    for index, data in enumerate(rules):
        where = f"rules[{index}]."
        try:
            rule_input = validate_rule(data, reserved_prefixes=_reserved(), where=where)
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
    document: Any, *, actor: Actor, replace: bool = False, dry_run: bool = False
) -> ImportResult:
    """Create or overwrite the rules in *document*, matched by path.

    With *replace*, rules absent from the document are deleted. With *dry_run*, the
    difference is computed and nothing is written. Either way the document is validated as a
    whole first, and one invalid entry means nothing is written.
    """
    result = ImportResult(dry_run=dry_run)
    try:
        with _change() as version:
            inputs = validate_policy(document)
            existing = {
                rule.path: rule
                for rule in db.session.scalars(
                    sa.select(Rule).options(selectinload(Rule.origins))
                )
            }
            incoming = [r.path for r in inputs]
            incoming_set = set(incoming)
            if not replace:
                kept = [p for p in existing if p not in incoming_set]
                ties = _ties_among([*incoming, *kept], {p: i for i, p in enumerate(incoming)})
                if ties:
                    raise ValidationError(ties)
            befores: dict[str, Any] = {}
            afters: dict[str, Any] = {}
            for rule_input in inputs:
                rule = existing.get(rule_input.path)
                if rule is None:
                    result.added.append(rule_input.path)
                    rule = Rule()
                    _apply(rule, rule_input, actor)
                    db.session.add(rule)
                    afters[rule_input.path] = _input_to_dict(rule_input)
                    continue
                before = rule_to_dict(rule)
                after = _input_to_dict(rule_input)
                if before == after:
                    result.unchanged.append(rule.path)
                    continue
                result.changed[rule.path] = _changed_fields(before, after)
                befores[rule.path], afters[rule.path] = before, after
                _apply(rule, rule_input, actor)
            if replace:
                for path, rule in existing.items():
                    if path not in incoming_set:
                        result.removed.append(path)
                        befores[path] = rule_to_dict(rule)
                        db.session.delete(rule)
            if dry_run or not result.has_changes:
                raise _Unchanged(result)
            db.session.flush()
            db.session.add(AuditEntry(
                actor=actor.name, channel=actor.channel, action="policy.import",
                rule_id=None, rule_path="",
                summary=f"imported policy: {len(result.added)} added, {len(result.changed)} "
                        f"changed, {len(result.removed)} removed",
                before={"rules": befores}, after={"rules": afters}, policy_version=version,
            ))
            result.policy_version = version
    except _Unchanged:
        result.policy_version = policy_version()
    for names in (result.added, result.removed, result.unchanged):
        names.sort()
    return result


# -- internals ---------------------------------------------------------------------------------


class _Unchanged(Exception):
    """Raised inside a change to roll it back when there is nothing to write."""

    def __init__(self, obj: object) -> None:
        self.obj = obj


class _change:
    """A policy write: bump the version (taking the row lock), run, audit, commit."""

    def __enter__(self) -> int:
        db.session.rollback()  # start clean: no half-finished work rides along
        return _bump_version()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                db.session.commit()
            except StaleDataError:
                db.session.rollback()
                raise Conflict("the rule was changed by someone else meanwhile; reload it "
                               "and apply your change again") from None
            except sa.exc.IntegrityError as error:
                db.session.rollback()
                raise Conflict(f"the change conflicts with a change made meanwhile: "
                               f"{error.orig}") from None
            return False
        db.session.rollback()
        return False


def _bump_version() -> int:
    statement = (
        sa.update(PolicyState)
        .where(PolicyState.id == 1)
        .values(version=PolicyState.version + 1, changed_at=utcnow())
        .returning(PolicyState.version)
    )
    version = db.session.execute(statement).scalar()
    if version is None:  # a database created without the migration's seed row
        db.session.add(PolicyState(id=1, version=1, changed_at=utcnow()))
        db.session.flush()
        version = 1
    return version


def _locked_rule(rule_id: int, expected_version: int | None) -> Rule:
    rule = get_rule(rule_id)
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
    current = {o.value: o for o in rule.origins}
    wanted = {o.value: o for o in data.origins}
    for value, origin in current.items():
        if value not in wanted:
            rule.origins.remove(origin)
    for value, origin_input in wanted.items():
        origin = current.get(value)
        if origin is None:
            rule.origins.append(_new_origin(origin_input, actor))
        else:
            origin.note = origin_input.note
            origin.expires_at = origin_input.expires_at
    _touch(rule, actor)


def _touch(rule: Rule, actor: Actor) -> None:
    rule.updated_by = actor.name
    rule.updated_at = utcnow()


def _new_origin(origin_input: OriginInput, actor: Actor) -> AllowedOrigin:
    return AllowedOrigin(
        value=origin_input.value,
        kind=origin_input.kind,
        note=origin_input.note,
        expires_at=origin_input.expires_at,
        added_by=actor.name,
        added_at=utcnow(),
    )


def _input_to_dict(data: RuleInput) -> dict[str, Any]:
    return {
        "path": data.path,
        "origins": [origin_to_json(o) for o in sorted(data.origins, key=lambda o: o.value)],
        "methods": list(data.methods),
        "allow_headers": list(data.allow_headers),
        "expose_headers": list(data.expose_headers),
        "supports_credentials": data.supports_credentials,
        "max_age": data.max_age,
        "allow_private_network": data.allow_private_network,
        "mode": data.mode,
        "description": data.description,
    }


def _check_no_tie(path: str, *, exclude_id: int | None, field_name: str) -> None:
    candidate = parse_pattern(path)
    rows = db.session.execute(sa.select(Rule.id, Rule.path)).all()
    others = [parse_pattern(p) for rule_id, p in rows if rule_id != exclude_id]
    tie = find_tie(candidate, others)
    if tie is not None:
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


def _audit(
    actor: Actor,
    action: str,
    rule: Rule,
    before: dict | None,
    after: dict | None,
    version: int,
    summary: str,
) -> None:
    db.session.add(AuditEntry(
        actor=actor.name, channel=actor.channel, action=action, rule_id=rule.id,
        rule_path=rule.path, summary=summary, before=before, after=after,
        policy_version=version,
    ))


def _reserved() -> tuple[str, ...]:
    return tuple(current_app.config.get("CORS_EXCLUDED_PREFIXES", ()))


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
