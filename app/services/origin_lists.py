"""Shared origin lists: named lists of origins ("frontends") that rules use beside their own.

A list belongs to the platform or to one tenant (its name is unique per owner). Changing a
list changes every rule that uses it in one :func:`~.changes.policy_change`: one version
bump, one audit entry that names the rules affected. The engine merges a list's origins into
each rule that uses it when it compiles the snapshot
(:class:`~cors_control.snapshot.OriginListSpec`), so a request costs the same.

Who may use which list (the widest effect for the least privileged role is the risk):

- platform roles see every list; editors and admins change any of them;
- a tenant role sees its tenant's lists and the platform's, and changes only its tenant's:
  the platform's are read-only to it, and another tenant's do not exist for it (not found);
- a platform rule uses only platform lists; a tenant's rule uses its tenant's lists and the
  platform's. So a tenant's list never reaches a route the tenant does not govern.

An origin on a list is validated as on a rule (:func:`~.validation.validate_origin`), and
against every rule that uses the list: ``*`` is refused on a list used by a rule that
supports credentials, as it is on the rule itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from cors_control.origins import OriginKind

from ..extensions import db
from ..models import OriginList, OriginListEntry, Rule, RuleOriginList, Tenant, utcnow
from ..timefmt import iso_utc
from .access import Actor, can_change_options, require_writer, tenant_scope
from .changes import Unchanged, policy_change
from .errors import Conflict, FieldError, Forbidden, NotFound, ValidationError
from .limits import MAX_ID
from .policy_read import get_rule
from .tenants import tenant_slug
from .validation import MAX_DESCRIPTION, TENANT_SLUG, validate_origin

LIST_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,98}[a-z0-9])?$")
LIST_NAME_HELP = ("a list is named with lowercase letters, digits, hyphens and underscores, "
                  "such as frontends")
LIST_FIELDS = ("name", "description", "tenant", "origins")


# -- reading -----------------------------------------------------------------------------------


def visible_lists(actor: Actor | None) -> sa.ColumnElement[bool]:
    """SQL condition for the lists *actor* may see: every one, or for a tenant role its
    tenant's and the platform's."""
    tenant_id = tenant_scope(actor)
    if tenant_id is None:
        return sa.true()
    return sa.or_(OriginList.tenant_id.is_(None), OriginList.tenant_id == tenant_id)


def may_change_list(actor: Actor | None, origin_list: OriginList) -> bool:
    """Whether *actor* may change the list: a writer, and for a tenant role its own
    tenant's list only (the platform's are read-only to it)."""
    if actor is None or not actor.can_write:
        return False
    return not actor.scoped or origin_list.tenant_id == actor.tenant_id


def list_lists(actor: Actor | None = None) -> list[OriginList]:
    """The lists *actor* sees, the platform's first, then by tenant and name."""
    query = (sa.select(OriginList).outerjoin(Tenant, Tenant.id == OriginList.tenant_id)
             .where(visible_lists(actor))
             .options(selectinload(OriginList.entries), selectinload(OriginList.uses)
                      .selectinload(RuleOriginList.rule))
             .order_by(OriginList.tenant_id.is_not(None), Tenant.slug, OriginList.name))
    return list(db.session.scalars(query))


def get_list(ref: int | str, actor: Actor | None = None, *,
             tenant: str | None = None) -> OriginList:
    """A list by id, or by name (the platform's, or *tenant*'s; a tenant role finds its
    tenant's list first, then the platform's of that name). Another tenant's list, or one
    *actor* may not see, is not found."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        list_id = int(ref)
        found = db.session.get(OriginList, list_id) if 0 < list_id <= MAX_ID else None
    else:
        found = _by_name(str(ref), actor, tenant)
    if found is None or not _sees(actor, found):
        raise NotFound(f"there is no origin list {ref}"
                       + (f" of tenant {tenant}" if tenant else ""))
    return found


def _by_name(name: str, actor: Actor | None, tenant: str | None) -> OriginList | None:
    owners: list[int | None]
    if tenant:
        tenant_id = db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == tenant))
        if tenant_id is None:
            return None
        owners = [tenant_id]
    elif tenant_scope(actor) is not None:
        owners = [tenant_scope(actor), None]
    else:
        owners = [None]
    for owner in owners:
        owned = (OriginList.tenant_id.is_(None) if owner is None
                 else OriginList.tenant_id == owner)
        found = db.session.scalar(sa.select(OriginList).where(OriginList.name == name, owned))
        if found is not None:
            return found
    return None


def _sees(actor: Actor | None, origin_list: OriginList) -> bool:
    tenant_id = tenant_scope(actor)
    return tenant_id is None or origin_list.tenant_id in (None, tenant_id)


def rules_using(origin_list: OriginList) -> list[Rule]:
    """The rules that use the list, by path."""
    return sorted((use.rule for use in origin_list.uses), key=lambda rule: rule.path)


def lists_of_rule(rule: Rule, actor: Actor | None = None) -> list[OriginList]:
    """The lists the rule uses that *actor* sees, by name (each with the origins it
    contributes: its entries)."""
    return sorted((use.origin_list for use in rule.list_uses
                   if _sees(actor, use.origin_list)), key=lambda o: o.name)


def list_names_of_rule(rule: Rule, actor: Actor | None = None) -> list[str]:
    return [o.name for o in lists_of_rule(rule, actor)]


def owner_slug(origin_list: OriginList) -> str | None:
    return origin_list.tenant.slug if origin_list.tenant is not None else None


def list_to_dict(origin_list: OriginList, *, with_rules: bool = True) -> dict[str, Any]:
    """A list in the policy file's and the API's vocabulary."""
    data: dict[str, Any] = {
        "id": origin_list.id,
        "name": origin_list.name,
        "tenant": owner_slug(origin_list),
        "description": origin_list.description or "",
        "origins": [entry_to_json(entry) for entry in origin_list.entries],
    }
    if with_rules:
        data["rules"] = [{"id": rule.id, "path": rule.path}
                         for rule in rules_using(origin_list)]
    return data


def entry_to_json(entry: OriginListEntry) -> str | dict[str, Any]:
    """A bare string, or an object when the entry has a note or an expiry (as a rule's)."""
    if not entry.note and entry.expires_at is None:
        return entry.value
    data: dict[str, Any] = {"value": entry.value}
    if entry.note:
        data["note"] = entry.note
    if entry.expires_at is not None:
        data["expires_at"] = iso_utc(entry.expires_at)
    return data


def describe_rules(rules: list[Rule]) -> str:
    if not rules:
        return "used by no rule"
    return "used by " + ", ".join(rule.path for rule in rules)


# -- writing -----------------------------------------------------------------------------------


def create_list(data: Mapping[str, Any], *, actor: Actor) -> OriginList:
    """Create a list: ``{"name", "description", "tenant", "origins"}``. A tenant role's list
    is its tenant's; naming another tenant is answered as for any object of another tenant."""
    require_writer(actor)
    errors: list[FieldError] = []
    if not isinstance(data, Mapping):
        raise ValidationError([FieldError("list", "an origin list must be a JSON object")])
    for key in data:
        if key not in LIST_FIELDS:
            errors.append(FieldError(str(key), "unknown field; the fields of an origin list "
                                               f"are {', '.join(LIST_FIELDS)}"))
    name = _name(data.get("name"), errors)
    description = data.get("description", "") or ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        errors.append(FieldError("description", f"a description is text of at most "
                                                f"{MAX_DESCRIPTION} characters"))
    tenant = data.get("tenant") or None
    if tenant is not None and (not isinstance(tenant, str) or not TENANT_SLUG.match(tenant)):
        errors.append(FieldError("tenant", "a tenant is named by its slug, such as acme"))
        tenant = None
    origins = data.get("origins", [])
    if not isinstance(origins, list):
        errors.append(FieldError("origins", 'origins must be a list, such as '
                                            '["https://app.example.com"]'))
        origins = []
    inputs = []
    seen: set[str] = set()
    for index, item in enumerate(origins):
        try:
            origin = validate_origin(item, credentials=False)
        except ValidationError as exc:
            errors.extend(FieldError(f"origins[{index}]" + e.field.removeprefix("origin"),
                                     e.message) for e in exc.errors)
            continue
        if origin.tenant:
            errors.append(FieldError(f"origins[{index}].tenant", "an origin of a list has no "
                                     "tenant: the list's owner decides where it applies"))
        elif origin.value in seen:
            errors.append(FieldError(f"origins[{index}]", f"{origin.value} is listed twice; "
                                                          "list it once"))
        seen.add(origin.value)
        inputs.append(origin)
    if errors:
        raise ValidationError(errors)
    with policy_change(actor, conflict=f"there is already an origin list {name}"
                       + (f" of tenant {tenant}" if tenant else "")
                       + "; choose another name") as change:
        tenant_id = _owner(tenant, actor)
        origin_list = OriginList(name=name, description=description, tenant_id=tenant_id,
                                 updated_by=actor.name)
        if _by_name(name, None, tenant_slug(tenant_id)) is not None:
            raise Conflict(f"there is already an origin list {name}"
                           + (f" of tenant {tenant_slug(tenant_id)}" if tenant_id else "")
                           + "; choose another name")
        for origin in inputs:
            origin_list.entries.append(OriginListEntry(
                value=origin.value, kind=origin.kind, note=origin.note,
                expires_at=origin.expires_at, added_by=actor.name, added_at=utcnow()))
        db.session.add(origin_list)
        db.session.flush()
        change.audit("list.create", f"created origin list {_label(origin_list)}",
                     after=list_to_dict(origin_list, with_rules=False),
                     tenant_id=origin_list.tenant_id)
    return origin_list


def update_list(ref: int | str, data: Mapping[str, Any], *, actor: Actor) -> OriginList:
    """Change a list's description (its name is how rules and files refer to it)."""
    require_writer(actor)
    unknown = [key for key in data if key != "description"]
    if unknown:
        raise ValidationError([FieldError(str(unknown[0]), "only the description of a list "
                                          "changes here; add and remove origins one by one")])
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise ValidationError([FieldError("description", "a description is text of at most "
                                                         f"{MAX_DESCRIPTION} characters")])
    try:
        with policy_change(actor) as change:
            origin_list = _writable(ref, actor)
            if origin_list.description == description:
                raise Unchanged(origin_list)
            before = list_to_dict(origin_list)
            origin_list.description = description
            origin_list.updated_by = actor.name
            change.audit("list.update", f"updated origin list {_label(origin_list)}",
                         before=before, after=list_to_dict(origin_list),
                         tenant_id=origin_list.tenant_id)
    except Unchanged as unchanged:
        return unchanged.result
    return origin_list


def delete_list(ref: int | str, *, actor: Actor, detach: bool = False) -> list[str]:
    """Delete a list. One that rules use is refused, naming them, unless *detach* confirms
    that those rules stop allowing its origins; returns the paths of the rules detached."""
    require_writer(actor)
    with policy_change(actor) as change:
        origin_list = _writable(ref, actor)
        rules = rules_using(origin_list)
        if rules and not detach:
            raise Conflict(f"origin list {_label(origin_list)} is used by "
                           f"{', '.join(rule.path for rule in rules)}; detach it from these "
                           "rules first, or confirm that they stop allowing its origins")
        before = list_to_dict(origin_list)
        for rule in rules:
            rule.list_uses[:] = [u for u in rule.list_uses if u.list_id != origin_list.id]
            _touch(rule, actor)
        db.session.flush()
        db.session.expire(origin_list, ["uses"])
        change.audit("list.delete", f"deleted origin list {_label(origin_list)}"
                     + (f"; {', '.join(r.path for r in rules)} no longer use it"
                        if rules else ""),
                     before=before, tenant_id=origin_list.tenant_id)
        db.session.delete(origin_list)
    return [rule.path for rule in rules]


def add_origin_to_list(actor: Actor, origin_list: OriginList | int | str, origin: Any, *,
                       note: str = "", expires_at: Any = None) -> tuple[OriginListEntry, bool]:
    """Add one origin to a list, changing every rule that uses it in one change. Adding one
    already there changes nothing. Returns (entry, created). The request log's "allow" and
    the simulator's fix call this."""
    require_writer(actor)
    ref = origin_list.id if isinstance(origin_list, OriginList) else origin_list
    item: Any = origin
    if note or expires_at is not None:
        item = {"value": origin, "note": note, "expires_at": expires_at}
    origin_input = validate_origin(item, credentials=False)
    if origin_input.tenant:
        raise ValidationError([FieldError("origin.tenant", "an origin of a list has no tenant: "
                                          "the list's owner decides where it applies")])
    try:
        with policy_change(actor) as change:
            target = _writable(ref, actor)
            existing = next((e for e in target.entries if e.value == origin_input.value), None)
            if existing is not None:
                raise Unchanged(existing)
            rules = rules_using(target)
            if origin_input.kind == OriginKind.ANY.value:
                _refuse_any(target, [r.path for r in rules if r.supports_credentials])
            before = list_to_dict(target)
            entry = OriginListEntry(value=origin_input.value, kind=origin_input.kind,
                                    note=origin_input.note, expires_at=origin_input.expires_at,
                                    added_by=actor.name, added_at=utcnow())
            target.entries.append(entry)
            _changed(target, rules, actor)
            db.session.flush()
            change.audit("list.add", f"allowed {entry.value} on origin list {_label(target)} "
                         f"({describe_rules(rules)})", before=before,
                         after=list_to_dict(target), tenant_id=target.tenant_id)
    except Unchanged as unchanged:
        return unchanged.result, False
    return entry, True


def remove_origin_from_list(actor: Actor, origin_list: OriginList | int | str,
                            value: str) -> bool:
    """Remove one origin (by its stored value) from a list; returns whether it was there."""
    require_writer(actor)
    ref = origin_list.id if isinstance(origin_list, OriginList) else origin_list
    try:
        with policy_change(actor) as change:
            target = _writable(ref, actor)
            entry = next((e for e in target.entries if e.value == value), None)
            if entry is None:
                raise Unchanged(False)
            rules = rules_using(target)
            before = list_to_dict(target)
            target.entries.remove(entry)
            _changed(target, rules, actor)
            db.session.flush()
            change.audit("list.remove", f"removed {value} from origin list {_label(target)} "
                         f"({describe_rules(rules)})", before=before,
                         after=list_to_dict(target), tenant_id=target.tenant_id)
    except Unchanged:
        return False
    return True


def attach_list(rule_id: int, ref: int | str, *, actor: Actor) -> Rule:
    """Let a rule use a list (its origins join the rule's allowlists)."""
    return _attach(rule_id, ref, actor=actor, attach=True)


def detach_list(rule_id: int, ref: int | str, *, actor: Actor) -> Rule:
    """Stop a rule using a list (its origins leave the rule's allowlists)."""
    return _attach(rule_id, ref, actor=actor, attach=False)


def _attach(rule_id: int, ref: int | str, *, actor: Actor, attach: bool) -> Rule:
    require_writer(actor)
    try:
        with policy_change(actor) as change:
            rule = get_rule(rule_id, actor)
            if not can_change_options(actor, rule):
                raise Forbidden(f"rule {rule.path} belongs to the platform; only its owner "
                                "chooses the lists it uses")
            origin_list = get_list(ref, actor, tenant=None)
            before = {"origin_lists": list_names_of_rule(rule)}
            use = next((u for u in rule.list_uses if u.list_id == origin_list.id), None)
            if attach:
                if use is not None:
                    raise Unchanged(rule)
                check_may_use(rule.tenant_id, origin_list, rule.path)
                if rule.supports_credentials and _allows_any(origin_list):
                    _refuse_any(origin_list, [rule.path], field_name="origin_lists")
                rule.list_uses.append(RuleOriginList(list_id=origin_list.id,
                                                     origin_list=origin_list))
            else:
                if use is None:
                    raise Unchanged(rule)
                rule.list_uses.remove(use)
            _touch(rule, actor)
            db.session.flush()
            change.audit("rule.update", f"rule {rule.path} "
                         + ("now uses" if attach else "no longer uses")
                         + f" origin list {_label(origin_list)}", rule=rule, before=before,
                         after={"origin_lists": list_names_of_rule(rule)})
    except Unchanged as unchanged:
        return unchanged.result
    return rule


def check_may_use(rule_tenant_id: int | None, origin_list: OriginList, path: str,
                  field_name: str = "origin_lists") -> None:
    """A platform rule uses only platform lists; a tenant's rule its tenant's and the
    platform's. Anything else would let a tenant's list reach routes it does not govern."""
    if origin_list.tenant_id is None or origin_list.tenant_id == rule_tenant_id:
        return
    if rule_tenant_id is None:
        message = (f"rule {path} belongs to the platform, and origin list "
                   f"{_label(origin_list)} to a tenant; a platform rule uses only the "
                   "platform's lists")
    else:
        message = (f"origin list {_label(origin_list)} belongs to another tenant; rule {path} "
                   "can use its tenant's lists and the platform's")
    raise ValidationError([FieldError(field_name, message)])


def check_rule_credentials(rule: Rule, supports_credentials: bool) -> None:
    """Refuse credentials on a rule that uses a list allowing every origin (``*``)."""
    if supports_credentials:
        for use in rule.list_uses:
            if _allows_any(use.origin_list):
                _refuse_any(use.origin_list, [rule.path], field_name="supports_credentials")


def _allows_any(origin_list: OriginList) -> bool:
    return any(e.kind == OriginKind.ANY.value for e in origin_list.entries)


def _refuse_any(origin_list: OriginList, paths: list[str], *,
                field_name: str = "origin") -> None:
    """``*`` never meets credentials, on a rule or through a list it uses: *paths* are the
    rules with credentials that would allow it."""
    if paths:
        raise ValidationError([FieldError(field_name, (
            f"origin list {_label(origin_list)} would allow * (any origin) on "
            f"{', '.join(paths)}, which supports credentials, so any site could "
            "read responses with its visitors' cookies; list the origins, or turn "
            "credentials off on those rules"))])


def _writable(ref: int | str, actor: Actor) -> OriginList:
    origin_list = get_list(ref, actor)
    if not may_change_list(actor, origin_list):
        raise Forbidden(f"origin list {_label(origin_list)} belongs to the platform; your "
                        "role can use it but not change it")
    return origin_list


def _owner(tenant: str | None, actor: Actor) -> int | None:
    if actor.scoped:
        if tenant is not None and tenant != tenant_slug(actor.tenant_id):
            raise NotFound(f"there is no tenant {tenant}")
        return actor.tenant_id
    if tenant is None:
        return None
    tenant_id = db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == tenant))
    if tenant_id is None:
        raise ValidationError([FieldError("tenant", f"there is no tenant {tenant}; create it "
                                                    "first")])
    return tenant_id


def _name(value: Any, errors: list[FieldError]) -> str:
    if not isinstance(value, str) or not LIST_NAME.match(value):
        errors.append(FieldError("name", LIST_NAME_HELP))
        return ""
    return value


def _changed(origin_list: OriginList, rules: list[Rule], actor: Actor) -> None:
    """A list's origins changed. The rules that use it keep their versions: what a rule
    stores (its options, its own origins, the names of its lists) is unchanged, so an edit
    form open on one of them stays valid; the policy version moves, and the audit entry
    names the rules."""
    origin_list.updated_at = utcnow()
    origin_list.updated_by = actor.name


def _touch(rule: Rule, actor: Actor) -> None:
    """The lists the rule uses changed: its version moves (an open edit form sees it)."""
    rule.updated_at = utcnow()
    if not actor.scoped or rule.tenant_id == actor.tenant_id:
        rule.updated_by = actor.name


def _label(origin_list: OriginList) -> str:
    owner = owner_slug(origin_list)
    return f"{origin_list.name}" + (f" (tenant {owner})" if owner else "")

