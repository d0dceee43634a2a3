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


# -- the dashboard -----------------------------------------------------------------------------

def _post(client, url: str, data: dict | None = None, **kwargs):
    return client.post(url, data={"csrf_token": client.csrf, **(data or {})}, **kwargs)


def _words(response) -> str:
    import html
    import re
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))
                    .split())


def test_the_restore_review_names_17_before_the_confirmed_restore(app, sign_in, history):
    rule_id, sixteen, seventeen = history
    client = sign_in("editor")
    trail = client.get("/admin/audit").get_data(as_text=True)
    assert f'action="/admin/audit/{sixteen}/restore"' in trail
    assert f'href="/admin/audit/{sixteen}/undo"' in trail
    version = policy_version()
    review = client.get(f"/admin/audit/{sixteen}/restore?state=before")
    words = _words(review)
    assert review.status_code == 200
    assert "This also takes back later changes:" in words
    assert f"#{seventeen} by token:ci (origin.add, origin https://c.example.com)" in words
    assert "− https://b.example.com" in words and "− https://c.example.com" in words
    assert "Restore, taking back 1 later change" in words
    assert policy_version() == version
    done = _post(client, f"/admin/audit/{sixteen}/restore", {"state": "before"})
    assert done.status_code == 302
    assert [o.value for o in db.session.get(Rule, rule_id).origins] == [
        "https://a.example.com"]


def test_undo_only_this_change_on_the_dashboard(app, sign_in, history):
    rule_id, sixteen, seventeen = history
    client = sign_in("editor")
    review = _words(client.get(f"/admin/audit/{sixteen}/undo"))
    assert "Undo only change #" in review and "+ https://b.example.com" in review
    assert "every other change made since stays" in review
    assert "origin https://b.example.com" in review  # the routes lose it
    assert _post(client, f"/admin/audit/{sixteen}/undo").status_code == 302
    db.session.expire_all()
    assert sorted(o.value for o in db.session.get(Rule, rule_id).origins) == [
        "https://a.example.com", "https://c.example.com"]
    remove_origin(rule_id, "https://c.example.com", actor=ALICE)
    page = client.get(f"/admin/audit/{seventeen}/undo")
    refused = _words(page)
    assert "cannot be undone alone" in refused and "by alice (origin.remove" in refused
    assert f'action="/admin/audit/{seventeen}/undo"' not in page.get_data(as_text=True)
    version = policy_version()
    again = _post(client, f"/admin/audit/{seventeen}/undo", follow_redirects=True)
    assert "Nothing was undone" in _words(again) and policy_version() == version


def test_viewers_cannot_undo(app, sign_in, history):
    _rule_id, sixteen, _seventeen = history
    viewer = sign_in("viewer")
    assert viewer.get(f"/admin/audit/{sixteen}/undo").status_code == 403
    assert _post(viewer, f"/admin/audit/{sixteen}/undo").status_code == 403


# -- the API -----------------------------------------------------------------------------------


def _token(role: str = "editor", tenant: str | None = None) -> dict[str, str]:
    from app.services.tokens import create_token
    secret = create_token(f"undo-{role}-{tenant}", role, actor=ALICE, tenant=tenant).secret
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def no_tokens(app):
    from app.models import ApiToken
    yield
    db.session.rollback()
    db.session.execute(sa.delete(ApiToken))
    db.session.commit()


def test_api_restore_dry_run_names_17_and_undo_keeps_it(app, client, history, no_tokens):
    rule_id, sixteen, seventeen = history
    headers = _token()
    version = policy_version()
    preview = client.post(f"/admin/api/v1/audit/{sixteen}/restore?state=before&dry_run=true",
                          headers=headers).get_json()
    assert preview["dry_run"] and [u["id"] for u in preview["undoes"]] == [seventeen]
    assert preview["undoes"][0]["actor"] == "token:ci"
    assert policy_version() == version
    undo_preview = client.post(f"/admin/api/v1/audit/{sixteen}/undo?dry_run=true",
                               headers=headers).get_json()
    assert undo_preview["takes_away"] and policy_version() == version
    done = client.post(f"/admin/api/v1/audit/{sixteen}/undo", headers=headers)
    assert done.status_code == 200
    assert sorted(o if isinstance(o, str) else o["value"]
                  for o in done.get_json()["rule"]["origins"]) == [
        "https://a.example.com", "https://c.example.com"]
    refused = client.post(f"/admin/api/v1/audit/{sixteen}/undo", headers=headers)
    assert refused.status_code == 409  # undone already: the undo touched the same origin
    assert "by " in refused.get_json()["detail"]


def test_api_undo_needs_a_writer(app, client, history, no_tokens):
    _rule_id, sixteen, _seventeen = history
    answer = client.post(f"/admin/api/v1/audit/{sixteen}/undo", headers=_token("viewer"))
    assert answer.status_code == 403
