"""The Draft section of a rule's page: start, edit, effect, publish through a confirmation
page (no JavaScript needed), discard; CSRF and roles on every form."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Rule
from app.request_log import get_request_log
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.policy import import_policy
from app.services.tenants import create_tenant
from cors_control import get_control

ADMIN = Actor("test", "cli")
APP = "https://app.example.com"
OLD = "https://old.example.com"
RULE = {"path": "/api/*", "origins": [APP, {"value": OLD, "note": "legacy"}],
        "methods": ["GET", "PUT"]}


def rule_id(app, path: str = "/api/*") -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Rule.id).where(Rule.path == path))


def draft_form(csrf: str, **changes) -> dict[str, str]:
    form = {"csrf_token": csrf, "origins": f"{APP}\n{OLD}", "methods": "GET, PUT",
            "allow_headers": "*", "expose_headers": "", "max_age": ""}
    return {**form, **changes}


def test_an_editor_starts_edits_sees_the_effect_and_publishes_a_draft(app, policy, sign_in):
    policy(RULE)
    rid = rule_id(app)
    editor = sign_in("editor")
    page = editor.get(f"/admin/rules/{rid}").get_data(as_text=True)
    assert 'id="draft"' in page and "Start a draft" in page
    started = editor.post(f"/admin/rules/{rid}/draft", data={"csrf_token": editor.csrf})
    assert started.status_code == 302
    saved = editor.post(f"/admin/rules/{rid}/draft/edit",
                        data=draft_form(editor.csrf, origins=APP, methods="GET"))
    assert saved.status_code == 302, saved.get_data(as_text=True)
    # The live rule keeps answering; the draft's refusal is recorded and counted.
    get_control(app).cache.refresh()
    response = app.test_client().get("/api/orders", headers={"Origin": OLD})
    assert response.headers["Access-Control-Allow-Origin"] == OLD
    get_request_log(app).recorder.flush()
    section = editor.get(f"/admin/rules/{rid}?draft_period=7d").get_data(as_text=True)
    assert "Origins it takes away" in section and OLD in section
    assert "would have refused <strong>1</strong> request" in section
    fragment = editor.get(f"/admin/rules/{rid}/draft?draft_period=24h",
                          headers={"HX-Request": "true"})
    assert "<!doctype" not in fragment.get_data(as_text=True)
    assert '<section id="draft"' in fragment.get_data(as_text=True)
    confirm = editor.get(f"/admin/rules/{rid}/draft/publish").get_data(as_text=True)
    assert "Publish the draft" in confirm and OLD in confirm and 'name="confirm"' in confirm
    version = _version(app)
    published = editor.post(f"/admin/rules/{rid}/draft/publish",
                            data={"csrf_token": editor.csrf, "confirm": "yes"})
    assert published.status_code == 303
    assert _version(app) == version + 1
    with app.app_context():
        rule = db.session.get(Rule, rid)
        assert [o.value for o in rule.origins] == [APP] and rule.methods == ["GET"]
        assert rule.draft is None
        assert db.session.scalars(sa.select(AuditEntry.action).order_by(
            AuditEntry.id.desc())).first() == "rule.publish"


def test_a_publish_without_the_confirmation_goes_to_the_confirmation_page(app, policy,
                                                                          sign_in):
    policy({**RULE, "draft": {"origins": [APP]}})
    rid = rule_id(app)
    editor = sign_in("editor")
    response = editor.post(f"/admin/rules/{rid}/draft/publish",
                           data={"csrf_token": editor.csrf})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/admin/rules/{rid}/draft/publish")
    with app.app_context():
        assert db.session.get(Rule, rid).draft is not None


def test_an_invalid_draft_is_shown_again_with_the_service_s_messages(app, policy, sign_in):
    policy({**RULE, "draft": {}})
    rid = rule_id(app)
    editor = sign_in("editor")
    response = editor.post(f"/admin/rules/{rid}/draft/edit",
                           data=draft_form(editor.csrf, origins="ftp://nope", max_age="-5"))
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "ftp://nope" in text and "max_age must be from 0" in text


def test_a_kept_origin_keeps_its_note(app, policy, sign_in):
    policy({**RULE, "draft": {}})
    rid = rule_id(app)
    editor = sign_in("editor")
    editor.post(f"/admin/rules/{rid}/draft/edit", data=draft_form(editor.csrf, methods="GET"))
    with app.app_context():
        body = db.session.get(Rule, rid).draft.body
    assert {"value": OLD, "note": "legacy"} in body["origins"]


def test_discarding_keeps_the_live_rule(app, policy, sign_in):
    policy({**RULE, "draft": {"origins": [APP]}})
    rid = rule_id(app)
    editor = sign_in("editor")
    response = editor.post(f"/admin/rules/{rid}/draft/discard",
                           data={"csrf_token": editor.csrf})
    assert response.status_code == 303
    with app.app_context():
        rule = db.session.get(Rule, rid)
        assert rule.draft is None and len(rule.origins) == 2


def test_every_draft_form_needs_the_csrf_token(app, policy, sign_in):
    policy({**RULE, "draft": {"origins": [APP]}})
    rid = rule_id(app)
    editor = sign_in("editor")
    for action in ("draft", "draft/edit", "draft/discard", "draft/publish"):
        response = editor.post(f"/admin/rules/{rid}/{action}", data={"confirm": "yes"})
        assert response.status_code == 400, action
    with app.app_context():
        assert db.session.get(Rule, rid).draft.body["origins"] == [APP]


def test_a_viewer_sees_the_draft_but_cannot_change_it(app, policy, sign_in):
    policy({**RULE, "draft": {"origins": [APP]}})
    rid = rule_id(app)
    viewer = sign_in("viewer")
    page = viewer.get(f"/admin/rules/{rid}").get_data(as_text=True)
    assert "Origins it takes away" in page and "Publish…" not in page
    for action in ("draft", "draft/edit", "draft/discard", "draft/publish"):
        response = viewer.post(f"/admin/rules/{rid}/{action}",
                               data={"csrf_token": viewer.csrf, "confirm": "yes"})
        assert response.status_code == 403, action
    assert viewer.get(f"/admin/rules/{rid}/draft/publish").status_code == 403


def test_another_tenant_cannot_reach_a_tenant_s_draft(app, sign_in):
    with app.app_context():
        create_tenant("acme", paths=["/api/acme/*"], actor=ADMIN)
        create_tenant("globex", paths=["/api/globex/*"], actor=ADMIN)
        import_policy({"rules": [{"path": "/api/acme/*", "tenant": "acme",
                                  "origins": ["https://acme.example"],
                                  "draft": {"origins": []}}]}, actor=ADMIN, replace=True)
    rid = rule_id(app, "/api/acme/*")
    other = sign_in("tenant-editor", tenant="globex")
    assert other.get(f"/admin/rules/{rid}/draft").status_code == 404
    assert other.post(f"/admin/rules/{rid}/draft/publish",
                      data={"csrf_token": other.csrf, "confirm": "yes"}).status_code == 404
    own = sign_in("tenant-editor", tenant="acme")
    assert own.get(f"/admin/rules/{rid}/draft").status_code == 200
    assert own.post(f"/admin/rules/{rid}/draft/publish",
                    data={"csrf_token": own.csrf, "confirm": "yes"}).status_code == 303
    with app.app_context():
        assert db.session.get(Rule, rid).origins == []


def test_the_request_log_labels_draft_rows_and_offers_no_allow(app, policy, sign_in):
    policy({**RULE, "draft": {"origins": [APP]}})
    app.test_client().get("/api/orders", headers={"Origin": OLD})
    get_request_log(app).recorder.flush()
    editor = sign_in("editor")
    page = editor.get("/admin/log?mode=draft").get_data(as_text=True)
    assert "draft would refuse" in page and OLD in page
    assert "Allow on this rule" not in page
    assert "the live rule allowed these requests" in page


def _version(app) -> int:
    with app.app_context():
        return policy_version()
