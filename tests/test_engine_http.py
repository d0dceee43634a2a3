"""The engine through the real app: every CORS-SPEC.md rule it implements, as HTTP.

Each test loads rules through the service layer (the ``policy`` fixture) into the real
database and speaks to the demo API with Flask's test client. Assertions are on what a browser
would see: the ``Access-Control-*`` lines, ``Vary``, the status, and whether the view ran.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from flask import Flask, Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.models import PolicyState, Rule
from cors_control import get_control
from cors_control.decision import (
    CREDENTIALS_NOT_ALLOWED,
    EXPLANATIONS,
    HEADER_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    ORIGIN_NOT_ALLOWED,
    PRIVATE_NETWORK_NOT_ALLOWED,
)

APP = "https://app.example.com"
PARTNER = "https://partner.example.org"
STRANGER = "https://stranger.example.net"
PREFLIGHT_VARY = ["origin", "access-control-request-method", "access-control-request-headers"]


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def client(app):
    """A client that sends the ``Cookie`` header a test writes; the default client replaces it
    with its (empty) cookie jar, which would make every credentialed case silently anonymous."""
    return app.test_client(use_cookies=False)


def access_control(response: Response) -> list[tuple[str, str]]:
    """Every ``Access-Control-*`` line of *response*, in order."""
    return [(k, v) for k, v in response.headers if k.lower().startswith("access-control-")]


def vary(response: Response) -> list[str]:
    """The ``Vary`` tokens of *response* across all its ``Vary`` lines, lowercased.

    ``Cookie`` is left out: Flask adds it to every response once the session is read, which
    Flask-Login's ``after_request`` hook does on every request of this app.
    """
    return [
        token.strip().lower()
        for line in response.headers.getlist("Vary")
        for token in line.split(",")
        if token.strip() and token.strip().lower() != "cookie"
    ]


def acao(response: Response) -> list[str]:
    return response.headers.getlist("Access-Control-Allow-Origin")


def listed(value: str) -> list[str]:
    return [part.strip() for part in value.split(",")]


def assert_refused_actual(response: Response) -> None:
    assert access_control(response) == []
    assert vary(response).count("origin") == 1


def preflight(client, path: str, origin: str, method: str = "PUT",
              request_headers: str | None = None, extra: dict[str, str] | None = None):
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if request_headers is not None:
        headers["Access-Control-Request-Headers"] = request_headers
    headers.update(extra or {})
    return client.options(path, headers=headers)


def refreshed(app: Flask) -> Flask:
    """*app* serving the policy the ``policy`` fixture just wrote to the shared database."""
    get_control(app).cache.refresh()
    return app


# -- requests without Origin -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/api/orders", {}, 200),
        ("POST", "/api/echo", {"Cookie": "session=1"}, 200),
        ("GET", "/api/does-not-exist", {}, 404),
        # An OPTIONS without Origin is not a preflight, whatever else it carries.
        ("OPTIONS", "/api/echo", {"Access-Control-Request-Method": "PUT"}, 200),
    ],
    ids=["get", "post-with-cookie", "not-found", "options-without-origin"],
)
def test_request_without_origin_gets_no_cors_headers_but_varies_on_origin(
    client, policy, method, path, headers, status
):
    policy({"path": "/api/*", "origins": [APP], "supports_credentials": True,
            "expose_headers": ["X-Request-Id"], "max_age": 600})
    response = client.open(path, method=method, headers=headers)
    assert response.status_code == status
    assert_refused_actual(response)
    assert not any(APP in value for _, value in response.headers), "allowlist leaked"


# -- allowed actual requests -------------------------------------------------------------------


@pytest.mark.parametrize("origin", [APP, PARTNER])
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def test_allowed_origin_gets_its_origin_back_exactly_once(client, policy, method, origin):
    policy({"path": "/api/*", "origins": [APP, PARTNER]})
    response = client.open("/api/echo", method=method, headers={"Origin": origin})
    assert response.status_code == 200
    assert access_control(response) == [("Access-Control-Allow-Origin", origin)]
    assert vary(response) == ["origin"]
    if method != "HEAD":
        assert response.json["method"] == method


@pytest.mark.parametrize("origin", [APP, STRANGER, "http://localhost:5173"])
def test_any_origin_rule_answers_with_a_star_and_never_with_credentials(client, policy, origin):
    policy({"path": "/api/*", "origins": ["*"]})
    response = client.get("/api/orders", headers={"Origin": origin})
    assert acao(response) == ["*"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert vary(response) == ["origin"]


@pytest.mark.parametrize("cookie", [None, "session=1"], ids=["no-cookie", "cookie"])
def test_credentials_rule_sends_allow_credentials_true_with_the_exact_origin(
    client, policy, cookie
):
    policy({"path": "/api/*", "origins": [APP], "supports_credentials": True})
    headers = {"Origin": APP} | ({"Cookie": cookie} if cookie else {})
    response = client.get("/api/orders", headers=headers)
    assert acao(response) == [APP]
    assert response.headers.getlist("Access-Control-Allow-Credentials") == ["true"]


@pytest.mark.parametrize(
    ("expose", "expected"),
    [(["X-Request-Id"], ["X-Request-Id"]),
     (["X-Request-Id", "X-Trace-Id"], ["X-Request-Id, X-Trace-Id"]),
     ([], [])],
    ids=["one", "two", "none"],
)
def test_expose_headers_are_sent_only_when_configured(client, policy, expose, expected):
    policy({"path": "/api/*", "origins": [APP], "expose_headers": expose})
    response = client.get("/api/echo", headers={"Origin": APP})
    assert response.headers.getlist("Access-Control-Expose-Headers") == expected
    assert "X-Request-Id" in response.headers  # the view's header itself is untouched


# -- refused actual requests -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_unlisted_origin_gets_no_cors_headers_and_the_view_still_runs(client, policy, method):
    policy({"path": "/api/*", "origins": [APP]})
    response = client.open("/api/echo", method=method, headers={"Origin": STRANGER})
    assert response.status_code == 200
    assert response.json["method"] == method
    assert response.json["origin"] == STRANGER
    assert_refused_actual(response)


def test_actual_request_with_a_method_outside_the_rule_is_refused(client, policy):
    policy({"path": "/api/*", "origins": [APP], "methods": ["GET", "HEAD"]})
    allowed = client.get("/api/echo", headers={"Origin": APP})
    refused = client.post("/api/echo", headers={"Origin": APP})
    assert acao(allowed) == [APP]
    assert refused.status_code == 200 and refused.json["method"] == "POST"
    assert_refused_actual(refused)


# -- Vary --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([("Vary", "Accept"), ("Vary", "Accept-Language")],
         [("Vary", "Accept, Accept-Language, Origin")]),
        ([("Vary", "Accept"), ("Vary", "origin")], [("Vary", "Accept, origin")]),
        ([("Vary", "*")], [("Vary", "*")]),
        ([], [("Vary", "Origin")]),
    ],
)
def test_every_vary_line_of_a_wsgi_response_is_kept_when_origin_is_added(lines, expected):
    """Flask folds Vary lines itself when it adds Cookie; a WSGI app under the engine may
    still send several, and none of their fields may be lost."""
    from cors_control.extension import _apply

    headers = [("Content-Type", "text/plain"), *lines,
               ("Access-Control-Allow-Origin", "https://stale.example")]
    _apply(headers, (("Vary", "Origin"),))
    assert [h for h in headers if h[0] == "Vary"] == expected
    assert ("Access-Control-Allow-Origin", "https://stale.example") not in headers


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (["Accept-Encoding"], ["accept-encoding", "origin"]),
        (["User-Agent, Accept"], ["user-agent", "accept", "origin"]),
        (["origin"], ["origin"]),
        (["Accept, ORIGIN"], ["accept", "origin"]),
        (["*"], ["*"]),
    ],
    ids=["other", "list", "lowercase-origin", "uppercase-origin-in-list", "star"],
)
@pytest.mark.parametrize("origin", [APP, STRANGER, None], ids=["allowed", "refused", "no-origin"])
def test_vary_origin_is_merged_into_the_vary_the_app_sends_never_duplicated(
    app, client, policy, existing, expected, origin
):
    @app.after_request  # runs before the engine's hook, which is the last one
    def add_vary(response: Response) -> Response:
        for value in existing:
            response.headers.add("Vary", value)
        return response

    policy({"path": "/api/*", "origins": [APP]})
    response = client.get("/api/orders", headers={"Origin": origin} if origin else {})
    assert vary(response) == expected
    assert bool(acao(response)) == (origin == APP)


@pytest.mark.parametrize("origin", [APP, STRANGER], ids=["allowed", "refused"])
def test_preflight_is_answered_before_the_app_so_its_hooks_add_nothing(app, client, policy,
                                                                       origin):
    @app.after_request
    def add_vary(response: Response) -> Response:
        response.headers.add("Vary", "Accept-Encoding, origin")
        response.headers["X-From-The-App"] = "1"
        return response

    policy({"path": "/api/*", "origins": [APP]})
    response = preflight(client, "/api/echo", origin)
    assert vary(response) == list(PREFLIGHT_VARY)
    assert "X-From-The-App" not in response.headers


# -- error responses ---------------------------------------------------------------------------

ERRORS = [
    ("GET", "/api/does-not-exist", 404),
    ("DELETE", "/api/orders", 405),
    ("PUT", "/api/public/status", 405),
]
ERROR_IDS = ["not-found", "method-not-allowed", "method-not-allowed-nested"]
CREDENTIALED_RULE = {"path": "/api/*", "origins": [APP], "supports_credentials": True,
                     "expose_headers": ["X-Request-Id"]}


@pytest.mark.parametrize(("method", "path", "status"), ERRORS, ids=ERROR_IDS)
def test_error_response_carries_the_same_cors_headers_as_a_success(
    client, policy, method, path, status
):
    policy(CREDENTIALED_RULE)
    success = client.get("/api/orders", headers={"Origin": APP, "Cookie": "s=1"})
    error = client.open(path, method=method, headers={"Origin": APP, "Cookie": "s=1"})
    assert error.status_code == status
    assert access_control(error) == access_control(success)
    assert access_control(error) == [
        ("Access-Control-Allow-Origin", APP),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Expose-Headers", "X-Request-Id"),
    ]
    assert vary(error) == ["origin"]


@pytest.mark.parametrize(("method", "path", "status"), ERRORS, ids=ERROR_IDS)
def test_error_response_to_an_unlisted_origin_has_no_cors_headers_but_varies(
    client, policy, method, path, status
):
    policy(CREDENTIALED_RULE)
    response = client.open(path, method=method, headers={"Origin": STRANGER})
    assert response.status_code == status
    assert_refused_actual(response)


@pytest.mark.parametrize("origin", [APP, STRANGER], ids=["allowed", "refused"])
def test_server_error_on_a_governed_route_carries_the_same_cors_headers(
    make_app, policy, origin
):
    policy(CREDENTIALED_RULE)
    app = refreshed(make_app(PROPAGATE_EXCEPTIONS=False))
    client = app.test_client(use_cookies=False)
    success = client.get("/api/orders", headers={"Origin": origin})
    error = client.get("/api/fail", headers={"Origin": origin})
    assert error.status_code == 500
    assert access_control(error) == access_control(success)
    assert bool(acao(error)) == (origin == APP)
    assert vary(error) == ["origin"]


# -- preflights: allowed -----------------------------------------------------------------------

PREFLIGHT_RULE = {
    "path": "/api/*",
    "origins": [APP],
    "methods": ["GET", "POST", "PUT"],
    "allow_headers": ["Content-Type", "X-Api-Key"],
    "max_age": 600,
}


def test_allowed_preflight_is_answered_204_by_the_engine_with_every_header(client, policy):
    policy(PREFLIGHT_RULE)
    response = preflight(client, "/api/echo", APP, "PUT", "content-type,x-api-key")
    assert response.status_code == 204
    assert response.get_data() == b""
    assert access_control(response) == [
        ("Access-Control-Allow-Origin", APP),
        ("Access-Control-Allow-Methods", "GET, POST, PUT"),
        ("Access-Control-Allow-Headers", "content-type, x-api-key"),
        ("Access-Control-Max-Age", "600"),
    ]
    assert vary(response) == PREFLIGHT_VARY


def test_allowed_preflight_on_a_credentials_rule_sends_allow_credentials(client, policy):
    policy({**PREFLIGHT_RULE, "supports_credentials": True})
    response = preflight(client, "/api/echo", APP, "POST", "x-api-key")
    assert response.status_code == 204
    assert acao(response) == [APP]
    assert response.headers.getlist("Access-Control-Allow-Credentials") == ["true"]


@pytest.mark.parametrize(
    "path",
    ["/api/fail", "/api/orders", "/api/does-not-exist"],
    ids=["view-that-raises", "route-without-put", "no-route"],
)
@pytest.mark.parametrize("origin", [APP, STRANGER], ids=["allowed", "refused"])
def test_preflight_is_answered_by_the_engine_and_never_reaches_the_view(
    client, policy, path, origin
):
    # TESTING propagates exceptions: had /api/fail's view run, this test would raise.
    policy(PREFLIGHT_RULE)
    response = preflight(client, path, origin)
    assert response.status_code == (204 if origin == APP else 403)
    assert "Allow" not in response.headers  # Flask's automatic OPTIONS answer was not used


@pytest.mark.parametrize(
    ("requested", "answered"),
    [
        ("content-type,x-api-key", ["content-type", "x-api-key"]),
        ("Content-Type, X-Api-Key", ["content-type", "x-api-key"]),
        ("X-API-KEY", ["x-api-key"]),
        (" x-api-key ,CONTENT-TYPE,x-api-key,Content-Type ", ["x-api-key", "content-type"]),
        ("x-api-key,,", ["x-api-key"]),
        ("\tcontent-type\t", ["content-type"]),
    ],
    ids=["browser", "spaces-mixed-case", "upper-case", "duplicates", "empty-items", "tabs"],
)
def test_preflight_allows_hand_written_header_lists_and_answers_only_what_was_asked(
    client, policy, requested, answered
):
    policy({**PREFLIGHT_RULE, "allow_headers": ["Content-Type", "X-Api-Key", "X-Trace-Id"]})
    response = preflight(client, "/api/echo", APP, "PUT", requested)
    assert response.status_code == 204
    assert listed(response.headers["Access-Control-Allow-Headers"]) == answered


@pytest.mark.parametrize("requested", [None, ""], ids=["absent", "empty"])
def test_preflight_without_requested_headers_sends_no_allow_headers(client, policy, requested):
    policy(PREFLIGHT_RULE)
    response = preflight(client, "/api/echo", APP, "PUT", requested)
    assert response.status_code == 204
    assert "Access-Control-Allow-Headers" not in response.headers


def test_any_header_rule_echoes_names_so_authorization_is_listed_by_name(client, policy):
    policy({"path": "/api/*", "origins": [APP], "supports_credentials": True})
    response = preflight(client, "/api/echo", APP, "PUT", "authorization,x-custom")
    assert response.status_code == 204
    assert listed(response.headers["Access-Control-Allow-Headers"]) == [
        "authorization", "x-custom"]


@pytest.mark.parametrize(
    ("max_age", "expected"),
    [(0, ["0"]), (5, ["5"]), (7200, ["7200"]), (None, [])],
    ids=["zero", "five", "chromium-cap", "absent"],
)
def test_max_age_is_sent_as_configured_zero_included(client, policy, max_age, expected):
    policy({**PREFLIGHT_RULE, "max_age": max_age})
    response = preflight(client, "/api/echo", APP)
    assert response.status_code == 204
    assert response.headers.getlist("Access-Control-Max-Age") == expected


@pytest.mark.parametrize(
    ("enabled", "asked", "status", "answer"),
    [
        (True, "true", 204, ["true"]),
        (True, None, 204, []),
        (True, "false", 204, []),
        (False, None, 204, []),
        (False, "true", 403, []),
    ],
    ids=["enabled-asked", "enabled-not-asked", "enabled-asked-false", "off-not-asked",
         "off-asked"],
)
def test_private_network_is_answered_only_when_the_rule_enables_it_and_the_preflight_asks(
    client, policy, enabled, asked, status, answer
):
    policy({**PREFLIGHT_RULE, "allow_private_network": enabled})
    extra = {"Access-Control-Request-Private-Network": asked} if asked else {}
    response = preflight(client, "/api/echo", APP, extra=extra)
    assert response.status_code == status
    assert response.headers.getlist("Access-Control-Allow-Private-Network") == answer


def test_private_network_is_off_by_default(client, policy):
    policy({"path": "/api/*", "origins": [APP]})
    extra = {"Access-Control-Request-Private-Network": "true"}
    assert preflight(client, "/api/echo", APP, extra=extra).status_code == 403


# -- preflights: refused -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "method", "requested", "extra", "reason", "detail"),
    [
        (STRANGER, "PUT", None, {}, ORIGIN_NOT_ALLOWED, ""),
        ("null", "PUT", None, {}, ORIGIN_NOT_ALLOWED, ""),
        (APP, "DELETE", None, {}, METHOD_NOT_ALLOWED, "DELETE"),
        (APP, "PUT", "content-type,x-forbidden", {}, HEADER_NOT_ALLOWED, "x-forbidden"),
        (APP, "PUT", "x-api-key, bad header", {}, HEADER_NOT_ALLOWED, "bad header"),
        (APP, "PUT", None, {"Cookie": "session=1"}, CREDENTIALS_NOT_ALLOWED, ""),
        (APP, "PUT", None, {"Access-Control-Request-Private-Network": "true"},
         PRIVATE_NETWORK_NOT_ALLOWED, ""),
    ],
    ids=["unlisted-origin", "null-origin", "method", "header", "malformed-header-list",
         "cookie-without-credentials", "private-network"],
)
def test_refused_preflight_is_403_without_cors_headers_and_names_the_reason(
    client, policy, origin, method, requested, extra, reason, detail
):
    policy(PREFLIGHT_RULE)
    response = preflight(client, "/api/echo", origin, method, requested, extra)
    assert response.status_code == 403
    assert access_control(response) == []
    assert vary(response) == PREFLIGHT_VARY
    assert response.mimetype == "text/plain"
    explanation = EXPLANATIONS[reason] + (f": {detail}" if detail else "")
    assert response.get_data(as_text=True) == (
        f"CORS preflight refused ({reason}): {explanation}\n")


@pytest.mark.parametrize(
    ("method", "status"),
    [
        ("POST", 204),
        ("PUT", 204),
        ("put", 403),
        ("Post", 403),
        ("OST", 403),
        ("POS", 403),
        ("GET, POST", 403),
        ("T", 403),
        ("PUT ", 403),
    ],
)
def test_preflight_methods_are_compared_byte_for_byte_never_by_substring(
    client, policy, method, status
):
    policy(PREFLIGHT_RULE)  # methods GET, POST, PUT: "GET, POST, PUT" contains "OST"
    response = preflight(client, "/api/echo", APP, method)
    assert response.status_code == status
    assert bool(acao(response)) == (status == 204)


def test_refused_preflight_body_stays_one_printable_line_for_hostile_header_names(
    client, policy
):
    policy(PREFLIGHT_RULE)
    hostile = "x-a\x85injected: yes, x-\u00fc\u00e9\x7f"
    response = preflight(client, "/api/echo", APP, "PUT", hostile)
    body = response.get_data(as_text=True)
    assert response.status_code == 403
    assert body.endswith("\n") and len(body.splitlines()) == 1
    assert all(" " <= ch <= "~" for ch in body[:-1])


@pytest.mark.parametrize("origin", [APP, STRANGER], ids=["allowed", "refused"])
def test_preflight_never_needs_authentication(make_app, policy, origin):
    policy(PREFLIGHT_RULE)
    app = make_app()

    @app.before_request  # registered after the engine, as an auth hook would be
    def require_login() -> Response:
        return Response("login required\n", status=401)

    client = refreshed(app).test_client(use_cookies=False)
    answered = preflight(client, "/api/echo", origin, "PUT", "x-api-key")
    assert answered.status_code == (204 if origin == APP else 403)
    # The actual request does meet the auth hook, and its 401 is readable cross-origin.
    actual = client.put("/api/echo", headers={"Origin": origin})
    assert actual.status_code == 401
    assert acao(actual) == ([APP] if origin == APP else [])
    assert vary(actual) == ["origin"]


@pytest.mark.parametrize("origin", [APP, STRANGER], ids=["allowed", "refused"])
def test_preflight_to_a_path_flask_would_redirect_is_answered_not_redirected(
    make_app, policy, origin
):
    # Browsers fail a redirected preflight; the engine answers before routing can redirect.
    policy(PREFLIGHT_RULE)
    app = make_app()
    app.add_url_rule("/api/things/", "things", lambda: {"things": []})
    client = refreshed(app).test_client(use_cookies=False)
    answered = preflight(client, "/api/things", origin, "PUT")
    assert answered.status_code == (204 if origin == APP else 403)
    assert "Location" not in answered.headers
    redirected = client.get("/api/things", headers={"Origin": origin})
    assert redirected.status_code == 308
    assert acao(redirected) == ([APP] if origin == APP else [])


# -- hostile origins ---------------------------------------------------------------------------

WILDCARD_RULE = {"path": "/api/*", "origins": ["https://*.example.com"]}

HOSTILE_ORIGINS = [
    "https://example.com",  # the bare suffix is not a subdomain of itself
    "https://app.example.com.evil.net",
    "https://example.com.evil.net",
    "https://evilexample.com",
    "https://app-example.com",
    "https://app.example.co",
    "https://app.example.community",
    "https://app.example.com.",
    "https://app.example.com/",
    "https://app.example.com/path",
    "https://app.example.com:443",
    "https://app.example.com:8443",
    "https://app.example.com:",
    "http://app.example.com",
    "HTTPS://app.example.com",
    "https://APP.EXAMPLE.COM",
    "https://app.Example.com",
    "https://app.example.com@evil.net",
    "https://evil.net#.example.com",
    "https://evil.net?.example.com",
    "https://evil.net/.example.com",
    "https://evil.net\\.example.com",
    "https://app.example.com%2eevil.net",
    "https://.example.com",
    "https://app..example.com",
    "https://-app.example.com",
    "https://*.example.com",
    "https://b\u00fccher.example.com",  # unicode where browsers send punycode
    "https://app.\u0435xample.com",  # Cyrillic e
    "https://app.example.com, https://evil.net",
    " https://app.example.com",
    "https://app.example.com ",
    "null",
    "*",
    "",
]


@pytest.mark.parametrize("origin", HOSTILE_ORIGINS)
def test_hostile_origin_is_refused_by_a_subdomain_wildcard_rule(client, policy, origin):
    policy(WILDCARD_RULE)
    actual = client.get("/api/orders", headers={"Origin": origin})
    assert_refused_actual(actual)
    refused = preflight(client, "/api/echo", origin)
    assert refused.status_code == 403
    assert access_control(refused) == []


@pytest.mark.parametrize(
    "origin",
    ["https://app.example.com", "https://a.b.example.com", "https://1.example.com",
     "https://a-b.example.com", "https://xn--bcher-kva.example.com"],
)
def test_subdomain_wildcard_admits_whole_labels_in_front_of_its_suffix(client, policy, origin):
    policy(WILDCARD_RULE)
    assert acao(client.get("/api/orders", headers={"Origin": origin})) == [origin]
    assert preflight(client, "/api/echo", origin).status_code == 204


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://xn--bcher-kva.example", True),
        ("https://b\u00fccher.example", False),
        ("https://bucher.example", False),
        ("https://xn--strae-oqa.example", True),
        ("https://stra\u00dfe.example", False),
        ("https://strasse.example", False),  # casefold("straße"): must not match
    ],
)
def test_international_origins_match_only_as_punycode_never_case_folded(
    client, policy, origin, allowed
):
    policy({"path": "/api/*", "origins": ["https://b\u00fccher.example",
                                          "https://stra\u00dfe.example"]})
    response = client.get("/api/orders", headers={"Origin": origin})
    assert acao(response) == ([origin] if allowed else [])


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:3000", True),
        ("http://localhost:5173", True),
        ("http://localhost", True),
        ("https://localhost:5173", False),
        ("http://127.0.0.1:5173", False),
        ("http://localhost.evil.net:5173", False),
        ("http://localhost:5173.evil.net", False),
        ("http://localhost:5173/", False),
        ("http://localhost:", False),
        ("http://evil.net@localhost:5173", False),
        ("http://localhost:\uff15\uff11\uff17\uff13", False),  # full-width digits
        ("https://api.example.com:8443", True),
        ("https://api.example.com", False),
        ("https://api.example.com:8444", False),
    ],
)
def test_port_variants_match_only_the_listed_port_or_a_loopback_any_port_entry(
    client, policy, origin, allowed
):
    policy({"path": "/api/*", "origins": ["http://localhost:*", "https://api.example.com:8443"]})
    response = client.get("/api/orders", headers={"Origin": origin})
    assert acao(response) == ([origin] if allowed else [])


def _origins() -> st.SearchStrategy[str]:
    label = st.sampled_from(["app", "example", "com", "evil", "net", "xn--bcher-kva",
                             "b\u00fccher", "", "-", "a_b", "APP", "*", "1"])
    host = st.lists(label, min_size=1, max_size=5).map(".".join)
    scheme = st.sampled_from(["https://", "http://", "HTTPS://", "", "//", "https:/"])
    tail = st.sampled_from(["", ":443", ":8443", ":", "/", ".", "@evil.net", "#x", " "])
    structured = st.builds(lambda s, h, t: s + h + t, scheme, host, tail)
    anything = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF,
                                     blacklist_characters="\x7f"), max_size=60)
    return st.one_of(structured, anything)


_WILDCARD_GRANT = re.compile(r"https://(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+example\.com")


def test_arbitrary_origins_are_granted_only_when_they_are_listed_and_never_crash(
    client, policy
):
    policy({"path": "/api/*", "origins": ["https://*.example.com", PARTNER]})

    @settings(max_examples=300, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(origin=_origins(), method=st.sampled_from(["PUT", "put", "OST", "GET, PUT", ""]),
           requested=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF),
                             max_size=40))
    def check(origin: str, method: str, requested: str) -> None:
        expected = origin == PARTNER or _WILDCARD_GRANT.fullmatch(origin) is not None
        actual = client.get("/api/orders", headers={"Origin": origin})
        assert actual.status_code == 200
        assert acao(actual) == ([origin] if expected else [])
        answered = preflight(client, "/api/echo", origin, method, requested)
        assert answered.status_code in (204, 403)
        if answered.status_code == 204:
            assert expected and method == "PUT"
            assert acao(answered) == [origin]
        else:
            assert access_control(answered) == []

    check()


# -- credentials -------------------------------------------------------------------------------


@pytest.mark.parametrize("origins", [[APP], ["*"]], ids=["listed-origin", "any-origin"])
def test_credentialed_request_to_a_rule_without_credentials_is_refused(client, policy, origins):
    policy({"path": "/api/*", "origins": origins})
    response = client.get("/api/echo", headers={"Origin": APP, "Cookie": "session=1"})
    assert response.status_code == 200 and response.json["origin"] == APP
    assert_refused_actual(response)


@pytest.mark.parametrize("cookie", [None, "session=1"], ids=["no-cookie", "cookie"])
def test_star_with_credentials_written_past_validation_is_still_never_sent(
    app, client, policy, cookie
):
    policy({"path": "/api/*", "origins": ["*"]})
    with app.app_context():  # as a hand-edited row or an old release might have left it
        db.session.execute(sa.update(Rule).values(supports_credentials=True))
        db.session.execute(sa.update(PolicyState).values(version=PolicyState.version + 1))
        db.session.commit()
    get_control(app).cache.refresh()
    headers = {"Origin": APP} | ({"Cookie": cookie} if cookie else {})
    response = client.get("/api/orders", headers=headers)
    assert_refused_actual(response)
    assert preflight(client, "/api/echo", APP).status_code == 403


# -- report-only: a shadow, never a widening ---------------------------------------------------

REPORT_CASES = [
    ("unlisted-origin", "GET", STRANGER, {}),
    ("method-outside-rule", "DELETE", APP, {}),
    ("cookie-without-credentials", "GET", APP, {"Cookie": "session=1"}),
]


def answer(response: Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """What a browser sees of *response*: status, every header line in order, body (the demo
    API's fresh ``X-Request-Id`` aside)."""
    return (response.status_code,
            [(k, v) for k, v in response.headers.items() if k != "X-Request-Id"],
            response.data)


@pytest.mark.parametrize(("case", "method", "origin", "extra"), REPORT_CASES,
                         ids=[c[0] for c in REPORT_CASES])
def test_a_report_only_rule_alone_answers_the_actual_request_as_if_it_were_off(
    client, policy, case, method, origin, extra
):
    rule = {"path": "/api/*", "origins": [APP], "methods": ["GET", "HEAD"]}
    policy({**rule, "mode": "off"})
    off = answer(client.open("/api/echo", method=method, headers={"Origin": origin, **extra}))
    policy({**rule, "mode": "report-only"})
    response = client.open("/api/echo", method=method, headers={"Origin": origin, **extra})
    assert answer(response) == off
    assert access_control(response) == [] and vary(response) == []


@pytest.mark.parametrize(
    ("origin", "method", "requested"),
    [(STRANGER, "GET", None), (APP, "DELETE", None), (APP, "GET", "x-forbidden")],
    ids=["unlisted-origin", "method-outside-rule", "header-outside-rule"],
)
def test_a_report_only_rule_alone_leaves_the_preflight_to_the_app(
    client, policy, origin, method, requested
):
    rule = {"path": "/api/*", "origins": [APP], "methods": ["GET"],
            "allow_headers": ["content-type"]}
    policy({**rule, "mode": "off"})
    off = answer(preflight(client, "/api/echo", origin, method, requested))
    policy({**rule, "mode": "report-only"})
    response = preflight(client, "/api/echo", origin, method, requested)
    assert answer(response) == off
    assert response.status_code == 200 and "Allow" in response.headers  # Flask's OPTIONS
    assert access_control(response) == []


@pytest.mark.parametrize("cookie", [None, "session=1"], ids=["no-cookie", "cookie"])
def test_a_report_only_rule_with_credentials_grants_nothing_to_an_unlisted_origin(
    client, policy, cookie
):
    policy({"path": "/api/*", "origins": [APP], "supports_credentials": True,
            "mode": "report-only"})
    headers = {"Origin": STRANGER} | ({"Cookie": cookie} if cookie else {})
    actual = client.get("/api/orders", headers=headers)
    assert actual.status_code == 200
    assert access_control(actual) == []
    answered = preflight(client, "/api/echo", STRANGER, "PUT", "authorization",
                         {"Cookie": cookie} if cookie else None)
    assert answered.status_code != 204
    assert access_control(answered) == []


def test_a_report_only_rule_grants_nothing_even_to_its_own_origins(client, policy):
    policy({"path": "/api/*", "origins": [APP], "mode": "report-only"})
    assert access_control(client.get("/api/orders", headers={"Origin": APP})) == []
    assert access_control(preflight(client, "/api/echo", APP, "GET")) == []


BROAD = {"path": "/api/*", "origins": [APP], "methods": ["GET", "PUT"],
         "supports_credentials": True, "expose_headers": ["X-Request-Id"], "max_age": 60}
TIGHT = {"path": "/api/orders", "origins": [PARTNER], "methods": ["GET"],
         "mode": "report-only"}


@pytest.mark.parametrize("origin", [APP, PARTNER, STRANGER],
                         ids=["broad-origin", "tight-origin", "neither"])
@pytest.mark.parametrize("cookie", [None, "session=1"], ids=["no-cookie", "cookie"])
def test_a_report_only_rule_steps_aside_for_the_enforcing_rule_behind_it(
    client, policy, origin, cookie
):
    extra = {"Cookie": cookie} if cookie else {}
    policy(BROAD)
    expected_actual = answer(client.get("/api/orders", headers={"Origin": origin, **extra}))
    expected_preflight = answer(preflight(client, "/api/orders", origin, "PUT", "x-trace",
                                          extra))
    policy(BROAD, TIGHT)
    actual = client.get("/api/orders", headers={"Origin": origin, **extra})
    assert answer(actual) == expected_actual
    assert acao(actual) == ([APP] if origin == APP else [])
    answered = preflight(client, "/api/orders", origin, "PUT", "x-trace", extra)
    assert answer(answered) == expected_preflight
    assert answered.status_code == (204 if origin == APP else 403)


def test_enforcing_the_tried_rule_makes_it_answer(client, policy):
    policy(BROAD, {**TIGHT, "mode": "enforce"})
    assert acao(client.get("/api/orders", headers={"Origin": PARTNER})) == [PARTNER]
    assert acao(client.get("/api/orders", headers={"Origin": APP})) == []


# -- which rule governs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "origin", "allowed"),
    [
        ("/api/public/status", PARTNER, True),
        ("/api/public/status", APP, False),
        ("/api/orders", APP, True),
        ("/api/orders", PARTNER, False),
        ("/api/public", APP, True),  # /api/public/* does not match /api/public itself
    ],
)
def test_most_specific_rule_wins_and_rules_are_not_merged(client, policy, path, origin, allowed):
    policy({"path": "/api/*", "origins": [APP]},
           {"path": "/api/public/*", "origins": [PARTNER]})
    response = client.get(path, headers={"Origin": origin})
    assert acao(response) == ([origin] if allowed else [])
    assert vary(response) == ["origin"]


@pytest.mark.parametrize(
    ("origin", "allowed"), [(APP, True), (PARTNER, False)], ids=["fallback-origin", "off-origin"]
)
def test_rule_in_mode_off_is_ignored_and_the_less_specific_rule_governs(
    client, policy, origin, allowed
):
    policy({"path": "/api/*", "origins": [APP]},
           {"path": "/api/public/*", "origins": [PARTNER], "mode": "off"})
    response = client.get("/api/public/status", headers={"Origin": origin})
    assert acao(response) == ([origin] if allowed else [])
    assert vary(response) == ["origin"]


def test_only_rule_in_mode_off_leaves_its_paths_ungoverned(client, policy):
    policy({"path": "/api/*", "origins": [APP], "mode": "off"})
    response = client.get("/api/orders", headers={"Origin": APP})
    assert access_control(response) == []
    assert vary(response) == []


def test_request_under_no_rule_is_left_untouched(client, policy):
    policy({"path": "/api/public/*", "origins": [APP]})
    actual = client.get("/api/orders", headers={"Origin": APP})
    assert actual.status_code == 200
    assert access_control(actual) == [] and vary(actual) == []
    # The preflight goes to Flask's automatic OPTIONS answer: the engine does not claim it.
    answered = preflight(client, "/api/orders", APP, "GET")
    assert answered.status_code == 200 and "Allow" in answered.headers
    assert access_control(answered) == [] and vary(answered) == []


@pytest.mark.parametrize("path", ["/healthz", "/admin/", "/admin"])
def test_excluded_prefixes_are_never_governed_even_under_a_catch_all_rule(client, policy, path):
    policy({"path": "/*", "origins": [APP]})
    actual = client.get(path, headers={"Origin": APP})
    assert access_control(actual) == [] and "origin" not in vary(actual)
    answered = preflight(client, path, APP, "GET")
    assert answered.status_code not in (204, 403)
    assert access_control(answered) == [] and "origin" not in vary(answered)


@pytest.mark.parametrize(("path", "status"), [("/api/orders", 200), ("/nothing-here", 404)])
def test_catch_all_rule_governs_every_path_outside_the_excluded_prefixes(
    client, policy, path, status
):
    policy({"path": "/*", "origins": [APP]})
    response = client.get(path, headers={"Origin": APP})
    assert response.status_code == status
    assert acao(response) == [APP]
