"""The access rules come in two forms, SQL conditions for queries and predicates for loaded
objects; both must give every actor the same answer."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AllowedOrigin, Rule, Tenant
from app.services.access import (
    WRITER_ROLES,
    Actor,
    can_change_options,
    require_data_plane,
    require_not_data_plane,
    sees,
    sees_origin,
    visible_origin_rows,
    visible_rules,
)
from app.services.errors import Forbidden
from app.services.policy import import_policy

POLICY = {
    "tenants": [{"slug": "acme", "name": "Acme", "paths": ["/api/acme/*"]},
                {"slug": "globex", "name": "Globex", "paths": ["/api/globex/*"]}],
    "rules": [
        {"path": "/api/platform/*", "origins": ["https://platform.example"]},
        {"path": "/api/t/*/orders", "tenant_selector": {"source": "header", "key": "X-Tenant"},
         "origins": ["https://shared.example",
                     {"value": "https://app.acme.example", "tenant": "acme"},
                     {"value": "https://app.globex.example", "tenant": "globex"}]},
        {"path": "/api/acme/*", "tenant": "acme", "origins": ["https://acme.example"]},
        {"path": "/api/globex/*", "tenant": "globex", "origins": ["https://globex.example"]},
    ],
}


@pytest.fixture
def actors(app):
    """Every kind of reader: the system (None), platform roles, and both tenants' roles."""
    with app.app_context():
        import_policy(POLICY, actor=Actor("test", "cli"))
        tenant = dict(db.session.execute(sa.select(Tenant.slug, Tenant.id)).all())
        yield {
            "system": None,
            "admin": Actor("admin", "dashboard"),
            "viewer": Actor("viewer", "dashboard", "viewer"),
            "acme editor": Actor("ed", "api", "tenant-editor", tenant["acme"]),
            "globex viewer": Actor("vi", "api", "tenant-viewer", tenant["globex"]),
        }


def test_a_tenant_role_sees_its_rules_and_the_rules_that_select_tenants(actors):
    rules = db.session.scalars(sa.select(Rule)).all()
    for name, actor in actors.items():
        in_sql = set(db.session.scalars(sa.select(Rule.path).where(visible_rules(actor))))
        assert in_sql == {rule.path for rule in rules if sees(actor, rule)}, name
    acme = set(db.session.scalars(
        sa.select(Rule.path).where(visible_rules(actors["acme editor"]))))
    assert acme == {"/api/t/*/orders", "/api/acme/*"}


def test_a_tenant_role_sees_its_own_allowlist_on_a_shared_rule_only(actors):
    for name, actor in actors.items():
        in_sql = set(db.session.scalars(
            sa.select(AllowedOrigin.value).where(visible_origin_rows(actor))))
        loaded = {origin.value for rule in db.session.scalars(sa.select(Rule))
                  for origin in rule.origins
                  if sees(actor, rule) and sees_origin(actor, rule, origin)}
        assert in_sql == loaded, name
    acme = set(db.session.scalars(
        sa.select(AllowedOrigin.value).where(visible_origin_rows(actors["acme editor"]))))
    assert acme == {"https://app.acme.example", "https://acme.example"}


def test_only_writers_change_a_rule_and_a_tenant_role_only_its_own(actors):
    shared = db.session.scalar(sa.select(Rule).where(Rule.path == "/api/t/*/orders"))
    own = db.session.scalar(sa.select(Rule).where(Rule.path == "/api/acme/*"))
    assert set(WRITER_ROLES) == {"admin", "editor", "tenant-editor"}
    assert can_change_options(actors["admin"], shared)
    assert not can_change_options(actors["viewer"], shared)
    assert can_change_options(actors["acme editor"], own)
    assert not can_change_options(actors["acme editor"], shared)


def test_a_data_plane_actor_writes_nothing_and_reaches_only_the_data_plane():
    data_plane = Actor("token:edge", "api", "data-plane")
    assert not data_plane.can_write
    with pytest.raises(Forbidden, match="may only fetch the policy"):
        require_not_data_plane(data_plane)
    require_data_plane(data_plane, to="fetch the compiled policy")
    require_data_plane(Actor("root", "api", "admin"), to="fetch the compiled policy")
    for role in ("editor", "viewer", "tenant-editor", "tenant-viewer"):
        require_not_data_plane(Actor("someone", "api", role, 1 if "tenant" in role else None))
        with pytest.raises(Forbidden, match="only data-plane tokens and admins send"):
            require_data_plane(Actor("someone", "api", role), to="send refusals")
