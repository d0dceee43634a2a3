"""``rules.origin_count`` equals the number of the rule's origin rows after every kind of
write: one origin added or removed, a rule given a whole list, an import that adds, changes
or removes rules, a rule deleted, restored or undone, expired origins purged, a draft
published, a tenant deleted, and statements sent through the session by other code. The
API's ``origin_count`` reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AllowedOrigin, AuditEntry, Rule
from app.services.access import Actor
from app.services.drafts import publish_draft, save_draft
from app.services.policy import (
    add_origin,
    allow_request,
    create_rule,
    delete_rule,
    import_policy,
    purge_expired_origins,
    remove_origin,
    restore_rule,
    undo_change,
    update_rule,
)
from app.services.policy_read import origin_page
from app.services.tenants import create_tenant, delete_tenant

ADMIN = Actor("alice", "dashboard")
API = "/admin/api/v1"


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def _origins(prefix: str, count: int) -> list[str]:
    return [f"https://{prefix}{index}.example.com" for index in range(count)]


def _counts() -> dict[int, tuple[int, int]]:
    """Each rule's stored count beside the count of its rows, read in a new transaction."""
    db.session.rollback()
    counted = (sa.select(sa.func.count()).select_from(AllowedOrigin)
               .where(AllowedOrigin.rule_id == Rule.id).scalar_subquery())
    rows = db.session.execute(sa.select(Rule.id, Rule.origin_count, counted)).all()
    db.session.rollback()
    return {row[0]: (row[1], row[2]) for row in rows}


def _check(expected: dict[int, int] | None = None) -> None:
    counts = _counts()
    assert all(stored == rows for stored, rows in counts.values()), counts
    if expected is not None:
        assert {rule_id: rows for rule_id, (_, rows) in counts.items()} == expected


def _entry(action: str) -> int:
    return db.session.scalar(sa.select(AuditEntry.id).where(AuditEntry.action == action)
                             .order_by(AuditEntry.id.desc()))


def test_one_origin_added_or_removed_moves_the_count_by_one(ctx):
    rule = create_rule({"path": "/api/*", "origins": _origins("a", 3)}, actor=ADMIN).id
    other = create_rule({"path": "/other/*", "origins": _origins("o", 2)}, actor=ADMIN).id
    _check({rule: 3, other: 2})
    add_origin(rule, "https://new.example.com", actor=ADMIN)
    add_origin(rule, "https://new.example.com", actor=ADMIN)  # already there: no change
    _check({rule: 4, other: 2})
    allow_request(rule, origin="https://fix.example.com", actor=ADMIN)
    _check({rule: 5, other: 2})
    assert remove_origin(rule, "https://a0.example.com", actor=ADMIN)
    assert not remove_origin(rule, "https://a0.example.com", actor=ADMIN)
    _check({rule: 4, other: 2})


def test_a_rule_given_a_whole_list_counts_what_was_added_and_removed(ctx):
    rule = create_rule({"path": "/api/*", "origins": _origins("a", 1500)}, actor=ADMIN).id
    _check({rule: 1500})
    update_rule(rule, {"origins": _origins("a", 200) + _origins("b", 1300)}, actor=ADMIN)
    _check({rule: 1500})
    update_rule(rule, {"origins": _origins("b", 10)}, actor=ADMIN)
    _check({rule: 10})
    update_rule(rule, {"origins": [{"value": "https://b0.example.com", "note": "kept"}]},
                actor=ADMIN)
    _check({rule: 1})


def test_imports_count_the_rules_they_add_change_and_leave(ctx):
    kept = create_rule({"path": "/kept/*", "origins": _origins("k", 4)}, actor=ADMIN).id
    import_policy({"rules": [{"path": "/api/*", "origins": _origins("a", 2000)}]},
                  actor=ADMIN)
    big = db.session.scalar(sa.select(Rule.id).where(Rule.path == "/api/*"))
    _check({kept: 4, big: 2000})
    import_policy({"rules": [{"path": "/api/*", "origins": _origins("a", 5)},
                             {"path": "/small/*", "origins": _origins("s", 1)}]},
                  actor=ADMIN, replace=True)
    small = db.session.scalar(sa.select(Rule.id).where(Rule.path == "/small/*"))
    _check({big: 5, small: 1})


def test_deleting_restoring_and_undoing_keep_the_count(ctx):
    rule = create_rule({"path": "/api/*", "origins": _origins("a", 30)}, actor=ADMIN).id
    other = create_rule({"path": "/other/*", "origins": _origins("o", 3)}, actor=ADMIN).id
    delete_rule(rule, actor=ADMIN)
    _check({other: 3})
    restored = restore_rule(_entry("rule.delete"), actor=ADMIN).id
    _check({restored: 30, other: 3})
    add_origin(other, "https://later.example.com", actor=ADMIN)
    _check({restored: 30, other: 4})
    undo_change(_entry("origin.add"), actor=ADMIN)
    _check({restored: 30, other: 3})
    remove_origin(other, "https://o1.example.com", actor=ADMIN)
    undo_change(_entry("origin.remove"), actor=ADMIN)
    _check({restored: 30, other: 3})


def test_purging_expired_origins_and_publishing_a_draft_keep_the_count(ctx):
    rule = create_rule({"path": "/api/*", "origins": _origins("a", 5)}, actor=ADMIN).id
    soon = datetime.now(UTC) + timedelta(days=1)
    add_origin(rule, "https://brief.example.com", actor=ADMIN, expires_at=soon)
    _check({rule: 6})
    db.session.execute(sa.update(AllowedOrigin).values(expires_at=soon - timedelta(days=30))
                       .where(AllowedOrigin.value == "https://brief.example.com"))
    db.session.commit()
    assert purge_expired_origins(1, actor=ADMIN) == 1
    _check({rule: 5})
    save_draft(rule, {"origins": _origins("d", 7)}, actor=ADMIN)
    publish_draft(rule, actor=ADMIN)
    _check({rule: 7})


def test_a_tenants_allowlist_counts_on_its_shared_rule_and_goes_with_the_tenant(ctx):
    create_tenant("acme", "Acme", paths=["/api/acme/*"], actor=ADMIN)
    rule = create_rule({
        "path": "/api/t/*/orders",
        "tenant_selector": {"source": "view-arg", "key": "tenant"},
        "origins": ["https://platform.example", {"value": "https://a.acme.example",
                                                 "tenant": "acme"}],
    }, actor=ADMIN).id
    add_origin(rule, "https://b.acme.example", actor=ADMIN, tenant="acme")
    _check({rule: 3})
    tenant_id = db.session.scalar(sa.select(AllowedOrigin.tenant_id).where(
        AllowedOrigin.tenant_id.is_not(None)))
    acme = Actor("bob", "api", role="tenant-viewer", tenant_id=tenant_id)
    assert origin_page(db.session.get(Rule, rule), acme).total == 2  # its own list only
    assert origin_page(db.session.get(Rule, rule), ADMIN).total == 3
    delete_tenant("acme", actor=ADMIN)
    _check({rule: 1})


def test_statements_sent_through_the_session_are_counted_again(ctx):
    rule = create_rule({"path": "/api/*", "origins": _origins("a", 2)}, actor=ADMIN)
    rule_id, now = rule.id, rule.created_at
    db.session.execute(sa.insert(AllowedOrigin), [
        {"rule_id": rule_id, "value": value, "kind": "exact", "note": "", "added_by": "t",
         "added_at": now} for value in _origins("bulk", 50)])
    db.session.commit()
    _check({rule_id: 52})
    changed_at = db.session.scalar(sa.select(Rule.updated_at).where(Rule.id == rule_id))
    db.session.execute(sa.delete(AllowedOrigin).where(AllowedOrigin.value.like("%bulk1%")))
    db.session.commit()
    _check({rule_id: 41})
    # Counting again is not an edit of the rule.
    assert db.session.scalar(sa.select(Rule.updated_at).where(Rule.id == rule_id)) \
        == changed_at


def test_the_api_answers_the_stored_count_after_each_write(app, client, bearer):
    headers = bearer("admin")
    with app.app_context():
        rule = create_rule({"path": "/api/*", "origins": _origins("a", 250)}, actor=ADMIN).id
    url = f"{API}/rules/{rule}"

    def origin_count() -> int:
        body = client.get(url, headers=headers).get_json()
        assert len(body["origins"]) == min(body["origin_count"], 200)
        assert (body["origins_next"] is not None) == (body["origin_count"] > 200)
        return body["origin_count"]

    assert origin_count() == 250
    assert client.put(f"{url}/origins/https://new.example.com", headers=headers) \
        .status_code == 201
    assert origin_count() == 251
    assert client.delete(f"{url}/origins/https://a7.example.com", headers=headers) \
        .status_code == 204
    assert client.delete(f"{url}/origins/https://new.example.com", headers=headers) \
        .status_code == 204
    assert origin_count() == 249
    listed = client.get(f"{API}/rules", headers=headers).get_json()["items"]
    assert [item["origin_count"] for item in listed] == [249]
    with app.app_context():
        _check({rule: 249})


def test_a_tenant_role_counts_only_what_it_sees_in_the_list_of_rules(app, client, bearer):
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/acme/*"], actor=ADMIN)
        create_rule({"path": "/api/t/*/orders",
                     "tenant_selector": {"source": "view-arg", "key": "tenant"},
                     "origins": [*_origins("p", 3), {"value": "https://a.acme.example",
                                                     "tenant": "acme"}]}, actor=ADMIN)
    counts = {role: [item["origin_count"] for item in client.get(
        f"{API}/rules", headers=bearer(role, tenant)).get_json()["items"]]
        for role, tenant in (("viewer", None), ("tenant-viewer", "acme"))}
    assert counts == {"viewer": [4], "tenant-viewer": [1]}


def test_the_dashboards_pages_of_origins_read_the_stored_count_unless_filtered(ctx):
    from app.services.rules_query import rule_origins

    rule = create_rule({"path": "/api/*", "origins": _origins("a", 1200)}, actor=ADMIN).id
    add_origin(rule, "https://new.example.com", actor=ADMIN)
    last = rule_origins(db.session.get(Rule, rule), page=3, per_page=500)
    assert (last.pagination.total, last.pagination.pages, len(last.rows)) == (1201, 3, 201)
    assert not last.pagination.has_next
    matching = rule_origins(db.session.get(Rule, rule), text="a11")  # a11, a110-a119, ...
    assert matching.pagination.total == 111
