"""Shared origin lists in the policy file.

The file declares lists in a top-level map and rules name the lists they use::

    {"origin_lists": {"frontends": ["https://app.example.com"],
                      "acme/shops": ["https://shop.acme.example"]},
     "rules": [{"path": "/api/*", "origin_lists": ["frontends"]}]}

A key ``name`` is a list of the platform, ``tenant/name`` one of that tenant. A rule names a
list by ``name`` (its owner tenant's list of that name, else the platform's) or by
``tenant/name``. A rule without ``origin_lists`` uses none, as a rule without ``origins``
has none. Lists the file does not declare are left as they are (a rule may still use them);
a declared list gets exactly the origins the file gives it.

:func:`split_document` takes the lists out of the document before the rules are validated,
:func:`plan_lists` adds what they change to the import's result, :func:`write_lists` writes
them in the import's transaction, and :func:`export_lists` puts them in an export.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cors_control.origins import OriginKind

from ..extensions import db
from ..models import OriginList, OriginListEntry, Rule, RuleOriginList, Tenant, utcnow
from .access import Actor
from .errors import FieldError, ValidationError
from .origin_lists import (
    LIST_NAME,
    LIST_NAME_HELP,
    entry_to_json,
    list_lists,
    lists_of_rule,
    owner_slug,
)
from .validation import TENANT_SLUG, OriginInput, RuleInput, validate_origins

Key = tuple[str | None, str]  # (owner tenant's slug or None, list name)


@dataclass
class ListsInput:
    """The lists a file declares and the lists each of its rules (by position) names."""

    declared: dict[Key, list[OriginInput]] = field(default_factory=dict)
    names: dict[int, list[str]] = field(default_factory=dict)
    # Filled by plan_lists: each rule path's lists, resolved.
    uses: dict[str, list[Key]] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed)


def label(key: Key) -> str:
    return key[1] if key[0] is None else f"{key[0]}/{key[1]}"


def split_document(document: Any) -> tuple[Any, ListsInput]:
    """The document without its lists (so the rules validate as before), and the lists."""
    lists = ListsInput()
    if not isinstance(document, Mapping):
        return document, lists
    errors: list[FieldError] = []
    rest = {key: value for key, value in document.items() if key != "origin_lists"}
    raw = document.get("origin_lists", {})
    if not isinstance(raw, Mapping):
        errors.append(FieldError("origin_lists", 'origin_lists maps a list name to its origins, '
                                 'such as {"frontends": ["https://app.example.com"]}'))
        raw = {}
    for key, origins in raw.items():
        where = f"origin_lists.{key}"
        parsed = _key(key, where, errors)
        entries = validate_origins(origins, credentials=False, where=where, errors=errors)
        for index, entry in enumerate(entries):
            if entry.tenant:
                errors.append(FieldError(f"{where}[{index}].tenant", "an origin of a list has "
                                         "no tenant: the list's owner decides where it applies"))
        if parsed is not None:
            lists.declared[parsed] = entries
    rules = rest.get("rules")
    if isinstance(rules, list):
        kept = []
        for index, rule in enumerate(rules):
            if isinstance(rule, Mapping) and "origin_lists" in rule:
                names = rule["origin_lists"]
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    errors.append(FieldError(f"rules[{index}].origin_lists", 'origin_lists '
                                             'names the lists the rule uses: ["frontends"]'))
                else:
                    lists.names[index] = list(names)
                rule = {key: value for key, value in rule.items() if key != "origin_lists"}
            kept.append(rule)
        rest["rules"] = kept
    if errors:
        raise ValidationError(errors)
    return rest, lists


def _key(text: Any, where: str, errors: list[FieldError]) -> Key | None:
    if not isinstance(text, str):
        errors.append(FieldError(where, LIST_NAME_HELP))
        return None
    tenant, _, name = text.rpartition("/")
    if tenant and not TENANT_SLUG.match(tenant):
        errors.append(FieldError(where, "a tenant's list is named tenant/name, such as "
                                        "acme/shops"))
        return None
    if not LIST_NAME.match(name):
        errors.append(FieldError(where, LIST_NAME_HELP))
        return None
    return (tenant or None, name)


def plan_lists(lists: ListsInput, inputs: list[RuleInput], *, added_rules: list[str],
               changed_rules: dict[str, list[str]], unchanged_rules: list[str],
               tenants_added: list[str]) -> None:
    """Resolve each rule's lists, check who may use which, and record what changes: new and
    changed lists in *lists*, rules whose lists change in *changed_rules*."""
    stored = _stored_lists()
    known_tenants = set(db.session.scalars(sa.select(Tenant.slug))) | set(tenants_added)
    errors: list[FieldError] = []
    for key in lists.declared:
        if key[0] is not None and key[0] not in known_tenants:
            errors.append(FieldError(f"origin_lists.{label(key)}", f"there is no tenant "
                                     f"{key[0]}; declare it in tenants or create it first"))
    available = set(stored) | set(lists.declared)
    for index, rule_input in enumerate(inputs):
        resolved: list[Key] = []
        for name in lists.names.get(index, []):
            where = f"rules[{index}].origin_lists"
            found = _resolve(name, rule_input.tenant, available)
            if found is None:
                errors.append(FieldError(where, f"there is no origin list {name}; declare it "
                                                "in origin_lists or create it first"))
                continue
            key = found
            if key[0] is not None and key[0] != rule_input.tenant:
                errors.append(FieldError(where, (
                    f"origin list {label(key)} belongs to tenant {key[0]}; "
                    + ("a platform rule uses only the platform's lists"
                       if rule_input.tenant is None
                       else "a tenant's rule uses its tenant's lists and the platform's"))))
                continue
            if rule_input.supports_credentials and _allows_any(key, lists, stored):
                errors.append(FieldError(where, (
                    f"origin list {label(key)} allows * (any origin) and the rule supports "
                    "credentials, so any site could read responses with its visitors' "
                    "cookies; list the origins, or turn credentials off")))
                continue
            if key not in resolved:
                resolved.append(key)
        lists.uses[rule_input.path] = resolved
    if errors:
        raise ValidationError(errors)
    for key, entries in lists.declared.items():
        if key not in stored:
            lists.added.append(label(key))
        elif _entries_json(entries) != [entry_to_json(e) for e in stored[key].entries]:
            lists.changed.append(label(key))
    uses_now = _stored_uses()
    for rule_input in inputs:
        path = rule_input.path
        if path in added_rules:
            continue
        if sorted(uses_now.get(path, []), key=label) != sorted(lists.uses[path], key=label):
            changed_rules.setdefault(path, []).append("origin_lists")
            if path in unchanged_rules:
                unchanged_rules.remove(path)


def _resolve(name: str, owner: str | None, available: set[Key]) -> Key | None:
    if "/" in name:
        tenant, _, bare = name.rpartition("/")
        return (tenant, bare) if (tenant, bare) in available else None
    if owner is not None and (owner, name) in available:
        return (owner, name)
    return (None, name) if (None, name) in available else None


def _allows_any(key: Key, lists: ListsInput, stored: dict[Key, OriginList]) -> bool:
    if key in lists.declared:
        return any(e.kind == OriginKind.ANY.value for e in lists.declared[key])
    return any(e.kind == OriginKind.ANY.value for e in stored[key].entries)


def _entries_json(entries: list[OriginInput]) -> list[Any]:
    converted = [OriginListEntry(value=e.value, kind=e.kind, note=e.note,
                                 expires_at=e.expires_at) for e in entries]
    return [entry_to_json(e) for e in sorted(converted, key=lambda e: e.value)]


def _stored_lists() -> dict[Key, OriginList]:
    return {(owner_slug(o), o.name): o for o in db.session.scalars(sa.select(OriginList))}


def _stored_uses() -> dict[str, list[Key]]:
    rows = db.session.execute(
        sa.select(Rule.path, OriginList.name, Tenant.slug)
        .join(RuleOriginList, RuleOriginList.rule_id == Rule.id)
        .join(OriginList, OriginList.id == RuleOriginList.list_id)
        .outerjoin(Tenant, Tenant.id == OriginList.tenant_id))
    uses: dict[str, list[Key]] = {}
    for path, name, slug in rows:
        uses.setdefault(path, []).append((slug, name))
    return uses


def write_lists(lists: ListsInput, actor: Actor) -> None:
    """Create and fill the declared lists, then give each imported rule its lists."""
    slugs = dict(db.session.execute(sa.select(Tenant.slug, Tenant.id)).all())
    stored = _stored_lists()
    touched: set[int] = set()
    for key, entries in lists.declared.items():
        origin_list = stored.get(key)
        if origin_list is None:
            origin_list = OriginList(name=key[1], description="", updated_by=actor.name,
                                     tenant_id=slugs[key[0]] if key[0] else None)
            db.session.add(origin_list)
            stored[key] = origin_list
        elif label(key) not in lists.changed:
            continue
        wanted = {e.value: e for e in entries}
        for entry in list(origin_list.entries):
            if entry.value not in wanted:
                origin_list.entries.remove(entry)
        present = {e.value: e for e in origin_list.entries}
        for value, item in wanted.items():
            if value in present:
                present[value].note = item.note
                present[value].expires_at = item.expires_at
            else:
                origin_list.entries.append(OriginListEntry(
                    value=item.value, kind=item.kind, note=item.note,
                    expires_at=item.expires_at, added_by=actor.name, added_at=utcnow()))
        origin_list.updated_by = actor.name
        origin_list.updated_at = utcnow()
    db.session.flush()
    rules = {rule.path: rule for rule in db.session.scalars(
        sa.select(Rule).where(Rule.path.in_(list(lists.uses))))}
    for path, keys in lists.uses.items():
        rule = rules[path]
        wanted_ids = [stored[key].id for key in keys]
        if [use.list_id for use in rule.list_uses] == wanted_ids:
            continue
        current = {use.list_id: use for use in rule.list_uses}
        rule.list_uses[:] = [current.get(list_id) or RuleOriginList(list_id=list_id)
                             for list_id in wanted_ids]
        touched.add(rule.id)
    for rule in db.session.scalars(sa.select(Rule).where(Rule.id.in_(touched))):
        rule.updated_at = utcnow()  # the lists it uses changed: its version moves
    db.session.flush()


def export_lists(document: dict[str, Any], rules: list[Rule], actor: Actor | None) -> None:
    """Add the lists *actor* sees to an exported *document*, and each rule's list names."""
    visible = list_lists(actor)
    if visible:
        document["origin_lists"] = {
            label((owner_slug(o), o.name)): [entry_to_json(e) for e in o.entries]
            for o in visible}
    by_path = {rule.path: rule for rule in rules}
    for data in document["rules"]:
        used = lists_of_rule(by_path[data["path"]], actor)
        if used:
            # A rule uses its tenant's lists and the platform's: a name is enough.
            data["origin_lists"] = [o.name for o in used]
