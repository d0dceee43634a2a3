"""The impact of a change before it is saved (app/services/impact.py): which routes move from
one rule to another and what stops applying on them, measured by the engine's own compile
and lookup, for every kind of change, without writing anything."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Rule
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.impact import RuleFacts, measure, rehearse
from app.services.policy import create_rule, delete_rule, import_policy, update_rule
from app.services.tenants import create_tenant
from cors_control.snapshot import OriginEntry, RuleSpec

ADMIN = Actor("alice", "dashboard")
ROUTES = ["/api/orders", "/api/echo", "/api/public/status", "/health"]


def _facts(rule_id: int, path: str, *origins: str, **options) -> RuleFacts:
    return RuleFacts(RuleSpec(path=path, rule_id=rule_id,
                              origins=tuple(OriginEntry(o) for o in origins), **options))


def test_a_narrower_rule_takes_a_route_and_its_origins_are_listed_as_lost():
    broad = _facts(1, "/api/*", "https://a.example.com", "https://b.example.com")
    narrow = _facts(2, "/api/orders", "https://shop.example.com", supports_credentials=True,
                    methods=("GET",))
    impact = measure({1: broad}, {1: broad, 2: narrow}, routes=ROUTES)
    assert [r.route for r in impact.routes] == ["/api/orders"]
    route = impact.routes[0]
    assert route.moves and route.before.path == "/api/*" and route.after.path == "/api/orders"
    assert route.lost.origin_texts() == ["https://a.example.com", "https://b.example.com"]
    assert "DELETE" in route.lost.methods and "GET" not in route.lost.methods
    assert route.gained.origin_texts() == ["https://shop.example.com"]
    assert route.gained.credentials and not route.lost.credentials
    assert impact.takes_away
    assert impact.losses()[0].startswith("/api/orders: origin https://a.example.com")
    offer, = impact.offers
    assert offer.rule.path == "/api/*" and offer.origins == ("https://a.example.com",
                                                             "https://b.example.com")


def test_no_change_no_impact_and_a_widening_takes_nothing_away():
    broad = _facts(1, "/api/*", "https://a.example.com")
    assert measure({1: broad}, {1: broad}, routes=ROUTES).routes == ()
    wider = _facts(1, "/api/*", "https://a.example.com", "https://b.example.com")
    impact = measure({1: broad}, {1: wider}, routes=ROUTES)
    assert not impact.takes_away
    assert {r.route for r in impact.routes} == {"/api/orders", "/api/echo",
                                                "/api/public/status"}
    assert all(r.gained.origin_texts() == ["https://b.example.com"] for r in impact.routes)


def test_an_origin_still_allowed_by_a_wildcard_is_not_lost():
    before = _facts(1, "/api/*", "https://app.example.com")
    after = _facts(1, "/api/*", "https://*.example.com")
    impact = measure({1: before}, {1: after}, routes=ROUTES)
    assert not impact.takes_away


def test_a_rule_pattern_no_app_route_matches_is_looked_at_too():
    impact = measure({}, {3: _facts(3, "/internal/*", "https://a.example.com")}, routes=ROUTES)
    route, = impact.routes
    assert route.route == "/internal/*" and route.sample == "/internal/x"
    assert not route.app_route and route.before is None


def test_switching_a_rule_to_report_only_hands_its_routes_to_the_next_rule():
    broad = _facts(1, "/api/*", "https://a.example.com")
    narrow = _facts(2, "/api/orders", "https://shop.example.com")
    watched = _facts(2, "/api/orders", "https://shop.example.com", mode="report-only")
    impact = measure({1: broad, 2: narrow}, {1: broad, 2: watched}, routes=ROUTES)
    route, = impact.routes
    assert route.before.path == "/api/orders" and route.after.path == "/api/*"
    assert route.lost.origin_texts() == ["https://shop.example.com"]


def test_a_tenant_role_never_sees_platform_rules_or_their_origins():
    platform = _facts(1, "/api/*", "https://secret.example.com")
    mine = RuleFacts(RuleSpec(path="/api/t/acme/*", rule_id=2,
                              origins=(OriginEntry("https://acme.example.com"),)),
                     tenant_id=7, tenant_slug="acme")
    tenant = Actor("t", "dashboard", "tenant-editor", tenant_id=7)
    impact = measure({1: platform}, {1: platform, 2: mine},
                     routes=["/api/t/<tenant>/orders"], actor=tenant)
    route, = impact.routes
    assert route.before.text == "a platform rule" and route.before.as_dict()["path"] is None
    assert route.lost.origins == () and route.lost.hidden == 1
    assert "secret" not in str(impact.as_dict())
    assert impact.offers == ()
    assert route.after.text == "/api/t/acme/*"


# -- rehearsing the real write path ----------------------------------------------------------


def test_rehearsing_a_create_writes_nothing_and_names_what_it_takes(app):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": ["https://a.example.com"]}, actor=ADMIN)
        version = policy_version()
        entries = db.session.scalar(sa.select(sa.func.count(AuditEntry.id)))
        impact = rehearse(lambda: create_rule(
            {"path": "/api/orders", "origins": ["https://shop.example.com"]}, actor=ADMIN),
            actor=ADMIN)
        assert policy_version() == version
        assert db.session.scalar(sa.select(sa.func.count(AuditEntry.id))) == entries
        assert db.session.scalar(sa.select(Rule).where(Rule.path == "/api/orders")) is None
        route, = impact.routes
        assert route.route == "/api/orders"  # the demo app's own route
        assert route.lost.origin_texts() == ["https://a.example.com"]


def test_rehearsing_a_delete_update_and_import(app):
    with app.app_context():
        broad = create_rule({"path": "/api/*", "origins": ["https://a.example.com"]},
                            actor=ADMIN)
        narrow = create_rule({"path": "/api/orders", "origins": ["https://s.example.com"],
                              "supports_credentials": True}, actor=ADMIN)
        impact = rehearse(lambda: delete_rule(narrow.id, actor=ADMIN), actor=ADMIN)
        route, = impact.routes
        assert route.after.path == "/api/*" and route.lost.credentials
        assert route.lost.origin_texts() == ["https://s.example.com"]
        impact = rehearse(lambda: update_rule(broad.id, {"methods": ["GET"]}, actor=ADMIN),
                          actor=ADMIN)
        assert {r.route for r in impact.routes} >= {"/api/echo", "/api/public/status"}
        assert "POST" in impact.routes[0].lost.methods
        impact = rehearse(lambda: import_policy({"rules": [{"path": "/api/*"}]}, actor=ADMIN,
                                                replace=True), actor=ADMIN)
        assert any(r.route == "/api/orders" and r.lost.credentials for r in impact.routes)
        assert db.session.get(Rule, narrow.id) is not None


def test_rehearsing_refuses_what_saving_would_refuse(app):
    from app.services.errors import ValidationError
    with app.app_context():
        create_rule({"path": "/api/*"}, actor=ADMIN)
        with pytest.raises(ValidationError):
            rehearse(lambda: create_rule({"path": "/api/*"}, actor=ADMIN), actor=ADMIN)


def test_per_tenant_origins_count(app):
    with app.app_context():
        create_tenant("acme", "Acme", actor=ADMIN)
        rule = create_rule({"path": "/api/t/*/orders", "origins": [
            {"value": "https://acme.example.com", "tenant": "acme"}],
            "tenant_selector": {"source": "view-arg", "key": "tenant"}},
            actor=ADMIN)
        impact = rehearse(lambda: delete_rule(rule.id, actor=ADMIN), actor=ADMIN)
        route, = impact.routes
        assert route.lost.origin_texts() == ["https://acme.example.com (tenant acme)"]
