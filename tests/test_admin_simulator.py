"""The simulator page: the engine's own answer for a request, every failing check, and the
one-click fix when one change makes the request pass."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AllowedOrigin, AuditEntry
from cors_control import get_control

ORIGIN = "https://app.example.com"
NEW = "https://new.example.com"
HTMX = {"HX-Request": "true"}

RULE = {
    "path": "/api/*",
    "origins": [ORIGIN],
    "methods": ["GET", "HEAD", "POST", "PUT"],
    "allow_headers": ["content-type"],
    "expose_headers": ["X-Request-Id"],
    "max_age": 600,
}


def simulate(client, http_headers=None, **question):
    return client.get("/admin/simulator", query_string=question, headers=http_headers or {})


def text_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def audit_entries(app) -> list[AuditEntry]:
    with app.app_context():
        entries = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
        db.session.expunge_all()
        return list(entries)


def origins_of(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AllowedOrigin.value).order_by(
            AllowedOrigin.value)))


# -- page and fragment ---------------------------------------------------------------------


def test_simulator_page_shows_the_form_and_no_answer_before_a_question(sign_in):
    page = text_of(sign_in("viewer").get("/admin/simulator"))
    assert '<form class="card" method="get" action="/admin/simulator"' in page
    assert 'hx-get="/admin/simulator"' in page and 'hx-push-url="true"' in page
    assert '<section id="simulation"' in page
    assert "badge" not in page.split('<section id="simulation"')[1]


def test_an_htmx_question_gets_only_the_answer_fragment(sign_in, policy):
    policy(RULE)
    response = simulate(sign_in("viewer"), HTMX, origin=ORIGIN, method="GET",
                        path="/api/orders")
    fragment = text_of(response)
    assert "<html" not in fragment and "<form class=\"card\"" not in fragment
    assert '<section id="simulation"' in fragment
    assert "allowed" in fragment
    assert "HX-Request" in response.headers["Vary"]


def test_a_full_page_answer_keeps_the_question_in_the_form(sign_in, policy):
    policy(RULE)
    page = text_of(simulate(sign_in("viewer"), origin=ORIGIN, method="PROPFIND",
                            path="/api/orders", headers="x-token", credentials="1"))
    assert "<html" in page
    assert f'name="origin" value="{ORIGIN}"' in page
    assert '<option value="other" selected>' in page
    assert 'name="custom_method" value="PROPFIND"' in page
    assert 'name="headers" value="x-token"' in page
    assert 'name="credentials" value="1" checked>' in page


# -- answers -------------------------------------------------------------------------------


def test_an_allowed_simple_request_shows_the_rule_the_reason_and_the_exact_headers(
        app, sign_in, policy):
    policy(RULE)
    answer = text_of(simulate(sign_in("viewer"), HTMX, origin=ORIGIN, method="GET",
                              path="/api/orders"))
    assert '<span class="badge allowed">allowed</span>' in answer
    assert "/api/*" in answer
    assert "<code>allowed</code>: the request is allowed" in answer
    assert "no: GET with no headers of its own" in answer
    assert ("Access-Control-Allow-Origin: https://app.example.com\nVary: Origin\n"
            "Access-Control-Expose-Headers: X-Request-Id") in answer
    with app.test_request_context():
        if "admin.rule" in app.view_functions:
            assert 'href="/admin/rules/' in answer
        else:
            assert "<code>/api/*</code>" in answer


def test_an_origin_not_on_the_allowlist_is_refused_with_the_reason_in_plain_words(
        sign_in, policy):
    policy(RULE)
    answer = text_of(simulate(sign_in("viewer"), HTMX, origin=NEW, method="GET",
                              path="/api/orders"))
    assert '<span class="badge refused">refused</span>' in answer
    assert "<code>origin-not-allowed</code>: the origin is not on the rule&#39;s allowlist" \
        in answer
    assert "No CORS headers: the view runs, but the browser withholds" in answer
    assert "Vary: Origin" in answer and "Access-Control-Allow-Origin" not in answer
    assert "an editor can apply it from here" in answer  # a viewer gets no button
    assert "simulator/fix" not in answer


def test_a_header_outside_allow_headers_refuses_the_preflight_and_names_the_header(
        sign_in, policy):
    policy(RULE)
    answer = text_of(simulate(sign_in("viewer"), HTMX, origin=ORIGIN, method="PUT",
                              path="/api/orders", headers="Content-Type, X-Token"))
    assert '<span class="badge refused">refused</span>' in answer
    assert "<code>header-not-allowed</code>" in answer
    assert "a requested header is not in the rule&#39;s allow_headers: x-token" in answer
    assert "<code>403</code>, no CORS headers" in answer
    assert ("Access-Control-Request-Method: PUT\n"
            "Access-Control-Request-Headers: content-type,x-token") in answer
    assert "PUT is not GET, HEAD or POST" in answer
    assert "content-type, x-token are not CORS-safelisted request headers" in answer
    assert "so a JSON body is preflighted" in answer


def test_an_allowed_preflight_shows_its_204_and_the_actual_response_after_it(sign_in, policy):
    policy(RULE)
    answer = text_of(simulate(sign_in("viewer"), HTMX, origin=ORIGIN, method="PUT",
                              path="/api/orders", headers="content-type"))
    assert "<code>204</code> No Content" in answer
    assert ("Access-Control-Allow-Origin: https://app.example.com\n"
            "Access-Control-Allow-Methods: GET, HEAD, POST, PUT\n"
            "Access-Control-Allow-Headers: content-type\n"
            "Access-Control-Max-Age: 600\n"
            "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers") \
        in answer
    assert "Then the PUT request itself" in answer
    assert "Access-Control-Expose-Headers: X-Request-Id" in answer


def test_credentials_are_refused_by_a_rule_without_them_and_granted_by_one_with_them(
        sign_in, policy):
    client = sign_in("viewer")
    policy(RULE)
    refused = text_of(simulate(client, HTMX, origin=ORIGIN, method="GET",
                               path="/api/orders", credentials="1"))
    assert "<code>credentials-not-allowed</code>" in refused
    assert "Cookie: session=simulated" in refused
    assert "The Cookie header stands for the page's cookies" in refused
    policy({**RULE, "supports_credentials": True})
    allowed = text_of(simulate(client, HTMX, origin=ORIGIN, method="GET",
                               path="/api/orders", credentials="1"))
    assert '<span class="badge allowed">allowed</span>' in allowed
    assert "Access-Control-Allow-Credentials: true" in allowed


def test_a_report_only_rule_changes_no_answer_and_says_what_it_would_refuse(sign_in, policy):
    policy(RULE, {"path": "/api/orders", "origins": [NEW], "mode": "report-only"})
    answer = text_of(simulate(sign_in("viewer"), HTMX, origin=ORIGIN, method="GET",
                              path="/api/orders"))
    assert '<span class="badge allowed">allowed</span>' in answer  # /api/* answers
    assert "Access-Control-Allow-Origin: https://app.example.com" in answer
    assert '<span class="badge report-only">report-only</span>' in answer
    assert "<code>origin-not-allowed</code>: the origin is not on the rule&#39;s allowlist" \
        in answer
    tried = text_of(simulate(sign_in("viewer"), HTMX, origin=NEW, method="GET",
                             path="/api/orders"))
    assert '<span class="badge refused">refused</span>' in tried  # its own origin, too
    assert "Access-Control-Allow-Origin" not in tried
    assert "Report-only" not in tried  # the tried rule would allow it: nothing to report


def test_a_path_no_rule_governs_gets_nothing_from_the_engine(sign_in, policy):
    policy(RULE)
    answer = text_of(simulate(sign_in("viewer"), HTMX, origin=ORIGIN, method="GET",
                              path="/elsewhere"))
    assert "<code>no-rule</code>" in answer
    assert "The engine adds nothing: no rule governs this path" in answer


def test_a_malformed_origin_is_still_simulated_with_the_parser_message_as_a_hint(
        sign_in, policy):
    policy(RULE)
    answer = text_of(simulate(sign_in("editor"), HTMX, origin="https://app.example.com/",
                              method="GET", path="/api/orders"))
    assert "an origin has no path; use https://app.example.com" in answer
    assert '<span class="badge refused">refused</span>' in answer
    assert "simulator/fix" not in answer
    assert "No single click makes this request pass: this origin cannot be put on an " \
        "allowlist: an origin has no path" in answer


def test_a_hostile_origin_is_shown_as_text(sign_in, policy):
    policy(RULE)
    hostile = 'https://x.example"><script>alert(1)</script>'
    answer = text_of(simulate(sign_in("editor"), origin=hostile, method="GET",
                              path="/api/orders"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer
    assert "<script>alert(1)</script>" not in answer


@pytest.mark.parametrize(("question", "message"), [
    ({"origin": ORIGIN, "path": "api/orders"}, "Path: a path starts with /, as in /api/orders"),
    ({"origin": "", "path": "/api/orders"}, "Origin: enter the Origin header to test"),
    ({"origin": ORIGIN, "path": "/api/orders", "method": "other"},
     "Method: type the method to test"),
    ({"origin": ORIGIN, "path": "/api/orders", "method": "other", "custom_method": "GE T"},
     "Method: a method is one word"),
    ({"origin": "https://a.example\r\nX-Injected: 1", "path": "/api/orders"},
     "Origin: no request can carry a line break"),
    ({"origin": ORIGIN, "path": "/api/orders", "headers": "x-a\nx-b"},
     "Request headers: header names cannot contain line breaks"),
])
def test_a_question_that_cannot_be_asked_says_which_field_to_fix(sign_in, policy, question,
                                                                 message):
    policy(RULE)
    answer = text_of(simulate(sign_in("viewer"), HTMX, **question))
    assert message in answer
    assert "badge" not in answer


@pytest.mark.parametrize(("question", "hint"), [
    ({"method": "delete"}, "browsers send delete as DELETE; simulated as DELETE"),
    ({"method": "patch"}, "browsers send patch exactly as typed"),
    ({"path": "https://api.example.com/api/orders?x=1"},
     "only the path of the URL decides which rule applies: /api/orders"),
    ({"headers": "cookie"}, "scripts cannot set cookie"),
    ({"origin": "HTTPS://APP.EXAMPLE.COM"}, "browsers send this origin as https://app.example.com"),
    ({"origin": "https://*.example.com"}, "is an allowlist pattern, not an origin"),
])
def test_hints_explain_what_a_browser_would_do_differently(sign_in, policy, question, hint):
    policy(RULE)
    full = {"origin": ORIGIN, "method": "GET", "path": "/api/orders", **question}
    answer = text_of(simulate(sign_in("viewer"), HTMX, **full))
    assert hint in answer
    assert "badge" in answer  # a hint never blocks the simulation


# -- the one-click fix ---------------------------------------------------------------------


def fix(client, *, origin=NEW, token=True, http_headers=None, **question):
    data = {"origin": origin, "method": "GET", "path": "/api/orders", **question}
    if token:
        data["csrf_token"] = client.csrf
    return client.post("/admin/simulator/fix", data=data, headers=http_headers or {})


def rule_of(app, path="/api/*"):
    from app.services.policy_read import get_rule_by_path

    with app.app_context():
        rule = get_rule_by_path(path)
        db.session.expunge(rule)
        return rule


def current_version(app) -> int:
    from app.services.changes import policy_version

    with app.app_context():
        return policy_version()


def test_an_editor_sees_the_fix_with_a_confirmation_naming_the_routes_it_affects(
        app, sign_in, policy):
    policy(RULE)
    answer = text_of(simulate(sign_in("editor"), HTMX, origin=NEW, method="GET",
                              path="/api/orders"))
    assert 'hx-post="/admin/simulator/fix"' in answer
    assert (f'data-confirm="Allow {NEW} on /api/*? This changes the rule /api/*, which '
            "governs /api/echo, /api/fail, /api/orders") in answer
    assert "<code>/api/t/&lt;tenant&gt;/orders</code>" in answer
    assert f'name="origin" value="{NEW}"' in answer
    assert "rule_id" not in answer  # the fix is worked out again from the question


def test_the_fix_audits_one_change_and_the_next_simulation_is_allowed(app, sign_in, policy):
    policy(RULE)
    editor = sign_in("editor")
    before = current_version(app)
    fragment = text_of(fix(editor, http_headers=HTMX))
    assert "<html" not in fragment
    assert f"Done: allow {NEW} on /api/*." in fragment
    assert '<span class="badge allowed">allowed</span>' in fragment
    assert f"Access-Control-Allow-Origin: {NEW}" in fragment
    (entry,) = [e for e in audit_entries(app) if e.policy_version > before]
    assert (entry.action, entry.actor, entry.channel, entry.rule_path) == (
        "rule.update", editor.user_email, "dashboard", "/api/*")
    assert NEW in entry.summary
    assert current_version(app) == before + 1
    assert NEW in origins_of(app)


def test_the_fix_allows_the_origin_and_enables_credentials_in_one_change(app, sign_in, policy):
    """The finding of issue 9: allowing only the origin left a credentialed request refused."""
    policy(RULE)
    editor = sign_in("editor")
    answer = text_of(simulate(editor, HTMX, origin=NEW, method="GET", path="/api/orders",
                              credentials="1"))
    assert "<code>origin-not-allowed</code>" in answer
    assert "<code>credentials-not-allowed</code>" in answer
    assert (f"Allow {NEW} and let the rule support credentials on /api/*? This changes the "
            "rule /api/*") in answer
    before = current_version(app)
    fragment = text_of(fix(editor, credentials="1", http_headers=HTMX))
    assert '<span class="badge allowed">allowed</span>' in fragment
    assert "Access-Control-Allow-Credentials: true" in fragment
    assert current_version(app) == before + 1
    (entry,) = [e for e in audit_entries(app) if e.policy_version > before]
    assert "supports credentials" in entry.summary and NEW in entry.summary
    assert rule_of(app).supports_credentials


def test_the_fix_without_javascript_redirects_to_the_simulation_with_a_message(
        app, sign_in, policy):
    policy(RULE)
    editor = sign_in("editor")
    response = fix(editor, method="PUT")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/admin/simulator?")
    assert "origin=https://new.example.com" in response.headers["Location"]
    assert "method=PUT" in response.headers["Location"]
    page = text_of(editor.get(response.headers["Location"]))
    assert f'<p class="flash " role="status">Done: allow {NEW} on /api/*.</p>' in page
    assert '<span class="badge allowed">allowed</span>' in page


def test_fixing_twice_changes_nothing_the_second_time(app, sign_in, policy):
    policy(RULE)
    editor = sign_in("editor")
    fix(editor, http_headers=HTMX)
    second = text_of(fix(editor, http_headers=HTMX))
    assert "Nothing was changed: this request is not refused by a rule" in second
    assert len([e for e in audit_entries(app) if e.action == "rule.update"]) == 1


def test_no_fix_is_offered_when_the_request_also_fails_a_check_it_cannot_pass(
        app, sign_in, policy):
    policy(RULE)
    editor = sign_in("editor")
    answer = text_of(simulate(editor, HTMX, origin=NEW, method="PUT", path="/api/orders",
                              headers="x-token"))
    assert "<code>origin-not-allowed</code>" in answer
    assert "<code>header-not-allowed</code>: a requested header is not in the rule&#39;s " \
        "allow_headers: x-token" in answer
    assert "simulator/fix" not in answer
    assert "it also fails header-not-allowed" in answer
    assert f'href="/admin/rules/{rule_of(app).id}"' in answer  # edit this rule
    assert "create a narrower rule</a> for <code>/api/orders</code>" in answer
    refused = text_of(fix(editor, method="PUT", headers="x-token", http_headers=HTMX))
    assert "Nothing was changed: it also fails header-not-allowed" in refused
    assert origins_of(app) == [ORIGIN]


def test_no_credentials_fix_on_a_rule_that_allows_every_origin(app, sign_in, policy):
    policy({**RULE, "origins": ["*"]})
    answer = text_of(simulate(sign_in("editor"), HTMX, origin=NEW, method="GET",
                              path="/api/orders", credentials="1"))
    assert "<code>credentials-not-allowed</code>" in answer
    assert "simulator/fix" not in answer
    assert "the rule allows every origin with *" in answer


def test_the_fix_refuses_an_origin_no_browser_sends(app, sign_in, policy):
    policy(RULE)
    answer = text_of(fix(sign_in("editor"), origin="HTTPS://NEW.EXAMPLE.COM",
                         http_headers=HTMX))
    assert "Nothing was changed: browsers send this origin as https://new.example.com" in answer
    assert origins_of(app) == [ORIGIN]


def test_the_fix_on_a_path_no_rule_governs_changes_nothing(app, sign_in, policy):
    policy(RULE)
    answer = text_of(fix(sign_in("editor"), path="/elsewhere", http_headers=HTMX))
    assert "Nothing was changed" in answer
    assert origins_of(app) == [ORIGIN]


def test_viewers_cannot_apply_a_fix(app, sign_in, policy):
    policy(RULE)
    response = fix(sign_in("viewer"), http_headers=HTMX)
    assert response.status_code == 403
    assert origins_of(app) == [ORIGIN]


def test_a_fix_without_the_csrf_token_is_refused(app, sign_in, policy):
    policy(RULE)
    response = fix(sign_in("editor"), token=False)
    assert response.status_code == 400
    assert origins_of(app) == [ORIGIN]
    assert audit_entries(app)[-1].action != "rule.update"


def tenant_policy(app, selector: dict) -> None:
    from app.services.access import Actor
    from app.services.policy import import_policy

    with app.app_context():
        import_policy({"tenants": [{"slug": "acme", "name": "Acme"}],
                       "rules": [{"path": "/api/*", "origins": [ORIGIN],
                                  "tenant_selector": selector}]},
                      actor=Actor("test", "cli"), replace=True)
    get_control(app).cache.refresh()


def test_a_rule_with_an_allowlist_per_tenant_is_not_opened_to_all_tenants(app, sign_in):
    tenant_policy(app, {"source": "header", "key": "X-Tenant", "unknown": "shared"})
    answer = text_of(simulate(sign_in("editor"), HTMX, origin=NEW, method="GET",
                              path="/api/orders"))
    assert "/api/* keeps an allowlist per tenant, named by the request header X-Tenant" \
        in answer
    assert "simulator/fix" not in answer
    assert "this request named no tenant" in answer
    refused = text_of(fix(sign_in("editor"), http_headers=HTMX))
    assert "Nothing was changed: the rule keeps an allowlist per tenant" in refused
    assert origins_of(app) == [ORIGIN]


# A header-selected tenant is in tests/test_api.py: a script's X-Tenant header makes a
# preflight, which carries the header's name only (tests/test_simulation_truth.py).
@pytest.mark.parametrize(("selector", "question"), [
    ({"source": "subdomain", "key": "api.example.com"}, {"host": "acme.api.example.com"}),
    ({"source": "view-arg", "key": "tenant"}, {"path": "/api/t/acme/orders"}),
], ids=["subdomain", "view-arg"])
def test_the_tenant_is_read_as_the_server_reads_it_and_the_fix_is_for_that_tenant(
        app, sign_in, selector, question):
    tenant_policy(app, selector)
    editor = sign_in("editor")
    answer = text_of(simulate(editor, HTMX, origin=NEW, method="GET",
                              **{"path": "/api/orders", **question}))
    assert "unknown-tenant" not in answer
    assert "<code>origin-not-allowed</code>" in answer
    assert f"Allow {NEW} for tenant acme on /api/*?" in answer
    fragment = text_of(fix(editor, http_headers=HTMX, **question))
    assert '<span class="badge allowed">allowed</span>' in fragment
    with app.app_context():
        tenants = db.session.execute(sa.select(AllowedOrigin.value, AllowedOrigin.tenant_id)
                                     .where(AllowedOrigin.value == NEW)).all()
    assert len(tenants) == 1 and tenants[0].tenant_id is not None


def test_a_request_header_line_that_is_not_name_value_is_an_error(sign_in, policy):
    policy(RULE)
    answer = text_of(simulate(sign_in("viewer"), HTMX, origin=NEW, method="GET",
                              path="/api/orders", request_headers="X-Tenant acme"))
    assert "Request headers with values: write one header a line as Name: value" in answer
    assert "badge" not in answer
