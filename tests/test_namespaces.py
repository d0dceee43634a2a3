"""Tenant namespaces: the path patterns a tenant's rules may govern, set by admins in every
channel, never overlapping, and kept by every write of a tenant-owned rule."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Rule, Tenant
from app.services.access import Actor
from app.services.errors import Forbidden, ValidationError
from app.services.policy import create_rule, import_policy, update_rule
from app.services.policy_read import export_policy
from app.services.tenants import (
    UPGRADE_ACTOR,
    create_tenant,
    rules_outside_namespaces,
    set_tenant_paths,
)
from app.services.tokens import create_token
from cors_control.paths import covers, overlaps, parse_pattern

ADMIN = Actor("root@platform.example", "cli")
EDITOR = Actor("editor@platform.example", "api", "editor")
API = "/admin/api/v1"


@pytest.mark.parametrize(("namespace", "rule", "inside"), [
    ("/api/t/acme/*", "/api/t/acme/orders", True),
    ("/api/t/acme/*", "/api/t/acme/*", True),
    ("/api/t/acme/*", "/api/t/acme/*/items", True),
    ("/api/t/acme/*", "/api/t/acme/a/*", True),
    ("/api/t/acme/*", "/api/t/acme", False),  # the namespace does not match it
    ("/api/t/acme/*", "/api/*", False),
    ("/api/t/acme/*", "/*", False),
    ("/api/t/acme/*", "/api/t/*/orders", False),
    ("/api/t/acme/*", "/api/t/globex/orders", False),
    ("/api/t/*/x", "/api/t/acme/x", True),
    ("/api/t/*/x", "/api/t/*/x", True),
    ("/api/t/*/x", "/api/t/acme/*", False),
    ("/api/orders", "/api/orders", True),
    ("/api/orders", "/api/*", False),
    ("/*", "/anything/at/all", True),
])
def test_a_rule_is_inside_a_namespace_when_the_namespace_matches_every_path_it_can(
        namespace, rule, inside):
    assert covers(parse_pattern(namespace), parse_pattern(rule)) is inside


def test_covering_agrees_with_matching_on_sample_paths():
    """For every pair, no path matched by the inner pattern escapes a covering one."""
    patterns = ["/api/*", "/api/t/*", "/api/t/acme/*", "/api/t/*/orders", "/api/t/acme/orders",
                "/*", "/api", "/api/*/x", "/api/t/acme"]
    paths = ["/api", "/api/", "/api/t", "/api/t/acme", "/api/t/acme/orders",
             "/api/t/acme/orders/1", "/api/t/globex/orders", "/api/x", "/api/t/x", "/x",
             "/api/t/acme/x", "/api/a/x"]
    for outer in map(parse_pattern, patterns):
        for inner in map(parse_pattern, patterns):
            if covers(outer, inner):
                assert all(outer.matches(p) for p in paths if inner.matches(p)), \
                    (outer.text, inner.text)
                assert overlaps(outer, inner)


@pytest.fixture
def acme(app):
    with app.app_context():
        return create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=ADMIN).id


def test_namespaces_of_two_tenants_never_overlap(app, acme):
    with app.app_context():
        for wanted in (["/api/t/*"], ["/api/t/acme/orders"], ["/api/t/*/orders"], ["/*"]):
            with pytest.raises(ValidationError, match="of tenant acme; namespaces of two "
                                                      "tenants never share a path"):
                create_tenant("globex", paths=wanted, actor=ADMIN)
        create_tenant("globex", paths=["/api/t/globex/*"], actor=ADMIN)
        with pytest.raises(ValidationError, match="overlaps /api/t/acme/\\* of tenant acme"):
            set_tenant_paths("globex", ["/api/t/globex/*", "/api/t/*/x"], actor=ADMIN)
        assert db.session.scalar(sa.select(Tenant.paths).where(Tenant.slug == "globex")) \
            == ["/api/t/globex/*"]


def test_a_tenant_without_namespace_can_own_no_rule(app):
    with app.app_context():
        create_tenant("initech", actor=ADMIN)
        with pytest.raises(ValidationError, match="has no namespace yet.*an admin must give"):
            create_rule({"path": "/api/t/initech/orders", "tenant": "initech"}, actor=ADMIN)


def test_only_admins_set_namespaces_and_narrowing_may_not_strand_a_rule(app, acme):
    with app.app_context():
        with pytest.raises(Forbidden):
            set_tenant_paths("acme", ["/api/t/acme/*", "/api/acme/*"], actor=EDITOR)
        create_rule({"path": "/api/t/acme/orders", "tenant": "acme"}, actor=ADMIN)
        with pytest.raises(ValidationError, match="/api/t/acme/orders of tenant acme would "
                                                  "lie outside"):
            set_tenant_paths("acme", ["/api/t/acme/x/*"], actor=ADMIN)
        set_tenant_paths("acme", ["/api/t/acme/orders", "/api/acme/*"], actor=ADMIN)
        entry = db.session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "tenant.update")).one()
        assert entry.before["paths"] == ["/api/t/acme/*"]
        assert entry.after["paths"] == ["/api/acme/*", "/api/t/acme/orders"]


def test_an_editor_import_may_not_create_tenants_or_change_namespaces(app, acme):
    creating = {"tenants": [{"slug": "globex", "paths": ["/api/t/globex/*"]}], "rules": []}
    changing = {"tenants": [{"slug": "acme", "paths": ["/api/acme/*"]}], "rules": []}
    with app.app_context():
        for dry_run in (True, False):
            with pytest.raises(Forbidden, match="an admin must create tenant globex first, "
                                                "or import the file as an admin"):
                import_policy(creating, actor=EDITOR, dry_run=dry_run)
            with pytest.raises(Forbidden, match="namespaces"):
                import_policy(changing, actor=EDITOR, dry_run=dry_run)
        assert db.session.scalar(sa.select(sa.func.count(Tenant.id))) == 1
        # An editor may still import rules of existing tenants, inside their namespaces.
        result = import_policy({"tenants": [{"slug": "acme", "paths": ["/api/t/acme/*"]}],
                                "rules": [{"path": "/api/t/acme/x", "tenant": "acme"}]},
                               actor=EDITOR)
        assert result.added == ["/api/t/acme/x"] and result.tenants_changed == []


def test_an_editor_import_creating_a_tenant_is_refused_with_403_over_the_api(app, client,
                                                                             acme):
    with app.app_context():
        secret = create_token("ci", "editor", actor=ADMIN).secret
    response = client.post(f"{API}/import", json={
        "tenants": [{"slug": "globex", "name": "Globex"}], "rules": []},
        headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 403
    assert "an admin must create tenant globex first" in response.get_json()["detail"]


def test_an_import_checks_rules_against_the_namespaces_it_declares(app):
    document = {
        "tenants": [{"slug": "acme", "name": "Acme", "paths": ["/api/t/acme/*"]}],
        "rules": [{"path": "/api/t/acme/orders", "tenant": "acme"},
                  {"path": "/api/echo", "tenant": "acme"}],
    }
    with app.app_context():
        with pytest.raises(ValidationError) as caught:
            import_policy(document, actor=ADMIN)
        assert [e.field for e in caught.value.errors] == ["rules[1].path"]
        assert "(/api/t/acme/*)" in caught.value.errors[0].message
        assert db.session.scalar(sa.select(sa.func.count(Tenant.id))) == 0
        overlapping = {"tenants": [{"slug": "a", "paths": ["/api/*"]},
                                   {"slug": "b", "paths": ["/api/b/*"]}], "rules": []}
        with pytest.raises(ValidationError, match="never share a path"):
            import_policy(overlapping, actor=ADMIN)


def test_the_policy_file_round_trips_with_namespaces(app, make_app):
    document = {
        "tenants": [{"slug": "acme", "name": "Acme", "paths": ["/api/acme/*", "/api/t/acme/*"]},
                    {"slug": "globex", "name": "Globex", "paths": []}],
        "rules": [{"path": "/api/t/acme/orders", "tenant": "acme",
                   "origins": ["https://acme.example"]}],
    }
    with app.app_context():
        result = import_policy(document, actor=ADMIN)
        assert result.tenants_added == ["acme", "globex"]
        exported = export_policy()
        assert exported["tenants"] == document["tenants"]
        again = import_policy(exported, actor=ADMIN, dry_run=True)
        assert not again.has_changes
        changed = import_policy({**exported, "tenants": [
            {"slug": "acme", "name": "Acme", "paths": ["/api/t/acme/*"]}]}, actor=ADMIN)
        assert changed.tenants_changed == ["acme"]
        assert export_policy()["tenants"][0]["paths"] == ["/api/t/acme/*"]


def test_the_cli_creates_a_tenant_with_namespaces_and_changes_them(app, runner):
    created = runner.invoke(args=["tenants", "create", "acme", "--path", "/api/t/acme/*",
                                  "--path", "/api/acme/*"])
    assert created.exit_code == 0, created.output
    assert "namespaces: /api/acme/*, /api/t/acme/*" in created.output
    overlap = runner.invoke(args=["tenants", "create", "globex", "--path", "/api/*"])
    assert overlap.exit_code != 0 and "of tenant acme" in overlap.output
    changed = runner.invoke(args=["tenants", "set-paths", "acme", "--path", "/api/t/acme/*"])
    assert changed.exit_code == 0 and "governs /api/t/acme/*" in changed.output
    listed = runner.invoke(args=["tenants", "list"])
    assert "/api/t/acme/*" in listed.output and "/api/acme/*" not in listed.output


def test_the_cli_import_refuses_a_tenant_rule_outside_its_namespace(app, runner, tmp_path,
                                                                    acme):
    file = tmp_path / "policy.json"
    file.write_text(json.dumps({"rules": [{"path": "/api/echo", "tenant": "acme"}]}))
    result = runner.invoke(args=["cors", "import", str(file)])
    assert result.exit_code != 0
    assert "namespaces of tenant acme (/api/t/acme/*)" in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Rule.id))) == 0


def test_the_api_creates_a_tenant_with_namespaces_and_changes_them(app, client):
    with app.app_context():
        admin = {"Authorization": f"Bearer {create_token('a', 'admin', actor=ADMIN).secret}"}
        editor = {"Authorization": f"Bearer {create_token('e', 'editor', actor=ADMIN).secret}"}
    body = {"slug": "acme", "name": "Acme", "paths": ["/api/t/acme/*"]}
    assert client.post(f"{API}/tenants", json=body, headers=editor).status_code == 403
    created = client.post(f"{API}/tenants", json=body, headers=admin)
    assert created.status_code == 201 and created.get_json()["paths"] == ["/api/t/acme/*"]
    assert created.headers["Location"].endswith("/tenants/acme")
    clash = client.post(f"{API}/tenants", json={"slug": "globex", "paths": ["/api/t/*"]},
                        headers=admin)
    assert clash.status_code == 422 and "of tenant acme" in str(clash.get_json()["errors"])
    assert client.patch(f"{API}/tenants/acme", json={"paths": ["/api/acme/*"]},
                        headers=editor).status_code == 403
    changed = client.patch(f"{API}/tenants/acme", json={"paths": ["/api/acme/*"]},
                           headers=admin)
    assert changed.status_code == 200 and changed.get_json()["paths"] == ["/api/acme/*"]
    assert client.get(f"{API}/tenants/acme", headers=editor).get_json()["paths"] == [
        "/api/acme/*"]


def test_the_tenants_page_creates_a_tenant_with_namespaces_and_changes_them(app, sign_in):
    admin = sign_in("admin")
    created = admin.post("/admin/tenants", data={
        "slug": "acme", "name": "", "paths": "/api/t/acme/*\n/api/acme/*",
        "csrf_token": admin.csrf})
    assert created.status_code == 302
    page = admin.get("/admin/tenants").get_data(as_text=True)
    assert "/api/acme/*\n/api/t/acme/*</textarea>" in page
    refused = admin.post("/admin/tenants", data={
        "slug": "globex", "name": "", "paths": "/api/*", "csrf_token": admin.csrf},
        headers={"HX-Request": "true"})
    assert refused.status_code == 200 and "of tenant acme" in refused.get_data(as_text=True)
    changed = admin.post("/admin/tenants/acme/paths", data={
        "paths": "/api/t/acme/*", "csrf_token": admin.csrf}, headers={"HX-Request": "true"})
    assert "Tenant acme governs /api/t/acme/*." in changed.get_data(as_text=True)
    bad = admin.post("/admin/tenants/acme/paths", data={
        "paths": "api/x", "csrf_token": admin.csrf})
    assert bad.status_code == 422 and "a path starts with /" in bad.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(Tenant.paths).where(Tenant.slug == "acme")) == [
            "/api/t/acme/*"]


def test_the_overview_lists_rules_the_upgrade_switched_off_until_an_admin_acts(
        app, sign_in, acme):
    """A rule migration 0015 switched off (as it leaves one): listed with the way out, then
    with "Switch back on" once a namespace covers it; once switched on, listed no more."""
    with app.app_context():
        rule = create_rule({"path": "/api/t/acme/orders", "tenant": "acme"}, actor=ADMIN)
        db.session.execute(sa.update(Rule).where(Rule.id == rule.id).values(
            path="/api/t/legacy/orders", mode="off", updated_by=UPGRADE_ACTOR))
        db.session.commit()
        rule_id = rule.id
        (stranded,) = rules_outside_namespaces()
        assert (stranded.path, stranded.switched_off, stranded.covered) == (
            "/api/t/legacy/orders", True, False)
    admin = sign_in("admin")
    page = admin.get("/admin/").get_data(as_text=True)
    assert "switched off by the upgrade" in page and "Give acme a namespace" in page
    assert f'action="/admin/rules/{rule_id}/enable"' not in page
    with app.app_context():
        set_tenant_paths("acme", ["/api/t/acme/*", "/api/t/legacy/*"], actor=ADMIN)
    page = admin.get("/admin/").get_data(as_text=True)
    assert f'action="/admin/rules/{rule_id}/enable"' in page
    assert admin.post(f"/admin/rules/{rule_id}/enable", data={
        "csrf_token": admin.csrf, "mode": "enforce"}).status_code in (302, 303)
    with app.app_context():
        assert db.session.get(Rule, rule_id).mode == "enforce"
        assert rules_outside_namespaces() == []
    assert "outside their tenant" not in admin.get("/admin/").get_data(as_text=True)


def test_the_overview_lists_tenant_rules_left_outside_for_an_admin_to_switch_off(
        app, sign_in, acme):
    """A rule written before namespaces existed (inserted as an older version left it)."""
    with app.app_context():
        rule = create_rule({"path": "/api/t/acme/orders", "tenant": "acme"}, actor=ADMIN)
        db.session.execute(sa.update(Rule).where(Rule.id == rule.id).values(path="/api/echo"))
        db.session.commit()
        assert [s.path for s in rules_outside_namespaces()] == ["/api/echo"]
        rule_id = rule.id
        # A change that does not move it is still accepted; moving it is checked.
        update_rule(rule_id, {"description": "legacy"}, actor=ADMIN)
        with pytest.raises(ValidationError):
            update_rule(rule_id, {"path": "/api/orders"}, actor=ADMIN)
    admin = sign_in("admin")
    page = admin.get("/admin/").get_data(as_text=True)
    assert "Tenant rules outside their tenant's namespaces" in page
    assert f'action="/admin/rules/{rule_id}/disable"' in page
    editor_page = sign_in("editor").get("/admin/").get_data(as_text=True)
    assert "outside their tenant" not in editor_page
    assert admin.post(f"/admin/rules/{rule_id}/disable",
                      data={"csrf_token": admin.csrf}).status_code in (302, 303)
    with app.app_context():
        assert rules_outside_namespaces() == []
        assert db.session.scalar(sa.select(AuditEntry.summary).where(
            AuditEntry.rule_id == rule_id).order_by(AuditEntry.id.desc()).limit(1))
        # Switching it back on is creating it again: refused while it lies outside.
        with pytest.raises(ValidationError, match="namespaces of tenant acme"):
            update_rule(rule_id, {"mode": "enforce"}, actor=ADMIN)
    assert "outside their tenant" not in admin.get("/admin/").get_data(as_text=True)
