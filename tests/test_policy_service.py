"""The service layer: validation once, version bump and audit in the same transaction."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AllowedOrigin, AuditEntry, Rule
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.errors import Conflict, ValidationError
from app.services.policy import (
    add_origin,
    create_rule,
    delete_rule,
    import_policy,
    remove_origin,
    update_rule,
)
from app.services.policy_read import export_policy

ALICE = Actor("alice@example.com", "dashboard")


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def _count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_creating_a_rule_bumps_the_policy_version_and_writes_an_audit_entry(ctx):
    before = policy_version()
    rule = create_rule({"path": "/api/*", "origins": ["HTTPS://App.Example.com:443"]},
                       actor=ALICE)
    assert policy_version() == before + 1
    assert [o.value for o in rule.origins] == ["https://app.example.com"]
    entry = db.session.scalars(sa.select(AuditEntry)).one()
    assert (entry.actor, entry.channel, entry.action) == ("alice@example.com", "dashboard",
                                                          "rule.create")
    assert entry.after["origins"] == ["https://app.example.com"]
    assert entry.policy_version == before + 1


def test_invalid_rule_writes_nothing_and_names_every_bad_field(ctx):
    before = policy_version()
    with pytest.raises(ValidationError) as caught:
        create_rule({
            "path": "api/*",
            "origins": ["https://ok.example.com", "https://app.example.com/"],
            "methods": ["GET", "G T"],
            "max_age": -1,
            "mode": "sometimes",
        }, actor=ALICE)
    fields = {e.field for e in caught.value.errors}
    assert fields == {"path", "origins[1]", "methods", "max_age", "mode"}
    assert caught.value.for_field("origins[1]") == [
        "an origin has no path; use https://app.example.com"]
    assert policy_version() == before
    assert _count(Rule) == 0 and _count(AuditEntry) == 0


def test_any_origin_is_refused_on_a_credentialed_rule(ctx):
    with pytest.raises(ValidationError) as caught:
        create_rule({"path": "/api/*", "origins": ["*"], "supports_credentials": True},
                    actor=ALICE)
    assert "supports_credentials" in caught.value.for_field("origins[0]")[0]


def test_unknown_field_is_named(ctx):
    with pytest.raises(ValidationError) as caught:
        create_rule({"path": "/api/*", "allowed_origins": []}, actor=ALICE)
    assert caught.value.errors[0].field == "allowed_origins"


@pytest.mark.parametrize("other", ["/api/*", "/api/x/*"])
def test_a_rule_that_would_tie_with_another_is_refused(ctx, other):
    create_rule({"path": other}, actor=ALICE)
    candidate = "/api/*" if other == "/api/*" else "/api/*/y"
    with pytest.raises(ValidationError) as caught:
        create_rule({"path": candidate}, actor=ALICE)
    assert other in caught.value.for_field("path")[0]
    assert _count(Rule) == 1


def test_admin_paths_cannot_be_governed(ctx):
    with pytest.raises(ValidationError) as caught:
        create_rule({"path": "/admin/*"}, actor=ALICE)
    assert "never governed" in caught.value.for_field("path")[0]


def test_stale_update_is_refused_and_changes_nothing(ctx):
    rule = create_rule({"path": "/api/*", "max_age": 10}, actor=ALICE)
    loaded_version = rule.version
    update_rule(rule.id, {"max_age": 20}, actor=ALICE, expected_version=loaded_version)
    with pytest.raises(Conflict) as caught:
        update_rule(rule.id, {"max_age": 30}, actor=Actor("bob", "dashboard"),
                    expected_version=loaded_version)
    assert "alice@example.com" in str(caught.value)
    db.session.expire_all()
    assert db.session.get(Rule, rule.id).max_age == 20


def test_update_with_no_difference_writes_nothing(ctx):
    rule = create_rule({"path": "/api/*", "max_age": 10}, actor=ALICE)
    version = policy_version()
    update_rule(rule.id, {"max_age": 10}, actor=ALICE)
    assert policy_version() == version
    assert _count(AuditEntry) == 1


def test_adding_an_origin_twice_is_idempotent(ctx):
    rule = create_rule({"path": "/api/*"}, actor=ALICE)
    origin, created = add_origin(rule.id, "https://A.example.com", actor=ALICE, note="partner")
    assert created and origin.value == "https://a.example.com" and origin.note == "partner"
    version = policy_version()
    _, created_again = add_origin(rule.id, "https://a.example.com", actor=ALICE)
    assert not created_again
    assert policy_version() == version
    assert _count(AllowedOrigin) == 1


def test_removing_an_origin_bumps_the_version_and_records_the_origin_removed(ctx):
    rule = create_rule({"path": "/api/*", "origins": ["https://a.example.com"]}, actor=ALICE)
    assert remove_origin(rule.id, "https://a.example.com", actor=ALICE)
    assert not remove_origin(rule.id, "https://a.example.com", actor=ALICE)
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "origin.remove")).one()
    assert entry.delta == {"path": "/api/*",
                           "origins": {"removed": ["https://a.example.com"]}}
    assert entry.before is None and entry.after is None


def test_deleting_a_rule_deletes_its_origins(ctx):
    rule = create_rule({"path": "/api/*", "origins": ["https://a.example.com"]}, actor=ALICE)
    delete_rule(rule.id, actor=ALICE)
    assert _count(Rule) == 0 and _count(AllowedOrigin) == 0


POLICY = {
    "rules": [
        {"path": "/api/public/*", "origins": ["*"], "methods": ["GET"], "max_age": 0},
        {
            "path": "/api/*",
            "origins": [
                "https://*.example.com",
                {"value": "https://partner.example.net", "note": "until the pilot ends",
                 "expires_at": "2030-01-01T00:00:00Z"},
                "http://localhost:*",
            ],
            "methods": ["GET", "PUT"],
            "allow_headers": ["content-type", "authorization"],
            "expose_headers": ["X-Request-Id"],
            "supports_credentials": True,
            "max_age": 600,
            "allow_private_network": True,
            "mode": "report-only",
            "description": "main API",
        },
    ]
}


def test_import_of_an_export_reproduces_the_policy_exactly(ctx):
    import_policy(POLICY, actor=ALICE)
    exported = export_policy()
    assert [r["path"] for r in exported["rules"]] == ["/api/*", "/api/public/*"]
    import_policy({"rules": []}, actor=ALICE, replace=True)
    assert export_policy() == {"rules": []}
    result = import_policy(exported, actor=ALICE)
    assert export_policy() == exported
    assert sorted(result.added) == ["/api/*", "/api/public/*"]


def test_import_is_all_or_nothing_and_names_entries_by_position(ctx):
    import_policy({"rules": [{"path": "/api/*"}]}, actor=ALICE)
    version = policy_version()
    bad = {"rules": [
        {"path": "/api/orders", "origins": ["https://ok.example.com"]},
        {"path": "/api/users", "origins": ["null"], "max_age": "ten"},
        {"path": "/api/orders"},
    ]}
    with pytest.raises(ValidationError) as caught:
        import_policy(bad, actor=ALICE, replace=True)
    fields = [e.field for e in caught.value.errors]
    assert "rules[1].origins[0]" in fields
    assert "rules[1].max_age" in fields
    assert "rules[2].path" in fields
    assert policy_version() == version
    assert [r["path"] for r in export_policy()["rules"]] == ["/api/*"]


def test_dry_run_reports_the_difference_and_writes_nothing(ctx):
    import_policy({"rules": [{"path": "/api/*"}, {"path": "/api/old"}]}, actor=ALICE)
    version = policy_version()
    result = import_policy(
        {"rules": [{"path": "/api/*", "max_age": 5}, {"path": "/api/new"}]},
        actor=ALICE, replace=True, dry_run=True,
    )
    assert result.added == ["/api/new"]
    assert result.removed == ["/api/old"]
    assert result.changed == {"/api/*": ["max_age"]}
    assert policy_version() == version
    assert sorted(r["path"] for r in export_policy()["rules"]) == ["/api/*", "/api/old"]


def test_import_is_one_audit_entry(ctx):
    import_policy(POLICY, actor=ALICE)
    entries = db.session.scalars(sa.select(AuditEntry)).all()
    assert [e.action for e in entries] == ["policy.import"]
    assert set(entries[0].after["rules"]) == {"/api/*", "/api/public/*"}


def test_import_refuses_a_rule_that_ties_with_a_kept_rule(ctx):
    import_policy({"rules": [{"path": "/api/x/*"}]}, actor=ALICE)
    with pytest.raises(ValidationError) as caught:
        import_policy({"rules": [{"path": "/api/*/y"}]}, actor=ALICE)
    assert caught.value.errors[0].field == "rules[0].path"


def test_a_deleted_rule_can_be_restored_from_its_history(ctx):
    from app.services.policy import restore_rule

    rule = create_rule({"path": "/api/*", "origins": ["https://a.example.com"], "max_age": 9},
                       actor=ALICE)
    rule_id = rule.id
    delete_rule(rule_id, actor=ALICE)
    deletion = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "rule.delete")).one()
    restored = restore_rule(deletion.id, actor=Actor("bob", "dashboard"))
    assert restored.path == "/api/*" and restored.max_age == 9
    assert [o.value for o in restored.origins] == ["https://a.example.com"]
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "rule.restore")).one()
    assert entry.actor == "bob" and entry.before is None


def test_restoring_an_earlier_state_overwrites_the_current_one(ctx):
    from app.services.policy import restore_rule

    rule = create_rule({"path": "/api/*", "max_age": 1}, actor=ALICE)
    update_rule(rule.id, {"max_age": 2}, actor=ALICE)
    update_entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "rule.update")).one()
    version = policy_version()
    restore_rule(update_entry.id, actor=ALICE, state="before")
    db.session.expire_all()
    assert db.session.get(Rule, rule.id).max_age == 1
    assert policy_version() == version + 1


@pytest.mark.parametrize(
    ("rule", "field", "phrase"),
    [
        ({"origins": ["https://*.example.com"], "supports_credentials": True}, "origins[0]",
         "every subdomain"),
        ({"origins": ["http://app.example.com"]}, "origins[0]", "plain http"),
        ({"origins": ["http://localhost:*"]}, "origins[0]", "local development"),
    ],
)
def test_risky_rules_get_warnings(rule, field, phrase):
    from app.services.validation import validate_rule
    from app.services.warnings import rule_warnings

    warnings = rule_warnings(validate_rule({"path": "/api/*", **rule}))
    assert [w.field for w in warnings] == [field]
    assert phrase in warnings[0].message


def test_a_plain_https_rule_has_no_warnings():
    from app.services.validation import validate_rule
    from app.services.warnings import rule_warnings

    assert rule_warnings(validate_rule({"path": "/api/*",
                                        "origins": ["https://app.example.com"]})) == []


def test_a_report_only_rule_with_credentials_is_no_longer_warned_of_as_a_widening():
    from app.services.validation import validate_rule
    from app.services.warnings import rule_warnings

    assert rule_warnings(validate_rule({"path": "/api/*", "mode": "report-only",
                                        "supports_credentials": True})) == []


def _served(*rules: Rule):
    from cors_control.snapshot import RuleSpec, compile_policy

    return compile_policy(1, [RuleSpec(r.path, mode=r.mode, rule_id=r.id,
                                       supports_credentials=r.supports_credentials)
                              for r in rules])


@pytest.mark.parametrize("served", ["before-the-switch", "after-the-switch"])
def test_a_report_only_rule_is_told_which_rule_answers_its_routes_instead(ctx, served):
    from app.services.warnings import report_only_warnings

    broad = create_rule({"path": "/api/*", "supports_credentials": True}, actor=ALICE)
    create_rule({"path": "/api/orders/*/lines"}, actor=ALICE)  # narrower: not behind it
    tight = create_rule({"path": "/api/orders/*"}, actor=ALICE)
    snapshot = _served(broad, tight)  # as a process serves it before the switch
    tight = update_rule(tight.id, {"mode": "report-only"}, actor=ALICE)
    if served == "after-the-switch":
        snapshot = _served(broad, tight)
    (warning,) = report_only_warnings(tight, snapshot)
    assert warning.field == "mode"
    assert warning.message.startswith(
        "while report-only, /api/orders/* is answered by /api/*: its origins and credentials "
        "decide these requests")
    assert report_only_warnings(broad, snapshot) == []  # enforced: nothing to say


def test_a_report_only_rule_with_nothing_behind_it_is_answered_by_no_rule(ctx):
    from app.services.warnings import report_only_warnings

    rule = create_rule({"path": "/api/orders", "mode": "report-only"}, actor=ALICE)
    (warning,) = report_only_warnings(rule, _served(rule))
    assert "/api/orders is answered by no rule" in warning.message
    assert "allows every origin" not in warning.message


def test_a_tenant_role_is_not_told_the_path_of_a_rule_it_cannot_see(ctx):
    from app.services.tenants import create_tenant
    from app.services.warnings import report_only_warnings

    platform = create_rule({"path": "/api/*"}, actor=ALICE)
    acme = create_tenant("acme", "Acme", paths=["/api/acme/*"], actor=ALICE)
    editor = Actor("ed@acme.example", "dashboard", "tenant-editor", acme.id)
    own = create_rule({"path": "/api/acme/*", "mode": "report-only"}, actor=editor)
    (warning,) = report_only_warnings(own, _served(platform, own), actor=editor)
    assert "/api/acme/* is answered by a rule you cannot see" in warning.message
    assert "/api/*" not in warning.message.replace("/api/acme/*", "")
    (admin_sees,) = report_only_warnings(own, _served(platform, own), actor=ALICE)
    assert "/api/acme/* is answered by /api/*" in admin_sees.message


def test_restoring_a_deleted_rule_never_overwrites_a_newer_rule_with_its_old_id(ctx):
    from app.services.policy import restore_rule

    old = create_rule({"path": "/api/x/*", "max_age": 1}, actor=ALICE)
    old_id = old.id
    delete_rule(old_id, actor=ALICE)
    newer = create_rule({"path": "/api/other/*", "max_age": 2}, actor=ALICE)
    newer_id = newer.id  # SQLite hands out the deleted id again
    deletion = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "rule.delete")).one()
    restore_rule(deletion.id, actor=ALICE)
    db.session.expire_all()
    assert db.session.get(Rule, newer_id).path == "/api/other/*"
    assert sorted(r.path for r in db.session.scalars(sa.select(Rule))) == [
        "/api/other/*", "/api/x/*"]
    assert old_id is not None


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"tenants": [{"slug": "acme", "name": "x" * 201}], "rules": []}, "tenants[0]"),
        ({"tenants": [{"slug": "acme", "name": 7}], "rules": []}, "tenants[0]"),
        ({"rules": [{"path": "/api/*", "description": "a\x00b"}]}, "rules[0].description"),
        ({"rules": [{"path": "/api/*", "origins": [
            {"value": "https://a.example.com", "note": "n\x00"}]}]}, "rules[0].origins[0].note"),
        ({"rules": [{"path": "/api/*", "tenant_selector": {"source": "header",
                                                           "key": "X" * 201}}]},
         "rules[0].tenant_selector.key"),
    ],
)
def test_text_the_database_cannot_hold_is_refused_with_its_field(ctx, document, field):
    with pytest.raises(ValidationError) as caught:
        import_policy(document, actor=ALICE)
    assert field in [e.field for e in caught.value.errors]
