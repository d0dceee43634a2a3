"""Shared origin lists: the engine merges them into each rule; the services change every rule
that uses a list in one change; who may use and change which list."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, OriginList, RuleOriginList
from app.services import origin_lists as lists
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.errors import Conflict, Forbidden, NotFound, ValidationError
from app.services.policy import create_rule, delete_rule, update_rule
from app.services.tenants import create_tenant
from cors_control import OriginEntry, OriginListSpec, RuleSpec, compile_policy, decide, get_control

ADMIN = Actor("admin@example.com", "dashboard")
FRONT = "https://front.example.com"
PARTNER = "https://partner.example.net"


# -- the engine --------------------------------------------------------------------------------


def _allowed(snapshot, path: str, origin: str) -> bool:
    return decide(snapshot, "GET", path, {"Origin": origin}).allowed


def test_a_rule_allows_the_origins_of_its_lists_beside_its_own():
    frontends = OriginListSpec("frontends", (OriginEntry(FRONT),))
    snapshot = compile_policy(1, [
        RuleSpec("/api/*", origins=(OriginEntry("https://own.example.com"),),
                 origin_lists=(frontends,)),
        RuleSpec("/api/orders", origin_lists=(frontends,)),
        RuleSpec("/api/public/*"),
    ])
    assert _allowed(snapshot, "/api/echo", FRONT)
    assert _allowed(snapshot, "/api/echo", "https://own.example.com")
    assert _allowed(snapshot, "/api/orders", FRONT)
    assert not _allowed(snapshot, "/api/orders", "https://own.example.com")
    assert not _allowed(snapshot, "/api/public/status", FRONT)


def test_an_expired_list_origin_stops_matching():
    expired = OriginListSpec("old", (OriginEntry(FRONT, expires_at=100.0),))
    snapshot = compile_policy(1, [RuleSpec("/api/*", origin_lists=(expired,))])
    rule = snapshot.rule_for("/api/x")
    assert rule is not None
    assert rule.origins.allows(FRONT, now=99.0)
    assert not rule.origins.allows(FRONT, now=100.0)


def test_on_a_tenant_selecting_rule_a_tenants_list_applies_to_that_tenant_only():
    acme = OriginListSpec("shops", (OriginEntry("https://shop.acme.example"),), tenant="acme")
    platform = OriginListSpec("frontends", (OriginEntry(FRONT),))
    snapshot = compile_policy(1, [RuleSpec(
        "/api/t/*/orders", tenant_source="view-arg", tenant_key="tenant",
        origin_lists=(acme, platform))], tenants=["acme", "globex"])
    rule = snapshot.rule_for("/api/t/acme/orders")
    assert rule is not None
    assert rule.tenant_origins["acme"].allows("https://shop.acme.example")
    assert "globex" not in rule.tenant_origins
    assert rule.origins.allows(FRONT)  # a platform list is shared by every tenant
    assert not rule.origins.allows("https://shop.acme.example")


# -- the services ------------------------------------------------------------------------------


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def _rules(*paths: str) -> list[int]:
    return [create_rule({"path": path}, actor=ADMIN).id for path in paths]


def test_adding_to_a_list_changes_every_rule_in_one_version_and_one_audit_entry(ctx):
    ids = _rules("/api/*", "/api/orders", "/api/public/*")
    frontends = lists.create_list({"name": "frontends", "origins": [FRONT]}, actor=ADMIN)
    for rule_id in ids[:2]:
        lists.attach_list(rule_id, "frontends", actor=ADMIN)
    before_version = policy_version()
    before_entries = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    entry, created = lists.add_origin_to_list(ADMIN, frontends, PARTNER)
    assert created and entry.value == PARTNER
    assert policy_version() == before_version + 1
    entries = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
    assert len(entries) == before_entries + 1
    assert entries[-1].action == "list.add"
    assert "/api/*" in entries[-1].summary and "/api/orders" in entries[-1].summary
    assert "/api/public/*" not in entries[-1].summary
    # Adding it again changes nothing.
    assert lists.add_origin_to_list(ADMIN, frontends, PARTNER)[1] is False
    assert policy_version() == before_version + 1


def test_the_engine_serves_a_list_change_without_a_restart(app, client):
    with app.app_context():
        rule_id = _rules("/api/*")[0]
        lists.create_list({"name": "frontends"}, actor=ADMIN)
        lists.attach_list(rule_id, "frontends", actor=ADMIN)
    get_control(app).cache.refresh()
    refused = client.get("/api/echo", headers={"Origin": FRONT})
    assert "Access-Control-Allow-Origin" not in refused.headers
    with app.app_context():
        lists.add_origin_to_list(ADMIN, "frontends", FRONT)
    get_control(app).cache.refresh()
    allowed = client.get("/api/echo", headers={"Origin": FRONT})
    assert allowed.headers["Access-Control-Allow-Origin"] == FRONT
    with app.app_context():
        assert lists.remove_origin_from_list(ADMIN, "frontends", FRONT)
    get_control(app).cache.refresh()
    assert "Access-Control-Allow-Origin" not in client.get(
        "/api/echo", headers={"Origin": FRONT}).headers


def test_an_origin_on_a_list_is_validated_as_on_a_rule(ctx):
    lists.create_list({"name": "frontends"}, actor=ADMIN)
    with pytest.raises(ValidationError) as caught:
        lists.add_origin_to_list(ADMIN, "frontends", "https://app.example.com/")
    assert caught.value.errors[0].field == "origin"
    with pytest.raises(ValidationError):
        lists.add_origin_to_list(ADMIN, "frontends", "https://*.com")
    with pytest.raises(ValidationError) as bad_name:
        lists.create_list({"name": "Front Ends"}, actor=ADMIN)
    assert bad_name.value.errors[0].field == "name"


def test_any_origin_is_refused_on_a_list_a_credentials_rule_uses(ctx):
    (rule_id,) = [create_rule({"path": "/api/*", "supports_credentials": True},
                              actor=ADMIN).id]
    lists.create_list({"name": "frontends", "origins": [FRONT]}, actor=ADMIN)
    lists.attach_list(rule_id, "frontends", actor=ADMIN)
    with pytest.raises(ValidationError) as caught:
        lists.add_origin_to_list(ADMIN, "frontends", "*")
    assert "/api/*" in caught.value.errors[0].message
    # And a list that allows "*" cannot be attached to it, nor the rule switched to credentials.
    lists.create_list({"name": "everyone", "origins": ["*"]}, actor=ADMIN)
    with pytest.raises(ValidationError):
        lists.attach_list(rule_id, "everyone", actor=ADMIN)
    (plain,) = _rules("/api/public/*")
    lists.attach_list(plain, "everyone", actor=ADMIN)
    with pytest.raises(ValidationError) as credentials:
        update_rule(plain, {"supports_credentials": True}, actor=ADMIN)
    assert credentials.value.errors[0].field == "supports_credentials"


def test_deleting_a_list_in_use_is_refused_naming_the_rules_unless_confirmed(ctx):
    ids = _rules("/api/*", "/api/orders")
    lists.create_list({"name": "frontends", "origins": [FRONT]}, actor=ADMIN)
    for rule_id in ids:
        lists.attach_list(rule_id, "frontends", actor=ADMIN)
    with pytest.raises(Conflict) as caught:
        lists.delete_list("frontends", actor=ADMIN)
    assert "/api/*" in str(caught.value) and "/api/orders" in str(caught.value)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OriginList)) == 1
    version = policy_version()
    assert lists.delete_list("frontends", actor=ADMIN, detach=True) == ["/api/*", "/api/orders"]
    assert policy_version() == version + 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RuleOriginList)) == 0


def test_deleting_a_rule_forgets_its_use_of_a_list(ctx):
    (rule_id,) = _rules("/api/*")
    lists.create_list({"name": "frontends"}, actor=ADMIN)
    lists.attach_list(rule_id, "frontends", actor=ADMIN)
    delete_rule(rule_id, actor=ADMIN)
    assert lists.delete_list("frontends", actor=ADMIN) == []


def test_list_names_are_unique_per_owner(ctx):
    create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=ADMIN)
    lists.create_list({"name": "frontends"}, actor=ADMIN)
    lists.create_list({"name": "frontends", "tenant": "acme"}, actor=ADMIN)
    with pytest.raises(Conflict):
        lists.create_list({"name": "frontends"}, actor=ADMIN)


# -- tenants -----------------------------------------------------------------------------------


@pytest.fixture
def tenants(ctx):
    acme = create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=ADMIN)
    globex = create_tenant("globex", "Globex", paths=["/api/t/globex/*"], actor=ADMIN)
    return (Actor("ed@acme.example", "api", "tenant-editor", acme.id),
            Actor("ed@globex.example", "api", "tenant-editor", globex.id))


def test_a_tenant_role_sees_its_lists_and_the_platforms_and_changes_only_its_own(tenants):
    acme, globex = tenants
    platform = lists.create_list({"name": "frontends", "origins": [FRONT]}, actor=ADMIN)
    theirs = lists.create_list({"name": "shops", "tenant": "globex"}, actor=ADMIN)
    own = lists.create_list({"name": "shops"}, actor=acme)
    assert own.tenant_id == acme.tenant_id
    assert {o.name for o in lists.list_lists(acme)} == {"frontends", "shops"}
    assert {o.id for o in lists.list_lists(acme)} == {platform.id, own.id}
    with pytest.raises(NotFound):
        lists.get_list(theirs.id, acme)
    with pytest.raises(NotFound):
        lists.add_origin_to_list(acme, theirs.id, PARTNER)
    with pytest.raises(Forbidden):
        lists.add_origin_to_list(acme, platform.id, PARTNER)
    with pytest.raises(Forbidden):
        lists.delete_list(platform.id, actor=acme)
    with pytest.raises(NotFound):
        lists.create_list({"name": "x", "tenant": "globex"}, actor=acme)
    assert lists.add_origin_to_list(acme, own.id, PARTNER)[1]
    viewer = Actor("v@acme.example", "api", "tenant-viewer", acme.tenant_id)
    with pytest.raises(Forbidden):
        lists.add_origin_to_list(viewer, own.id, "https://other.example.org")


def test_a_platform_rule_uses_only_platform_lists_and_a_tenants_rule_its_own_too(tenants):
    acme, globex = tenants
    platform_rule = create_rule({"path": "/api/*"}, actor=ADMIN)
    acme_rule = create_rule({"path": "/api/t/acme/*"}, actor=acme)
    lists.create_list({"name": "frontends", "origins": [FRONT]}, actor=ADMIN)
    own = lists.create_list({"name": "shops", "origins": [PARTNER]}, actor=acme)
    theirs = lists.create_list({"name": "shops"}, actor=globex)
    with pytest.raises(ValidationError) as caught:
        lists.attach_list(platform_rule.id, own.id, actor=ADMIN)
    assert "platform" in caught.value.errors[0].message
    with pytest.raises(ValidationError):
        lists.attach_list(acme_rule.id, theirs.id, actor=ADMIN)
    with pytest.raises(NotFound):
        lists.attach_list(acme_rule.id, theirs.id, actor=acme)
    with pytest.raises(NotFound):  # a platform rule outside the tenant's view
        lists.attach_list(platform_rule.id, "frontends", actor=acme)
    shared = create_rule({"path": "/api/s/*/orders",
                          "tenant_selector": {"source": "view-arg", "key": "tenant"}},
                         actor=ADMIN)
    with pytest.raises(Forbidden):  # one it sees: only its owner chooses the lists it uses
        lists.attach_list(shared.id, "frontends", actor=acme)
    lists.attach_list(acme_rule.id, "frontends", actor=acme)
    lists.attach_list(acme_rule.id, "shops", actor=acme)
    assert lists.list_names_of_rule(db.session.get(type(acme_rule), acme_rule.id)) == [
        "frontends", "shops"]


def test_deleting_a_tenant_deletes_its_lists(tenants):
    acme, _globex = tenants
    lists.create_list({"name": "shops", "origins": [PARTNER]}, actor=acme)
    from app.services.tenants import delete_tenant

    delete_tenant("acme", actor=ADMIN)
    assert [o.name for o in lists.list_lists()] == []
