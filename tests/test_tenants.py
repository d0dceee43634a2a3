"""Tenants: one rule selecting a per-tenant allowlist, scoped roles, expiring origins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import Headers

from app.extensions import db
from app.models import AllowedOrigin, AuditEntry, Tenant
from app.services.access import Actor
from app.services.errors import Forbidden, NotFound, ValidationError
from app.services.policy import (
    add_origin,
    create_rule,
    import_policy,
    purge_expired_origins,
    update_rule,
)
from app.services.policy_read import export_policy, get_rule, rule_to_dict
from app.services.tenants import create_tenant
from cors_control.decision import decide
from cors_control.snapshot import OriginEntry, RuleSpec, compile_policy

ADMIN = Actor("admin@example.com", "dashboard")
ACME = "https://app.acme.example"
GLOBEX = "https://app.globex.example"


def _selecting(source: str, key: str, unknown: str = "refuse") -> RuleSpec:
    return RuleSpec(
        path="/api/t/*/orders",
        origins=(OriginEntry(ACME, tenant="acme"), OriginEntry(GLOBEX, tenant="globex"),
                 OriginEntry("https://platform.example")),
        tenant_source=source, tenant_key=key, unknown_tenant=unknown)


@pytest.mark.parametrize(
    ("source", "key", "request_for"),
    [
        ("view-arg", "tenant", lambda t: ({}, {"tenant": t})),
        ("header", "X-Tenant", lambda t: ({"X-Tenant": t}, None)),
        ("subdomain", "api.example.com", lambda t: ({"Host": f"{t}.api.example.com:8443"},
                                                    None)),
    ],
)
def test_each_tenant_gets_its_own_allowlist(source, key, request_for):
    snapshot = compile_policy(1, [_selecting(source, key)], tenants=["acme", "globex"])

    def ask(tenant: str, origin: str):
        extra, route_args = request_for(tenant)
        return decide(snapshot, "GET", "/api/t/x/orders", Headers({"Origin": origin, **extra}),
                      route_args=route_args)

    assert ask("acme", ACME).allowed
    assert ask("acme", ACME).tenant == "acme"
    assert not ask("acme", GLOBEX).allowed  # another tenant's origin
    assert ask("globex", GLOBEX).allowed
    assert ask("globex", "https://platform.example").allowed  # shared entries apply to all
    unknown = ask("initech", ACME)
    assert (unknown.allowed, unknown.reason, unknown.detail) == (
        False, "unknown-tenant", "initech")


def test_unknown_tenant_can_fall_back_to_the_shared_allowlist():
    snapshot = compile_policy(1, [_selecting("header", "X-Tenant", "shared")],
                              tenants=["acme"])
    headers = {"X-Tenant": "initech"}
    assert decide(snapshot, "GET", "/api/t/x/orders",
                  Headers({"Origin": "https://platform.example", **headers})).allowed
    refused = decide(snapshot, "GET", "/api/t/x/orders", Headers({"Origin": ACME, **headers}))
    assert refused.reason == "origin-not-allowed"


def test_a_request_that_names_no_tenant_is_an_unknown_tenant():
    snapshot = compile_policy(1, [_selecting("header", "X-Tenant")], tenants=["acme"])
    decision = decide(snapshot, "GET", "/api/t/x/orders", Headers({"Origin": ACME}))
    assert decision.reason == "unknown-tenant" and decision.detail == "(none)"


def test_an_origin_stops_matching_at_the_exact_moment_it_expires():
    expiry = 2_000_000_000.0
    snapshot = compile_policy(1, [RuleSpec(path="/api/*", origins=(
        OriginEntry("https://preview.example.com", expires_at=expiry),))])
    headers = Headers({"Origin": "https://preview.example.com"})
    assert decide(snapshot, "GET", "/api/x", headers, now=expiry - 0.001).allowed
    assert not decide(snapshot, "GET", "/api/x", headers, now=expiry).allowed


@pytest.fixture
def tenants(app):
    with app.app_context():
        acme = create_tenant("acme", "Acme", paths=["/api/acme/*"], actor=ADMIN).id
        globex = create_tenant("globex", "Globex", paths=["/api/globex/*"], actor=ADMIN).id
    return acme, globex


def _shared_rule(app) -> int:
    with app.app_context():
        return create_rule({
            "path": "/api/t/*/orders",
            "tenant_selector": {"source": "view-arg", "key": "tenant"},
            "origins": [{"value": ACME, "tenant": "acme"}, {"value": GLOBEX, "tenant": "globex"},
                        "https://platform.example"],
        }, actor=ADMIN).id


def test_the_tenant_route_serves_each_tenant_its_allowlist_over_http(app, client, tenants):
    _shared_rule(app)
    from cors_control import get_control

    get_control(app).cache.refresh()
    allowed = client.get("/api/t/acme/orders", headers={"Origin": ACME})
    assert allowed.headers["Access-Control-Allow-Origin"] == ACME
    crossed = client.get("/api/t/globex/orders", headers={"Origin": ACME})
    assert "Access-Control-Allow-Origin" not in crossed.headers
    unknown = client.options("/api/t/initech/orders", headers={
        "Origin": ACME, "Access-Control-Request-Method": "GET"})
    assert unknown.status_code == 403 and b"unknown-tenant" in unknown.data


PLATFORM = "https://platform.example"
STRANGER = "https://stranger.example.net"


@pytest.fixture
def header_client(app, client, tenants):
    """A client of the app serving /api/* with the tenant taken from ``X-Tenant``."""
    from cors_control import get_control

    with app.app_context():
        create_rule({
            "path": "/api/*", "supports_credentials": True, "methods": ["GET", "PUT"],
            "allow_headers": ["x-tenant", "content-type"],
            "tenant_selector": {"source": "header", "key": "X-Tenant", "unknown": "refuse"},
            "origins": [{"value": ACME, "tenant": "acme"}, {"value": GLOBEX, "tenant": "globex"},
                        PLATFORM],
        }, actor=ADMIN)
    get_control(app).cache.refresh()
    return client


def _header_preflight(client, origin: str):
    """A browser's preflight for ``PUT`` with ``X-Tenant``: it names the header, not its value."""
    return client.options("/api/echo", headers={
        "Origin": origin, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type,x-tenant"})


@pytest.mark.parametrize("origin", [ACME, GLOBEX, PLATFORM], ids=["acme", "globex", "shared"])
def test_a_preflight_on_a_header_selected_rule_passes_for_any_tenants_origin(
    header_client, origin
):
    response = _header_preflight(header_client, origin)
    assert response.status_code == 204
    assert response.headers.getlist("Access-Control-Allow-Origin") == [origin]
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert response.headers["Access-Control-Allow-Headers"] == "content-type, x-tenant"


def test_a_preflight_on_a_header_selected_rule_refuses_an_origin_of_no_tenant(header_client):
    response = _header_preflight(header_client, STRANGER)
    assert response.status_code == 403 and b"origin-not-allowed" in response.data
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("origin", "tenant", "allowed"),
    [(ACME, "acme", True), (GLOBEX, "globex", True), (PLATFORM, "acme", True),
     (GLOBEX, "acme", False), (ACME, "globex", False), (ACME, None, False),
     (ACME, "initech", False)],
    ids=["acme", "globex", "shared", "globex-as-acme", "acme-as-globex", "no-tenant",
         "unknown-tenant"],
)
def test_after_the_preflight_the_actual_request_is_decided_for_its_tenant(
    header_client, origin, tenant, allowed
):
    assert _header_preflight(header_client, origin).status_code == 204
    headers = {"Origin": origin} | ({"X-Tenant": tenant} if tenant else {})
    response = header_client.put("/api/echo", headers=headers)
    assert response.headers.getlist("Access-Control-Allow-Origin") == (
        [origin] if allowed else [])


def test_a_view_arg_tenant_preflight_is_still_decided_for_the_tenant_in_the_path(
    app, client, tenants
):
    from cors_control import get_control

    _shared_rule(app)
    get_control(app).cache.refresh()
    crossed = client.options("/api/t/globex/orders", headers={
        "Origin": ACME, "Access-Control-Request-Method": "GET"})
    assert crossed.status_code == 403 and b"origin-not-allowed" in crossed.data


def test_a_tenant_editor_changes_only_its_own_allowlist_on_a_shared_rule(app, tenants):
    acme_id, globex_id = tenants
    rule_id = _shared_rule(app)
    acme_editor = Actor("ed@acme.example", "api", "tenant-editor", acme_id)
    with app.app_context():
        with pytest.raises(NotFound, match="there is no tenant globex"):
            add_origin(rule_id, "https://new.acme.example", actor=acme_editor,
                       tenant="globex")  # refused as any object of another tenant
        origin, created = add_origin(rule_id, "https://new.acme.example", actor=acme_editor)
        assert created and origin.tenant_id == acme_id
        seen = rule_to_dict(get_rule(rule_id, acme_editor), acme_editor)["origins"]
        assert {o["value"] for o in seen} == {ACME, "https://new.acme.example"}
        with pytest.raises(Forbidden):
            update_rule(rule_id, {"max_age": 5}, actor=acme_editor)
        entry = db.session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "origin.add")).one()
        assert entry.tenant_id == acme_id and entry.actor == "ed@acme.example"


def test_another_tenants_rule_does_not_exist_for_a_tenant_role(app, tenants):
    acme_id, globex_id = tenants
    globex_editor = Actor("ed@globex.example", "api", "tenant-editor", globex_id)
    acme_editor = Actor("ed@acme.example", "api", "tenant-editor", acme_id)
    with app.app_context():
        rule = create_rule({"path": "/api/acme/*", "origins": [ACME]}, actor=acme_editor)
        assert rule.tenant_id == acme_id
        rule_id = rule.id
        with pytest.raises(NotFound):
            get_rule(rule_id, globex_editor)
        with pytest.raises(NotFound):
            add_origin(rule_id, GLOBEX, actor=globex_editor)
        assert [r["path"] for r in export_policy(globex_editor)["rules"]] == []
        assert export_policy(globex_editor)["tenants"] == [{"slug": "globex",
                                                            "name": "Globex",
                                                            "paths": ["/api/globex/*"]}]


def test_viewer_roles_cannot_write(app, tenants):
    acme_id, _ = tenants
    with app.app_context():
        for actor in (Actor("v", "api", "viewer"), Actor("tv", "api", "tenant-viewer", acme_id)):
            with pytest.raises(Forbidden):
                create_rule({"path": "/api/v/*"}, actor=actor)


def test_a_tenant_role_cannot_create_a_tenant_selecting_rule(app, tenants):
    acme_id, _ = tenants
    with app.app_context(), pytest.raises(ValidationError) as caught:
        create_rule({"path": "/api/x/*", "tenant_selector": {"source": "header",
                                                              "key": "X-Tenant"}},
                    actor=Actor("e", "api", "tenant-editor", acme_id))
    assert caught.value.errors[0].field == "tenant_selector"


def test_tenant_selector_and_origin_tenants_are_validated(app, tenants):
    with app.app_context():
        with pytest.raises(ValidationError) as caught:
            create_rule({"path": "/api/*", "origins": [{"value": ACME, "tenant": "acme"}]},
                        actor=ADMIN)
        assert caught.value.errors[0].field == "origins[0].tenant"
        with pytest.raises(ValidationError) as caught:
            create_rule({"path": "/api/*", "tenant_selector": {"source": "cookie"}},
                        actor=ADMIN)
        assert caught.value.errors[0].field == "tenant_selector.source"
        with pytest.raises(ValidationError) as caught:
            create_rule({"path": "/api/*", "tenant_selector": {"source": "header", "key": ""},
                         "origins": [{"value": ACME, "tenant": "nobody"}]}, actor=ADMIN)
        assert {e.field for e in caught.value.errors} >= {"tenant_selector.key"}


def test_import_round_trip_with_tenants_and_expiries(app):
    document = {
        "tenants": [{"slug": "acme", "name": "Acme", "paths": ["/api/acme/*"]}],
        "rules": [{
            "path": "/api/t/*/orders",
            "tenant_selector": {"source": "view-arg", "key": "tenant", "unknown": "shared"},
            "origins": [
                "https://platform.example",
                {"value": ACME, "tenant": "acme", "expires_at": "2031-01-01T00:00:00Z",
                 "note": "preview"},
            ],
        }, {"path": "/api/acme/*", "tenant": "acme", "origins": [ACME]}],
    }
    with app.app_context():
        result = import_policy(document, actor=ADMIN)
        assert result.tenants_added == ["acme"]
        exported = export_policy()
        assert exported["tenants"] == [{"slug": "acme", "name": "Acme",
                                        "paths": ["/api/acme/*"]}]
        shared = next(r for r in exported["rules"] if r["path"] == "/api/t/*/orders")
        assert shared["tenant_selector"] == {"source": "view-arg", "key": "tenant",
                                             "unknown": "shared"}
        assert {"value": ACME, "tenant": "acme", "expires_at": "2031-01-01T00:00:00Z",
                "note": "preview"} in shared["origins"]
        again = import_policy(exported, actor=ADMIN, dry_run=True)
        assert not again.has_changes
        assert export_policy() == exported


def test_long_expired_origins_are_purged_and_audited(app):
    now = datetime.now(UTC)
    with app.app_context():
        rule = create_rule({"path": "/api/*", "origins": [
            {"value": "https://old.example.com", "expires_at": (now - timedelta(days=40))
             .isoformat()},
            {"value": "https://recent.example.com", "expires_at": (now - timedelta(days=1))
             .isoformat()},
            "https://kept.example.com"]}, actor=ADMIN)
        assert purge_expired_origins(30) == 1
        values = set(db.session.scalars(sa.select(AllowedOrigin.value)
                                        .where(AllowedOrigin.rule_id == rule.id)))
        assert values == {"https://recent.example.com", "https://kept.example.com"}
        assert db.session.scalars(sa.select(AuditEntry.action)
                                  .where(AuditEntry.action == "origin.expire")).one()


def test_a_new_tenant_is_known_to_the_engine_after_the_next_reload(app, client):
    from cors_control import get_control

    with app.app_context():
        create_rule({"path": "/api/t/*/orders",
                     "tenant_selector": {"source": "view-arg", "key": "tenant"}}, actor=ADMIN)
    get_control(app).cache.refresh()
    first = client.options("/api/t/acme/orders", headers={
        "Origin": ACME, "Access-Control-Request-Method": "GET"})
    assert b"unknown-tenant" in first.data
    with app.app_context():
        create_tenant("acme", actor=ADMIN)
        assert db.session.scalar(sa.select(sa.func.count(Tenant.id))) == 1
    get_control(app).cache.refresh()
    second = client.options("/api/t/acme/orders", headers={
        "Origin": ACME, "Access-Control-Request-Method": "GET"})
    assert b"origin-not-allowed" in second.data
