"""Restore says which later changes it takes back; "undo only this change" reverts one audit
entry's delta, and is refused, naming them, when later changes touched the same fields."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Rule
from app.services.access import Actor
from app.services.audit import plan_restore
from app.services.changes import policy_version
from app.services.errors import Conflict
from app.services.impact import rehearse
from app.services.policy import (
    add_origin,
    create_rule,
    delete_rule,
    remove_origin,
    restore_rule,
    undo_change,
    update_rule,
)
from app.services.policy_read import rule_to_dict

ALICE = Actor("alice", "dashboard")
CI = Actor("token:ci", "api", "editor")


def _last_id() -> int:
    return db.session.scalar(sa.select(sa.func.max(AuditEntry.id)))


@pytest.fixture
def history(app):
    """#16: alice allows b on /api/*; #17: token:ci allows c."""
    with app.app_context():
        rule = create_rule({"path": "/api/*", "origins": ["https://a.example.com"]},
                           actor=ALICE)
        add_origin(rule.id, "https://b.example.com", actor=ALICE)
        sixteen = _last_id()
        add_origin(rule.id, "https://c.example.com", actor=CI)
        seventeen = _last_id()
        yield rule.id, sixteen, seventeen


def test_restoring_the_state_before_16_names_17_by_token_ci(app, history):
    rule_id, sixteen, seventeen = history
    plan = plan_restore(sixteen, actor=ALICE, state="before")
    assert [c.entry.id for c in plan.undoes] == [seventeen]
    assert plan.undoes[0].text == (f"#{seventeen} by token:ci (origin.add, origin "
                                   "https://c.example.com)")
    origins, = [c for c in plan.changes if c.name == "origins"]
    assert origins.removed == ["https://b.example.com", "https://c.example.com"]
    # Its impact is rehearsed on the real restore, which writes nothing.
    version = policy_version()
    impact = rehearse(lambda: restore_rule(sixteen, actor=ALICE), actor=ALICE,
                      routes=["/api/orders"])
    assert impact.routes[0].lost.origin_texts() == ["https://b.example.com",
                                                    "https://c.example.com"]
    assert policy_version() == version


def test_undo_only_16_keeps_17(app, history):
    rule_id, sixteen, _seventeen = history
    undo_change(sixteen, actor=ALICE)
    rule = db.session.get(Rule, rule_id)
    assert sorted(o.value for o in rule.origins) == ["https://a.example.com",
                                                     "https://c.example.com"]
    entry = db.session.get(AuditEntry, _last_id())
    assert entry.action == "rule.undo" and entry.actor == "alice"
    assert f"undid change #{sixteen}" in entry.summary


def test_undo_is_refused_naming_the_later_change_that_touched_the_same_origin(app, history):
    rule_id, _sixteen, seventeen = history
    remove_origin(rule_id, "https://c.example.com", actor=ALICE)
    version = policy_version()
    with pytest.raises(Conflict) as refused:
        undo_change(seventeen, actor=ALICE)
    assert f"#{seventeen + 1} by alice (origin.remove, origin https://c.example.com)" \
        in str(refused.value)
    assert policy_version() == version


def test_undo_of_an_option_change_sets_it_back_and_leaves_later_other_fields(app):
    with app.app_context():
        rule = create_rule({"path": "/api/*", "max_age": 60}, actor=ALICE)
        update_rule(rule.id, {"max_age": 600}, actor=ALICE)
        change = _last_id()
        update_rule(rule.id, {"methods": ["GET"]}, actor=CI)
        undo_change(change, actor=ALICE)
        after = rule_to_dict(db.session.get(Rule, rule.id))
        assert after["max_age"] == 60 and after["methods"] == ["GET"]
        # Undoing the creation now is refused: later changes exist.
        with pytest.raises(Conflict, match="later changes touched the same rule"):
            undo_change(db.session.scalar(sa.select(sa.func.min(AuditEntry.id))),
                        actor=ALICE)


def test_undo_of_a_creation_deletes_and_of_a_deletion_recreates(app):
    with app.app_context():
        rule = create_rule({"path": "/api/x", "origins": ["https://a.example.com"]},
                           actor=ALICE)
        assert undo_change(_last_id(), actor=ALICE) is None
        assert db.session.scalar(sa.select(Rule).where(Rule.path == "/api/x")) is None
        other = create_rule({"path": "/api/y", "origins": ["https://y.example.com"]},
                            actor=ALICE)
        delete_rule(other.id, actor=ALICE)
        back = undo_change(_last_id(), actor=ALICE)
        assert back.path == "/api/y" and [o.value for o in back.origins] == [
            "https://y.example.com"]
        assert rule.id != back.id


def test_undo_of_an_import_entry_is_refused_with_advice(app):
    from app.services.errors import ValidationError
    from app.services.policy import import_policy
    with app.app_context():
        import_policy({"rules": [{"path": "/api/*"}]}, actor=ALICE)
        with pytest.raises(ValidationError, match="not a change of one rule"):
            undo_change(_last_id(), actor=ALICE)
