"""The JSON admin API: tokens, every endpoint with its successes and its errors, tenant
scoping, optimistic locking, problem documents, and the token and tenant commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from app.api import URL_PREFIX
from app.api.openapi import DOCUMENT
from app.extensions import db
from app.models import AllowedOrigin, ApiToken, AuditEntry, Rule, Tenant
from app.request_log import get_request_log
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.errors import ValidationError
from app.services.policy_read import export_policy
from app.services.tenants import create_tenant
from app.services.tokens import create_token, hash_secret, revoke_token
from app.services.validation import validate_rule
from cors_control import get_control

ADMIN = Actor("test", "cli")
APP_ORIGIN = "https://app.example.com"
EVIL = "https://evil.example.net"
PROBLEM = "application/problem+json"

MAIN = {"path": "/api/*", "origins": [APP_ORIGIN], "methods": ["GET", "PUT"],
        "allow_headers": ["content-type"], "description": "the main API"}
PUBLIC = {"path": "/api/public/*", "origins": ["*"], "methods": ["GET"], "mode": "report-only"}
SHARED = {"path": "/api/t/*/orders", "tenant_selector": {"source": "view-arg", "key": "tenant"},
          "origins": [{"value": "https://shop.acme.example", "tenant": "acme"},
                      {"value": "https://shop.globex.example", "tenant": "globex"}]}
ACME_RULE = {"path": "/api/orders", "tenant": "acme", "origins": ["https://acme.example"]}
GLOBEX_RULE = {"path": "/api/echo", "tenant": "globex", "origins": ["https://globex.example"]}


def url(path: str) -> str:
    return URL_PREFIX + path


@pytest.fixture(autouse=True)
def no_tokens_or_tenants(app):
    """The shared rig empties the policy tables; tokens and tenants are emptied here."""
    _forget_tokens_and_tenants(app)
    yield
    _forget_tokens_and_tenants(app)


def _forget_tokens_and_tenants(app) -> None:
    with app.app_context():
        db.session.execute(sa.delete(ApiToken))
        owned = sa.select(Rule.id).where(Rule.tenant_id.is_not(None))
        db.session.execute(sa.delete(AllowedOrigin).where(
            AllowedOrigin.tenant_id.is_not(None) | AllowedOrigin.rule_id.in_(owned)))
        db.session.execute(sa.delete(Rule).where(Rule.tenant_id.is_not(None)))
        db.session.execute(sa.delete(Tenant))
        db.session.commit()


@pytest.fixture
def token(app):
    """``token(role, tenant=None, name=None)``: the Authorization header of a new token."""
    counter = iter(range(1000))

    def issue(role: str = "admin", tenant: str | None = None, name: str | None = None,
              expires_at: datetime | None = None) -> dict[str, str]:
        with app.app_context():
            secret = create_token(name or f"{role}-{next(counter)}", role, actor=ADMIN,
                                  tenant=tenant, expires_at=expires_at).secret
        return {"Authorization": f"Bearer {secret}"}

    return issue


@pytest.fixture
def tenants(app):
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/orders"], actor=ADMIN)
        create_tenant("globex", "Globex", paths=["/api/echo"], actor=ADMIN)


@pytest.fixture
def tenancy(tenants, policy):
    """A platform rule, a shared tenant-selecting rule, and one rule of each tenant."""
    policy(MAIN, SHARED, ACME_RULE, GLOBEX_RULE)


def rule_id(app, path: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Rule.id).where(Rule.path == path))


def stored(app, path: str) -> dict | None:
    """The rule as the service exports it, straight from the database."""
    with app.app_context():
        return next((r for r in export_policy()["rules"] if r["path"] == path), None)


def audit_entries(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        return [(e.actor, e.channel, e.action) for e in db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action.notlike("token.%")
                                        & AuditEntry.action.notlike("tenant.%"))
            .order_by(AuditEntry.id))]


def version(app) -> int:
    with app.app_context():
        return policy_version()


def assert_problem(response, status: int, *, field: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"].startswith("urn:cors-control:problem:")
    assert body["title"] and isinstance(body["detail"], str)
    assert isinstance(body["errors"], list)
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body["errors"]
    return body


# -- authentication ------------------------------------------------------------------------


def test_request_without_a_token_is_refused_with_401_and_a_bearer_challenge(client):
    response = client.get(url("/rules"))
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="cors-control"'
    assert "flask tokens create" in body["detail"]


@pytest.mark.parametrize("header", ["Bearer cc_not-a-real-token", "Bearer ", "Basic abc",
                                    "bearer nonsense"])
def test_an_unknown_or_malformed_token_is_refused_with_401(client, header):
    response = client.get(url("/rules"), headers={"Authorization": header})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="cors-control"')


def test_an_expired_token_is_refused_with_401(app, client, token):
    headers = token("editor", name="soon")
    assert client.get(url("/rules"), headers=headers).status_code == 200
    with app.app_context():
        db.session.execute(sa.update(ApiToken).where(ApiToken.name == "soon").values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        db.session.commit()
    response = client.get(url("/rules"), headers=headers)
    body = assert_problem(response, 401)
    assert "expired" in body["detail"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_revoked_token_is_refused_with_401(app, client, token):
    headers = token("admin", name="gone")
    assert client.get(url("/rules"), headers=headers).status_code == 200
    with app.app_context():
        revoke_token("gone", actor=ADMIN)
    body = assert_problem(client.get(url("/rules"), headers=headers), 401)
    assert "revoked" in body["detail"]


def test_using_a_token_records_when_it_was_last_used(app, client, token):
    headers = token("viewer", name="reader")
    with app.app_context():
        assert db.session.scalar(sa.select(ApiToken.last_used_at)) is None
    client.get(url("/rules"), headers=headers)
    with app.app_context():
        assert db.session.scalar(sa.select(ApiToken.last_used_at)) is not None


def test_the_secret_is_stored_only_as_its_hash(app, token):
    secret = token("admin", name="hashed")["Authorization"].removeprefix("Bearer ")
    with app.app_context():
        stored_token = db.session.scalar(sa.select(ApiToken))
        assert stored_token.token_hash == hash_secret(secret)
        assert secret not in (stored_token.token_hash, stored_token.prefix)


def test_the_session_cookie_does_not_authenticate_the_api(sign_in):
    browser = sign_in("admin")
    assert browser.get("/admin/").status_code == 200
    response = browser.get(url("/rules"))
    assert_problem(response, 401)
    response = browser.post(url("/rules"), json={"path": "/api/*"},
                            headers={"X-CSRFToken": browser.csrf})
    assert_problem(response, 401)


def test_a_bearer_token_gets_the_dashboards_sign_in_redirect(client, token):
    response = client.get("/admin/", headers=token("admin"))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


def test_writes_need_no_csrf_token(app, client, token):
    assert app.config["WTF_CSRF_ENABLED"]
    response = client.post(url("/rules"), json=MAIN, headers=token("editor"))
    assert response.status_code == 201


def test_tokens_self_describes_the_calling_token(client, tenants, token):
    expiry = datetime.now(UTC) + timedelta(days=30)
    headers = token("tenant-viewer", tenant="acme", name="acme-dashboard", expires_at=expiry)
    body = client.get(url("/tokens/self"), headers=headers).get_json()
    assert body["name"] == "acme-dashboard"
    assert (body["role"], body["tenant"]) == ("tenant-viewer", "acme")
    assert body["expires_at"].startswith(expiry.strftime("%Y-%m-%dT%H:%M:%S"))
    assert body["last_used_at"] is not None


# -- the list of rules ---------------------------------------------------------------------


def test_rules_are_listed_by_path_with_their_origin_counts(client, policy, token):
    policy(MAIN, PUBLIC)
    body = client.get(url("/rules"), headers=token("viewer")).get_json()
    assert (body["page"], body["per_page"], body["total"]) == (1, 50, 2)
    assert [r["path"] for r in body["items"]] == ["/api/*", "/api/public/*"]
    first = body["items"][0]
    assert first["origin_count"] == 1 and "origins" not in first
    assert first["methods"] == ["GET", "PUT"] and first["version"] >= 1


@pytest.mark.parametrize(("query", "paths"), [
    ("q=main", ["/api/*"]),
    ("q=PUBLIC", ["/api/public/*"]),
    ("mode=report-only", ["/api/public/*"]),
    ("tenant=acme", ["/api/orders"]),
    ("tenant=nobody", []),
    ("q=%25", []),
])
def test_rules_are_filtered_by_text_mode_and_tenant(client, tenants, policy, token, query,
                                                     paths):
    policy(MAIN, PUBLIC, ACME_RULE)
    body = client.get(url(f"/rules?{query}"), headers=token("admin")).get_json()
    assert [r["path"] for r in body["items"]] == paths


def test_rules_are_paged_and_the_page_size_is_capped(client, policy, token):
    policy(*({"path": f"/api/r{i:02}"} for i in range(5)))
    headers = token("viewer")
    body = client.get(url("/rules?per_page=2&page=2"), headers=headers).get_json()
    assert [r["path"] for r in body["items"]] == ["/api/r02", "/api/r03"]
    assert (body["page"], body["per_page"], body["total"]) == (2, 2, 5)
    assert client.get(url("/rules?per_page=5000"), headers=headers).get_json()["per_page"] \
        == 200
    assert client.get(url("/rules?page=9"), headers=headers).get_json()["items"] == []


@pytest.mark.parametrize(("query", "field"), [
    ("page=0", "page"), ("page=x", "page"), ("per_page=-1", "per_page"),
    ("mode=loud", "mode"), ("q=%00", "q"),
])
def test_bad_list_arguments_answer_422(client, token, query, field):
    assert_problem(client.get(url(f"/rules?{query}"), headers=token("viewer")), 422,
                   field=field)


# -- one rule ------------------------------------------------------------------------------


def test_create_rule_answers_201_with_location_etag_and_the_rule(app, client, token):
    before = version(app)
    response = client.post(url("/rules"), json=MAIN, headers=token("editor", name="deploy"))
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == url(f"/rules/{body['id']}")
    assert response.headers["ETag"] == f'"{body["version"]}"'
    assert body["origins"] == [APP_ORIGIN] and body["updated_by"] == "token:deploy"
    assert stored(app, "/api/*")["methods"] == ["GET", "PUT"]
    assert version(app) == before + 1
    assert audit_entries(app) == [("token:deploy", "api", "rule.create")]


@pytest.mark.parametrize("data", [
    {"path": "api"},
    {"path": "/api/*", "origins": ["https://app.example.com/"]},
    {"path": "/api/*", "max_age": -1, "mode": "loud"},
    {"path": "/admin/x"},
    {"path": "/api/*", "supports_credentials": True, "origins": ["*"]},
    {"path": "/api/*", "colour": "blue"},
    {"origins": []},
])
def test_invalid_rules_answer_422_with_the_services_own_messages(app, client, token, data):
    response = client.post(url("/rules"), json=data, headers=token("admin"))
    body = assert_problem(response, 422)
    with app.app_context(), pytest.raises(ValidationError) as expected:
        validate_rule(data, reserved_prefixes=tuple(app.config["CORS_EXCLUDED_PREFIXES"]))
    assert body["errors"] == [{"field": e.field, "message": e.message}
                               for e in expected.value.errors]
    assert version(app) == 0


def test_a_rule_tied_with_an_existing_one_answers_422_naming_it(client, policy, token):
    policy({"path": "/api/x/*"})
    body = assert_problem(client.post(url("/rules"), json={"path": "/api/*/y"},
                                      headers=token("admin")), 422, field="path")
    assert "/api/x/*" in body["errors"][0]["message"]


def test_get_rule_returns_it_with_its_version_as_a_strong_etag(app, client, policy, token):
    policy(MAIN)
    response = client.get(url(f"/rules/{rule_id(app, '/api/*')}"), headers=token("viewer"))
    body = response.get_json()
    assert response.headers["ETag"] == f'"{body["version"]}"'
    assert {k: body[k] for k in MAIN} == MAIN


def test_a_small_rule_carries_all_its_origins_and_no_next_page(app, client, policy, token):
    policy(MAIN)
    body = client.get(url(f"/rules/{rule_id(app, '/api/*')}"), headers=token("viewer")).get_json()
    assert (body["origins"], body["origin_count"], body["origins_next"]) == ([APP_ORIGIN], 1, None)


def test_a_large_rule_carries_its_first_200_origins_and_links_to_the_rest(app, client, policy,
                                                                          token):
    values = [f"https://o{i:03d}.example.com" for i in range(250)]
    policy({"path": "/api/*", "origins": values})
    rid = rule_id(app, "/api/*")
    headers = token("editor")
    response = client.get(url(f"/rules/{rid}"), headers=headers)
    body = response.get_json()
    assert body["origins"] == values[:200] and body["origin_count"] == 250
    assert body["origins_next"] == url(f"/rules/{rid}/origins?page=2&per_page=200")
    rest = client.get(body["origins_next"], headers=headers).get_json()
    assert [o["value"] for o in rest["items"]] == values[200:] and rest["total"] == 250
    # Sent back as read, its 200 origins would replace all 250: refused, nothing changes.
    for send in (client.put, client.patch):
        refused = assert_problem(send(url(f"/rules/{rid}"), json=body, headers={
            **headers, "If-Match": response.headers["ETag"]}), 422, field="origins")
        assert "origins_next" in refused["errors"][0]["message"]
    assert stored(app, "/api/*")["origins"] == values
    # Without its origins it can be: the allowlist stays.
    edited = {k: v for k, v in body.items() if k not in ("origins", "origins_next")}
    response = client.put(url(f"/rules/{rid}"), json={**edited, "origins": values,
                                                       "description": "edited"},
                          headers={**headers, "If-Match": response.headers["ETag"]})
    assert response.status_code == 200, response.get_json()
    assert stored(app, "/api/*")["origins"] == values


@pytest.mark.parametrize("rule", [0, 999999, 2**31, 10**20])
def test_a_missing_rule_is_404(client, token, rule):
    body = assert_problem(client.get(url(f"/rules/{rule}"), headers=token("viewer")), 404)
    assert body["type"] == "urn:cors-control:problem:not-found"


def test_patch_changes_the_fields_sent_and_keeps_the_others(app, client, policy, token):
    policy(MAIN)
    rid = rule_id(app, "/api/*")
    response = client.patch(url(f"/rules/{rid}"), json={"max_age": 600},
                            headers=token("editor", name="ops"))
    assert response.status_code == 200
    assert response.headers["ETag"] == f'"{response.get_json()["version"]}"'
    after = stored(app, "/api/*")
    assert after["max_age"] == 600 and after["origins"] == [APP_ORIGIN]
    assert ("token:ops", "api", "rule.update") in audit_entries(app)


def test_patch_with_the_current_etag_applies(app, client, policy, token):
    policy(MAIN)
    rid = rule_id(app, "/api/*")
    headers = token("editor")
    etag = client.get(url(f"/rules/{rid}"), headers=headers).headers["ETag"]
    response = client.patch(url(f"/rules/{rid}"), json={"description": "v2"},
                            headers={**headers, "If-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    assert stored(app, "/api/*")["description"] == "v2"


@pytest.mark.parametrize("if_match", ['"999"', 'W/"1"', "garbage", '"0", "998"'])
def test_patch_with_a_stale_etag_is_412_and_changes_nothing(app, client, policy, token,
                                                           if_match):
    policy(MAIN)
    rid = rule_id(app, "/api/*")
    before, saved = version(app), stored(app, "/api/*")
    response = client.patch(url(f"/rules/{rid}"), json={"description": "lost update"},
                            headers={**token("editor"), "If-Match": if_match})
    body = assert_problem(response, 412)
    assert body["current_version"] >= 1
    assert stored(app, "/api/*") == saved and version(app) == before


def test_an_etag_goes_stale_when_someone_else_writes(app, client, policy, token):
    policy(MAIN)
    rid = rule_id(app, "/api/*")
    alice, bob = token("editor", name="alice"), token("editor", name="bob")
    etag = client.get(url(f"/rules/{rid}"), headers=alice).headers["ETag"]
    client.put(url(f"/rules/{rid}/origins/{quote('https://bob.example', safe='')}"),
               headers=bob)
    response = client.patch(url(f"/rules/{rid}"), json={"origins": [APP_ORIGIN]},
                            headers={**alice, "If-Match": etag})
    assert_problem(response, 412)
    assert "https://bob.example" in stored(app, "/api/*")["origins"]


def test_put_replaces_the_whole_rule_and_needs_if_match(app, client, policy, token):
    policy({**MAIN, "max_age": 60})
    rid = rule_id(app, "/api/*")
    headers = token("editor")
    assert_problem(client.put(url(f"/rules/{rid}"), json={"path": "/api/*"}, headers=headers),
                   428)
    assert stored(app, "/api/*")["max_age"] == 60
    etag = client.get(url(f"/rules/{rid}"), headers=headers).headers["ETag"]
    response = client.put(url(f"/rules/{rid}"), json={"path": "/api/*", "methods": ["GET"]},
                          headers={**headers, "If-Match": etag})
    assert response.status_code == 200
    after = stored(app, "/api/*")
    assert after["methods"] == ["GET"]
    assert after["max_age"] is None and after["origins"] == [] and after["description"] == ""


def test_a_rule_read_with_get_can_be_sent_back_with_put(app, client, policy, token):
    policy(MAIN)
    rid = rule_id(app, "/api/*")
    before = stored(app, "/api/*")
    headers = token("editor")
    response = client.get(url(f"/rules/{rid}"), headers=headers)
    rule = {**response.get_json(), "description": "edited"}
    response = client.put(url(f"/rules/{rid}"), json=rule,
                          headers={**headers, "If-Match": response.headers["ETag"]})
    assert response.status_code == 200, response.get_json()
    assert stored(app, "/api/*") == {**before, "description": "edited"}


def test_put_with_a_stale_etag_is_412(app, client, policy, token):
    policy(MAIN)
    rid = rule_id(app, "/api/*")
    response = client.put(url(f"/rules/{rid}"), json={"path": "/api/*"},
                          headers={**token("admin"), "If-Match": '"41"'})
    assert_problem(response, 412)
    assert stored(app, "/api/*")["origins"] == [APP_ORIGIN]


def test_delete_rule_answers_204_and_is_audited(app, client, policy, token):
    policy(MAIN, PUBLIC)
    rid = rule_id(app, "/api/public/*")
    response = client.delete(url(f"/rules/{rid}"), headers=token("admin", name="cleaner"))
    assert response.status_code == 204 and response.data == b""
    assert stored(app, "/api/public/*") is None
    assert ("token:cleaner", "api", "rule.delete") in audit_entries(app)
    assert_problem(client.delete(url(f"/rules/{rid}"), headers=token("admin")), 404)


def test_delete_with_a_stale_etag_is_412_and_keeps_the_rule(app, client, policy, token):
    policy(MAIN)
    rid = rule_id(app, "/api/*")
    headers = token("admin")
    assert_problem(client.delete(url(f"/rules/{rid}"),
                                 headers={**headers, "If-Match": '"77"'}), 412)
    assert stored(app, "/api/*") is not None
    etag = client.get(url(f"/rules/{rid}"), headers=headers).headers["ETag"]
    assert client.delete(url(f"/rules/{rid}"),
                         headers={**headers, "If-Match": etag}).status_code == 204


def test_invalid_patch_answers_422_and_writes_nothing(app, client, policy, token):
    policy(MAIN)
    before = version(app)
    response = client.patch(url(f"/rules/{rule_id(app, '/api/*')}"),
                            json={"methods": [], "max_age": "soon"}, headers=token("editor"))
    body = assert_problem(response, 422, field="methods")
    assert "max_age" in [e["field"] for e in body["errors"]]
    assert version(app) == before


@pytest.mark.parametrize(("send", "status"), [
    (lambda c, u, h: c.post(u, data="{not json", headers=h, content_type="application/json"),
     400),
    (lambda c, u, h: c.post(u, data=b"\xff\xfe", headers=h, content_type="application/json"),
     400),
    (lambda c, u, h: c.post(u, headers=h, content_type="application/json"), 400),
    (lambda c, u, h: c.post(u, data="path=/api/*", headers=h,
                            content_type="application/x-www-form-urlencoded"), 415),
    (lambda c, u, h: c.post(u, data='{"path": "/api/*"}', headers=h), 415),
    (lambda c, u, h: c.post(u, json=["/api/*"], headers=h), 422),
    (lambda c, u, h: c.post(u, json={"path": "/api/\u0000"}, headers=h), 422),
])
def test_bodies_that_are_not_a_json_rule_are_refused(app, client, token, send, status):
    assert_problem(send(client, url("/rules"), token("admin")), status)
    assert version(app) == 0


def test_a_json_suffix_media_type_is_accepted(client, token):
    response = client.post(url("/rules"), data='{"path": "/api/*"}', headers=token("admin"),
                           content_type="application/merge-patch+json")
    assert response.status_code == 201


# -- origins -------------------------------------------------------------------------------


def origin_url(rid: int, origin: str, query: str = "") -> str:
    return url(f"/rules/{rid}/origins/{quote(origin, safe='')}") + (f"?{query}" if query else "")


def test_put_origin_adds_it_with_201_then_answers_200(app, client, policy, token):
    policy(MAIN)
    rid = rule_id(app, "/api/*")
    headers = token("editor", name="frontend-ci")
    before = version(app)
    response = client.put(origin_url(rid, "https://new.example.com"), headers=headers)
    assert response.status_code == 201
    body = response.get_json()
    assert (body["value"], body["kind"], body["added_by"]) == (
        "https://new.example.com", "exact", "token:frontend-ci")
    assert response.headers["Location"] == url(f"/rules/{rid}/origins")
    assert version(app) == before + 1
    again = client.put(origin_url(rid, "https://new.example.com"), headers=headers)
    assert again.status_code == 200 and again.get_json()["value"] == "https://new.example.com"
    assert version(app) == before + 1
    assert stored(app, "/api/*")["origins"] == [APP_ORIGIN, "https://new.example.com"]
    assert audit_entries(app)[-1] == ("token:frontend-ci", "api", "origin.add")


def test_an_added_origin_is_served_by_the_engine(app, client, policy, token):
    policy(MAIN)
    client.put(origin_url(rule_id(app, "/api/*"), "https://new.example.com"),
               headers=token("editor"))
    get_control(app).cache.refresh()
    response = client.get("/api/orders", headers={"Origin": "https://new.example.com"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://new.example.com"


def test_put_origin_keeps_a_note_and_an_expiry(app, client, policy, token):
    policy(MAIN)
    response = client.put(origin_url(rule_id(app, "/api/*"), "https://pilot.example.com"),
                          json={"note": "pilot", "expires_at": "2030-01-31T00:00:00Z"},
                          headers=token("editor"))
    assert response.status_code == 201
    assert response.get_json()["expires_at"] == "2030-01-31T00:00:00Z"
    assert {"value": "https://pilot.example.com", "note": "pilot",
            "expires_at": "2030-01-31T00:00:00Z"} in stored(app, "/api/*")["origins"]


def test_put_origin_stores_the_canonical_form(app, client, policy, token):
    policy(MAIN)
    response = client.put(origin_url(rule_id(app, "/api/*"), "HTTPS://New.Example.com:443"),
                          headers=token("editor"))
    assert response.get_json()["value"] == "https://new.example.com"


@pytest.mark.parametrize(("origin", "body", "field"), [
    ("https://app.example.com/path", None, "origin"),
    ("null", None, "origin"),
    ("https://ok.example.com", {"note": 5}, "origin.note"),
    ("https://ok.example.com", {"expires_at": "tomorrow"}, "origin.expires_at"),
    ("https://ok.example.com", {"colour": "red"}, "colour"),
    ("https://ok.example.com", {"tenant": "acme"}, "tenant"),
    ("https://ok.example.com", ["note"], ""),
])
def test_invalid_origins_answer_422(app, client, policy, token, origin, body, field):
    policy(MAIN)
    kwargs = {"json": body} if body is not None else {}
    response = client.put(origin_url(rule_id(app, "/api/*"), origin), headers=token("editor"),
                          **kwargs)
    assert_problem(response, 422, field=field)
    assert stored(app, "/api/*")["origins"] == [APP_ORIGIN]


def test_an_origin_body_must_be_json(app, client, policy, token):
    policy(MAIN)
    target = origin_url(rule_id(app, "/api/*"), "https://ok.example.com")
    assert_problem(client.put(target, data="note=x", headers=token("editor"),
                              content_type="text/plain"), 415)
    assert_problem(client.put(target, data="{", headers=token("editor"),
                              content_type="application/json"), 400)


def test_origins_of_a_missing_rule_are_404(client, token):
    headers = token("admin")
    assert_problem(client.get(url("/rules/4242/origins"), headers=headers), 404)
    assert_problem(client.put(origin_url(4242, APP_ORIGIN), headers=headers), 404)
    assert_problem(client.delete(origin_url(4242, APP_ORIGIN), headers=headers), 404)


def test_delete_origin_is_idempotent(app, client, policy, token):
    policy(MAIN)
    rid = rule_id(app, "/api/*")
    headers = token("editor", name="remover")
    response = client.delete(origin_url(rid, "HTTPS://APP.example.com"), headers=headers)
    assert response.status_code == 204
    assert stored(app, "/api/*")["origins"] == []
    before = version(app)
    assert client.delete(origin_url(rid, APP_ORIGIN), headers=headers).status_code == 204
    assert version(app) == before
    assert audit_entries(app)[-1] == ("token:remover", "api", "origin.remove")


def test_origins_are_listed_with_their_details_and_paged(app, client, policy, token):
    policy({**MAIN, "origins": [APP_ORIGIN, "https://*.example.org",
                                {"value": "https://old.example.com",
                                 "expires_at": "2020-01-01T00:00:00Z", "note": "gone"}]})
    rid = rule_id(app, "/api/*")
    body = client.get(url(f"/rules/{rid}/origins?per_page=2"), headers=token("viewer")) \
        .get_json()
    assert body["total"] == 3 and body["per_page"] == 2
    assert [o["value"] for o in body["items"]] == ["https://*.example.org", APP_ORIGIN]
    assert body["items"][0]["kind"] == "subdomain-wildcard"
    last = client.get(url(f"/rules/{rid}/origins?per_page=2&page=2"),
                      headers=token("viewer")).get_json()["items"]
    assert [(o["value"], o["expired"], o["note"]) for o in last] == [
        ("https://old.example.com", True, "gone")]


def test_an_admin_adds_and_removes_origins_on_a_tenants_allowlist(app, client, tenancy, token):
    rid = rule_id(app, "/api/t/*/orders")
    headers = token("admin")
    response = client.put(origin_url(rid, "https://beta.acme.example"), json={"tenant": "acme"},
                          headers=headers)
    assert response.status_code == 201 and response.get_json()["tenant"] == "acme"
    assert {"value": "https://beta.acme.example", "tenant": "acme"} in \
        stored(app, "/api/t/*/orders")["origins"]
    assert client.delete(origin_url(rid, "https://beta.acme.example", "tenant=acme"),
                         headers=headers).status_code == 204
    assert {"value": "https://beta.acme.example", "tenant": "acme"} not in \
        stored(app, "/api/t/*/orders")["origins"]
    assert_problem(client.delete(origin_url(rid, APP_ORIGIN, "tenant=nobody"),
                                 headers=headers), 422, field="tenant")


# -- roles ---------------------------------------------------------------------------------


WRITES = [
    ("post", "/rules", {"path": "/api/new"}),
    ("patch", "/rules/{id}", {"max_age": 1}),
    ("put", "/rules/{id}", {"path": "/api/*"}),
    ("delete", "/rules/{id}", None),
    ("put", "/rules/{id}/origins/https%3A%2F%2Fx.example.com", None),
    ("delete", "/rules/{id}/origins/https%3A%2F%2Fapp.example.com", None),
    ("post", "/import", {"rules": []}),
]


@pytest.mark.parametrize("role", ["viewer", "tenant-viewer"])
@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_read_only_roles_are_refused_writes_with_403(app, client, tenants, policy, token, role,
                                                      method, path, body):
    policy(MAIN, ACME_RULE)
    rid = rule_id(app, "/api/orders" if role.startswith("tenant") else "/api/*")
    headers = token(role, tenant="acme" if role.startswith("tenant") else None)
    if method == "put" and path == "/rules/{id}":
        headers["If-Match"] = '"1"'
    before = version(app)
    kwargs = {"json": body} if body is not None else {}
    response = getattr(client, method)(url(path.format(id=rid)), headers=headers, **kwargs)
    body = assert_problem(response, 403)
    assert f"the {role} role can read but not change the policy" == body["detail"]
    assert version(app) == before


def test_every_role_can_read(client, tenants, policy, token):
    policy(MAIN)
    for role, tenant in [("admin", None), ("editor", None), ("viewer", None),
                         ("tenant-editor", "acme"), ("tenant-viewer", "acme")]:
        headers = token(role, tenant=tenant)
        for path in ("/rules", "/log", "/audit", "/export", "/tenants", "/tokens/self"):
            assert client.get(url(path), headers=headers).status_code == 200, (role, path)


# -- tenant scoping ------------------------------------------------------------------------


def test_a_tenant_token_sees_its_rules_and_the_shared_rules_it_has_a_list_on(client, tenancy,
                                                                             token):
    body = client.get(url("/rules"), headers=token("tenant-editor", tenant="acme")).get_json()
    assert [r["path"] for r in body["items"]] == ["/api/orders", "/api/t/*/orders"]
    counts = {r["path"]: r["origin_count"] for r in body["items"]}
    assert counts == {"/api/orders": 1, "/api/t/*/orders": 1}


def test_another_tenants_rule_does_not_exist_for_a_tenant_token(app, client, tenancy, token):
    headers = token("tenant-editor", tenant="acme")
    before = version(app)
    for path in ("/api/echo", "/api/*"):  # globex's rule, and a platform rule
        rid = rule_id(app, path)
        missing = client.get(url("/rules/4242"), headers=headers).get_json()
        body = assert_problem(client.get(url(f"/rules/{rid}"), headers=headers), 404)
        assert body["detail"] == missing["detail"].replace("4242", str(rid))
        assert_problem(client.patch(url(f"/rules/{rid}"), json={"max_age": 1},
                                    headers={**headers, "If-Match": '"1"'}), 404)
        assert_problem(client.put(url(f"/rules/{rid}"), json={"path": path},
                                  headers=headers), 404)
        assert_problem(client.delete(url(f"/rules/{rid}"), headers=headers), 404)
        assert_problem(client.get(url(f"/rules/{rid}/origins"), headers=headers), 404)
        assert_problem(client.put(origin_url(rid, "https://acme.example"), headers=headers), 404)
        assert_problem(client.delete(origin_url(rid, "https://globex.example"),
                                     headers=headers), 404)
    assert version(app) == before
    assert stored(app, "/api/echo")["origins"] == ["https://globex.example"]


def test_a_tenant_editor_adds_origins_to_its_own_rule(app, client, tenancy, token):
    headers = token("tenant-editor", tenant="acme", name="acme-ci")
    rid = rule_id(app, "/api/orders")
    assert client.put(origin_url(rid, "https://beta.acme.example"),
                      headers=headers).status_code == 201
    assert stored(app, "/api/orders")["origins"] == ["https://acme.example",
                                                     "https://beta.acme.example"]
    response = client.patch(url(f"/rules/{rid}"), json={"max_age": 30}, headers=headers)
    assert response.status_code == 200 and response.get_json()["tenant"] == "acme"
    audit = client.get(url("/audit"), headers=headers).get_json()["items"]
    assert [(e["actor"], e["action"]) for e in audit[:2]] == [
        ("token:acme-ci", "rule.update"), ("token:acme-ci", "origin.add")]


def test_a_tenant_editor_keeps_its_own_allowlist_on_a_shared_rule(app, client, tenancy, token):
    headers = token("tenant-editor", tenant="acme", name="acme-ci")
    rid = rule_id(app, "/api/t/*/orders")
    response = client.put(origin_url(rid, "https://beta.acme.example"), headers=headers)
    assert response.status_code == 201 and response.get_json()["tenant"] == "acme"
    origins = client.get(url(f"/rules/{rid}/origins"), headers=headers).get_json()["items"]
    assert [(o["value"], o["tenant"]) for o in origins] == [
        ("https://beta.acme.example", "acme"), ("https://shop.acme.example", "acme")]
    rule = client.get(url(f"/rules/{rid}"), headers=headers).get_json()
    assert "https://shop.globex.example" not in str(rule["origins"])
    # Removing globex's entry from its own (acme's) list changes nothing.
    client.delete(origin_url(rid, "https://shop.globex.example"), headers=headers)
    assert {"value": "https://shop.globex.example", "tenant": "globex"} in \
        stored(app, "/api/t/*/orders")["origins"]
    assert_problem(client.patch(url(f"/rules/{rid}"), json={"max_age": 5}, headers=headers),
                   403)
    entry = client.get(url("/audit"), headers=headers).get_json()["items"][0]
    assert (entry["actor"], entry["action"]) == ("token:acme-ci", "origin.add")
    assert "shop.globex.example" not in str(entry["before"]) + str(entry["after"])


def test_an_admins_change_to_a_tenants_allowlist_shows_that_tenant_only_its_part(
        app, client, tenancy, token):
    rid = rule_id(app, "/api/t/*/orders")
    client.put(origin_url(rid, "https://beta.acme.example"), json={"tenant": "acme"},
               headers=token("admin", name="platform"))
    (entry,) = [e for e in client.get(url("/audit"), headers=token(
        "tenant-viewer", tenant="acme")).get_json()["items"] if e["actor"] == "token:platform"]
    # The entry records only the origin added, not the rule's lists (globex's among them).
    assert entry["delta"]["origins"] == {
        "added": [{"value": "https://beta.acme.example", "tenant": "acme"}]}
    assert (entry["before"], entry["after"]) == (None, None)
    (full,) = [e for e in client.get(url("/audit"), headers=token("admin")).get_json()["items"]
               if e["actor"] == "token:platform"]
    assert full["delta"] == {**entry["delta"], "path": "/api/t/*/orders"}


def test_a_tenant_token_reads_only_its_own_request_log(app, client, tenancy, token):
    for path in ("/api/t/acme/orders", "/api/t/globex/orders", "/api/orders", "/api/echo"):
        client.get(path, headers={"Origin": EVIL})
    get_request_log(app).recorder.flush()
    rows = client.get(url("/log"), headers=token("admin")).get_json()["items"]
    assert len(rows) == 4
    rows = client.get(url("/log"), headers=token("tenant-viewer", tenant="acme")) \
        .get_json()["items"]
    assert sorted(r["sample"]["path"] for r in rows) == ["/api/orders", "/api/t/acme/orders"]


def test_a_tenant_token_reads_only_its_own_audit_trail(client, tenancy, token, app):
    client.put(origin_url(rule_id(app, "/api/echo"), "https://beta.globex.example"),
               headers=token("tenant-editor", tenant="globex", name="globex-ci"))
    actors = {e["actor"] for e in client.get(url("/audit"), headers=token(
        "tenant-viewer", tenant="acme")).get_json()["items"]}
    assert "token:globex-ci" not in actors
    assert "token:globex-ci" in {e["actor"] for e in client.get(
        url("/audit"), headers=token("admin")).get_json()["items"]}


def test_a_tenant_token_exports_its_own_part_and_cannot_import(app, client, tenancy, token):
    headers = token("tenant-editor", tenant="acme")
    document = client.get(url("/export"), headers=headers).get_json()
    assert [r["path"] for r in document["rules"]] == ["/api/orders", "/api/t/*/orders"]
    assert document["tenants"] == [{"slug": "acme", "name": "Acme", "paths": ["/api/orders"]}]
    assert_problem(client.post(url("/import"), json=document, headers=headers), 403)


def test_tenants_are_listed_for_admins_and_scoped_for_tenant_roles(client, tenants, token):
    every = client.get(url("/tenants"), headers=token("viewer")).get_json()
    assert [t["slug"] for t in every["items"]] == ["acme", "globex"] and every["total"] == 2
    own = client.get(url("/tenants"), headers=token("tenant-viewer", tenant="globex")).get_json()
    assert [(t["slug"], t["name"]) for t in own["items"]] == [("globex", "Globex")]
    assert client.get(url("/tenants?per_page=1&page=2"), headers=token("admin")) \
        .get_json()["items"][0]["slug"] == "globex"


def test_a_tenant_token_checking_another_tenants_path_does_not_see_its_rule(client, tenancy,
                                                                           token):
    response = client.post(url("/check"), json={"origin": EVIL, "path": "/api/echo"},
                           headers=token("tenant-viewer", tenant="acme"))
    body = assert_problem(response, 404)
    assert "no rule you can see" in body["detail"]
    assert "Access-Control" not in response.get_data(as_text=True)


# -- the simulator -------------------------------------------------------------------------


def test_check_answers_what_the_engine_does(app, client, policy, token):
    policy(MAIN)
    headers = token("viewer")
    body = client.post(url("/check"), json={"origin": APP_ORIGIN, "method": "put",
                                             "path": "/api/orders",
                                             "headers": ["Content-Type"]},
                       headers=headers).get_json()
    assert (body["decision"], body["allowed"], body["reason"]) == ("allowed", True, "allowed")
    assert (body["preflight"], body["status"]) == (True, 204)
    assert body["rule"] == {"id": rule_id(app, "/api/*"), "path": "/api/*"}
    assert {"name": "Access-Control-Allow-Origin", "value": APP_ORIGIN} in body["headers"]
    assert body["policy_version"] == version(app)
    refused = client.post(url("/check"), json={"origin": EVIL, "path": "/api/orders"},
                          headers=headers).get_json()
    assert (refused["decision"], refused["reason"], refused["preflight"], refused["status"]) \
        == ("refused", "origin-not-allowed", False, None)
    assert refused["explanation"] == "the origin is not on the rule's allowlist"


def test_check_lists_every_failing_check_and_the_whole_fix(app, client, policy, token):
    policy(MAIN)
    body = client.post(url("/check"), json={"origin": EVIL, "path": "/api/orders",
                                             "credentials": True},
                       headers=token("viewer")).get_json()
    assert body["reason"] == "origin-not-allowed"
    assert body["failures"] == [
        {"check": "origin-not-allowed", "detail": "",
         "explanation": "the origin is not on the rule's allowlist"},
        {"check": "credentials-not-allowed", "detail": "",
         "explanation": "the request carries credentials but the rule does not support them"},
    ]
    assert body["fix"]["rule"] == {"id": rule_id(app, "/api/*"), "path": "/api/*"}
    assert (body["fix"]["origin"], body["fix"]["credentials"]) == (EVIL, True)
    assert "/api/orders" in body["fix"]["routes"] and "/api/echo" in body["fix"]["routes"]
    assert body["fix_refusal"] is None
    unfixable = client.post(url("/check"), json={"origin": EVIL, "path": "/api/orders",
                                                  "method": "DELETE", "headers": ["x-a"]},
                            headers=token("viewer")).get_json()
    assert [f["check"] for f in unfixable["failures"]] == [
        "origin-not-allowed", "method-not-allowed", "header-not-allowed"]
    assert unfixable["fix"] is None
    assert "it also fails header-not-allowed, method-not-allowed" in unfixable["fix_refusal"]


def test_check_reads_the_tenant_from_the_path_a_header_value_and_the_host(
        client, tenants, policy, token):
    acme = "https://shop.acme.example"
    policy(SHARED | {"path": "/api/t/*"},
           {"path": "/api/echo", "tenant_selector": {"source": "header", "key": "X-Tenant"},
            "origins": [{"value": acme, "tenant": "acme"}]},
           {"path": "/api/public/*", "origins": [{"value": acme, "tenant": "acme"}],
            "tenant_selector": {"source": "subdomain", "key": "api.example.com"}})
    for question in ({"path": "/api/t/acme/orders"},
                     {"path": "/api/echo", "request_headers": {"X-Tenant": "acme"},
                      "preflight": False},
                     {"path": "/api/public/status", "host": "acme.api.example.com"}):
        body = client.post(url("/check"), json={"origin": acme, **question},
                           headers=token("viewer")).get_json()
        assert (body["decision"], body["tenant"], body["failures"]) == ("allowed", "acme", []), \
            (question, body)
    preflight = client.post(url("/check"), json={"origin": acme, "path": "/api/echo",
                                                  "request_headers": {"X-Tenant": "acme"}},
                            headers=token("viewer")).get_json()
    # The browser's preflight carries the header's name, not its value.
    assert {"name": "Access-Control-Request-Headers", "value": "x-tenant"} \
        in preflight["request_headers"]
    assert "X-Tenant" not in [h["name"] for h in preflight["request_headers"]]


def test_check_reports_report_only_and_ungoverned_paths(client, policy, token):
    policy(MAIN, PUBLIC)
    headers = token("viewer")
    ungoverned = client.post(url("/check"), json={"origin": EVIL, "path": "/elsewhere"},
                             headers=headers).get_json()
    assert (ungoverned["reason"], ungoverned["rule"]) == ("no-rule", None)
    report = client.post(url("/check"), json={"origin": EVIL, "path": "/api/public/x",
                                              "method": "DELETE"}, headers=headers).get_json()
    # The report-only rule changes no answer: /api/* refuses, and the finding is listed.
    assert (report["decision"], report["allowed"], report["rule"]["path"]) == (
        "refused", False, "/api/*")
    assert [(f["rule"]["path"], f["reason"]) for f in report["report_only"]] == [
        ("/api/public/*", "method-not-allowed")]
    assert report["headers"] == [{"name": "Vary", "value": "Origin, Access-Control-Request-"
                                                           "Method, Access-Control-Request-"
                                                           "Headers"}]


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"path": "/api/x"}, "origin",
     "enter the Origin header to test, such as https://app.example.com"),
    ({"origin": "https://a.example\r\nX: y", "path": "/x"}, "origin",
     "no request can carry a line break in its Origin header"),
    ({"origin": APP_ORIGIN, "path": "api/x"}, "path", "a path starts with /, as in /api/x"),
    ({"origin": APP_ORIGIN}, "path", "enter the path to call, such as /api/orders"),
    ({"origin": APP_ORIGIN, "path": "/x", "method": "GE T"}, "method", None),
    ({"origin": APP_ORIGIN, "path": "/x", "headers": "content-type"}, "headers", None),
    ({"origin": APP_ORIGIN, "path": "/x", "credentials": "yes"}, "credentials", None),
    ({"origin": APP_ORIGIN, "path": "/x", "cookies": True}, "cookies", None),
    ({"origin": APP_ORIGIN, "path": "/x", "request_headers": ["X-Tenant"]}, "request_headers",
     'request_headers is an object of header names and values, such as {"X-Tenant": '
     '"acme"}'),
    ({"origin": APP_ORIGIN, "path": "/x", "request_headers": {"Cookie": "a=b"}},
     "request_headers", "Cookie is set by the credentials box; leave it out of the request "
                        "headers"),
    ({"origin": APP_ORIGIN, "path": "/x", "request_headers": {"X-T": "a\r\nb"}},
     "request_headers", None),
    ({"origin": APP_ORIGIN, "path": "/x", "host": 3}, "host", None),
    ({"origin": APP_ORIGIN, "path": "/x", "host": "a/b"}, "host",
     "a host is a name such as acme.api.example.com, with an optional :port"),
    ({"origin": APP_ORIGIN, "path": "/x", "private_network": "yes"}, "private_network", None),
])
def test_invalid_checks_answer_422(client, token, data, field, message):
    body = assert_problem(client.post(url("/check"), json=data, headers=token("viewer")), 422,
                          field=field)
    if message:
        assert {"field": field, "message": message} in body["errors"]


# -- the request log -----------------------------------------------------------------------


def test_the_log_is_filtered_and_paged(app, client, policy, token):
    policy(MAIN, PUBLIC)
    for origin in (EVIL, "https://other.example.net", EVIL):
        client.get("/api/orders", headers={"Origin": origin})
    client.options("/api/orders", headers={"Origin": APP_ORIGIN,
                                           "Access-Control-Request-Method": "DELETE"})
    get_request_log(app).recorder.flush()
    headers = token("viewer")
    every = client.get(url("/log?since=1h"), headers=headers).get_json()
    assert every["total"] == 3
    evil = client.get(url("/log?origin=EVIL.example"), headers=headers).get_json()["items"]
    assert [(r["origin"], r["count"], r["rule"]) for r in evil] == [(EVIL, 2, "/api/*")]
    methods = client.get(url("/log?reason=method-not-allowed"), headers=headers).get_json()
    assert [r["detail"] for r in methods["items"]] == ["DELETE"]
    assert client.get(url("/log?per_page=1&page=3"), headers=headers).get_json()["page"] == 3
    assert client.get(url("/log?rule=/api/public/*"), headers=headers).get_json()["total"] == 0


@pytest.mark.parametrize(("query", "field", "message"), [
    ("since=yesterday", "since", "use a duration such as 30m, 1h, 7d or 2w"),
    ("reason=bad", "reason", None),
    ("mode=off", "mode", "mode must be enforce, report-only or draft"),
    ("per_page=0", "per_page", None),
])
def test_bad_log_filters_answer_422_with_the_services_messages(client, token, query, field,
                                                               message):
    body = assert_problem(client.get(url(f"/log?{query}"), headers=token("viewer")), 422,
                          field=field)
    if message:
        assert body["errors"] == [{"field": field, "message": message}]


# -- the audit trail -----------------------------------------------------------------------


def test_the_audit_trail_is_filtered_by_rule_and_actor_and_paged(app, client, policy, token):
    policy(MAIN, PUBLIC)
    alice = token("editor", name="alice")
    client.patch(url(f"/rules/{rule_id(app, '/api/*')}"), json={"max_age": 1}, headers=alice)
    client.patch(url(f"/rules/{rule_id(app, '/api/public/*')}"), json={"max_age": 2},
                 headers=token("editor", name="bob"))
    headers = token("viewer")
    entries = client.get(url("/audit?actor=ALICE"), headers=headers).get_json()["items"]
    assert [(e["actor"], e["rule_path"], e["channel"]) for e in entries] == [
        ("token:alice", "/api/*", "api")]
    assert entries[0]["before"]["max_age"] is None and entries[0]["after"]["max_age"] == 1
    public = client.get(url("/audit?rule=public"), headers=headers).get_json()
    assert [e["actor"] for e in public["items"]] == ["token:bob"]
    page = client.get(url("/audit?per_page=1"), headers=headers).get_json()
    assert page["per_page"] == 1 and page["total"] >= 3 and len(page["items"]) == 1


# -- export and import ---------------------------------------------------------------------


def test_export_then_dry_run_import_shows_no_changes(app, client, tenancy, token):
    headers = token("admin")
    document = client.get(url("/export"), headers=headers).get_json()
    assert document["tenants"] == [{"name": "Acme", "slug": "acme", "paths": ["/api/orders"]},
                                   {"name": "Globex", "slug": "globex", "paths": ["/api/echo"]}]
    before = version(app)
    result = client.post(url("/import?dry_run=true&replace=true"), json=document,
                         headers=headers).get_json()
    impact = result.pop("impact")
    assert (impact["routes"], impact["losses"]) == ([], [])
    assert result == {"dry_run": True, "added": [], "changed": {}, "removed": [],
                      "unchanged": ["/api/*", "/api/echo", "/api/orders", "/api/t/*/orders"],
                      "tenants_added": [], "tenants_changed": [],
                      "origin_lists_added": [], "origin_lists_changed": [],
                      "policy_version": before}
    assert version(app) == before


def test_a_policy_round_trips_with_its_tenants_through_the_api(app, client, tenancy, token):
    headers = token("admin", name="restore")
    document = client.get(url("/export"), headers=headers).get_json()
    _forget_tokens_and_tenants(app)
    headers = token("admin", name="restore")
    with app.app_context():
        db.session.execute(sa.delete(AllowedOrigin))
        db.session.execute(sa.delete(Rule))
        db.session.commit()
    result = client.post(url("/import"), json=document, headers=headers).get_json()
    assert result["tenants_added"] == ["acme", "globex"] and len(result["added"]) == 4
    assert client.get(url("/export"), headers=headers).get_json() == document
    assert ("token:restore", "api", "policy.import") in audit_entries(app)


def test_a_dry_run_returns_the_difference_and_writes_nothing(app, client, policy, token):
    policy(MAIN, PUBLIC)
    before = version(app)
    document = {"rules": [{**MAIN, "max_age": 60}, {"path": "/api/new"}]}
    result = client.post(url("/import?replace=1&dry_run=1"), json=document,
                         headers=token("editor")).get_json()
    assert (result["added"], result["changed"], result["removed"]) == (
        ["/api/new"], {"/api/*": ["max_age"]}, ["/api/public/*"])
    assert result["dry_run"] is True
    assert version(app) == before and stored(app, "/api/new") is None


def test_import_writes_and_replace_removes_absent_rules(app, client, policy, token):
    policy(MAIN, PUBLIC)
    headers = token("editor", name="sync")
    result = client.post(url("/import?replace=true"), json={"rules": [MAIN]},
                         headers=headers).get_json()
    assert (result["removed"], result["unchanged"]) == (["/api/public/*"], ["/api/*"])
    assert result["policy_version"] == version(app)
    assert stored(app, "/api/public/*") is None


def test_an_invalid_import_names_every_bad_entry_and_writes_nothing(app, client, token):
    bad = {"rules": [{"path": "/api/*", "origins": ["https://app.example.com/"]},
                     {"path": "nope"}]}
    body = assert_problem(client.post(url("/import"), json=bad, headers=token("admin")), 422)
    assert {"field": "rules[0].origins[0]",
            "message": "an origin has no path; use https://app.example.com"} in body["errors"]
    assert "rules[1].path" in [e["field"] for e in body["errors"]]
    assert version(app) == 0


@pytest.mark.parametrize(("query", "field"), [("replace=maybe", "replace"),
                                              ("dry_run=2", "dry_run")])
def test_import_flags_must_be_true_or_false(client, token, query, field):
    assert_problem(client.post(url(f"/import?{query}"), json={"rules": []},
                               headers=token("admin")), 422, field=field)


# -- problems and the document -------------------------------------------------------------


def test_unknown_urls_and_methods_under_the_api_are_problems(client, token):
    headers = token("admin")
    body = assert_problem(client.get(url("/nothing-here"), headers=headers), 404)
    assert body["instance"] == url("/nothing-here")
    response = client.delete(url("/rules"), headers=headers)
    assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


def test_errors_outside_the_api_are_left_alone(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"


def test_the_openapi_document_is_public_and_describes_every_route(app, client):
    response = client.get(url("/openapi.json"))
    assert response.status_code == 200
    document = response.get_json()
    assert document == DOCUMENT and document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    routes = {(method, rule.rule.removeprefix(URL_PREFIX).replace("<int:rule_id>", "{rule_id}")
               .replace("<path:origin>", "{origin}").replace("<slug>", "{slug}")
               .replace("<int:list_id>", "{list_id}")
               .replace("<int:webhook_id>", "{webhook_id}")
               .replace("<int:entry_id>", "{entry_id}"))
              for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item if method != "parameters"}
    assert routes == documented


# -- the commands --------------------------------------------------------------------------


def test_tokens_create_prints_the_secret_once_and_it_works(app, runner):
    result = runner.invoke(args=["tokens", "create", "deploy-bot", "--role", "editor"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("cc_") and "\n" not in secret
    assert "shown only this once" in result.stderr
    response = app.test_client().get(url("/tokens/self"),
                                     headers={"Authorization": f"Bearer {secret}"})
    assert response.get_json()["name"] == "deploy-bot"
    listing = runner.invoke(args=["tokens", "list"]).output
    assert "deploy-bot" in listing and secret not in listing


def test_tokens_create_with_a_tenant_and_an_expiry(app, runner, tenants):
    result = runner.invoke(args=["tokens", "create", "acme-ci", "--role", "tenant-editor",
                                 "--tenant", "acme", "--expires", "2031-01-01T00:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "tenant acme, expires 2031-01-01T00:00:00Z" in result.stderr
    with app.app_context():
        stored_token = db.session.scalar(sa.select(ApiToken))
        assert stored_token.tenant.slug == "acme"
        assert stored_token.expires_at.replace(tzinfo=UTC) == datetime(2031, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("args", "message"), [
    (["--role", "tenant-editor"], "tenant: a tenant-editor token needs a tenant"),
    (["--role", "editor", "--tenant", "acme"], "tenant: a editor token is not scoped"),
    (["--role", "admin", "--expires", "2001-01-01T00:00:00Z"],
     "expires_at: the expiry is in the past"),
    (["--role", "admin", "--expires", "next week"], "is not an ISO 8601 time"),
    (["--role", "root"], "Invalid value for '--role'"),
])
def test_tokens_create_refuses_bad_options(app, runner, tenants, args, message):
    result = runner.invoke(args=["tokens", "create", "bot", *args])
    assert result.exit_code != 0
    assert message in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(ApiToken.id))) == 0


def test_a_token_name_is_used_once(runner):
    assert runner.invoke(args=["tokens", "create", "twice", "--role", "viewer"]).exit_code == 0
    result = runner.invoke(args=["tokens", "create", "twice", "--role", "viewer"])
    assert result.exit_code == 1 and "already exists" in result.output


def test_tokens_list_shows_role_tenant_state_and_last_use(app, runner, tenants, token):
    headers = token("tenant-viewer", tenant="globex", name="used")
    token("viewer", name="unused")
    token("admin", name="revoked")
    app.test_client().get(url("/rules"), headers=headers)
    runner.invoke(args=["tokens", "revoke", "revoked"])
    lines = runner.invoke(args=["tokens", "list"]).output.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "TENANT", "STATE", "EXPIRES", "LAST", "USED",
                                "CREATED"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["used"].split()[1:4] == ["tenant-viewer", "globex", "active"]
    assert "never" not in rows["used"] and "UTC" in rows["used"]
    assert "never" in rows["unused"]
    assert rows["revoked"].split()[3] == "revoked"


def test_tokens_revoke_stops_a_token_at_once(app, runner, token):
    headers = token("admin", name="leaked")
    result = runner.invoke(args=["tokens", "revoke", "leaked"])
    assert result.exit_code == 0 and "Revoked token leaked" in result.output
    assert_problem(app.test_client().get(url("/rules"), headers=headers), 401)
    missing = runner.invoke(args=["tokens", "revoke", "nobody"])
    assert missing.exit_code == 1 and "there is no token named nobody" in missing.output


def test_tenants_create_and_list(app, runner):
    assert runner.invoke(args=["tenants", "list"]).output.startswith("No tenants")
    result = runner.invoke(args=["tenants", "create", "acme", "--name", "Acme Corp"])
    assert result.exit_code == 0 and "Created tenant acme (Acme Corp)" in result.output
    assert runner.invoke(args=["tenants", "create", "initech"]).exit_code == 0
    lines = runner.invoke(args=["tenants", "list"]).output.splitlines()
    assert [line.split()[0] for line in lines] == ["SLUG", "acme", "initech"]
    duplicate = runner.invoke(args=["tenants", "create", "acme"])
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    invalid = runner.invoke(args=["tenants", "create", "Not A Slug"])
    assert invalid.exit_code == 1 and "slug: use lowercase letters" in invalid.output
