"""Drafts of a rule: the service (validation, publish as one change, roles), the request log
rows of mode draft through real HTTP, the JSON API and the policy file."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from app.api import URL_PREFIX
from app.extensions import db
from app.models import AuditEntry, Rule, RuleDraft
from app.request_log import get_request_log
from app.services import drafts
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.errors import Forbidden, NotFound, ValidationError
from app.services.policy import create_rule, delete_rule, import_policy
from app.services.policy_read import export_policy
from app.services.tenants import create_tenant
from app.services.tokens import create_token
from cors_control import get_control

ADMIN = Actor("test", "cli")
APP = "https://app.example.com"
OLD = "https://old.example.com"
STRANGER = "https://stranger.example.net"
RULE = {"path": "/api/*", "origins": [APP, OLD], "methods": ["GET", "PUT"],
        "supports_credentials": True}


def rule_id(app, path: str = "/api/*") -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Rule.id).where(Rule.path == path))


def audit_actions(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)))


def draft_rows(app) -> list[tuple[str, str, str, int]]:
    get_request_log(app).recorder.flush()
    with app.app_context():
        from app.models import RequestLogEntry
        return [tuple(r) for r in db.session.execute(
            sa.select(RequestLogEntry.mode, RequestLogEntry.origin, RequestLogEntry.reason,
                      RequestLogEntry.count).order_by(RequestLogEntry.id))]


# -- the service -------------------------------------------------------------------------------


def test_a_draft_starts_as_a_copy_of_the_live_rule_and_changes_nothing_until_published(
        app, policy):
    policy(RULE)
    rid = rule_id(app)
    with app.app_context():
        draft, created = drafts.start_draft(rid, actor=ADMIN)
        assert created
        assert drafts.draft_body(draft)["origins"] == [APP, OLD]
        assert drafts.draft_changes(draft.rule, draft).empty
        again, created_again = drafts.start_draft(rid, actor=ADMIN)
        assert (again.id, created_again) == (draft.id, False)


def test_a_draft_is_validated_as_an_edit_of_the_rule_is(app, policy):
    policy(RULE)
    rid = rule_id(app)
    with app.app_context():
        with pytest.raises(ValidationError) as error:
            drafts.save_draft(rid, {"origins": ["*"], "methods": []}, actor=ADMIN)
        fields = {e.field for e in error.value.errors}
        assert {"origins[0]", "methods"} <= fields
        assert any("cannot be combined with supports_credentials" in e.message
                   for e in error.value.errors)
        with pytest.raises(ValidationError) as error:
            drafts.save_draft(rid, {"path": "/other/*"}, actor=ADMIN)
        assert "editing the rule itself" in str(error.value)
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RuleDraft)) == 0


def test_a_draft_of_a_rule_that_is_not_enforced_is_refused_with_the_way_out(app, policy):
    policy({**RULE, "mode": "report-only"})
    with app.app_context(), pytest.raises(ValidationError) as error:
        drafts.start_draft(rule_id(app), actor=ADMIN)
    assert "set its mode to enforce" in str(error.value)


def test_publishing_is_one_version_bump_and_one_audit_entry_with_before_and_after(
        app, policy):
    policy(RULE)
    rid = rule_id(app)
    with app.app_context():
        drafts.save_draft(rid, {"origins": [APP, "https://new.example.com"],
                                "methods": ["GET"]}, actor=ADMIN)
        version, entries = policy_version(), len(audit_actions(app))
        rule, changes = drafts.publish_draft(rid, actor=ADMIN)
        assert changes.origins_removed == [OLD]
        assert changes.origins_added == ["https://new.example.com"]
        assert [(c.name, c.live, c.draft) for c in changes.options] == [
            ("methods", ["GET", "PUT"], ["GET"])]
        assert policy_version() == version + 1
        assert rule.draft is None and rule.methods == ["GET"]
        assert sorted(o.value for o in rule.origins) == [APP, "https://new.example.com"]
        entry = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert len(audit_actions(app)) == entries + 1
    assert entry.action == "rule.publish" and entry.policy_version == version + 1
    assert OLD in entry.before["origins"] and OLD not in entry.after["origins"]
    assert entry.after["methods"] == ["GET"]


def test_discarding_leaves_the_live_rule_as_it_was(app, policy):
    policy(RULE)
    rid = rule_id(app)
    with app.app_context():
        drafts.save_draft(rid, {"origins": [APP]}, actor=ADMIN)
        assert drafts.discard_draft(rid, actor=ADMIN)
        assert not drafts.discard_draft(rid, actor=ADMIN)
        rule = db.session.get(Rule, rid)
        assert rule.draft is None and sorted(o.value for o in rule.origins) == [APP, OLD]
    assert audit_actions(app)[-2:] == ["draft.create", "draft.discard"]


def test_roles_viewers_and_other_tenants_cannot_keep_drafts(app, policy):
    with app.app_context():
        acme = create_tenant("acme", paths=["/api/acme/*"], actor=ADMIN).id
        globex = create_tenant("globex", paths=["/api/globex/*"], actor=ADMIN).id
        import_policy({"rules": [RULE, {"path": "/api/acme/*", "tenant": "acme",
                                        "origins": ["https://acme.example"]}]},
                      actor=ADMIN, replace=True)
    platform, acme_rule = rule_id(app), rule_id(app, "/api/acme/*")
    acme_editor = Actor("a", "api", "tenant-editor", acme)
    globex_editor = Actor("g", "api", "tenant-editor", globex)
    with app.app_context():
        with pytest.raises(Forbidden):
            drafts.start_draft(platform, actor=Actor("v", "api", "viewer"))
        with pytest.raises(NotFound):
            drafts.start_draft(acme_rule, actor=globex_editor)
        with pytest.raises(NotFound):
            drafts.start_draft(platform, actor=acme_editor)
        draft, created = drafts.start_draft(acme_rule, actor=acme_editor)
        assert created
        with pytest.raises(ValidationError):
            drafts.save_draft(acme_rule, {"origins": [{"value": APP, "tenant": "globex"}]},
                              actor=acme_editor)
        with pytest.raises(NotFound):
            drafts.publish_draft(acme_rule, actor=globex_editor)
        with pytest.raises(Forbidden):
            drafts.publish_draft(acme_rule, actor=Actor("v", "api", "tenant-viewer", acme))
        assert drafts.rule_with_draft(acme_rule, acme_editor)[1] is not None


# -- the engine over real HTTP -----------------------------------------------------------------


@pytest.fixture
def served(app):
    """The app on a real socket (werkzeug's server in a thread)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def http_get(base: str, path: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]]]:
    request = urllib.request.Request(base + path, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, [(k, v) for k, v in response.getheaders()
                                 if k.lower().startswith("access-control-") or k == "Vary"]


def test_a_draft_changes_no_response_and_its_refusals_are_logged_with_mode_draft(
        app, policy, served):
    policy(RULE)
    before_old = http_get(served, "/api/orders", {"Origin": OLD})
    before_app = http_get(served, "/api/orders", {"Origin": APP})
    get_request_log(app).recorder.flush()
    with app.app_context():
        drafts.save_draft(rule_id(app), {"origins": [APP], "methods": ["GET"]}, actor=ADMIN)
    get_control(app).cache.refresh()
    assert http_get(served, "/api/orders", {"Origin": OLD}) == before_old
    assert http_get(served, "/api/orders", {"Origin": OLD}) == before_old
    assert http_get(served, "/api/orders", {"Origin": APP}) == before_app
    assert ("Access-Control-Allow-Origin", OLD) in before_old[1]
    rows = draft_rows(app)
    assert rows == [("draft", OLD, "origin-not-allowed", 2)]
    with app.app_context():
        rule, draft = drafts.get_draft(rule_id(app), ADMIN)
        effect = drafts.draft_effect(rule, draft, period="24h", actor=ADMIN)
    assert [(r.origin, r.reason, r.count) for r in effect.rows] == [
        (OLD, "origin-not-allowed", 2)]
    # A request the live rule refuses is the live rule's refusal, never a draft row.
    http_get(served, "/api/orders", {"Origin": STRANGER})
    assert [r[:3] for r in draft_rows(app)][-1] == ("enforce", STRANGER, "origin-not-allowed")


# -- the JSON API ------------------------------------------------------------------------------


@pytest.fixture
def token(app):
    def issue(role: str = "admin", tenant: str | None = None) -> dict[str, str]:
        with app.app_context():
            secret = create_token(f"{role}-{tenant}", role, actor=ADMIN, tenant=tenant).secret
        return {"Authorization": f"Bearer {secret}"}
    return issue


def test_the_api_creates_reads_publishes_and_discards_a_draft(app, client, policy, token):
    policy(RULE)
    rid = rule_id(app)
    auth = token()
    base = f"{URL_PREFIX}/rules/{rid}/draft"
    assert client.get(base, headers=auth).status_code == 404
    created = client.put(base, json={"origins": [APP]}, headers=auth)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["origins"] == [APP] and body["methods"] == ["GET", "PUT"]
    assert body["changes"]["origins_removed"] == [OLD]
    etag = created.headers["ETag"]
    stale = client.put(base, json={"origins": [APP, OLD]}, headers={**auth, "If-Match": '"0.0"'})
    assert stale.status_code == 412
    invalid = client.put(base, json={"max_age": -1, "mode": "off"}, headers=auth)
    assert invalid.status_code == 422
    assert {e["field"] for e in invalid.get_json()["errors"]} == {"mode"}
    effect = client.get(base + "/effect?period=7d", headers=auth)
    assert effect.status_code == 200 and effect.get_json()["period"] == "7d"
    assert client.get(base + "/effect?period=1y", headers=auth).status_code == 422
    version = policy_version_of(app)
    published = client.post(base + "/publish", headers={**auth, "If-Match": etag})
    assert published.status_code == 200, published.get_json()
    assert published.get_json()["rule"]["origins"] == [APP]
    assert published.get_json()["changes"]["origins_removed"] == [OLD]
    assert policy_version_of(app) == version + 1
    assert client.get(base, headers=auth).status_code == 404
    assert client.post(base + "/publish", headers=auth).status_code == 404
    client.put(base, json={}, headers=auth)
    assert client.delete(base, headers=auth).status_code == 204
    assert client.delete(base, headers=auth).status_code == 204
    assert audit_actions(app)[-3:] == ["rule.publish", "draft.create", "draft.discard"]


def policy_version_of(app) -> int:
    with app.app_context():
        return policy_version()


def test_the_api_refuses_viewers_and_other_tenants(app, client, policy, token):
    with app.app_context():
        create_tenant("acme", paths=["/api/acme/*"], actor=ADMIN)
        create_tenant("globex", paths=["/api/globex/*"], actor=ADMIN)
        import_policy({"rules": [RULE, {"path": "/api/acme/*", "tenant": "acme",
                                        "origins": ["https://acme.example"]}]},
                      actor=ADMIN, replace=True)
    acme_rule = rule_id(app, "/api/acme/*")
    base = f"{URL_PREFIX}/rules/{acme_rule}/draft"
    assert client.put(base, json={}, headers=token("viewer")).status_code == 403
    assert client.put(base, json={}, headers=token("tenant-editor", "globex")).status_code \
        == 404
    own = token("tenant-editor", "acme")
    assert client.put(base, json={"origins": []}, headers=own).status_code == 201
    assert client.get(base, headers=token("tenant-viewer", "globex")).status_code == 404
    assert client.post(base + "/publish", headers=token("tenant-viewer", "acme")).status_code \
        == 403
    platform = f"{URL_PREFIX}/rules/{rule_id(app)}/draft"
    assert client.put(platform, json={}, headers=own).status_code == 404


# -- the policy file ---------------------------------------------------------------------------


def test_a_draft_round_trips_through_the_policy_file(app, policy):
    document = {"rules": [{**RULE, "draft": {"origins": [APP], "max_age": 600}}]}
    with app.app_context():
        result = import_policy(document, actor=ADMIN, replace=True)
        assert result.added == ["/api/*"]
        exported = export_policy()
        assert exported["rules"][0]["draft"]["origins"] == [APP]
        assert exported["rules"][0]["draft"]["max_age"] == 600
        again = import_policy(exported, actor=ADMIN, replace=True)
        assert again.unchanged == ["/api/*"] and not again.changed
        without = import_policy({"rules": [RULE]}, actor=ADMIN, replace=True)
        assert without.changed == {"/api/*": ["draft"]}
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RuleDraft)) == 0


def test_a_bad_draft_in_a_policy_file_is_named_by_position_and_field(app):
    document = {"rules": [{**RULE, "draft": {"origins": ["*"], "path": "/x"}},
                          {"path": "/b/*", "mode": "off", "draft": {}}]}
    with app.app_context(), pytest.raises(ValidationError) as error:
        import_policy(document, actor=ADMIN, replace=True)
    fields = [e.field for e in error.value.errors]
    assert "rules[0].draft.path" in fields and "rules[1].draft" in fields


def test_the_engine_serves_a_draft_loaded_from_the_policy_file(app, client, policy):
    policy({**RULE, "draft": {"origins": [APP]}})
    response = client.get("/api/orders", headers={"Origin": OLD})
    assert response.headers.get("Access-Control-Allow-Origin") == OLD
    assert draft_rows(app) == [("draft", OLD, "origin-not-allowed", 1)]
    assert json.loads(json.dumps(draft_rows(app)))  # rows are plain values


# -- the CLI -----------------------------------------------------------------------------------


def test_flask_cors_export_and_import_carry_the_draft_and_log_shows_its_rows(
        app, runner, policy, tmp_path):
    policy({**RULE, "draft": {"origins": [APP]}})
    exported = runner.invoke(args=["cors", "export"])
    assert exported.exit_code == 0, exported.output
    document = json.loads(exported.output)
    assert document["rules"][0]["draft"]["origins"] == [APP]
    document["rules"][0]["draft"]["origins"] = [APP, "https://new.example.com"]
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))
    imported = runner.invoke(args=["cors", "import", str(path)])
    assert imported.exit_code == 0, imported.output
    with app.app_context():
        rule, draft = drafts.get_draft(rule_id(app), ADMIN)
        assert drafts.draft_body(draft)["origins"] == [APP, "https://new.example.com"]
    get_control(app).cache.refresh()
    app.test_client().get("/api/orders", headers={"Origin": OLD})
    get_request_log(app).recorder.flush()
    logged = runner.invoke(args=["cors", "log", "--mode", "draft"])
    assert logged.exit_code == 0, logged.output
    assert OLD in logged.output and "only its draft would refuse them" in logged.output


def test_deleting_a_rule_deletes_its_draft_on_every_database(app):
    """SQLite enforces no ON DELETE CASCADE here: the draft must not outlive its rule."""
    with app.app_context():
        rule = create_rule({"path": "/api/x", "origins": ["https://a.example"]}, actor=ADMIN)
        drafts.save_draft(rule.id, {"methods": ["GET"]}, actor=ADMIN)
        delete_rule(rule.id, actor=ADMIN)
        assert db.session.scalars(sa.select(RuleDraft)).all() == []
