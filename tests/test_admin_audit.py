"""The audit trail: every change with who, when, channel and a field-level difference;
filters, capped pages, and restoring a rule to a recorded state."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Rule
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.policy import add_origin, create_rule, delete_rule, import_policy, update_rule

HTMX = {"HX-Request": "true"}
ALICE = Actor("alice@example.com", "dashboard")
CLI = Actor("bob", "cli")


@pytest.fixture
def history(app):
    """A rule created, widened and renamed on the dashboard, then an import from the CLI."""
    with app.app_context():
        rule = create_rule({"path": "/api/orders/*", "origins": ["https://a.example.com"],
                            "max_age": 60}, actor=ALICE)
        add_origin(rule.id, "https://b.example.com", actor=ALICE)
        update_rule(rule.id, {"max_age": 600, "mode": "report-only",
                              "origins": ["https://b.example.com", "https://c.example.com"]},
                    actor=ALICE)
        import_policy({"rules": [{"path": "/api/status"}]}, actor=CLI)
        return rule.id


def _entry(app, action: str, **where) -> AuditEntry:
    with app.app_context():
        query = sa.select(AuditEntry).where(AuditEntry.action == action)
        for name, value in where.items():
            query = query.where(getattr(AuditEntry, name) == value)
        entry = db.session.scalars(query.order_by(AuditEntry.id.desc())).first()
        db.session.expunge_all()
        return entry


def _rule(app, path: str) -> Rule | None:
    with app.app_context():
        rule = db.session.scalars(sa.select(Rule).where(Rule.path == path)).first()
        if rule is not None:
            rule.origins  # noqa: B018 - load before leaving the session
            db.session.expunge_all()
        return rule


def _restore(client, entry_id: int, state: str, *, headers: dict | None = None, **form):
    return client.post(f"/admin/audit/{entry_id}/restore", headers=headers or {},
                       data={"state": state, "csrf_token": client.csrf, **form})


def test_audit_trail_is_a_page_and_an_htmx_fragment(sign_in, history):
    viewer = sign_in("viewer")
    page = viewer.get("/admin/audit")
    fragment = viewer.get("/admin/audit", headers=HTMX)
    assert page.status_code == fragment.status_code == 200
    assert "<html" in page.get_data(as_text=True)
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and body.lstrip().startswith('<div id="audit-list">')
    assert "HX-Request" in fragment.headers["Vary"]


def test_every_change_shows_who_when_channel_and_what(app, sign_in, history):
    body = sign_in("viewer").get("/admin/audit").get_data(as_text=True)
    for actor, channel, summary in [
        ("alice@example.com", "dashboard", "created rule /api/orders/*"),
        ("alice@example.com", "dashboard", "allowed https://b.example.com on /api/orders/*"),
        ("bob", "cli", "imported policy: 1 added, 0 changed, 0 removed"),
    ]:
        assert actor in body and f'<span class="badge">{channel}</span>' in body
        assert summary in body
    created = _entry(app, "rule.create")
    assert f"{created.at:%Y-%m-%d %H:%M}" in body


def test_an_update_shows_old_and_new_values_and_origins_added_and_removed(app, sign_in,
                                                                          history):
    update = _entry(app, "rule.update")
    body = sign_in("viewer").get("/admin/audit").get_data(as_text=True)
    row = _row(body, update.id)
    assert '<del>60</del> → <ins>600</ins>' in row
    assert '<del>enforce</del> → <ins>report-only</ins>' in row
    assert "<ins>+ https://c.example.com</ins>" in row
    assert "<del>− https://a.example.com</del>" in row
    assert "https://b.example.com" not in row  # unchanged origins are not listed
    assert "methods" not in row  # nor unchanged fields


def test_a_creation_lists_the_fields_that_have_a_value(app, sign_in):
    with app.app_context():
        create_rule({"path": "/api/cached", "max_age": 0}, actor=ALICE)
    created = _entry(app, "rule.create")
    row = _row(sign_in("viewer").get("/admin/audit").get_data(as_text=True), created.id)
    assert "<ins>/api/cached</ins>" in row
    assert re.search(r"max_age</span>:\s*<ins>0</ins>", row)  # 0 is a value, not empty
    for empty in ("origins", "description", "supports_credentials", "expose_headers"):
        assert f">{empty}</span>" not in row


def test_an_import_lists_the_changes_of_each_rule_it_touched(app, sign_in, history):
    entry = _entry(app, "policy.import")
    row = _row(sign_in("viewer").get("/admin/audit").get_data(as_text=True), entry.id)
    assert "/api/status" in row and "<ins>/api/status</ins>" in row
    assert "/admin/audit/" not in row  # an import has no single rule state to restore


@pytest.mark.parametrize(("query", "shown", "hidden"), [
    ({"rule": "orders"}, ["created rule /api/orders/*"], ["imported policy"]),
    ({"rule": "/API/ORDERS"}, ["created rule /api/orders/*"], ["imported policy"]),
    ({"actor": "BOB"}, ["imported policy"], ["created rule /api/orders/*"]),
    ({"actor": "alice", "rule": "status"}, [], ["created rule", "imported policy"]),
    ({"rule": "%"}, [], ["created rule", "imported policy"]),  # no wildcard injection
])
def test_filters_by_rule_path_and_by_user(sign_in, history, query, shown, hidden):
    viewer = sign_in("viewer")
    for headers in ({}, HTMX):
        body = viewer.get("/admin/audit", query_string=query, headers=headers) \
            .get_data(as_text=True)
        for text in shown:
            assert text in body
        for text in hidden:
            assert text not in body
        if not shown:
            assert "No change matches these filters." in body


def test_pages_are_capped_and_link_to_older_entries_with_the_filters(app, sign_in):
    with app.app_context():
        start = datetime.now(UTC) - timedelta(days=1)
        db.session.add_all([
            AuditEntry(at=start + timedelta(seconds=i), actor="bulk", channel="api",
                       action="rule.update", rule_id=None, rule_path=f"/api/r{i}",
                       summary=f"change number {i}", policy_version=i)
            for i in range(130)
        ])
        db.session.commit()
    viewer = sign_in("viewer")
    first = viewer.get("/admin/audit", query_string={"per_page": 1000, "actor": "bulk"})
    body = first.get_data(as_text=True)
    assert body.count('<tr id="audit-') == 100
    assert "change number 129<" in body and "change number 29<" not in body
    assert "Page 1 of 2 · 130 changes" in body
    older = re.search(r'<a href="([^"]+)"[^>]*>Older', body).group(1)
    assert "actor=bulk" in older and "page=2" in older and "per_page=100" in older
    second = viewer.get(older.replace("&amp;", "&"), headers=HTMX).get_data(as_text=True)
    assert second.count('<tr id="audit-') == 30
    assert "change number 29<" in second and "Newer" in second
    default = viewer.get("/admin/audit").get_data(as_text=True)
    assert default.count('<tr id="audit-') == 25


def test_restore_buttons_are_offered_to_editors_on_entries_with_rule_states(app, sign_in,
                                                                            history):
    create = _entry(app, "rule.create")
    update = _entry(app, "rule.update")
    editor_page = sign_in("editor").get("/admin/audit").get_data(as_text=True)
    created_row, updated_row = _row(editor_page, create.id), _row(editor_page, update.id)
    assert 'value="after"' in created_row and 'value="before"' not in created_row
    assert 'value="before"' in updated_row and 'value="after"' in updated_row
    assert 'aria-label="Restore the rule /api/orders/* to its state before' in updated_row
    assert "Restore this state (before)" in updated_row
    viewer_page = sign_in("viewer").get("/admin/audit").get_data(as_text=True)
    assert "/restore" not in viewer_page


def test_restore_brings_back_a_deleted_rule_and_is_audited(app, sign_in, history):
    with app.app_context():
        rule_id = db.session.scalar(sa.select(Rule.id).where(Rule.path == "/api/orders/*"))
        delete_rule(rule_id, actor=ALICE)
        version = policy_version()
    deletion = _entry(app, "rule.delete")
    editor = sign_in("editor")
    response = _restore(editor, deletion.id, "before")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/audit"
    restored = _rule(app, "/api/orders/*")
    assert restored is not None and restored.mode == "report-only" and restored.max_age == 600
    assert sorted(o.value for o in restored.origins) == ["https://b.example.com",
                                                         "https://c.example.com"]
    entry = _entry(app, "rule.restore")
    assert (entry.actor, entry.channel) == (editor.user_email, "dashboard")
    assert entry.before is None and entry.after["path"] == "/api/orders/*"
    assert entry.policy_version == version + 1
    page = editor.get("/admin/audit").get_data(as_text=True)
    assert f"Restored rule /api/orders/* to its state before change #{deletion.id}." in page


def test_restore_brings_a_rule_back_to_an_earlier_state(app, sign_in, history):
    update = _entry(app, "rule.update")
    admin = sign_in("admin")
    response = _restore(admin, update.id, "before", headers=HTMX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<div id="audit-list">')
    assert f"Restored rule /api/orders/* to its state before change #{update.id}." in body
    rule = _rule(app, "/api/orders/*")
    assert (rule.mode, rule.max_age) == ("enforce", 60)
    assert sorted(o.value for o in rule.origins) == ["https://a.example.com",
                                                     "https://b.example.com"]
    restore = _entry(app, "rule.restore")
    assert f'<tr id="audit-{restore.id}">' in body  # the new entry is listed at once


def test_restoring_the_current_state_changes_nothing_and_says_so(app, sign_in, history):
    update = _entry(app, "rule.update")
    with app.app_context():
        version = policy_version()
    response = _restore(sign_in("editor"), update.id, "after", headers=HTMX)
    assert "already is in its state after change" in response.get_data(as_text=True)
    assert _entry(app, "rule.restore") is None
    with app.app_context():
        assert policy_version() == version


def test_restore_that_would_tie_with_another_rule_is_refused_with_the_reason(app, sign_in):
    with app.app_context():
        rule = create_rule({"path": "/api/x/*"}, actor=ALICE)
        create_rule({"path": "/api/other"}, actor=ALICE)  # so SQLite does not reuse the id
        delete_rule(rule.id, actor=ALICE)
        create_rule({"path": "/api/*/y"}, actor=ALICE)
    deletion = _entry(app, "rule.delete")
    editor = sign_in("editor")
    page = _restore(editor, deletion.id, "before", rule="x", page="1")
    assert page.headers["Location"] == "/admin/audit?page=1&rule=x"
    body = editor.get(page.headers["Location"]).get_data(as_text=True)
    fragment = _restore(editor, deletion.id, "before", headers=HTMX).get_data(as_text=True)
    for text in (body, fragment):
        assert 'class="flash error"' in text
        assert "Nothing was restored: path: /api/x/* and the rule /api/*/y can match the " \
               "same request paths" in text
    assert _rule(app, "/api/x/*") is None
    assert _entry(app, "rule.restore") is None


def test_viewers_may_not_restore(app, sign_in, history):
    with app.app_context():
        version = policy_version()
    viewer = sign_in("viewer")
    update = _entry(app, "rule.update")
    assert _restore(viewer, update.id, "before").status_code == 403
    assert _restore(viewer, update.id, "before", headers=HTMX).status_code == 403
    with app.app_context():
        assert policy_version() == version


def test_restore_without_a_csrf_token_is_refused(app, sign_in, history):
    update = _entry(app, "rule.update")
    editor = sign_in("editor")
    response = editor.post(f"/admin/audit/{update.id}/restore", data={"state": "before"})
    assert response.status_code == 400
    assert _entry(app, "rule.restore") is None


def test_restore_of_an_unknown_entry_is_not_found_and_a_bad_state_is_explained(app, sign_in,
                                                                              history):
    editor = sign_in("editor")
    assert _restore(editor, 999999, "before").status_code == 404
    create = _entry(app, "rule.create")
    body = _restore(editor, create.id, "before", headers=HTMX).get_data(as_text=True)
    assert f"audit entry {create.id} has no rule state before the change to restore" in body
    body = _restore(editor, create.id, "sideways", headers=HTMX).get_data(as_text=True)
    assert "state must be before or after" in body


def test_recorded_values_are_escaped(app, sign_in):
    hostile = '"><script>alert(1)</script>'
    with app.app_context():
        rule = create_rule({"path": "/api/x", "description": "plain"}, actor=ALICE)
        update_rule(rule.id, {"description": hostile}, actor=Actor(hostile, "api"))
    body = sign_in("editor").get("/admin/audit").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def _row(body: str, entry_id: int) -> str:
    start = body.index(f'<tr id="audit-{entry_id}">')
    return body[start:body.index("</tr>", start)]


def test_origins_of_two_tenants_with_the_same_value_are_two_entries_in_a_diff():
    from app.services.audit import _origin_change

    change = _origin_change(
        [{"value": "https://a.example", "tenant": "acme"}],
        [{"value": "https://a.example", "tenant": "acme"},
         {"value": "https://a.example", "tenant": "globex"}])
    assert change.added == ["https://a.example (tenant: globex)"]
    assert change.removed == [] and change.changed == []
