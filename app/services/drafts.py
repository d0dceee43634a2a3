"""Drafts: tighten an enforced rule in place.

A rule may carry one draft of its options and allowlist (:data:`~.validation.DRAFT_FIELDS`).
The live rule keeps deciding; the engine evaluates the draft on the same requests and the
request log records, with mode ``draft``, each request the draft would refuse and the live
rule allows. :func:`draft_effect` counts those rows over a period; :func:`publish_draft`
puts the draft in place of the rule's options and allowlist as one change (one version
bump, one audit entry). Only the rule's owner may keep a draft of it (writers of the
platform for platform rules, of the tenant for its rules), as only the owner may edit it.

Every write is a :func:`~.changes.policy_change`: the engine compiles drafts, so starting,
editing and discarding one moves the policy version too, and each is audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cors_control.vocabulary import DRAFT, ENFORCE

from ..extensions import db
from ..models import RequestLogEntry, Rule, RuleDraft, Tenant, utcnow
from .access import Actor, owns, require_writer, visible_log_rows
from .changes import Unchanged, policy_change
from .errors import Conflict, FieldError, Forbidden, NotFound, ValidationError
from .policy import apply_rule_input, reserved_prefixes
from .policy_read import get_rule, rule_input_to_dict, rule_to_dict
from .tenants import tenant_slug
from .validation import DRAFT_FIELDS, RuleInput, validate_draft

# The periods the dashboard offers for a draft's effect.
EFFECT_PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
DEFAULT_EFFECT_PERIOD = "24h"
EFFECT_ROWS = 100


# -- reading -----------------------------------------------------------------------------------


def rule_with_draft(rule_id: int, actor: Actor | None = None) -> tuple[Rule, RuleDraft | None]:
    """The rule (if *actor* sees it) and its draft (if *actor* owns the rule: on a platform
    rule that selects tenants, a tenant role sees only its own allowlist, and a draft holds
    every tenant's)."""
    rule = get_rule(rule_id, actor)
    if actor is not None and not owns(actor, rule):
        return rule, None
    return rule, rule.draft


def get_draft(rule_id: int, actor: Actor | None = None) -> tuple[Rule, RuleDraft]:
    rule, draft = rule_with_draft(rule_id, actor)
    if draft is None:
        raise NotFound(f"rule {rule.path} has no draft; start one from the rule first")
    return rule, draft


def draft_body(draft: RuleDraft) -> dict[str, Any]:
    """The draft in the policy file's vocabulary: the rule's option fields and origins."""
    return {name: draft.body[name] for name in DRAFT_FIELDS if name in draft.body}


def body_of(rule_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The draft fields of a rule in the policy file's form."""
    return {name: rule_dict[name] for name in DRAFT_FIELDS}


@dataclass(frozen=True, slots=True)
class OptionChange:
    name: str
    live: Any
    draft: Any


@dataclass(frozen=True, slots=True)
class DraftChanges:
    """What publishing the draft takes away and adds, against the live rule as it is now."""

    origins_removed: list[str] = field(default_factory=list)
    origins_added: list[str] = field(default_factory=list)
    options: list[OptionChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.origins_removed or self.origins_added or self.options)

    def as_dict(self) -> dict[str, Any]:
        return {
            "origins_removed": self.origins_removed,
            "origins_added": self.origins_added,
            "options": [{"name": c.name, "live": c.live, "draft": c.draft}
                        for c in self.options],
        }


def draft_changes(rule: Rule, draft: RuleDraft) -> DraftChanges:
    live = rule_to_dict(rule)
    body = draft_body(draft)
    live_origins = {_origin_label(o): o for o in live["origins"]}
    draft_origins = {_origin_label(o): o for o in body.get("origins", [])}
    return DraftChanges(
        origins_removed=sorted(label for label in live_origins if label not in draft_origins),
        origins_added=sorted(label for label in draft_origins if label not in live_origins),
        options=[OptionChange(name, live[name], body[name]) for name in DRAFT_FIELDS
                 if name != "origins" and name in body and body[name] != live[name]],
    )


def _origin_label(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    tenant = entry.get("tenant")
    return f"{entry['value']} (tenant {tenant})" if tenant else entry["value"]


# -- writing -----------------------------------------------------------------------------------


def start_draft(rule_id: int, *, actor: Actor) -> tuple[RuleDraft, bool]:
    """Start a draft as a copy of the rule's options and allowlist; a rule that already has
    one keeps it. Returns (draft, created)."""
    require_writer(actor)
    try:
        with policy_change(actor) as change:
            rule = _owned_rule(rule_id, actor)
            if rule.draft is not None:
                raise Unchanged(rule.draft)
            if rule.mode != ENFORCE:
                raise ValidationError([FieldError("mode", (
                    f"rule {rule.path} is {rule.mode}: a draft is tried beside an enforced "
                    "rule; edit this rule directly, or set its mode to enforce first"))])
            body = body_of(rule_to_dict(rule))
            draft = _new_draft(rule, body, actor)
            change.audit("draft.create", f"started a draft of rule {rule.path}", rule=rule,
                         after=body)
    except Unchanged as unchanged:
        return unchanged.result, False
    return draft, True


def save_draft(rule_id: int, data: Any, *, actor: Actor, replace: bool = False,
               expected_version: int | None = None) -> tuple[RuleDraft, bool]:
    """Create or change the rule's draft. Fields of *data* left out keep the draft's value
    (the live rule's, for a new draft), or with *replace* take the live rule's. The draft is
    validated as an edit of the rule would be. Returns (draft, created)."""
    require_writer(actor)
    if not isinstance(data, Mapping):
        raise ValidationError([FieldError("", (
            'a draft is a JSON object of a rule\'s options and origins, such as '
            '{"origins": ["https://app.example.com"]}'))])
    try:
        with policy_change(actor) as change:
            rule = _owned_rule(rule_id, actor)
            draft = rule.draft
            if draft is not None and expected_version is not None \
                    and draft.version != expected_version:
                raise Conflict(
                    f"the draft of rule {rule.path} was changed by "
                    f"{draft.updated_by or 'someone'} since you loaded it (version "
                    f"{draft.version}, you had {expected_version}); reload it and apply your "
                    "change again", current_version=draft.version)
            live = rule_to_dict(rule)
            current = draft_body(draft) if draft is not None else body_of(live)
            start = body_of(live) if replace else current
            checked = _validated(rule, live, {**start, **dict(data)}, actor)
            body = body_of(rule_input_to_dict(checked))
            if draft is None:
                draft = _new_draft(rule, body, actor)
                change.audit("draft.create", f"started a draft of rule {rule.path}",
                             rule=rule, after=body)
                return draft, True
            if body == current:
                raise Unchanged(draft)
            draft.body = body
            draft.updated_by = actor.name
            draft.updated_at = utcnow()
            db.session.flush()
            change.audit("draft.update", f"changed the draft of rule {rule.path}: "
                         f"{', '.join(n for n in DRAFT_FIELDS if current.get(n) != body[n])}",
                         rule=rule, before=current, after=body)
    except Unchanged as unchanged:
        return unchanged.result, False
    return draft, False


def discard_draft(rule_id: int, *, actor: Actor) -> bool:
    """Throw the rule's draft away; returns whether there was one."""
    require_writer(actor)
    try:
        with policy_change(actor) as change:
            rule = _owned_rule(rule_id, actor)
            draft = rule.draft
            if draft is None:
                raise Unchanged(False)
            body = draft_body(draft)
            rule.draft = None
            db.session.flush()
            change.audit("draft.discard", f"discarded the draft of rule {rule.path}",
                         rule=rule, before=body)
    except Unchanged:
        return False
    return True


def publish_draft(rule_id: int, *, actor: Actor,
                  expected_version: int | None = None) -> tuple[Rule, DraftChanges]:
    """Put the draft in place of the rule's options and allowlist and drop the draft: one
    change (one version bump, one audit entry with the rule before and after). The draft is
    validated again against the rule as it is now. *expected_version* is the draft's."""
    require_writer(actor)
    with policy_change(actor) as change:
        rule = _owned_rule(rule_id, actor)
        draft = rule.draft
        if draft is None:
            raise NotFound(f"rule {rule.path} has no draft to publish; start one first")
        if expected_version is not None and draft.version != expected_version:
            raise Conflict(
                f"the draft of rule {rule.path} was changed by {draft.updated_by or 'someone'} "
                f"since you looked at it (version {draft.version}, you had "
                f"{expected_version}); look at it again before you publish it",
                current_version=draft.version)
        changes = draft_changes(rule, draft)
        before = rule_to_dict(rule)
        rule_input = _validated(rule, before, draft_body(draft), actor)
        apply_rule_input(rule, rule_input, actor=actor)
        rule.draft = None
        db.session.flush()
        after = rule_to_dict(rule)
        changed = [name for name in DRAFT_FIELDS if before.get(name) != after.get(name)]
        change.audit("rule.publish",
                     f"published the draft of rule {rule.path}: "
                     + (", ".join(changed) if changed else "no change to the rule"),
                     rule=rule, before=before, after=after)
    return rule, changes


def _owned_rule(rule_id: int, actor: Actor) -> Rule:
    rule = get_rule(rule_id, actor)
    if not owns(actor, rule):
        raise Forbidden(f"rule {rule.path} belongs to the platform; only its owner keeps a "
                        "draft of it (you can change your tenant's origins on it)")
    return rule


def _new_draft(rule: Rule, body: dict[str, Any], actor: Actor) -> RuleDraft:
    draft = RuleDraft(body=body, created_by=actor.name, updated_by=actor.name)
    rule.draft = draft
    db.session.flush()
    return draft


def _validated(rule: Rule, live: Mapping[str, Any], body: Mapping[str, Any],
               actor: Actor) -> RuleInput:
    """The rule as *body* would make it, validated as an edit of *rule* is: the same
    messages, a tenant role's origins without tenants, tenants that exist."""
    rule_input = validate_draft(live, body, reserved_prefixes=reserved_prefixes())
    if actor.scoped:
        own = tenant_slug(actor.tenant_id)
        for origin in rule_input.origins:
            if origin.tenant and origin.tenant != own:
                raise NotFound(f"there is no tenant {origin.tenant}")
        if any(o.tenant for o in rule_input.origins):
            raise ValidationError([FieldError("origins", "origins of your rule have no "
                                                         "tenant")])
    named = {o.tenant for o in rule_input.origins if o.tenant}
    if named:
        known = set(db.session.scalars(sa.select(Tenant.slug).where(Tenant.slug.in_(named))))
        missing = sorted(named - known)
        if missing:
            raise ValidationError([FieldError("origins", f"there is no tenant {slug}; create "
                                                         "it first") for slug in missing])
    return rule_input


# -- the draft's effect ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EffectRow:
    """Requests from one origin the draft would refuse for one reason (the live rule
    allowed them)."""

    origin: str
    reason: str
    tenant: str
    count: int
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class DraftEffect:
    period: str
    since: datetime
    rows: list[EffectRow]

    @property
    def total(self) -> int:
        return sum(row.count for row in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "since": self.since.isoformat().replace("+00:00", "Z"),
            "total": self.total,
            "rows": [{"origin": r.origin, "reason": r.reason, "tenant": r.tenant,
                      "count": r.count,
                      "last_seen": r.last_seen.isoformat().replace("+00:00", "Z")}
                     for r in self.rows],
        }


def parse_period(text: str | None) -> str:
    period = text or DEFAULT_EFFECT_PERIOD
    if period not in EFFECT_PERIODS:
        raise ValidationError([FieldError("period", (
            f"period must be one of {', '.join(EFFECT_PERIODS)}"))])
    return period


def draft_effect(rule: Rule, draft: RuleDraft | None, *, period: str = DEFAULT_EFFECT_PERIOD,
                 actor: Actor | None = None, now: datetime | None = None) -> DraftEffect:
    """What the draft would have refused that the live rule allowed, over *period*, grouped
    by origin and reason, most requests first: the request log's rows of mode ``draft`` for
    this rule, since the draft was last changed when that is later (older rows are about
    another version of it)."""
    since = (now or utcnow()) - EFFECT_PERIODS[parse_period(period)]
    if draft is not None and draft.updated_at > since:
        since = draft.updated_at
    table = RequestLogEntry
    total = sa.func.sum(table.count)
    query = (
        sa.select(table.origin, table.reason, table.tenant, total,
                  sa.func.max(table.last_seen))
        .where(table.rule_id == rule.id, table.mode == DRAFT, table.last_seen >= since,
               visible_log_rows(actor))
        .group_by(table.origin, table.reason, table.tenant)
        .order_by(total.desc(), table.origin, table.reason)
        .limit(EFFECT_ROWS)
    )
    rows = [EffectRow(origin, reason, tenant, int(count), last_seen)
            for origin, reason, tenant, count, last_seen in db.session.execute(query)]
    return DraftEffect(period, since, rows)
