"""Where is an origin allowed? One answer for the dashboard's rules search,
``GET /admin/api/v1/rules?origin=`` and ``flask cors find``.

Every allowlist entry that lets the origin through is listed: the entry equal to it and every
pattern (``*.example.com``, ``https://example.com:*``, ``*``) the engine's own
:class:`~cors_control.snapshot.OriginSet` says matches it, so the answer agrees with
:func:`~cors_control.decision.decide`. Exact entries are found by the database's index; patterns
are few and are matched here. Entries of shared origin lists count too: each is listed once
per rule that uses its list, naming the list, and only for lists and rules the actor sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from cors_control.origins import OriginError, OriginKind, parse_origin
from cors_control.snapshot import OriginEntry, OriginSet
from cors_control.vocabulary import OFF

from ..extensions import db
from ..models import AllowedOrigin, OriginList, OriginListEntry, Rule, RuleOriginList, Tenant
from ..timefmt import iso_utc
from .access import Actor, visible_origin_rows, visible_rules
from .errors import FieldError, ValidationError
from .origin_lists import visible_lists


@dataclass(frozen=True, slots=True)
class OriginGrant:
    """One allowlist entry that lets the origin through on one rule."""

    rule_id: int
    rule_path: str
    rule_mode: str
    rule_tenant: str | None  # the tenant owning the rule; None: the platform's
    entry: str  # the entry as stored: the origin itself or a pattern matching it
    exact: bool
    kind: str
    allowlist_tenant: str | None  # on a rule that selects tenants: whose list; None: shared
    since: datetime
    added_by: str
    expires_at: datetime | None
    note: str = ""
    expired: bool = False
    # the shared list the entry belongs to (None: the rule's own allowlist)
    list_id: int | None = None
    list_name: str | None = None
    list_tenant: str | None = None  # the list's owner; None: the platform's

    @property
    def serving(self) -> bool:
        """Whether the engine lets the origin through by this entry now."""
        return not self.expired and self.rule_mode != OFF

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "rule": self.rule_path,
            "rule_mode": self.rule_mode,
            "rule_tenant": self.rule_tenant,
            "entry": self.entry,
            "match": "exact" if self.exact else "wildcard",
            "kind": self.kind,
            "allowlist_tenant": self.allowlist_tenant,
            "since": iso_utc(self.since),
            "added_by": self.added_by or None,
            "expires_at": iso_utc(self.expires_at) if self.expires_at else None,
            "expired": self.expired,
            "serving": self.serving,
            "note": self.note,
            "list": None if self.list_id is None else {
                "id": self.list_id, "name": self.list_name, "tenant": self.list_tenant},
        }


def parse_searched_origin(text: str, *, field: str = "origin") -> str:
    """The origin a browser would send for *text*; a pattern or anything else is refused."""
    try:
        spec = parse_origin((text or "").strip())
    except OriginError as error:
        raise ValidationError([FieldError(field, f"{error}")]) from None
    if spec.kind is not OriginKind.EXACT:
        raise ValidationError([FieldError(
            field, "search for an origin as a browser sends it, such as "
                   "https://shop.example.com, not a pattern")])
    return spec.value


def looks_like_origin(text: str) -> bool:
    """Whether a search box's *text* is an origin (``https://shop.example.com``)."""
    text = (text or "").strip()
    if "://" not in text:
        return False
    try:
        return parse_origin(text).kind is OriginKind.EXACT
    except OriginError:
        return False


def find_origin(text: str, *, actor: Actor | None = None,
                now: datetime | None = None) -> tuple[str, list[OriginGrant]]:
    """(the origin as browsers send it, every entry *actor* may see that allows it), by rule
    path. Expired entries and rules that are off are listed, marked: they explain why an
    origin once passed and no longer does."""
    origin = parse_searched_origin(text)
    moment = now or datetime.now(UTC)
    owner = aliased(Tenant)
    listed_for = aliased(Tenant)
    query = (
        sa.select(AllowedOrigin, Rule.path, Rule.mode, owner.slug, listed_for.slug)
        .join(Rule, AllowedOrigin.rule_id == Rule.id)
        .outerjoin(owner, Rule.tenant_id == owner.id)
        .outerjoin(listed_for, AllowedOrigin.tenant_id == listed_for.id)
        .where(visible_rules(actor), visible_origin_rows(actor),
               sa.or_(AllowedOrigin.value == origin,
                      AllowedOrigin.kind != OriginKind.EXACT.value))
        .order_by(Rule.path, AllowedOrigin.value, AllowedOrigin.id)
    )
    grants = []
    for entry, path, mode, rule_tenant, allowlist_tenant in db.session.execute(query):
        if entry.kind != OriginKind.EXACT.value:
            pattern = OriginSet([OriginEntry(entry.value)])
            if not (pattern.allows(origin) or pattern.allows_any(None)):
                continue
        grants.append(OriginGrant(
            rule_id=entry.rule_id, rule_path=path, rule_mode=mode, rule_tenant=rule_tenant,
            entry=entry.value, exact=entry.kind == OriginKind.EXACT.value, kind=entry.kind,
            allowlist_tenant=allowlist_tenant, since=entry.added_at, added_by=entry.added_by,
            expires_at=entry.expires_at, note=entry.note or "",
            expired=entry.expires_at is not None and entry.expires_at <= moment,
        ))
    grants.extend(_list_grants(origin, actor, moment))
    grants.sort(key=lambda g: (g.rule_path, g.list_name is not None, g.list_name or "",
                               g.entry))
    return origin, grants


def _list_grants(origin: str, actor: Actor | None, moment: datetime) -> list[OriginGrant]:
    """The entries of shared lists that allow *origin*, once per rule using the list: lists
    and rules *actor* sees (a tenant role: its tenant's and the platform's)."""
    owner = aliased(Tenant)
    list_owner = aliased(Tenant)
    query = (
        sa.select(OriginListEntry, OriginList.name, list_owner.slug, Rule.id, Rule.path,
                  Rule.mode, owner.slug)
        .join(OriginList, OriginListEntry.list_id == OriginList.id)
        .join(RuleOriginList, RuleOriginList.list_id == OriginList.id)
        .join(Rule, RuleOriginList.rule_id == Rule.id)
        .outerjoin(owner, Rule.tenant_id == owner.id)
        .outerjoin(list_owner, OriginList.tenant_id == list_owner.id)
        .where(visible_rules(actor), visible_lists(actor),
               sa.or_(OriginListEntry.value == origin,
                      OriginListEntry.kind != OriginKind.EXACT.value))
    )
    grants = []
    for entry, name, list_tenant, rule_id, path, mode, rule_tenant in db.session.execute(query):
        if entry.kind != OriginKind.EXACT.value:
            pattern = OriginSet([OriginEntry(entry.value)])
            if not (pattern.allows(origin) or pattern.allows_any(None)):
                continue
        grants.append(OriginGrant(
            rule_id=rule_id, rule_path=path, rule_mode=mode, rule_tenant=rule_tenant,
            entry=entry.value, exact=entry.kind == OriginKind.EXACT.value, kind=entry.kind,
            allowlist_tenant=list_tenant, since=entry.added_at, added_by=entry.added_by,
            expires_at=entry.expires_at, note=entry.note or "",
            expired=entry.expires_at is not None and entry.expires_at <= moment,
            list_id=entry.list_id, list_name=name, list_tenant=list_tenant,
        ))
    return grants
