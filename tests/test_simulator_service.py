"""The simulation service: one validator for the dashboard, the API and the CLI, and the
engine's own decision behind the request log's "allowed now"."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.api import URL_PREFIX
from app.extensions import db
from app.models import ApiToken
from app.services.access import Actor
from app.services.simulator import allows_origin_now, validate_request
from app.services.tokens import create_token
from cors_control import OriginEntry, RuleSpec, compile_policy

ORIGIN = "https://app.example.com"
RULE = {"path": "/api/*", "origins": [ORIGIN], "methods": ["GET", "PUT"]}


def errors_of(**question) -> list[tuple[str, str]]:
    validation = validate_request(**{"origin": ORIGIN, "method": "GET", "path": "/api/x",
                                     **question})
    assert (validation.request is None) == bool(validation.errors)
    return [(error.field, error.message) for error in validation.errors]


# -- the validator -------------------------------------------------------------------------


@pytest.mark.parametrize(("question", "field", "message"), [
    ({"origin": ""}, "origin", "enter the Origin header to test, such as https://app.example.com"),
    ({"origin": "https://a.example\nX: 1"}, "origin",
     "no request can carry a line break in its Origin header"),
    ({"origin": "https://" + "a" * 2000}, "origin", "an Origin header has at most 2000 characters"),
    ({"method": ""}, "method", "type the method to test, such as PROPFIND"),
    ({"method": "GE T"}, "method",
     "a method is one word of letters, digits and !#$%&'*+-.^_`|~, such as PROPFIND"),
    ({"method": "A" * 101}, "method",
     "a method is one word of letters, digits and !#$%&'*+-.^_`|~, such as PROPFIND"),
    ({"path": ""}, "path", "enter the path to call, such as /api/orders"),
    ({"path": "api/x"}, "path", "a path starts with /, as in /api/x"),
    ({"path": "/" + "a" * 2000}, "path", "a path has at most 2000 characters"),
    ({"header_names": ["x-a\r\nx-b"]}, "headers", "header names cannot contain line breaks"),
    ({"header_names": ["x token"]}, "headers",
     '"x token" is not a header name: a header name is one word of letters, digits and '
     "!#$%&'*+-.^_`|~, such as x-request-id"),
    ({"header_names": [f"x-{n}" for n in range(101)]}, "headers", "at most 100 header names"),
])
def test_a_question_that_cannot_be_asked_names_the_field_and_the_fix(question, field, message):
    assert errors_of(**question) == [(field, message)]


def test_every_field_in_error_is_reported_at_once():
    fields = [field for field, _ in errors_of(origin="", method="", path="x",
                                              header_names=["a b"])]
    assert fields == ["method", "path", "headers", "origin"]


@pytest.mark.parametrize(("question", "simulated", "hint"), [
    ({"method": "put"}, {"method": "PUT"}, "browsers send put as PUT; simulated as PUT"),
    ({"method": "patch"}, {"method": "patch"}, "browsers send patch exactly as typed"),
    ({"method": "TRACE"}, {"method": "TRACE"}, "browsers refuse to send TRACE requests at all"),
    ({"path": "https://api.example.com/api/x?y=1"}, {"path": "/api/x"},
     "only the path of the URL decides which rule applies: /api/x"),
    ({"path": "/api/x?y=1#z"}, {"path": "/api/x"},
     "the query string plays no part in the decision: /api/x"),
    ({"header_names": ["Cookie"]}, {"header_names": ("Cookie",)}, "scripts cannot set cookie"),
    ({"origin": "HTTPS://APP.EXAMPLE.COM"}, {"origin": "HTTPS://APP.EXAMPLE.COM"},
     "browsers send this origin as https://app.example.com"),
    ({"origin": "null"}, {"origin": "null"}, "this is not an origin a browser sends"),
])
def test_the_request_is_simulated_as_a_browser_sends_it_and_hints_say_why(question, simulated,
                                                                         hint):
    validation = validate_request(**{"origin": ORIGIN, "method": "GET", "path": "/api/x",
                                     **question})
    request = validation.request
    assert request is not None and not validation.errors
    for name, value in simulated.items():
        assert getattr(request, name) == value
    assert any(hint in text for text in request.hints), request.hints


# -- one validator, three channels ---------------------------------------------------------


@pytest.fixture
def api_token(app):
    """The Authorization header of a viewer token, removed afterwards (the shared rig does
    not empty the tokens table)."""
    with app.app_context():
        secret = create_token("simulator-viewer", "viewer", actor=Actor("test", "cli")).secret
    yield {"Authorization": f"Bearer {secret}"}
    with app.app_context():
        db.session.execute(sa.delete(ApiToken))
        db.session.commit()


@pytest.mark.parametrize(("question", "field", "label", "message"), [
    ({"path": "api/x"}, "path", "Path", "a path starts with /, as in /api/x"),
    ({"origin": "https://a.example\nX: 1"}, "origin", "Origin",
     "no request can carry a line break in its Origin header"),
    ({"path": "/" + "a" * 2001}, "path", "Path", "a path has at most 2000 characters"),
])
def test_the_dashboard_the_api_and_the_cli_answer_a_bad_question_with_one_message(
        client, runner, sign_in, policy, api_token, question, field, label, message):
    policy(RULE)
    full = {"origin": ORIGIN, "path": "/api/x", **question}
    page = sign_in("viewer").get("/admin/simulator", query_string=full,
                                 headers={"HX-Request": "true"}).get_data(as_text=True)
    assert f"{label}: {message}" in page
    api = client.post(URL_PREFIX + "/check", json=full, headers=api_token)
    assert api.status_code == 422
    assert {"field": field, "message": message} in api.get_json()["errors"]
    cli = runner.invoke(args=["cors", "check", full["origin"], full["path"]])
    assert cli.exit_code == 2
    assert f"Error: {field}: {message}" in cli.output


def test_the_cli_simulates_what_a_browser_sends_and_says_so(runner, policy):
    policy(RULE)
    result = runner.invoke(args=["cors", "check", ORIGIN, "/api/x?page=2", "-m", "put"])
    assert result.exit_code == 0, result.output
    assert "ALLOWED: preflight PUT /api/x from https://app.example.com" in result.output
    assert "note:    browsers send put as PUT; simulated as PUT" in result.output
    assert "note:    the query string plays no part in the decision: /api/x" in result.output


# -- "allowed now": the engine decides -----------------------------------------------------


def served(spec: RuleSpec, tenants=("acme", "globex")):
    snapshot = compile_policy(7, [spec], tenants)
    return snapshot, snapshot.rules[0]


SHOP = "https://shop.acme.example"


@pytest.mark.parametrize(("source", "key"), [
    ("header", "X-Tenant"), ("subdomain", "shop.example"), ("view-arg", "tenant")])
def test_an_origin_on_a_tenants_allowlist_is_allowed_now_for_that_tenant_only(source, key):
    snapshot, rule = served(RuleSpec(
        "/t/*/orders", origins=(OriginEntry(SHOP, tenant="acme"),), rule_id=1,
        tenant_source=source, tenant_key=key, unknown_tenant="shared"))
    assert allows_origin_now(snapshot, rule, SHOP, tenant="acme")
    assert not allows_origin_now(snapshot, rule, SHOP, tenant="globex")
    assert not allows_origin_now(snapshot, rule, SHOP)


def test_a_shared_origin_is_allowed_now_for_every_tenant_and_none():
    snapshot, rule = served(RuleSpec(
        "/t/*/orders", origins=(OriginEntry(ORIGIN),), rule_id=1, tenant_source="header",
        tenant_key="X-Tenant", unknown_tenant="shared"))
    assert allows_origin_now(snapshot, rule, ORIGIN, tenant="globex")
    assert allows_origin_now(snapshot, rule, ORIGIN)


@pytest.mark.parametrize(("spec", "allowed"), [
    (RuleSpec("/api/*", origins=(OriginEntry(ORIGIN),), rule_id=1), True),
    # The method of the rule plays no part: the question is whether the origin gets through.
    (RuleSpec("/api/*", origins=(OriginEntry(ORIGIN),), methods=("DELETE",), rule_id=1), True),
    (RuleSpec("/api/*", origins=(OriginEntry("https://other.example"),), rule_id=1), False),
    (RuleSpec("/api/*", origins=(OriginEntry(ORIGIN, expires_at=1.0),), rule_id=1), False),
    (RuleSpec("/api/*", origins=(), mode="report-only", rule_id=1), False),
])
def test_allowed_now_is_what_the_engine_decides_for_the_origin(spec, allowed):
    snapshot, rule = served(spec)
    assert allows_origin_now(snapshot, rule, ORIGIN) is allowed


def test_a_rule_the_snapshot_no_longer_serves_allows_nothing():
    snapshot, _ = served(RuleSpec("/api/*", origins=(OriginEntry(ORIGIN),), rule_id=1))
    assert not allows_origin_now(snapshot, None, ORIGIN)
    assert not allows_origin_now(None, None, ORIGIN)


# -- the whole fix for a tenant role -------------------------------------------------------


SHOP = "https://shop.example.com"


@pytest.fixture
def shared_rule(app):
    """A platform rule that takes the tenant from a header; acme's editor works on it."""
    from app.services.policy import import_policy
    from app.services.tenants import create_tenant
    from cors_control import get_control

    with app.app_context():
        acme = create_tenant("acme", "Acme", actor=Actor("admin", "cli")).id
        create_tenant("globex", "Globex", actor=Actor("admin", "cli"))
        import_policy({"rules": [{"path": "/api/echo", "origins": [ORIGIN],
                                  "tenant_selector": {"source": "header",
                                                      "key": "X-Tenant"}}]},
                      actor=Actor("test", "cli"), replace=True)
    get_control(app).cache.refresh()
    return Actor("ed@acme.example", "dashboard", "tenant-editor", acme)


def tenant_answer(app, actor, tenant: str, *, credentials: bool = False):
    from app.services.simulator import answer_request
    from cors_control import get_control

    request = validate_request(origin=SHOP, method="GET", path="/api/echo",
                               request_headers=[("X-Tenant", tenant)],
                               credentials=credentials, preflight=False).request
    assert request is not None
    control = get_control(app)
    with app.app_context():
        return request, answer_request(request, control.cache.get(), actor=actor,
                                       routes=control)


def test_a_tenant_editor_gets_the_fix_for_its_own_tenant_only(app, shared_rule):
    from app.services.simulator import fix_request
    from cors_control import get_control

    request, own = tenant_answer(app, shared_rule, "acme")
    assert own.fix is not None and (own.fix.origin, own.fix.tenant) == (SHOP, "acme")
    assert own.fix.routes == ("/api/echo",)
    _, other = tenant_answer(app, shared_rule, "globex")
    assert other.fix is None and other.fix_refusal == "the request is for tenant globex, not yours"
    with app.app_context():
        assert fix_request(request, get_control(app).cache.get(), actor=shared_rule) \
            == f"Done: allow {SHOP} for tenant acme on /api/echo."
    get_control(app).cache.refresh()
    _, after = tenant_answer(app, shared_rule, "acme")
    assert after.failures == () and after.simulation is not None \
        and after.simulation.decision.allowed


def test_a_tenant_editor_is_not_offered_credentials_on_a_platform_rule(app, shared_rule):
    from app.services.errors import Forbidden
    from app.services.policy import allow_request
    from app.services.policy_read import get_rule_by_path

    _, answer = tenant_answer(app, shared_rule, "acme", credentials=True)
    assert [f.check for f in answer.failures] == ["origin-not-allowed",
                                                  "credentials-not-allowed"]
    assert answer.fix is None
    assert answer.fix_refusal == "only the owner of /api/echo can let it support credentials"
    with app.app_context():
        rule_id = get_rule_by_path("/api/echo").id
        with pytest.raises(Forbidden):
            allow_request(rule_id, origin=SHOP, credentials=True, actor=shared_rule)
        assert not get_rule_by_path("/api/echo").supports_credentials
