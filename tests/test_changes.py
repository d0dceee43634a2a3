"""The unit of work every policy and account change goes through: all or nothing, one version
bump, its audit entries, and conflicts answered as such."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Rule, Tenant
from app.services.access import Actor
from app.services.changes import STALE, Unchanged, policy_change, policy_version
from app.services.errors import Conflict
from app.services.policy import create_rule

ALICE = Actor("alice@example.com", "dashboard")


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def _audit_actions() -> list[str]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)))


def _tenant_slugs() -> list[str]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(Tenant.slug).order_by(Tenant.slug)))


def test_a_change_commits_its_work_its_audit_entry_and_one_version_bump(ctx):
    before = policy_version()
    with policy_change(ALICE) as change:
        db.session.add(Tenant(slug="acme", name="Acme"))
        change.audit("tenant.create", "created tenant acme")
    assert policy_version() == before + 1
    assert _tenant_slugs() == ["acme"]
    entry = db.session.scalars(sa.select(AuditEntry)).one()
    assert (entry.actor, entry.channel, entry.policy_version) == (
        "alice@example.com", "dashboard", before + 1)


def test_an_error_in_a_change_rolls_back_the_work_the_audit_entry_and_the_bump(ctx):
    before = policy_version()
    with pytest.raises(RuntimeError), policy_change(ALICE) as change:
        db.session.add(Tenant(slug="acme", name="Acme"))
        db.session.flush()
        change.audit("tenant.create", "created tenant acme")
        raise RuntimeError("the caller's work failed")
    assert policy_version() == before
    assert _tenant_slugs() == []
    assert _audit_actions() == []


def test_a_change_with_nothing_to_do_bumps_and_audits_nothing(ctx):
    before = policy_version()
    with pytest.raises(Unchanged) as unchanged, policy_change(ALICE):
        raise Unchanged("as it was")
    assert unchanged.value.result == "as it was"
    assert policy_version() == before
    assert _audit_actions() == []


def test_a_duplicate_written_meanwhile_is_a_conflict_and_writes_nothing(ctx):
    with policy_change(ALICE):
        db.session.add(Tenant(slug="acme", name="Acme"))
    before = policy_version()
    with pytest.raises(Conflict, match="conflicts with a change made meanwhile"), \
            policy_change(ALICE) as change:
        db.session.add(Tenant(slug="acme", name="Acme again"))
        change.audit("tenant.create", "created tenant acme")
    assert policy_version() == before
    assert _audit_actions() == []


def test_a_conflict_can_say_what_it_most_likely_means(ctx):
    with policy_change(ALICE):
        db.session.add(Tenant(slug="acme", name="Acme"))
    with pytest.raises(Conflict) as conflict, \
            policy_change(ALICE, conflict="a tenant acme was created meanwhile"):
        db.session.add(Tenant(slug="acme", name="Acme again"))
    assert str(conflict.value) == "a tenant acme was created meanwhile"


def test_a_rule_changed_by_someone_else_meanwhile_is_a_stale_conflict(ctx):
    rule_id = create_rule({"path": "/api/*", "max_age": 1}, actor=ALICE).id
    with pytest.raises(Conflict) as conflict, policy_change(ALICE, bump_version=False):
        rule = db.session.get(Rule, rule_id)
        with db.engine.begin() as other:  # another process saves the rule first
            other.execute(sa.update(Rule).where(Rule.id == rule_id)
                          .values(max_age=2, version=Rule.version + 1))
        rule.max_age = 3
    assert str(conflict.value) == STALE
    db.session.rollback()
    assert db.session.get(Rule, rule_id).max_age == 2


def test_a_change_to_accounts_keeps_the_version_and_audits_at_the_current_one(ctx):
    create_rule({"path": "/api/*"}, actor=ALICE)
    current = policy_version()
    with policy_change(ALICE, bump_version=False) as change:
        change.audit("user.password", "reset the password of bob@example.com")
    assert policy_version() == current
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "user.password")).one()
    assert entry.policy_version == current


def test_a_change_made_on_nobody_s_behalf_cannot_be_audited(ctx):
    with pytest.raises(TypeError, match="on nobody's behalf"), \
            policy_change(None, bump_version=False) as change:
        change.audit("user.create", "created admin root@example.com")
    assert _audit_actions() == []
