"""The control plane's side of control-plane mode: the data-plane token role, the policy
endpoint with its ETag and long poll, and the refusals endpoint feeding the request log."""

from __future__ import annotations

import json
import threading
import time

import pytest
import sqlalchemy as sa
from flask import url_for

from app.api import URL_PREFIX
from app.extensions import db
from app.models import ApiToken, RequestLogEntry, Rule, Tenant
from app.services.access import Actor
from app.services.errors import ValidationError
from app.services.policy import add_origin
from app.services.tenants import create_tenant
from app.services.tokens import create_token
from app.services.users import create_user
from cors_control.wire import (
    DATA_PLANE_POLICY_PATH,
    DATA_PLANE_REFUSALS_PATH,
    POLICY_MEDIA_TYPE,
    REFUSALS_MEDIA_TYPE,
    RefusalRow,
    decode_policy,
    encode_refusals,
    policy_etag,
)
from tests.conftest import post_form

ADMIN = Actor("test", "cli")
POLICY = URL_PREFIX + "/data-plane/policy"
REFUSALS = URL_PREFIX + "/data-plane/refusals"
# The endpoints of data planes, and the API's own description (public, no token needed).
DATA_PLANE_ENDPOINTS = {"api.data_plane_policy", "api.data_plane_refusals"}


@pytest.fixture(autouse=True)
def no_tokens_or_tenants(app):
    yield
    with app.app_context():
        db.session.execute(sa.delete(ApiToken))
        db.session.execute(sa.delete(Tenant))
        db.session.commit()


@pytest.fixture
def token(bearer):
    def issue(role: str = "data-plane", tenant: str | None = None) -> dict[str, str]:
        return bearer(role, tenant)

    return issue


@pytest.fixture
def rule(app, policy):
    policy({"path": "/api/*", "origins": ["https://app.example.com"]})
    with app.app_context():
        return db.session.scalar(sa.select(Rule.id).where(Rule.path == "/api/*"))


def row(**changes) -> RefusalRow:
    now = time.time()
    values = dict(bucket_start=now - now % 3600, rule_path="/api/*", tenant="",
                  origin="https://evil.example", reason="origin-not-allowed", detail="",
                  mode="enforce", rule_id=None, count=3, first_seen=now - 5, last_seen=now,
                  path="/api/orders", method="GET", preflight=False, request_method="",
                  request_headers="", user_agent="test-agent", referer="")
    values.update(changes)
    return RefusalRow(**values)


def log_rows(app) -> list[RequestLogEntry]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(RequestLogEntry).order_by(
            RequestLogEntry.origin)))
        db.session.expunge_all()
        return rows


# -- the role ------------------------------------------------------------------------------


def test_the_engine_and_the_admin_api_agree_on_the_data_plane_paths(app):
    with app.test_request_context():
        assert url_for("api.data_plane_policy") == DATA_PLANE_POLICY_PATH
        assert url_for("api.data_plane_refusals") == DATA_PLANE_REFUSALS_PATH


def test_a_data_plane_token_is_refused_with_403_on_every_other_api_route(app, client, token):
    headers = token("data-plane")
    checked = 0
    for url_rule in app.url_map.iter_rules():
        if not url_rule.endpoint.startswith("api.") or url_rule.endpoint in (
                DATA_PLANE_ENDPOINTS | {"api.openapi_document"}):
            continue
        values = {name: 1 if name.endswith("_id") else "x" for name in url_rule.arguments}
        with app.test_request_context():
            path = url_for(url_rule.endpoint, **values)
        for method in sorted((url_rule.methods or set()) - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method, headers=headers, json={})
            assert response.status_code == 403, (method, path, response.get_data(as_text=True))
            assert "data-plane token may only fetch the policy" in response.json["detail"]
            checked += 1
    assert checked > 30


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_other_roles_than_admin_and_data_plane_are_refused_both_endpoints(client, token,
                                                                         role):
    headers = token(role)
    assert client.get(POLICY, headers=headers).status_code == 403
    response = client.post(REFUSALS, headers=headers, json=encode_refusals([row()]))
    assert response.status_code == 403
    assert response.json["detail"] == "only data-plane tokens and admins send refusals"


def test_an_admin_may_read_the_policy_and_send_refusals(app, client, token, rule):
    headers = token("admin")
    assert client.get(POLICY, headers=headers).status_code == 200
    assert client.post(REFUSALS, headers=headers,
                       json=encode_refusals([row()])).status_code == 202


def test_a_data_plane_token_belongs_to_no_tenant_and_no_user_holds_the_role(app):
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/acme/*"], actor=ADMIN)
        with pytest.raises(ValidationError, match="not scoped to a tenant"):
            create_token("edge", "data-plane", actor=ADMIN, tenant="acme")
        with pytest.raises(ValidationError):
            create_user("edge@example.com", "a-long-test-password", role="data-plane")
        with pytest.raises(Exception, match="(?i)only admins create API tokens"):
            create_token("edge", "data-plane", actor=Actor("ed", "cli", "editor"))


def test_flask_tokens_create_makes_a_data_plane_token(app, runner):
    result = runner.invoke(args=["tokens", "create", "edge-hosts", "--role", "data-plane"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        token = db.session.scalar(sa.select(ApiToken).where(ApiToken.name == "edge-hosts"))
        assert (token.role, token.tenant_id) == ("data-plane", None)


def test_the_tokens_page_offers_and_creates_the_data_plane_role(app, sign_in):
    admin = sign_in("admin")
    assert '<option value="data-plane"' in admin.get("/admin/tokens").get_data(as_text=True)
    response = post_form(admin, "/admin/tokens", {"name": "edge", "role": "data-plane",
                                                  "tenant": "", "expires_at": ""})
    assert response.status_code == 200, response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(ApiToken.role).where(ApiToken.name == "edge")) \
            == "data-plane"


# -- the policy ----------------------------------------------------------------------------


def test_the_policy_is_served_with_its_etag_and_decodes_to_the_rules(app, client, token,
                                                                    rule):
    response = client.get(POLICY, headers=token())
    assert response.status_code == 200
    assert response.mimetype == POLICY_MEDIA_TYPE
    assert response.headers["Cache-Control"] == "no-cache"
    version, specs, _tenants = decode_policy(response.json)
    assert response.headers["ETag"] == policy_etag(version)
    assert [(s.path, [o.value for o in s.origins], s.rule_id) for s in specs] == [
        ("/api/*", ["https://app.example.com"], rule)]


def test_a_poll_with_the_current_etag_waits_and_answers_304(client, token, rule):
    headers = token()
    etag = client.get(POLICY, headers=headers).headers["ETag"]
    response = client.get(POLICY + "?wait=1", headers={**headers, "If-None-Match": etag})
    assert response.status_code == 304
    assert response.headers["ETag"] == etag
    assert "Retry-After" not in response.headers


def test_a_change_during_a_long_poll_wakes_it_with_the_new_policy(app, client, token, rule):
    headers = token()
    first = client.get(POLICY, headers=headers)
    answers = []

    def poll() -> None:
        answers.append(app.test_client().get(
            POLICY + "?wait=60", headers={**headers, "If-None-Match": first.headers["ETag"]}))

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.3)  # let the poll start waiting (it still wakes if the change comes first)
    with app.app_context():
        add_origin(rule, "https://new.example.com", actor=ADMIN)
    waiter.join(timeout=90)
    [answer] = answers
    assert answer.status_code == 200
    version, specs, _tenants = decode_policy(answer.json)
    assert version > decode_policy(first.json)[0]
    assert answer.headers["ETag"] == policy_etag(version)
    assert "https://new.example.com" in {o.value for o in specs[0].origins}


def test_a_data_plane_ahead_of_this_process_never_receives_an_older_policy(client, token,
                                                                          rule):
    headers = token()
    version = decode_policy(client.get(POLICY, headers=headers).json)[0]
    response = client.get(POLICY + "?wait=0",
                          headers={**headers, "If-None-Match": policy_etag(version + 5)})
    assert response.status_code == 304


def test_past_the_bound_on_waiting_polls_a_poll_is_answered_at_once(make_app, token):
    app = make_app(DATA_PLANE_MAX_WAITERS=0)
    with app.app_context():
        secret = create_token("edge", "data-plane", actor=ADMIN).secret
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    etag = client.get(POLICY, headers=headers).headers["ETag"]
    response = client.get(POLICY + "?wait=60", headers={**headers, "If-None-Match": etag})
    assert response.status_code == 304
    assert response.headers["Retry-After"] == "5"


@pytest.mark.parametrize("wait", ["61", "-1", "soon", "1.5"])
def test_a_wait_that_is_not_0_to_60_seconds_is_refused_with_422(client, token, wait):
    response = client.get(POLICY + f"?wait={wait}", headers=token())
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "wait"


# -- refusals ------------------------------------------------------------------------------


def test_refusals_are_stored_and_a_second_batch_adds_to_the_counts(app, client, token, rule):
    headers = token()
    batch = encode_refusals([row(rule_id=rule, count=3),
                             row(origin="https://other.example", count=1)], source="edge-1")
    response = client.post(REFUSALS, headers=headers, json=batch)
    assert response.status_code == 202
    assert response.json == {"stored": 2}
    response = client.post(REFUSALS, data=json.dumps(
        encode_refusals([row(rule_id=rule, count=4)])),
        headers={**headers, "Content-Type": REFUSALS_MEDIA_TYPE})
    assert response.status_code == 202
    evil, other = log_rows(app)
    assert (evil.origin, evil.count, evil.rule_id, evil.rule_path) == (
        "https://evil.example", 7, rule, "/api/*")
    assert (other.origin, other.count) == ("https://other.example", 1)


def test_a_rule_id_that_names_no_rule_is_dropped_and_the_rule_path_kept(app, client, token,
                                                                        rule):
    response = client.post(REFUSALS, headers=token(),
                           json=encode_refusals([row(rule_id=rule + 1000, rule_path="/gone")]))
    assert response.status_code == 202
    [stored] = log_rows(app)
    assert (stored.rule_id, stored.rule_path) == (None, "/gone")


def test_another_hosts_text_is_escaped_and_cut_to_its_column(app, client, token):
    response = client.post(REFUSALS, headers=token(), json=encode_refusals([
        row(origin="https://evil.example\x00\r\n", user_agent="\x1b[31m" + "a" * 1000)]))
    assert response.status_code == 202
    [stored] = log_rows(app)
    assert stored.origin == "https://evil.example\\x00\\x0d\\x0a"
    assert stored.user_agent.startswith("\\x1b[31maaa") and len(stored.user_agent) == 300


def test_a_refusals_document_of_an_unknown_format_is_refused_naming_it(client, token):
    response = client.post(REFUSALS, headers=token(), json={"format": 2, "rows": []})
    assert response.status_code == 400
    assert response.json["type"].endswith("unknown-format")
    assert "format 2" in response.json["detail"]
    assert "upgrade cors-control" in response.json["detail"]


@pytest.mark.parametrize(("body", "message"), [
    ({"format": 1, "rows": [{"count": 1}]}, "rows[0] lacks the field"),
    ({"format": 1, "rows": "all"}, "rows must be a list"),
    ([], "not a JSON object"),
])
def test_a_malformed_refusals_document_is_refused_with_400_saying_what(client, token, body,
                                                                      message):
    response = client.post(REFUSALS, headers=token(), json=body)
    assert response.status_code == 400
    assert message in response.json["detail"]


def test_rows_that_do_not_fit_the_log_are_refused_with_422_naming_the_row(app, client,
                                                                         token):
    response = client.post(REFUSALS, headers=token(), json=encode_refusals([
        row(), row(mode="sometimes"), row(first_seen=1.0)]))
    assert response.status_code == 422
    fields = [error["field"] for error in response.json["errors"]]
    assert fields == ["rows[1].mode", "rows[2].first_seen"]
    assert log_rows(app) == []  # all or nothing


def test_refusals_not_sent_as_json_are_refused_with_415(client, token):
    response = client.post(REFUSALS, headers=token(), data="format=1",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


def test_a_refusals_body_over_the_limit_is_refused_with_413(make_app):
    app = make_app(DATA_PLANE_REFUSALS_MAX_BYTES=1000)
    with app.app_context():
        secret = create_token("edge", "data-plane", actor=ADMIN).secret
    response = app.test_client().post(
        REFUSALS, headers={"Authorization": f"Bearer {secret}"},
        json=encode_refusals([row(user_agent="a" * 300) for _ in range(10)]))
    assert response.status_code == 413
    assert response.json["type"].endswith("content-too-large")


def test_rows_of_requests_no_rule_governed_are_stored_without_a_rule(app, client, token):
    response = client.post(REFUSALS, headers=token(), json=encode_refusals([
        row(rule_path="", reason="no-rule")]))
    assert response.status_code == 202
    [stored] = log_rows(app)
    assert (stored.rule_path, stored.reason, stored.rule_id) == ("", "no-rule", None)
