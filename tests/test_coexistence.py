"""The engine and flask-cors in one app: on governed routes only the engine speaks.

An app migrating from flask-cors keeps ``CORS(app, resources=...)`` for its legacy routes
while the engine takes over ``/api/``. Both registration orders are covered: the engine first
(``create_app`` then ``CORS``) and flask-cors first (a small app that calls ``CORS`` and then
``CorsControl`` with the same database as policy source). flask-cors is configured with
``origins="*"`` everywhere, so any CORS header on a refusal, or a second
``Access-Control-Allow-Origin`` line, can only come from it leaking through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask, Response, jsonify
from flask_cors import CORS

from app.demo import bp as demo_bp
from cors_control import CorsControl, get_control
from cors_control.database import DatabasePolicySource

APP = "https://app.example.com"
STRANGER = "https://stranger.example.net"
FLASK_CORS_RESOURCES = {r"/legacy/*": {"origins": "*"}, r"/api/*": {"origins": "*"}}
RULE = {"path": "/api/*", "origins": [APP], "methods": ["GET", "POST", "PUT"],
        "supports_credentials": True, "expose_headers": ["X-Request-Id"]}
ENGINE_ACTUAL = [
    ("Access-Control-Allow-Origin", APP),
    ("Access-Control-Allow-Credentials", "true"),
    ("Access-Control-Expose-Headers", "X-Request-Id"),
]
REQUESTS = [
    ("GET", "/api/orders", 200),
    ("POST", "/api/echo", 200),
    ("GET", "/api/does-not-exist", 404),
    ("PUT", "/api/orders", 405),
    ("GET", "/api/fail", 500),
]
REQUEST_IDS = ["ok", "ok-post", "not-found", "method-not-allowed", "server-error"]


def access_control(response: Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers if k.lower().startswith("access-control-")]


def vary(response: Response) -> list[str]:
    return [t.strip().lower() for line in response.headers.getlist("Vary")
            for t in line.split(",") if t.strip()]


def _add_legacy_route(app: Flask) -> None:
    app.add_url_rule("/legacy/ping", "legacy_ping", lambda: jsonify(legacy=True))


@pytest.fixture
def build_small_app(database_url) -> Iterator[Callable[[Callable[[Flask], object]], Flask]]:
    """Build an app with the demo routes, whatever *register(app)* adds, then the engine on
    the test database; so *register*'s hooks are registered before the engine's."""
    controls: list[CorsControl] = []

    def build(register: Callable[[Flask], object]) -> Flask:
        app = Flask("coexisting")
        app.config.update(TESTING=True, PROPAGATE_EXCEPTIONS=False)
        app.register_blueprint(demo_bp, url_prefix="/api")
        _add_legacy_route(app)
        register(app)
        controls.append(CorsControl(app, source=DatabasePolicySource.from_url(database_url)))
        return app

    yield build
    for control in controls:
        control.cache.stop()
        control.cache.source.dispose()


@pytest.fixture(params=["engine-then-flask-cors", "flask-cors-then-engine"])
def coexisting(request, make_app, build_small_app) -> Flask:
    """An app where flask-cors and the engine are both registered, in either order."""
    if request.param == "flask-cors-then-engine":
        return build_small_app(lambda app: CORS(app, resources=FLASK_CORS_RESOURCES))
    app = make_app(PROPAGATE_EXCEPTIONS=False)
    _add_legacy_route(app)
    CORS(app, resources=FLASK_CORS_RESOURCES)
    return app


@pytest.fixture
def client(coexisting, policy):
    """A client of the coexisting app, serving :data:`RULE` from the shared database."""
    policy(RULE)
    get_control(coexisting).cache.refresh()
    return coexisting.test_client(use_cookies=False)


@pytest.mark.parametrize(("method", "path", "status"), REQUESTS, ids=REQUEST_IDS)
def test_allowed_request_on_a_governed_route_carries_only_the_engines_headers(
    client, method, path, status
):
    response = client.open(path, method=method, headers={"Origin": APP, "Cookie": "sid=1"})
    assert response.status_code == status
    assert access_control(response) == ENGINE_ACTUAL
    assert vary(response).count("origin") == 1


@pytest.mark.parametrize(("method", "path", "status"), REQUESTS, ids=REQUEST_IDS)
def test_refused_request_on_a_governed_route_carries_no_cors_headers_from_flask_cors(
    client, method, path, status
):
    response = client.open(path, method=method, headers={"Origin": STRANGER})
    assert response.status_code == status
    assert access_control(response) == []
    assert vary(response).count("origin") == 1


@pytest.mark.parametrize(("method", "path", "status"), REQUESTS, ids=REQUEST_IDS)
def test_request_without_origin_on_a_governed_route_gets_no_flask_cors_always_send_header(
    client, method, path, status
):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert access_control(response) == []
    assert vary(response).count("origin") == 1


@pytest.mark.parametrize("path", ["/api/echo", "/api/does-not-exist"])
def test_allowed_preflight_on_a_governed_route_is_the_engines_answer_alone(client, path):
    response = client.options(path, headers={
        "Origin": APP,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "x-api-key",
        "Access-Control-Request-Private-Network": "false",
    })
    assert response.status_code == 204
    assert access_control(response) == [
        ("Access-Control-Allow-Origin", APP),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Allow-Methods", "GET, POST, PUT"),
        ("Access-Control-Allow-Headers", "x-api-key"),
    ]
    assert vary(response).count("origin") == 1


@pytest.mark.parametrize(
    ("origin", "method", "extra"),
    [
        (STRANGER, "PUT", {}),
        (APP, "DELETE", {}),
        (APP, "PUT", {"Access-Control-Request-Private-Network": "true"}),
    ],
    ids=["unlisted-origin", "method-outside-rule", "private-network"],
)
def test_refused_preflight_on_a_governed_route_is_403_with_no_flask_cors_headers(
    client, origin, method, extra
):
    response = client.options("/api/echo", headers={
        "Origin": origin, "Access-Control-Request-Method": method, **extra})
    assert response.status_code == 403
    assert access_control(response) == []


def test_legacy_route_is_still_answered_by_flask_cors(client):
    actual = client.get("/legacy/ping", headers={"Origin": STRANGER})
    assert actual.status_code == 200
    assert actual.headers.getlist("Access-Control-Allow-Origin") == [STRANGER]
    answered = client.options("/legacy/ping", headers={
        "Origin": STRANGER, "Access-Control-Request-Method": "GET"})
    assert answered.status_code == 200
    assert answered.headers.getlist("Access-Control-Allow-Origin") == [STRANGER]
    assert "GET" in answered.headers["Access-Control-Allow-Methods"]


def test_api_path_no_rule_governs_falls_back_to_flask_cors(coexisting, policy):
    policy({"path": "/api/public/*", "origins": [APP]})
    get_control(coexisting).cache.refresh()
    client = coexisting.test_client(use_cookies=False)
    governed = client.get("/api/public/status", headers={"Origin": STRANGER})
    ungoverned = client.get("/api/orders", headers={"Origin": STRANGER})
    assert access_control(governed) == []
    assert ungoverned.headers.getlist("Access-Control-Allow-Origin") == [STRANGER]


@pytest.mark.parametrize("origin", [APP, STRANGER], ids=["listed", "unlisted"])
@pytest.mark.parametrize("path", ["/legacy/ping", "/api/orders"], ids=["legacy", "api"])
def test_a_report_only_rule_over_a_flask_cors_route_leaves_its_headers_untouched(
    coexisting, policy, path, origin
):
    client = coexisting.test_client(use_cookies=False)
    policy()  # no rule: flask-cors answers
    get_control(coexisting).cache.refresh()
    expected_actual = client.get(path, headers={"Origin": origin})
    expected_preflight = client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": "DELETE"})
    pattern = path.rsplit("/", 1)[0] + "/*"
    policy({"path": pattern, "origins": [APP], "methods": ["GET"],
            "supports_credentials": True, "mode": "report-only"})
    get_control(coexisting).cache.refresh()
    actual = client.get(path, headers={"Origin": origin})
    assert actual.headers.getlist("Access-Control-Allow-Origin") == [origin]  # flask-cors's
    assert access_control(actual) == access_control(expected_actual)
    assert vary(actual) == vary(expected_actual)
    answered = client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": "DELETE"})
    assert answered.status_code == expected_preflight.status_code == 200
    assert access_control(answered) == access_control(expected_preflight)
    assert "DELETE" in answered.headers["Access-Control-Allow-Methods"]


# -- other hooks registered before the engine --------------------------------------------------


def _hand_written_cors(app: Flask) -> None:
    @app.after_request
    def allow_everything(response: Response) -> Response:
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Allow-Methods"] = "*"
        return response


@pytest.mark.parametrize(("method", "path", "status"), REQUESTS, ids=REQUEST_IDS)
@pytest.mark.parametrize("origin", [APP, STRANGER], ids=["allowed", "refused"])
def test_hand_written_cors_hook_registered_before_the_engine_is_overridden_on_governed_routes(
    build_small_app, policy, origin, method, path, status
):
    app = build_small_app(_hand_written_cors)
    policy(RULE)
    get_control(app).cache.refresh()
    response = app.test_client(use_cookies=False).open(
        path, method=method, headers={"Origin": origin, "Cookie": "sid=1"})
    assert response.status_code == status
    assert access_control(response) == (ENGINE_ACTUAL if origin == APP else [])
    legacy = app.test_client().get("/legacy/ping", headers={"Origin": origin})
    assert legacy.headers["Access-Control-Allow-Origin"] == "*"  # ungoverned: left alone


def _login_required(app: Flask) -> None:
    @app.before_request
    def require_login() -> Response:
        return Response("login required\n", status=401)


@pytest.mark.parametrize(("origin", "status"), [(APP, 204), (STRANGER, 403)],
                         ids=["allowed", "refused"])
def test_auth_hook_registered_before_the_engine_never_sees_a_preflight(
    build_small_app, policy, origin, status
):
    app = build_small_app(_login_required)
    policy(RULE)
    get_control(app).cache.refresh()
    client = app.test_client(use_cookies=False)
    answered = client.options("/api/echo", headers={
        "Origin": origin, "Access-Control-Request-Method": "PUT"})
    assert answered.status_code == status
    actual = client.put("/api/echo", headers={"Origin": origin})
    assert actual.status_code == 401
    assert bool(actual.headers.getlist("Access-Control-Allow-Origin")) == (origin == APP)
