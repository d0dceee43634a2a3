"""Shared origin lists in the policy file: import, dry run, export, round trip; the CLI."""

from __future__ import annotations

import json

import pytest

from app.services import origin_lists as lists
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.errors import ValidationError
from app.services.policy import import_policy
from app.services.policy_read import export_policy
from cors_control import get_control

ADMIN = Actor("admin@example.com", "cli")
FRONT = "https://front.example.com"
SHOP = "https://shop.acme.example"
DOCUMENT = {
    "tenants": [{"slug": "acme", "name": "Acme", "paths": ["/api/t/acme/*"]}],
    "origin_lists": {"frontends": [FRONT, {"value": "https://beta.example.com",
                                           "note": "beta", "expires_at": "2099-01-01T00:00:00Z"}],
                     "acme/shops": [SHOP]},
    "rules": [
        {"path": "/api/*", "origin_lists": ["frontends"]},
        {"path": "/api/orders", "origins": ["https://own.example.com"],
         "origin_lists": ["frontends"]},
        {"path": "/api/t/acme/*", "tenant": "acme", "origin_lists": ["shops", "frontends"]},
    ],
}


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def test_a_file_with_lists_imports_and_the_engine_serves_them(app, client):
    with app.app_context():
        result = import_policy(DOCUMENT, actor=ADMIN)
        assert result.lists_added == ["acme/shops", "frontends"]
        shops = lists.get_list("shops", tenant="acme")
        assert [r.path for r in lists.rules_using(shops)] == ["/api/t/acme/*"]
    get_control(app).cache.refresh()
    assert client.get("/api/orders", headers={"Origin": FRONT}).headers[
        "Access-Control-Allow-Origin"] == FRONT
    assert "Access-Control-Allow-Origin" not in client.get(
        "/api/orders", headers={"Origin": SHOP}).headers


def test_export_then_import_is_unchanged_and_round_trips(ctx):
    import_policy(DOCUMENT, actor=ADMIN)
    exported = export_policy()
    assert exported["origin_lists"]["acme/shops"] == [SHOP]
    by_path = {rule["path"]: rule for rule in exported["rules"]}
    assert by_path["/api/t/acme/*"]["origin_lists"] == ["frontends", "shops"]
    version = policy_version()
    again = import_policy(json.loads(json.dumps(exported)), actor=ADMIN)
    assert not again.has_changes and policy_version() == version
    assert export_policy() == exported


def test_a_dry_run_reports_list_changes_and_writes_nothing(ctx):
    import_policy(DOCUMENT, actor=ADMIN)
    changed = json.loads(json.dumps(DOCUMENT))
    changed["origin_lists"]["frontends"] = [FRONT, "https://new.example.com"]
    changed["rules"][0]["origin_lists"] = []
    version = policy_version()
    result = import_policy(changed, actor=ADMIN, dry_run=True)
    assert result.lists_changed == ["frontends"]
    assert result.changed == {"/api/*": ["origin_lists"]}
    assert policy_version() == version
    assert "https://new.example.com" not in json.dumps(export_policy())
    import_policy(changed, actor=ADMIN)
    assert [e.value for e in lists.get_list("frontends").entries] == [
        FRONT, "https://new.example.com"]
    assert [r.path for r in lists.rules_using(lists.get_list("frontends"))] == [
        "/api/orders", "/api/t/acme/*"]


def test_a_file_is_refused_whole_when_a_rule_names_a_list_it_may_not_use(ctx):
    bad = json.loads(json.dumps(DOCUMENT))
    bad["rules"][0]["origin_lists"] = ["acme/shops"]  # a platform rule, a tenant's list
    bad["rules"][1]["origin_lists"] = ["nowhere"]
    bad["rules"].append({"path": "/api/public/*", "supports_credentials": True,
                         "origin_lists": ["everyone"]})
    bad["origin_lists"]["everyone"] = ["*"]
    with pytest.raises(ValidationError) as caught:
        import_policy(bad, actor=ADMIN)
    messages = caught.value.by_field()
    assert "platform rule" in messages["rules[0].origin_lists"][0]
    assert "no origin list nowhere" in messages["rules[1].origin_lists"][0]
    assert "credentials" in messages["rules[3].origin_lists"][0]
    assert lists.list_lists() == []
    with pytest.raises(ValidationError) as origins:
        import_policy({"rules": [], "origin_lists": {"frontends": ["https://a.example/"]}},
                      actor=ADMIN)
    assert list(origins.value.by_field()) == ["origin_lists.frontends[0]"]


def test_the_cli_manages_lists(app, runner):
    with app.app_context():
        import_policy({"rules": [{"path": "/api/*"}, {"path": "/api/orders"}]}, actor=ADMIN)
    assert runner.invoke(args=["cors", "lists", "create", "frontends", FRONT]).exit_code == 0
    attached = runner.invoke(args=["cors", "lists", "attach", "frontends", "/api/*"])
    assert attached.exit_code == 0, attached.output
    runner.invoke(args=["cors", "lists", "attach", "frontends", "/api/orders"])
    added = runner.invoke(args=["cors", "lists", "add", "frontends", "https://new.example.com"])
    assert added.exit_code == 0
    assert "added https://new.example.com to frontends (used by /api/*, /api/orders)" in \
        added.output
    shown = runner.invoke(args=["cors", "lists", "show", "frontends"])
    assert FRONT in shown.output and "https://new.example.com" in shown.output
    listed = runner.invoke(args=["cors", "lists", "list"])
    assert "frontends" in listed.output and "/api/*, /api/orders" in listed.output
    bad = runner.invoke(args=["cors", "lists", "add", "frontends", "https://x.example/"])
    assert bad.exit_code != 0 and "path" in bad.output.lower()
    refused = runner.invoke(args=["cors", "lists", "delete", "frontends"])
    assert refused.exit_code != 0 and "/api/orders" in refused.output
    assert runner.invoke(args=["cors", "lists", "remove", "frontends", FRONT]).exit_code == 0
    assert runner.invoke(args=["cors", "lists", "detach", "frontends", "/api/*"]).exit_code == 0
    deleted = runner.invoke(args=["cors", "lists", "delete", "frontends", "--detach"])
    assert deleted.exit_code == 0 and "detached from /api/orders" in deleted.output
    assert runner.invoke(args=["cors", "lists", "show", "frontends"]).exit_code != 0
