"""The tenant matrix: every dashboard route and every API endpoint, called as each role of
tenant alpha, against alpha's objects and against bravo's.

Two tenants, alpha and bravo, each own a rule with an origin, keep an origin on one platform
rule that selects tenants (``/api/t/*/orders``), have refused requests in the request log
(on their rule, and on the shared rule naming them), audit entries written by the services,
a user and an API token. The platform has a rule of its own, an origin on the shared rule's
list for every tenant, and log rows of its own. Everything of bravo's carries the word
``bravo`` and everything of the platform's the word ``zulu``, so "alpha saw nothing of
theirs" is one check on every response: neither word appears, except where the request
itself carried it.

Against bravo's objects nothing succeeds (403 or 404) and the database does not change;
against alpha's, reads succeed for both tenant roles, writes succeed for the tenant-editor
and are refused with 403 for the tenant-viewer. Listings show alpha's objects and nothing
else. :data:`MATRIX` maps every route of the url map to a request; a route added without a
row fails :func:`test_every_dashboard_and_api_route_is_in_the_matrix`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask, url_for

from app.extensions import db
from app.models import (
    AllowedOrigin,
    ApiToken,
    AuditEntry,
    OriginList,
    RequestLogEntry,
    Rule,
    RuleDraft,
    Tenant,
    User,
)
from app.services import drafts
from app.services import origin_lists as lists
from app.services.access import Actor
from app.services.errors import ValidationError
from app.services.policy import add_origin, create_rule, update_rule
from app.services.tenants import create_tenant
from app.services.tokens import create_token
from app.services.users import create_user
from cors_control import get_control
from cors_control.decision import ORIGIN_NOT_ALLOWED
from tests.conftest import PASSWORD

ADMIN = Actor("root@platform.example", "cli")
SHARED_PATH = "/api/t/*/orders"
TENANT_ROLES = ("tenant-viewer", "tenant-editor")  # the viewer first: its writes change nothing
# Words that must never reach alpha unless its own request carried them.
FOREIGN_MARKERS = ("bravo", "zulu")
CORS_HEADER = "Access-Control-Allow-"
WRITE_SUCCESS = frozenset({200, 201, 204, 302, 303})


# -- the world -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantObjects:
    """One tenant's objects, by id, and the values only they carry."""

    slug: str
    tenant_id: int
    rule_id: int
    rule_path: str
    origin: str  # on its own rule
    shared_origin: str  # on its list of the shared rule
    refused_origin: str  # a log row of its own rule
    shared_refused_origin: str  # a log row of the shared rule, naming the tenant
    log_id: int
    shared_log_id: int
    audit_id: int  # the update of its rule: a state to restore
    user_id: int
    user_email: str
    token_id: int
    new_origin: str  # not on any list yet
    tokens: dict[str, str] = field(default_factory=dict)  # role -> API secret (alpha only)
    list_id: int = 0  # its shared origin list, used by its rule
    list_origin: str = ""  # on that list

    @property
    def draft_origin(self) -> str:
        """On its rule's draft only."""
        return f"https://{self.slug}-draft.example"

    @property
    def request_path(self) -> str:
        return self.rule_path.replace("*", "orders")


@dataclass(frozen=True)
class World:
    alpha: TenantObjects
    bravo: TenantObjects
    shared_rule_id: int
    platform_rule_id: int


def build_world(app: Flask) -> World:
    """The two tenants and the platform, written through the services as in production; the
    request log rows are inserted as the recorder writes them."""
    with app.app_context():
        platform = create_rule({"path": "/api/zulu/*", "origins": ["https://zulu.example"],
                                "description": "zulu platform rule"}, actor=ADMIN)
        shared = create_rule({
            "path": SHARED_PATH, "origins": ["https://zulu-shared.example"],
            "tenant_selector": {"source": "view-arg", "key": "tenant", "unknown": "refuse"},
        }, actor=ADMIN)
        _log_row(None, "", "", "https://zulu-unmatched.example")
        _log_row(platform.id, platform.path, "", "https://zulu-refused.example")
        alpha = _tenant(app, "alpha", shared.id, api_roles=TENANT_ROLES)
        bravo = _tenant(app, "bravo", shared.id, api_roles=())
        world = World(alpha, bravo, shared.id, platform.id)
    get_control(app).cache.refresh()  # the simulator and /check ask the engine
    return world


def _tenant(app: Flask, slug: str, shared_rule_id: int, *,
            api_roles: tuple[str, ...]) -> TenantObjects:
    tenant = create_tenant(slug, f"{slug.title()} Inc.", paths=[f"/api/{slug}/*"], actor=ADMIN)
    editor = Actor(f"editor@{slug}.example", "dashboard", "tenant-editor", tenant.id)
    rule = create_rule({"path": f"/api/{slug}/*", "origins": [f"https://{slug}.example"]},
                       actor=editor)
    update_rule(rule.id, {"description": f"{slug} orders"}, actor=editor)
    audit_id = db.session.scalar(sa.select(AuditEntry.id).where(
        AuditEntry.action == "rule.update", AuditEntry.rule_id == rule.id))
    add_origin(shared_rule_id, f"https://{slug}-shared.example", actor=editor)
    log_id = _log_row(rule.id, rule.path, "", f"https://{slug}-refused.example")
    shared_log_id = _log_row(shared_rule_id, SHARED_PATH, slug,
                             f"https://{slug}-shared-refused.example")
    origin_list = lists.create_list({"name": f"{slug}-frontends",
                                     "origins": [f"https://{slug}-list.example"]}, actor=editor)
    lists.attach_list(rule.id, origin_list.id, actor=editor)
    # A draft on its rule: tried beside it, shown only to the tenant (and the platform).
    drafts.save_draft(rule.id, {"methods": ["GET"], "origins": [f"https://{slug}.example",
                                                                 f"https://{slug}-draft.example"]},
                      actor=editor)
    user = create_user(f"user@{slug}.example", PASSWORD, role="tenant-viewer", tenant=slug)
    token = create_token(f"{slug}-ci", "tenant-viewer", actor=ADMIN, tenant=slug).token
    secrets = {role: create_token(f"{slug}-{role}", role, actor=ADMIN, tenant=slug).secret
               for role in api_roles}
    return TenantObjects(
        slug=slug, tenant_id=tenant.id, rule_id=rule.id, rule_path=rule.path,
        origin=f"https://{slug}.example", shared_origin=f"https://{slug}-shared.example",
        refused_origin=f"https://{slug}-refused.example",
        shared_refused_origin=f"https://{slug}-shared-refused.example",
        log_id=log_id, shared_log_id=shared_log_id, audit_id=audit_id, user_id=user.id,
        user_email=user.email, token_id=token.id, new_origin=f"https://{slug}-new.example",
        tokens=secrets, list_id=origin_list.id, list_origin=f"https://{slug}-list.example")


def _log_row(rule_id: int | None, rule_path: str, tenant: str, origin: str) -> int:
    seen = datetime.now(UTC) - timedelta(minutes=1)
    row = RequestLogEntry(
        bucket_start=seen.replace(minute=0, second=0, microsecond=0), rule_id=rule_id,
        rule_path=rule_path, tenant=tenant, origin=origin,
        reason=ORIGIN_NOT_ALLOWED if rule_id else "no-rule", detail="", mode="enforce",
        count=3, first_seen=seen, last_seen=seen, path="/api/x", method="GET",
        preflight=False, request_method="", request_headers="", user_agent="test",
        referer="")
    db.session.add(row)
    db.session.commit()
    return row.id


# -- the state that must (not) change --------------------------------------------------------


def state(app: Flask, world: World) -> tuple[frozenset, frozenset]:
    """(alpha's part, everyone else's part) of everything a request could change.

    The shared rule's version and last editor are left out: alpha changing its own list on
    it moves them legitimately. Its options and every other list on it are in.
    """
    alpha_id = world.alpha.tenant_id
    with app.app_context():
        rules = db.session.scalars(sa.select(Rule)).all()
        alpha_rules = {r.id for r in rules if r.tenant_id == alpha_id}
        ours: set = set()
        theirs: set = set()
        for r in rules:
            options = ("rule", r.id, r.path, r.mode, r.description, tuple(r.methods),
                       r.supports_credentials, r.tenant_id, r.tenant_source)
            if r.tenant_id == alpha_id:
                ours.add((*options, r.version))
            else:
                theirs.add((*options, r.version if r.tenant_id is not None else None))
        for o in db.session.scalars(sa.select(AllowedOrigin)):
            row = ("origin", o.rule_id, o.value, o.tenant_id, o.note, o.expires_at)
            (ours if o.tenant_id == alpha_id or o.rule_id in alpha_rules else theirs).add(row)
        for d in db.session.scalars(sa.select(RuleDraft)):
            row = ("draft", d.rule_id, repr(sorted(d.body.items())), d.version)
            (ours if d.rule_id in alpha_rules else theirs).add(row)
        for ol in db.session.scalars(sa.select(OriginList)):
            rows = {("list", ol.id, ol.name, ol.tenant_id, ol.description)}
            rows |= {("list-entry", ol.id, e.value, e.note) for e in ol.entries}
            rows |= {("list-use", ol.id, use.rule_id) for use in ol.uses}
            (ours if ol.tenant_id == alpha_id else theirs).update(rows)
        for t in db.session.scalars(sa.select(Tenant)):
            theirs.add(("tenant", t.id, t.slug, t.name))
        for u in db.session.scalars(sa.select(User)):
            row = ("user", u.id, u.email, u.role, u.active, u.password_hash, u.tenant_id)
            (ours if u.tenant_id == alpha_id else theirs).add(row)
        for k in db.session.scalars(sa.select(ApiToken)):
            theirs.add(("token", k.id, k.name, k.role, k.tenant_id, k.revoked_at))
        audit = Counter(db.session.scalars(sa.select(AuditEntry.tenant_id)))
        for tenant_id, count in audit.items():
            (ours if tenant_id == alpha_id else theirs).add(("audit", tenant_id, count))
    return frozenset(ours), frozenset(theirs)


# -- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    form: dict[str, str] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def supplied(self) -> list[str]:
        """Every text the request itself carries, longest first."""
        parts = urlsplit(self.url)
        path = unquote(parts.path)
        texts = [path, *path.split("/"), *(v for _, v in parse_qsl(parts.query))]
        texts += list((self.form or {}).values()) + list(_strings(self.json))
        texts += list(self.headers.values())
        return sorted((t for t in texts if t), key=len, reverse=True)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


Builder = Callable[[World, TenantObjects], Call]


@dataclass(frozen=True)
class Case:
    """How one route is called and what each answer must be.

    ``kind``: ``read`` (one object: 200 for alpha's, 404 for bravo's), ``list`` (alpha's
    objects and nothing else; ``narrow`` asks for bravo's explicitly and must get none of
    them), ``write`` (alpha's: the editor changes it, the viewer gets 403; bravo's: 403 or
    404 and no change), ``editor-read`` (a read that is part of an edit form: editors only),
    ``question`` (the simulator: any origin and path may be asked about, but a rule alpha
    cannot see is not described), ``platform`` (a page about the whole platform: 403 for
    tenant roles), ``refused`` (an action no tenant role may take: 403), ``open`` (signing in
    and out, the API's own description: no tenant data at all).
    """

    kind: str
    build: Builder
    narrow: Builder | None = None
    shows: tuple[str, ...] = ()  # attributes of TenantObjects alpha's answer must contain
    status: int | None = None  # for open routes
    refused: frozenset[int] = frozenset({403, 404})  # what bravo's writes may answer
    refusal: str = ""  # what a refusal answered with 200 must say


def dashboard_post(endpoint: str, form: dict[str, str] | None = None, **values) -> Call:
    return Call("POST", url_for(endpoint, **values), form=form or {})


def get(endpoint: str, **values) -> Call:
    return Call("GET", url_for(endpoint, **values))


def new_rule_form(path: str) -> Call:
    # Report-only: the new rule takes nothing from the tenant's broader rule, so the
    # dashboard saves it without its review step (test_impact_dashboard covers that step).
    return dashboard_post("admin.rule_create", {
        "path": path, "methods": "GET", "allow_headers": "*", "expose_headers": "",
        "max_age": "", "mode": "report-only", "description": ""})


def simulator_fix(t: TenantObjects) -> Call:
    return dashboard_post("admin.simulator_fix", {
        "origin": t.new_origin, "path": t.request_path, "method": "GET"})


def simulator_fix_list(t: TenantObjects) -> Call:
    return dashboard_post("admin.simulator_fix_list", {
        "origin": t.new_origin, "path": t.request_path, "method": "GET",
        "list_id": str(t.list_id)})


def rule_form(w: World, t: TenantObjects, _endpoint: str = "admin.rule_update",
              **changes: str) -> Call:
    rule = db.session.get(Rule, t.rule_id)
    form = {"path": rule.path, "methods": ", ".join(rule.methods),
            "allow_headers": ", ".join(rule.allow_headers), "expose_headers": "",
            "max_age": "", "mode": rule.mode, "description": f"{t.slug} changed",
            "version": str(rule.version), **changes}
    return dashboard_post(_endpoint, form, rule_id=t.rule_id)


def api(method: str, endpoint: str, *, json: Any = None, headers: dict | None = None,
        **values) -> Call:
    return Call(method, url_for(endpoint, **values), json=json, headers=headers or {})


def policy_text(t: TenantObjects) -> str:
    """A policy file that gives the tenant's rule a new origin."""
    return json.dumps({"rules": [{"path": t.rule_path, "origins": [t.new_origin]}]})


def if_match(t: TenantObjects) -> dict[str, str]:
    return {"If-Match": f'"{db.session.get(Rule, t.rule_id).version}"'}


def rule_json(t: TenantObjects) -> dict[str, Any]:
    return {"path": t.rule_path, "origins": [t.origin], "description": f"{t.slug} replaced"}


MATRIX: dict[tuple[str, str], Case] = {
    # -- the dashboard -----------------------------------------------------------------------
    ("admin.overview", "GET"): Case(
        "list", lambda w, t: get("admin.overview"), shows=("refused_origin",)),
    ("admin.rules", "GET"): Case(
        "list", lambda w, t: get("admin.rules"),
        narrow=lambda w, t: get("admin.rules", q=f"/api/{t.slug}"), shows=("rule_path",)),
    ("admin.rule_create", "POST"): Case(
        "write", lambda w, t: new_rule_form(f"/api/{t.slug}/new/*"),
        # bravo's "object" is its path: taken, and the answer does not say by whom.
        narrow=lambda w, t: new_rule_form(t.rule_path), refused=frozenset({403, 422})),
    ("admin.rule", "GET"): Case(
        "read", lambda w, t: get("admin.rule", rule_id=t.rule_id), shows=("origin",)),
    ("admin.rule_update", "POST"): Case("write", rule_form),
    ("admin.rule_disable", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.rule_disable", rule_id=t.rule_id)),
    ("admin.rule_enable", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.rule_enable", {"mode": "report-only"},
                                             rule_id=t.rule_id)),
    ("admin.rule_delete", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.rule_delete", rule_id=t.rule_id)),
    ("admin.origin_remove_confirm", "GET"): Case(
        "editor-read", lambda w, t: get("admin.origin_remove_confirm", rule_id=t.rule_id,
                                        value=t.origin)),
    ("admin.origin_check", "GET"): Case(
        "editor-read", lambda w, t: get("admin.origin_check", rule_id=t.rule_id,
                                        value=t.new_origin)),
    ("admin.origin_add", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.origin_add", {"value": t.new_origin},
                                             rule_id=t.rule_id)),
    ("admin.origin_remove", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.origin_remove", {"value": t.origin},
                                             rule_id=t.rule_id)),
    ("admin.coverage", "GET"): Case("platform", lambda w, t: get("admin.coverage")),
    ("admin.simulator", "GET"): Case(
        "question", lambda w, t: get("admin.simulator", origin=t.origin,
                                     path=t.request_path, method="GET"),
        shows=("rule_path",)),
    ("admin.simulator_fix", "POST"): Case(
        "write", lambda w, t: simulator_fix(t),
        # Asked over htmx, as the page does: another tenant's rule is answered like a path
        # no rule governs, with a message in the swapped fragment.
        narrow=lambda w, t: replace(simulator_fix(t), headers={"HX-Request": "true"}),
        refused=frozenset({403, 200}), refusal="Nothing was changed: no rule you can see "
                                               "governs"),
    ("admin.request_log", "GET"): Case(
        "list", lambda w, t: get("admin.request_log", since="30d"),
        narrow=lambda w, t: get("admin.request_log", since="30d", rule=str(t.rule_id)),
        shows=("refused_origin", "shared_refused_origin")),
    ("admin.request_log_csv", "GET"): Case(
        "list", lambda w, t: get("admin.request_log_csv", since="30d"),
        narrow=lambda w, t: get("admin.request_log_csv", since="30d", rule=str(t.rule_id)),
        shows=("refused_origin", "shared_refused_origin")),
    ("admin.request_log_allow", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.request_log_allow", entry_id=t.log_id)),
    ("admin.audit", "GET"): Case(
        "list", lambda w, t: get("admin.audit"),
        narrow=lambda w, t: get("admin.audit", rule=f"/api/{t.slug}"), shows=("rule_path",)),
    ("admin.audit_restore", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.audit_restore", {"state": "before"},
                                             entry_id=t.audit_id)),
    ("admin.audit_restore_review", "GET"): Case(
        "editor-read", lambda w, t: get("admin.audit_restore_review", entry_id=t.audit_id,
                                        state="before")),
    ("admin.audit_undo_review", "GET"): Case(
        "editor-read", lambda w, t: get("admin.audit_undo_review", entry_id=t.audit_id)),
    ("admin.audit_undo", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.audit_undo", entry_id=t.audit_id)),
    # The previews of a change: a path outside the tenant's namespaces is explained in the
    # panel (200), another tenant's rule does not exist (404).
    ("admin.rule_create_preview", "POST"): Case(
        "editor-read", lambda w, t: dashboard_post("admin.rule_create_preview", {
            "path": f"/api/{t.slug}/new/*", "methods": "GET", "allow_headers": "*",
            "expose_headers": "", "max_age": "", "mode": "enforce", "description": ""}),
        refused=frozenset({200, 403})),
    ("admin.rule_update_preview", "POST"): Case(
        "editor-read", lambda w, t: rule_form(w, t, _endpoint="admin.rule_update_preview")),
    ("admin.rule_delete_review", "GET"): Case(
        "editor-read", lambda w, t: get("admin.rule_delete_review", rule_id=t.rule_id)),
    ("admin.users", "GET"): Case("platform", lambda w, t: get("admin.users")),
    ("admin.user_create", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.user_create", {
            "email": f"new@{t.slug}.example", "password": PASSWORD, "role": "tenant-editor",
            "tenant": t.slug})),
    ("admin.user_disable", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.user_disable", user_id=t.user_id)),
    ("admin.user_enable", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.user_enable", user_id=t.user_id)),
    ("admin.user_role", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.user_role", {"role": "tenant-editor"},
                                                user_id=t.user_id)),
    ("admin.user_password", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.user_password",
                                                {"password": "a-new-long-password"},
                                                user_id=t.user_id)),
    ("admin.tenants", "GET"): Case("platform", lambda w, t: get("admin.tenants")),
    ("admin.tenant_create", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.tenant_create",
                                                {"slug": f"{t.slug}-two", "name": ""})),
    ("admin.tenant_paths", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.tenant_paths",
                                                {"paths": "/api/zulu/*"}, slug=t.slug)),
    ("admin.tenant_delete_confirm", "GET"): Case(
        "platform", lambda w, t: get("admin.tenant_delete_confirm", slug=t.slug)),
    ("admin.tenant_delete", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.tenant_delete", slug=t.slug)),
    ("admin.tokens", "GET"): Case("platform", lambda w, t: get("admin.tokens")),
    ("admin.token_create", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.token_create", {
            "name": f"{t.slug}-new", "role": "tenant-editor", "tenant": t.slug,
            "expires_at": ""})),
    ("admin.token_revoke", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.token_revoke", token_id=t.token_id)),
    # Alerts are the platform's: no webhook is a tenant's (the id names nothing of theirs).
    ("admin.webhooks", "GET"): Case("platform", lambda w, t: get("admin.webhooks")),
    ("admin.webhook_create", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.webhook_create", {
            "name": f"{t.slug}-hook", "url": "https://hooks.example.com/cors"})),
    ("admin.webhook", "GET"): Case("platform", lambda w, t: get("admin.webhook", webhook_id=1)),
    ("admin.webhook_update", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.webhook_update", {
            "name": f"{t.slug}-hook", "url": "https://hooks.example.com/cors"},
            webhook_id=1)),
    ("admin.webhook_deliveries", "GET"): Case(
        "platform", lambda w, t: get("admin.webhook_deliveries", webhook_id=1)),
    ("admin.webhook_test", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.webhook_test", webhook_id=1)),
    ("admin.webhook_delete_confirm", "GET"): Case(
        "platform", lambda w, t: get("admin.webhook_delete_confirm", webhook_id=1)),
    ("admin.webhook_delete", "POST"): Case(
        "platform", lambda w, t: dashboard_post("admin.webhook_delete", webhook_id=1)),
    # The policy file: the export is the API's (a tenant role gets its own part); importing
    # is for platform editors and admins, as in the API.
    ("admin.policy_export", "GET"): Case(
        "list", lambda w, t: get("admin.policy_export"), shows=("rule_path", "shared_origin")),
    ("admin.policy_import", "GET"): Case("platform", lambda w, t: get("admin.policy_import")),
    ("admin.policy_import_preview", "POST"): Case(
        "refused", lambda w, t: dashboard_post("admin.policy_import_preview", {
            "mode": "merge", "document": policy_text(t)})),
    ("admin.policy_import_apply", "POST"): Case(
        "refused", lambda w, t: dashboard_post("admin.policy_import_apply", {
            "mode": "merge", "document": policy_text(t), "token": "", "confirm_impact": "yes"})),
    # Signing in again while signed in changes nothing; signing out only ends the session.
    ("auth.login", "GET"): Case("open", lambda w, t: get("auth.login"), status=302),
    ("auth.login", "POST"): Case(
        "open", lambda w, t: dashboard_post("auth.login", {"email": t.user_email,
                                                           "password": PASSWORD}),
        status=302),
    ("auth.logout", "POST"): Case(
        "open", lambda w, t: dashboard_post("auth.logout"), status=302),
    # -- the JSON API ------------------------------------------------------------------------
    ("api.rules", "GET"): Case(
        "list", lambda w, t: api("GET", "api.rules"),
        narrow=lambda w, t: api("GET", "api.rules", tenant=t.slug), shows=("rule_path",)),
    ("api.rule_create", "POST"): Case(
        "write", lambda w, t: api("POST", "api.rule_create",
                                  json={"path": f"/api/{t.slug}/new/*"}),
        narrow=lambda w, t: api("POST", "api.rule_create", json={"path": t.rule_path}),
        refused=frozenset({403, 422})),
    ("api.rule", "GET"): Case(
        "read", lambda w, t: api("GET", "api.rule", rule_id=t.rule_id), shows=("origin",)),
    ("api.rule_replace", "PUT"): Case(
        "write", lambda w, t: api("PUT", "api.rule_replace", json=rule_json(t),
                                  headers=if_match(t), rule_id=t.rule_id)),
    ("api.rule_update", "PATCH"): Case(
        "write", lambda w, t: api("PATCH", "api.rule_update",
                                  json={"description": f"{t.slug} patched"},
                                  rule_id=t.rule_id)),
    ("api.rule_delete", "DELETE"): Case(
        "write", lambda w, t: api("DELETE", "api.rule_delete", rule_id=t.rule_id)),
    ("api.origins", "GET"): Case(
        "read", lambda w, t: api("GET", "api.origins", rule_id=t.rule_id), shows=("origin",)),
    ("api.origin_add", "PUT"): Case(
        "write", lambda w, t: api("PUT", "api.origin_add", rule_id=t.rule_id,
                                  origin=t.new_origin)),
    ("api.origin_remove", "DELETE"): Case(
        "write", lambda w, t: api("DELETE", "api.origin_remove", rule_id=t.rule_id,
                                  origin=t.origin)),
    # -- drafts (each tenant's rule has one) --------------------------------------------------
    ("admin.rule_draft", "GET"): Case(
        "read", lambda w, t: get("admin.rule_draft", rule_id=t.rule_id), shows=("draft_origin",)),
    # Its rule already has a draft: starting one keeps it (no change), and only writers may.
    ("admin.rule_draft_start", "POST"): Case(
        "editor-read", lambda w, t: dashboard_post("admin.rule_draft_start", rule_id=t.rule_id)),
    ("admin.rule_draft_save", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.rule_draft_save", {
            "origins": t.origin, "methods": "GET, POST", "allow_headers": "*",
            "expose_headers": "", "max_age": ""}, rule_id=t.rule_id)),
    ("admin.rule_draft_discard", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.rule_draft_discard", rule_id=t.rule_id)),
    ("admin.rule_draft_confirm", "GET"): Case(
        "editor-read", lambda w, t: get("admin.rule_draft_confirm", rule_id=t.rule_id),
        shows=("draft_origin",)),
    ("admin.rule_draft_publish", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.rule_draft_publish", {"confirm": "yes"},
                                             rule_id=t.rule_id)),
    ("api.draft", "GET"): Case(
        "read", lambda w, t: api("GET", "api.draft", rule_id=t.rule_id),
        shows=("draft_origin",)),
    ("api.draft_replace", "PUT"): Case(
        "write", lambda w, t: api("PUT", "api.draft_replace", rule_id=t.rule_id,
                                  json={"methods": ["GET", "POST"]})),
    ("api.draft_discard", "DELETE"): Case(
        "write", lambda w, t: api("DELETE", "api.draft_discard", rule_id=t.rule_id)),
    ("api.draft_publish", "POST"): Case(
        "write", lambda w, t: api("POST", "api.draft_publish", rule_id=t.rule_id)),
    ("api.draft_effect", "GET"): Case(
        "read", lambda w, t: api("GET", "api.draft_effect", rule_id=t.rule_id)),
    # -- shared origin lists (alpha's list is used by its rule) ------------------------------
    ("admin.origin_lists", "GET"): Case("list", lambda w, t: get("admin.origin_lists"),
                                        shows=("list_origin",)),
    ("admin.origin_list_create", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.origin_list_create",
                                             {"name": f"{t.slug}-new"}),
        narrow=lambda w, t: dashboard_post("admin.origin_list_create",
                                           {"name": "x", "tenant": t.slug})),
    ("admin.origin_list_add", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.origin_list_add",
                                             {"origin": t.new_origin}, list_id=t.list_id)),
    ("admin.origin_list_remove", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.origin_list_remove",
                                             {"origin": t.list_origin}, list_id=t.list_id)),
    ("admin.origin_list_delete", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.origin_list_delete", {"detach": "yes"},
                                             list_id=t.list_id)),
    ("admin.rule_list_detach", "POST"): Case(
        "write", lambda w, t: dashboard_post("admin.rule_list_detach",
                                             {"list_id": str(t.list_id)}, rule_id=t.rule_id)),
    # Attaching a list to the shared (platform) rule: only its owner chooses its lists.
    ("admin.rule_list_attach", "POST"): Case(
        "refused", lambda w, t: dashboard_post("admin.rule_list_attach",
                                               {"list_id": str(t.list_id)},
                                               rule_id=w.shared_rule_id)),
    ("admin.simulator_fix_list", "POST"): Case(
        "write", lambda w, t: simulator_fix_list(t),
        # As the simulator's own fix: over htmx another tenant's rule is a path no visible
        # rule governs, said in the swapped fragment.
        narrow=lambda w, t: replace(simulator_fix_list(t), headers={"HX-Request": "true"}),
        refused=frozenset({403, 200}), refusal="Nothing was changed: no rule you can see "
                                               "governs"),
    ("api.origin_lists", "GET"): Case("list", lambda w, t: api("GET", "api.origin_lists"),
                                      shows=("list_origin",)),
    ("api.origin_list_create", "POST"): Case(
        "write", lambda w, t: api("POST", "api.origin_list_create",
                                  json={"name": f"{t.slug}-new"}),
        narrow=lambda w, t: api("POST", "api.origin_list_create",
                                json={"name": "x", "tenant": t.slug})),
    ("api.origin_list", "GET"): Case(
        "read", lambda w, t: api("GET", "api.origin_list", list_id=t.list_id),
        shows=("list_origin",)),
    ("api.origin_list_update", "PATCH"): Case(
        "write", lambda w, t: api("PATCH", "api.origin_list_update",
                                  json={"description": "changed"}, list_id=t.list_id)),
    ("api.origin_list_delete", "DELETE"): Case(
        "write", lambda w, t: api("DELETE", "api.origin_list_delete", list_id=t.list_id,
                                  detach="true")),
    ("api.origin_list_add", "POST"): Case(
        "write", lambda w, t: api("POST", "api.origin_list_add", json={"value": t.new_origin},
                                  list_id=t.list_id)),
    ("api.origin_list_remove", "DELETE"): Case(
        "write", lambda w, t: api("DELETE", "api.origin_list_remove", list_id=t.list_id,
                                  origin=t.list_origin)),
    ("api.origin_list_attach", "PUT"): Case(
        "refused", lambda w, t: api("PUT", "api.origin_list_attach", list_id=t.list_id,
                                    rule_id=w.shared_rule_id)),
    ("api.origin_list_detach", "DELETE"): Case(
        "write", lambda w, t: api("DELETE", "api.origin_list_detach", list_id=t.list_id,
                                  rule_id=t.rule_id)),
    ("api.check", "POST"): Case(
        "question", lambda w, t: api("POST", "api.check", json={
            "origin": t.origin, "path": t.request_path, "method": "GET"}),
        shows=("rule_path",)),
    ("api.log", "GET"): Case(
        "list", lambda w, t: api("GET", "api.log", since="30d"),
        narrow=lambda w, t: api("GET", "api.log", since="30d", rule=t.rule_path),
        shows=("refused_origin", "shared_refused_origin")),
    ("api.audit", "GET"): Case(
        "list", lambda w, t: api("GET", "api.audit"),
        narrow=lambda w, t: api("GET", "api.audit", rule=f"/api/{t.slug}"),
        shows=("rule_path",)),
    ("api.audit_undo", "POST"): Case(
        "write", lambda w, t: api("POST", "api.audit_undo", entry_id=t.audit_id)),
    ("api.audit_restore", "POST"): Case(
        "write", lambda w, t: api("POST", "api.audit_restore", entry_id=t.audit_id,
                                  state="before")),
    ("api.export", "GET"): Case(
        "list", lambda w, t: api("GET", "api.export"), shows=("rule_path", "shared_origin")),
    ("api.import_", "POST"): Case(
        "refused", lambda w, t: api("POST", "api.import_", json={
            "rules": [{"path": t.rule_path, "origins": [t.new_origin]}]})),
    ("api.tenants", "GET"): Case(
        "list", lambda w, t: api("GET", "api.tenants"), shows=("slug",)),
    ("api.tenant", "GET"): Case(
        "read", lambda w, t: api("GET", "api.tenant", slug=t.slug), shows=("slug",)),
    ("api.webhooks", "GET"): Case("refused", lambda w, t: api("GET", "api.webhooks")),
    ("api.webhook_create", "POST"): Case(
        "refused", lambda w, t: api("POST", "api.webhook_create", json={
            "name": f"{t.slug}-hook", "url": "https://hooks.example.com/cors"})),
    ("api.webhook", "GET"): Case(
        "refused", lambda w, t: api("GET", "api.webhook", webhook_id=1)),
    ("api.webhook_update", "PATCH"): Case(
        "refused", lambda w, t: api("PATCH", "api.webhook_update", json={"quiet_days": 0},
                                    webhook_id=1)),
    ("api.webhook_delete", "DELETE"): Case(
        "refused", lambda w, t: api("DELETE", "api.webhook_delete", webhook_id=1)),
    ("api.tenant_create", "POST"): Case(
        "refused", lambda w, t: api("POST", "api.tenant_create", json={
            "slug": f"{t.slug}-two", "paths": [f"/api/{t.slug}-two/*"]})),
    ("api.tenant_update", "PATCH"): Case(
        "refused", lambda w, t: api("PATCH", "api.tenant_update",
                                    json={"paths": ["/api/zulu/*"]}, slug=t.slug)),
    # The data planes' endpoints: data-plane tokens and admins only.
    ("api.data_plane_policy", "GET"): Case(
        "refused", lambda w, t: api("GET", "api.data_plane_policy")),
    ("api.data_plane_refusals", "POST"): Case(
        "refused", lambda w, t: api("POST", "api.data_plane_refusals",
                                    json={"format": 1, "rows": []})),
    ("api.token_self", "GET"): Case(
        "open", lambda w, t: api("GET", "api.token_self"), status=200),
    ("api.openapi_document", "GET"): Case(
        "open", lambda w, t: api("GET", "api.openapi_document"), status=200),
}


# -- running a case ------------------------------------------------------------------------


@dataclass
class Caller:
    """Alpha's signed-in dashboard client and API token for one role."""

    role: str
    dashboard: Any
    api: Any
    secret: str

    def send(self, call: Call):
        if call.url.startswith("/admin/api/"):
            headers = {"Authorization": f"Bearer {self.secret}", **call.headers}
            return self.api.open(call.url, method=call.method, json=call.json,
                                 headers=headers)
        form = None
        if call.method == "POST":
            form = {**(call.form or {}), "csrf_token": self.dashboard.csrf}
        return self.dashboard.open(call.url, method=call.method, data=form,
                                   headers=call.headers)


def foreign_text(response, call: Call) -> list[str]:
    """The foreign markers in the answer that the request did not carry itself."""
    text = response.get_data(as_text=True) + " " + response.headers.get("Location", "")
    for supplied in call.supplied():
        if any(marker in supplied for marker in FOREIGN_MARKERS):
            text = text.replace(supplied, "")
    return [marker for marker in FOREIGN_MARKERS if marker in text]


def check_case(app: Flask, world: World, caller: Caller, key: tuple[str, str], case: Case,
               target: TenantObjects) -> list[str]:
    """Send the case's request for *target* as *caller*; return what went wrong."""
    own = target is world.alpha
    with app.test_request_context():
        builder = case.narrow if (case.narrow and not own) else case.build
        call = builder(world, target)
    before = state(app, world)
    response = caller.send(call)
    after = state(app, world)
    status = response.status_code
    where = f"{caller.role} {call.method} {call.url} ({'alpha' if own else 'bravo'}'s)"
    problems = []
    leaked = foreign_text(response, call)
    if leaked:
        problems.append(f"{where}: the answer shows {', '.join(leaked)}")
    changed_theirs = before[1] != after[1]
    if changed_theirs:
        problems.append(f"{where}: changed what is not alpha's: "
                        f"{sorted(before[1] ^ after[1], key=repr)[:4]}")
    writes = case.kind == "write"
    editor = caller.role == "tenant-editor"
    expected: set[int]
    if case.kind == "open":
        expected = {case.status or 200}
    elif case.kind in ("platform", "refused"):
        expected = {403}
    elif not own:
        # A question about another tenant's path: the dashboard answers that no visible rule
        # governs it (200), the API that it does not exist (404); neither describes the rule.
        expected = {200} if case.kind == "list" else {200, 404} if case.kind == "question" \
            else set(case.refused)
    elif writes or case.kind == "editor-read":
        expected = WRITE_SUCCESS if editor else {403}
    else:
        expected = {200}
    if status not in expected:
        problems.append(f"{where}: answered {status}, expected {sorted(expected)}")
    elif writes and not own and status == 200 and \
            case.refusal not in response.get_data(as_text=True):
        problems.append(f"{where}: answered 200 without saying {case.refusal!r}")
    if writes and own and editor:
        if before[0] == after[0]:
            problems.append(f"{where}: the write changed nothing of alpha's")
    elif before[0] != after[0]:
        problems.append(f"{where}: changed alpha's objects though it should not")
    if own and status == 200 and case.shows:
        body = response.get_data(as_text=True)
        missing = [name for name in case.shows if getattr(target, name) not in body]
        if missing:
            problems.append(f"{where}: the answer lacks alpha's {', '.join(missing)}")
    if case.kind == "question" and not own and CORS_HEADER in response.get_data(as_text=True):
        problems.append(f"{where}: the answer describes the CORS headers of a rule alpha "
                        "cannot see")
    return problems


@pytest.fixture
def world(app) -> World:
    return build_world(app)


@pytest.fixture
def callers(app, world, sign_in) -> list[Caller]:
    return [Caller(role, sign_in(role, tenant="alpha", email=f"{role}@alpha.example"),
                   app.test_client(), world.alpha.tokens[role])
            for role in TENANT_ROLES]


# -- the matrix ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(MATRIX), ids=[f"{e}:{m}" for e, m in MATRIX])
def test_a_tenant_role_reaches_its_own_tenant_and_nothing_of_another(app, world, callers,
                                                                     key):
    """Bravo's objects first (nothing may change), then alpha's: the viewer, whose writes
    are refused, before the editor, whose writes change (or delete) alpha's objects."""
    case = MATRIX[key]
    problems = []
    for caller in callers:
        problems += check_case(app, world, caller, key, case, world.bravo)
    for caller in callers:
        problems += check_case(app, world, caller, key, case, world.alpha)
    assert not problems, "\n".join(problems)


def test_every_dashboard_and_api_route_is_in_the_matrix(app):
    """A route added to the dashboard, the sign-in or the API fails here until it has a row
    in MATRIX (and so is called as each tenant role against both tenants)."""
    routes = {(rule.endpoint, method)
              for rule in app.url_map.iter_rules()
              if rule.endpoint.startswith(("admin.", "auth.", "api."))
              for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    assert routes - MATRIX.keys() == set(), "routes missing from MATRIX"
    assert MATRIX.keys() - routes == set(), "MATRIX rows for routes that no longer exist"


# -- beyond the matrix: admins, and the rule every tenant shares ------------------------------


def test_an_admin_sees_both_tenants_and_the_platform_everywhere(app, world, sign_in):
    admin = sign_in("admin")
    with app.app_context():
        secret = create_token("root-ci", "admin", actor=ADMIN).secret
    api_client = app.test_client()
    auth = {"Authorization": f"Bearer {secret}"}
    everyone = [world.alpha, world.bravo]
    pages = {
        "/admin/rules": [t.rule_path for t in everyone] + ["/api/zulu/*"],
        "/admin/log?since=30d": [t.refused_origin for t in everyone]
        + [t.shared_refused_origin for t in everyone] + ["https://zulu-unmatched.example"],
        "/admin/log.csv?since=30d": [t.refused_origin for t in everyone],
        "/admin/audit": [t.rule_path for t in everyone],
        "/admin/": [t.refused_origin for t in everyone],
        f"/admin/rules/{world.shared_rule_id}": [t.shared_origin for t in everyone]
        + ["https://zulu-shared.example"],
        "/admin/tenants": ["alpha", "bravo"],
        "/admin/tokens": ["alpha-ci", "bravo-ci"],
        "/admin/users": ["user@alpha.example", "user@bravo.example"],
    }
    for url, expected in pages.items():
        response = admin.get(url)
        assert response.status_code == 200, url
        body = response.get_data(as_text=True)
        assert [text for text in expected if text not in body] == [], url
    calls = {
        "/admin/api/v1/rules": [t.rule_path for t in everyone],
        "/admin/api/v1/log?since=30d": [t.refused_origin for t in everyone],
        "/admin/api/v1/audit": [t.rule_path for t in everyone],
        "/admin/api/v1/export": [t.shared_origin for t in everyone],
        "/admin/api/v1/tenants": ["alpha", "bravo"],
    }
    for url, expected in calls.items():
        response = api_client.get(url, headers=auth)
        assert response.status_code == 200, url
        body = response.get_data(as_text=True)
        assert [text for text in expected if text not in body] == [], url


@pytest.mark.parametrize("role", TENANT_ROLES)
def test_on_the_shared_rule_a_tenant_role_sees_only_its_own_allowlist(app, world, callers,
                                                                      role):
    caller = next(c for c in callers if c.role == role)
    shared = world.shared_rule_id
    with app.test_request_context():
        calls = [get("admin.rule", rule_id=shared),
                 api("GET", "api.rule", rule_id=shared),
                 api("GET", "api.origins", rule_id=shared)]
    for call in calls:
        response = caller.send(call)
        body = response.get_data(as_text=True)
        assert response.status_code == 200, call.url
        assert world.alpha.shared_origin in body, call.url
        if call is calls[0]:
            # The page shows the rule's shared origins, read-only: they apply to every tenant
            # (issue 11). Nothing else of the platform's, and nothing of another tenant's.
            shared_section, rest = split_section(body, "shared-origins")
            assert "https://zulu-shared.example" in shared_section
            assert "<form" not in shared_section
            response.set_data(rest)
        assert foreign_text(response, call) == [], call.url
    page = caller.send(calls[0]).get_data(as_text=True)
    # Its options are the platform's: shown, not offered for editing.
    assert url_for_in(app, "admin.rule_disable", rule_id=shared) not in page
    assert url_for_in(app, "admin.rule_delete", rule_id=shared) not in page
    assert "you manage your tenant's origins on it" in page


def split_section(body: str, section_id: str) -> tuple[str, str]:
    """The ``<section id=...>`` of *body*, and the body without it."""
    start = body.index(f'<section id="{section_id}"')
    end = body.index("</section>", start) + len("</section>")
    return body[start:end], body[:start] + body[end:]


def url_for_in(app: Flask, endpoint: str, **values) -> str:
    with app.test_request_context():
        return url_for(endpoint, **values)


def shared_origins(app: Flask, world: World) -> set[tuple[str, str | None]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(AllowedOrigin.value, Tenant.slug)
            .outerjoin(Tenant, AllowedOrigin.tenant_id == Tenant.id)
            .where(AllowedOrigin.rule_id == world.shared_rule_id)).all()
    return {(value, slug) for value, slug in rows}


def test_a_tenant_editor_changes_only_its_own_list_on_the_shared_rule(app, world, callers):
    editor = callers[1]
    shared = world.shared_rule_id
    with app.test_request_context():
        add = dashboard_post("admin.origin_add", {"value": world.alpha.new_origin,
                                                  "tenant": "bravo"}, rule_id=shared)
        remove_theirs = dashboard_post("admin.origin_remove", {
            "value": world.bravo.shared_origin, "tenant": "bravo"}, rule_id=shared)
        remove_platforms = api("DELETE", "api.origin_remove", rule_id=shared,
                               origin="https://zulu-shared.example")
        remove_own = dashboard_post("admin.origin_remove",
                                    {"value": world.alpha.shared_origin}, rule_id=shared)
    before = shared_origins(app, world)
    # Naming bravo's list is answered as any object of bravo's: it does not exist, and
    # nothing is written (before, the origin landed on alpha's list and the answer said
    # it had succeeded).
    for call in (add, remove_theirs):
        response = editor.send(call)
        assert response.status_code == 404, call.url
        assert "there is no tenant bravo" in response.get_data(as_text=True)
        assert foreign_text(response, call) == []
    assert shared_origins(app, world) == before
    assert editor.send(replace(add, form={"value": world.alpha.new_origin})).status_code == 302
    assert shared_origins(app, world) == before | {(world.alpha.new_origin, "alpha")}
    for call in (remove_platforms,):
        response = editor.send(call)
        assert response.status_code in (204, 302)
        assert foreign_text(response, call) == []
    assert (world.bravo.shared_origin, "bravo") in shared_origins(app, world)
    assert ("https://zulu-shared.example", None) in shared_origins(app, world)
    assert editor.send(remove_own).status_code == 302
    assert (world.alpha.shared_origin, "alpha") not in shared_origins(app, world)


def test_a_tenant_editor_cannot_change_disable_or_delete_the_shared_rule(app, world,
                                                                         callers):
    editor = callers[1]
    shared = world.shared_rule_id
    with app.test_request_context():
        calls = [rule_form(world, replace(world.alpha, rule_id=shared)),
                 dashboard_post("admin.rule_disable", rule_id=shared),
                 dashboard_post("admin.rule_delete", rule_id=shared),
                 api("PATCH", "api.rule_update", json={"mode": "off"}, rule_id=shared),
                 api("DELETE", "api.rule_delete", rule_id=shared)]
    before = state(app, world)
    for call in calls:
        response = editor.send(call)
        assert response.status_code == 403, call.url
        assert "belongs to the platform" in response.get_data(as_text=True), call.url
    assert state(app, world) == before


def test_a_tenant_editor_allows_from_the_log_only_on_its_own_rows(app, world, callers):
    editor = callers[1]
    with app.test_request_context():
        unmatched = db.session.scalar(sa.select(RequestLogEntry.id).where(
            RequestLogEntry.origin == "https://zulu-unmatched.example"))
        own = dashboard_post("admin.request_log_allow", entry_id=world.alpha.shared_log_id)
        theirs = dashboard_post("admin.request_log_allow", entry_id=world.bravo.shared_log_id)
        platforms = dashboard_post("admin.request_log_allow", entry_id=unmatched)
    before = state(app, world)
    for call in (theirs, platforms):
        response = editor.send(call)
        assert response.status_code == 404, call.url
        assert foreign_text(response, call) == []
    assert state(app, world) == before
    assert editor.send(own).status_code == 303
    assert (world.alpha.shared_refused_origin, "alpha") in shared_origins(app, world)


def test_an_admins_change_to_a_tenants_list_shows_in_its_audit_trail_without_the_others(
        app, world, callers):
    with app.app_context():
        add_origin(world.shared_rule_id, "https://alpha-by-admin.example", actor=ADMIN,
                   tenant="alpha")
    viewer = callers[0]
    with app.test_request_context():
        calls = [get("admin.audit"), api("GET", "api.audit")]
    for call in calls:
        response = viewer.send(call)
        body = response.get_data(as_text=True)
        assert "https://alpha-by-admin.example" in body, call.url
        assert foreign_text(response, call) == [], call.url


def test_a_tenant_editor_may_restore_its_own_rules_only(app, world, callers):
    editor = callers[1]
    page = editor.send(Call("GET", url_for_in(app, "admin.audit"))).get_data(as_text=True)
    restore = url_for_in(app, "admin.audit_restore", entry_id=world.alpha.audit_id)
    assert restore in page
    with app.app_context():
        shared_entry = db.session.scalar(sa.select(AuditEntry.id).where(
            AuditEntry.rule_id == world.shared_rule_id,
            AuditEntry.tenant_id == world.alpha.tenant_id))
    assert url_for_in(app, "admin.audit_restore", entry_id=shared_entry) not in page


def test_a_path_that_ties_with_another_tenants_rule_is_refused_without_naming_it(
        app, world, callers):
    editor = callers[1]
    # A platform rule inside alpha's namespace, which alpha's role cannot see: /api/alpha/x/*
    # ties with it on /api/alpha/x/zulu.
    with app.app_context():
        create_rule({"path": "/api/alpha/*/zulu", "origins": ["https://zulu.example"]},
                    actor=ADMIN)
    tied = "/api/alpha/x/*"
    with app.test_request_context():
        calls = [new_rule_form(tied), api("POST", "api.rule_create", json={"path": tied})]
    for call in calls:
        response = editor.send(call)
        assert response.status_code == 422, call.url
        assert "as a rule you cannot see" in response.get_data(as_text=True), call.url
        assert foreign_text(response, call) == [], call.url


def test_a_tenant_overview_counts_its_own_rules_and_origins_and_lists_no_processes(
        app, world, callers, sign_in):
    for caller in callers:
        page = caller.send(Call("GET", url_for_in(app, "admin.overview")))
        body = page.get_data(as_text=True)
        # Its rule and the shared rule; its origin and its own one on the shared rule.
        assert '<h2>Rules</h2>\n      <p class="stat">2</p>' in body
        assert '<h2>Origins</h2>\n      <p class="stat">2</p>' in body
        assert 'id="processes-heading"' not in body and "<h2>Tenants</h2>" not in body
    admin = sign_in("admin").get("/admin/").get_data(as_text=True)
    assert '<h2>Rules</h2>\n      <p class="stat">4</p>' in admin
    assert 'id="processes-heading"' in admin


# -- namespaces: which routes a tenant's rule may govern -----------------------------------

PLATFORM_FRONTEND = "https://zulu-frontend.example"
# What alpha's editor tries to govern: a platform route, a path in bravo's namespace, and a
# pattern wider than alpha's namespace (/api/alpha/*).
TAKEOVERS = ("/api/echo", "/api/bravo/orders", "/api/*")
PROBED_ROUTES = ("/api/echo", "/api/bravo/orders", "/api/orders", "/api/alpha/orders")


def takeover_calls(app: Flask, world: World, path: str) -> dict[str, Call]:
    """Every way a tenant role creates a rule or moves one, aimed at *path*."""
    alpha = world.alpha
    with app.test_request_context():
        # An entry recorded before tenants had namespaces: alpha's rule once had this path.
        entry = db.session.get_one(AuditEntry, alpha.audit_id)
        entry.before = {**entry.before, "path": path}
        db.session.commit()
        return {
            "dashboard create": new_rule_form(path),
            "dashboard move": rule_form(world, alpha, path=path),
            "dashboard restore": replace(
                dashboard_post("admin.audit_restore", {"state": "before"},
                               entry_id=alpha.audit_id), headers={"HX-Request": "true"}),
            "api create": api("POST", "api.rule_create",
                              json={"path": path, "origins": [alpha.origin]}),
            "api replace": api("PUT", "api.rule_replace", json={**rule_json(alpha),
                                                                "path": path},
                               headers=if_match(alpha), rule_id=alpha.rule_id),
            "api move": api("PATCH", "api.rule_update", json={"path": path},
                            rule_id=alpha.rule_id),
            "api import": api("POST", "api.import_", json={"rules": [{
                "path": path, "tenant": "alpha", "origins": [alpha.origin]}]}),
        }


def engine_answers(app: Flask) -> dict[tuple[str, str, str], tuple[int, str | None, str | None]]:
    """What the engine answers, over the app's test client, for each probed route and origin:
    an actual request and a preflight."""
    get_control(app).cache.refresh()
    client = app.test_client()
    answers = {}
    for path in PROBED_ROUTES:
        for origin in (PLATFORM_FRONTEND, "https://alpha.example", "https://bravo.example"):
            for method in ("GET", "OPTIONS"):
                headers = {"Origin": origin}
                if method == "OPTIONS":
                    headers["Access-Control-Request-Method"] = "GET"
                response = client.open(path, method=method, headers=headers)
                answers[(path, origin, method)] = (
                    response.status_code,
                    response.headers.get("Access-Control-Allow-Origin"),
                    response.headers.get("Access-Control-Allow-Credentials"))
    return answers


@pytest.mark.parametrize("path", TAKEOVERS)
def test_a_tenant_editor_cannot_govern_routes_outside_its_namespace_through_any_channel(
        app, world, callers, path):
    """The issue's takeover: alpha's editor aims a rule at a platform route, at bravo's
    namespace, or at a pattern wider than its own; every channel refuses, nothing is
    written, and the engine answers those routes as before, the platform's frontend
    included."""
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [PLATFORM_FRONTEND],
                     "supports_credentials": True}, actor=ADMIN)
    before_answers = engine_answers(app)
    assert before_answers[("/api/echo", PLATFORM_FRONTEND, "GET")][1] == PLATFORM_FRONTEND
    assert before_answers[("/api/echo", "https://alpha.example", "GET")][1] is None
    editor = callers[1]
    calls = takeover_calls(app, world, path)
    before = state(app, world)
    for channel, call in calls.items():
        response = editor.send(call)
        body = response.get_data(as_text=True)
        if channel == "api import":
            assert response.status_code == 403, channel  # tenant roles never import
            continue
        assert "namespaces of tenant alpha (/api/alpha/*)" in body, (channel, body[-800:])
        if channel == "dashboard restore":
            # The audit list shows alpha's own entry, whose path this test set to *path*.
            assert response.status_code == 200 and "Nothing was restored" in body, channel
            continue
        assert response.status_code == 422, (channel, response.status_code)
        assert foreign_text(response, call) == [], channel
    assert state(app, world) == before
    assert engine_answers(app) == before_answers


def test_an_admin_cannot_give_a_tenant_a_rule_outside_its_namespace_either(app, world):
    with app.app_context():
        for path in TAKEOVERS:
            with pytest.raises(ValidationError, match=r"namespaces of tenant alpha"):
                create_rule({"path": path, "tenant": "alpha"}, actor=ADMIN)
            with pytest.raises(ValidationError, match=r"namespaces of tenant alpha"):
                update_rule(world.alpha.rule_id, {"path": path}, actor=ADMIN)
        inside = create_rule({"path": "/api/alpha/orders", "tenant": "alpha"}, actor=ADMIN)
        assert inside.tenant_id == world.alpha.tenant_id


@pytest.mark.parametrize("field_name", ["tenant", "origin tenant"])
def test_naming_another_tenant_in_a_tenant_field_is_answered_404_not_rewritten(
        app, world, callers, field_name):
    editor = callers[1]
    with app.test_request_context():
        if field_name == "tenant":
            calls = [api("POST", "api.rule_create",
                         json={"path": "/api/alpha/x", "tenant": "bravo"}),
                     api("PATCH", "api.rule_update", json={"tenant": "bravo"},
                         rule_id=world.alpha.rule_id)]
        else:
            calls = [api("PUT", "api.origin_add", json={"tenant": "bravo"},
                         rule_id=world.shared_rule_id, origin=world.alpha.new_origin),
                     api("DELETE", "api.origin_remove", rule_id=world.shared_rule_id,
                         origin=world.bravo.shared_origin, tenant="bravo")]
    before = state(app, world)
    for call in calls:
        response = editor.send(call)
        assert response.status_code == 404, call.url
        assert response.get_json()["detail"] == "there is no tenant bravo"
    assert state(app, world) == before
