"""An origin change records its delta, not the whole rule twice; everything that reads the
audit trail (the trail and its differences, the origin filter, restore, undo, the API) reads
delta entries and full ones, and a chain that mixes them, alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AllowedOrigin, AuditEntry, Rule, Tenant
from app.services.access import Actor
from app.services.audit import (
    AuditFilter,
    describe_changes,
    plan_restore,
    query_audit,
    recorded_state,
    restorable_states,
)
from app.services.errors import Conflict
from app.services.policy import (
    add_origin,
    allow_request,
    create_rule,
    delete_rule,
    purge_expired_origins,
    remove_origin,
    restore_rule,
    undo_change,
    update_rule,
)
from app.services.policy_read import rule_to_dict

ALICE = Actor("alice", "dashboard")
A, B, C, D = (f"https://{name}.example.com" for name in "abcd")


def _last() -> AuditEntry:
    return db.session.scalar(sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1))


def _origins(rule_id: int) -> list[str]:
    return sorted(db.session.scalars(
        sa.select(AllowedOrigin.value).where(AllowedOrigin.rule_id == rule_id)))


def _as_before_this_change(entry: AuditEntry, before: dict, after: dict) -> None:
    """Rewrite *entry* as the app wrote origin changes before deltas: whole states."""
    entry.delta, entry.before, entry.after = None, before, after
    db.session.commit()


def test_adding_an_origin_records_only_the_origin_added(app):
    with app.app_context():
        rule = create_rule({"path": "/api/*", "origins": [A]}, actor=ALICE)
        add_origin(rule.id, B, actor=ALICE, note="partner")
        entry = _last()
        assert (entry.action, entry.before, entry.after) == ("origin.add", None, None)
        assert entry.delta == {"path": "/api/*",
                               "origins": {"added": [{"value": B, "note": "partner"}]}}
        remove_origin(rule.id, A, actor=ALICE)
        entry = _last()
        assert (entry.action, entry.before, entry.after) == ("origin.remove", None, None)
        assert entry.delta == {"path": "/api/*", "origins": {"removed": [A]}}
        assert _origins(rule.id) == [B]


def test_a_delta_entry_reads_as_origins_added_and_removed(app):
    with app.app_context():
        rule = create_rule({"path": "/api/*", "origins": [A]}, actor=ALICE)
        add_origin(rule.id, B, actor=ALICE)
        changes = describe_changes(_last())
        assert [(c.name, c.added, c.removed) for s in changes for c in s.fields] == [
            ("origins", [B], [])]
        remove_origin(rule.id, A, actor=ALICE)
        changes = describe_changes(_last())
        assert [(c.name, c.added, c.removed) for s in changes for c in s.fields] == [
            ("origins", [], [A])]


def test_the_origin_filter_finds_delta_entries(app):
    with app.app_context():
        rule = create_rule({"path": "/api/*"}, actor=ALICE)
        add_origin(rule.id, "https://needle.example.com", actor=ALICE)
        add_origin(rule.id, B, actor=ALICE)
        found = query_audit(AuditFilter(origin="NEEDLE")).items
        assert [e.action for e in found] == ["origin.add"]
        assert found[0].delta["origins"]["added"] == ["https://needle.example.com"]


def test_adding_an_origin_moves_the_rule_version(app):
    """Conflict detection: a form loaded before an origin change is stale after it."""
    with app.app_context():
        rule = create_rule({"path": "/api/*"}, actor=ALICE)
        loaded = rule.version
        add_origin(rule.id, A, actor=ALICE)
        assert db.session.get(Rule, rule.id).version == loaded + 1
        with pytest.raises(Conflict):
            update_rule(rule.id, {"description": "stale"}, actor=ALICE,
                        expected_version=loaded)
        remove_origin(rule.id, A, actor=ALICE)
        assert db.session.get(Rule, rule.id).version == loaded + 2


@pytest.fixture
def mixed_chain(app):
    """A rule's history mixing full entries (its creation, an option change, an origin
    change written the old way) and delta entries:

    1 create with a (full), 2 add b (delta), 3 add c (old: full states),
    4 remove a (delta), 5 description "five" (full), 6 add d (delta).
    """
    with app.app_context():
        rule = create_rule({"path": "/api/*", "origins": [A]}, actor=ALICE)
        ids = [_last().id]
        add_origin(rule.id, B, actor=ALICE)
        ids.append(_last().id)
        before = rule_to_dict(db.session.get(Rule, rule.id))
        add_origin(rule.id, C, actor=ALICE)
        db.session.expire_all()
        _as_before_this_change(_last(), before, rule_to_dict(db.session.get(Rule, rule.id)))
        ids.append(_last().id)
        remove_origin(rule.id, A, actor=ALICE)
        ids.append(_last().id)
        update_rule(rule.id, {"description": "five"}, actor=ALICE)
        ids.append(_last().id)
        add_origin(rule.id, D, actor=ALICE)
        ids.append(_last().id)
        yield rule.id, ids


@pytest.mark.parametrize(("step", "state", "origins", "description"), [
    (2, "before", [A], ""),
    (2, "after", [A, B], ""),
    (3, "after", [A, B, C], ""),
    (4, "before", [A, B, C], ""),
    (4, "after", [B, C], ""),
    (6, "before", [B, C], "five"),
    (6, "after", [B, C, D], "five"),
])
def test_the_state_around_a_delta_entry_is_rebuilt_across_mixed_entries(
        app, mixed_chain, step, state, origins, description):
    _rule_id, ids = mixed_chain
    with app.app_context():
        recorded = recorded_state(db.session.get(AuditEntry, ids[step - 1]), state)
        assert recorded["origins"] == origins
        assert recorded["description"] == description
        assert recorded["path"] == "/api/*"


def test_restoring_the_state_after_a_delta_entry_takes_back_what_came_later(app, mixed_chain):
    rule_id, ids = mixed_chain
    with app.app_context():
        entry = db.session.get(AuditEntry, ids[1])
        assert restorable_states(entry) == ["before", "after"]
        plan = plan_restore(ids[1], actor=ALICE, state="after")
        assert [later.entry.id for later in plan.undoes] == ids[2:]
        restore_rule(ids[1], actor=ALICE, state="after")
        assert _origins(rule_id) == [A, B]
        assert db.session.get(Rule, rule_id).description == ""
        restored = _last()
        assert restored.action == "rule.restore" and restored.after["origins"] == [A, B]


def test_a_deleted_rule_comes_back_as_a_delta_entry_left_it(app, mixed_chain):
    rule_id, ids = mixed_chain
    with app.app_context():
        delete_rule(rule_id, actor=ALICE)
        assert _origins(rule_id) == []  # deleted with the rule, on SQLite too
        rule = restore_rule(ids[3], actor=ALICE, state="after")  # after "remove a"
        assert _origins(rule.id) == [B, C]


def test_undo_of_a_delta_entry_keeps_later_changes(app, mixed_chain):
    rule_id, ids = mixed_chain
    with app.app_context():
        undo_change(ids[3], actor=ALICE)  # "remove a": a comes back, d and "five" stay
        assert _origins(rule_id) == [A, B, C, D]
        assert db.session.get(Rule, rule_id).description == "five"


def test_undo_of_an_old_full_entry_and_conflicts_with_later_delta_entries(app, mixed_chain):
    rule_id, ids = mixed_chain
    with app.app_context():
        undo_change(ids[2], actor=ALICE)  # "add c", written the old way
        assert _origins(rule_id) == [B, D]
        remove_origin(rule_id, B, actor=ALICE)
        with pytest.raises(Conflict) as refused:
            undo_change(ids[1], actor=ALICE)  # "add b": a later delta removed b
        assert f"#{_last().id}" in str(refused.value)


def test_the_simulator_fix_records_the_option_and_the_origin(app):
    with app.app_context():
        rule = create_rule({"path": "/api/*", "origins": [A]}, actor=ALICE)
        allow_request(rule.id, origin=B, credentials=True, actor=ALICE)
        entry = _last()
        assert entry.delta == {
            "path": "/api/*", "origins": {"added": [B]},
            "options": {"supports_credentials": {"before": False, "after": True}}}
        undo_change(entry.id, actor=ALICE)
        rule = db.session.get(Rule, rule.id)
        assert (rule.supports_credentials, _origins(rule.id)) == (False, [A])


def test_purging_expired_origins_records_those_removed(app):
    with app.app_context():
        rule = create_rule({"path": "/api/*", "origins": [A]}, actor=ALICE)
        add_origin(rule.id, B, actor=ALICE,
                   expires_at=datetime.now(UTC) + timedelta(seconds=1))
        db.session.execute(sa.update(AllowedOrigin).where(AllowedOrigin.value == B)
                           .values(expires_at=datetime.now(UTC) - timedelta(days=40)))
        db.session.commit()
        assert purge_expired_origins(30) == 1
        entry = _last()
        assert entry.action == "origin.expire" and entry.before is None
        assert [o["value"] for o in entry.delta["origins"]["removed"]] == [B]
        assert _origins(rule.id) == [A]


def test_a_tenant_sees_only_its_own_origins_in_a_delta_of_a_shared_rule(app, client):
    from app.api.audit import entry_resource

    with app.app_context():
        for slug in ("acme", "globex"):
            db.session.add(Tenant(slug=slug, name=slug, paths=[]))
        db.session.commit()
        rule = create_rule({"path": "/api/*", "tenant_selector": {
            "source": "header", "key": "X-Tenant", "unknown": "refuse"}}, actor=ALICE)
        add_origin(rule.id, A, actor=ALICE, tenant="globex")
        entry = _last()
        assert entry.delta["origins"]["added"] == [{"value": A, "tenant": "globex"}]
        assert entry_resource(entry, "acme")["delta"]["origins"] == {}
        assert entry_resource(entry, "globex")["delta"]["origins"]["added"] == [
            {"value": A, "tenant": "globex"}]
        assert restorable_states(entry, tenant="acme") == []
