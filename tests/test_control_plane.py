"""Control-plane mode over real HTTP: the admin application served by a real server in a
thread, and plain Flask APIs that take their policy from it with
``CorsControl(api, control_plane=URL, token=...)`` and send refusals back to it."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from app.extensions import db
from app.models import ApiToken, RequestLogEntry, Rule
from app.services.access import Actor
from app.services.policy import add_origin, import_policy
from app.services.tokens import create_token
from cors_control import CorsControl
from cors_control.control_plane import ControlPlaneRefusalSink
from cors_control.refusals import SinkUnavailable
from cors_control.snapshot import OriginEntry, RuleSpec
from cors_control.wire import RefusalRow, encode_policy

ADMIN = Actor("test", "cli")
APP_ORIGIN = "https://app.example.com"
NEW_ORIGIN = "https://new.example.com"
FEED_WAIT = 2  # short long polls, so a stopped control plane is noticed soon


class Server:
    """A WSGI app on a real socket, served by a thread, until :meth:`stop`."""

    def __init__(self, wsgi_app) -> None:
        self.httpd: BaseWSGIServer = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def unused_url() -> str:
    """The address of a port nothing listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def control_plane(app) -> Iterator[Server]:
    """The admin application on a real server, with one rule."""
    with app.app_context():
        import_policy({"rules": [{"path": "/api/*", "origins": [APP_ORIGIN]}]},
                      actor=ADMIN, replace=True)
    server = Server(app)
    yield server
    server.stop()


@pytest.fixture
def secret(app) -> Iterator[str]:
    with app.app_context():
        yield create_token("edge-hosts", "data-plane", actor=ADMIN).secret
        db.session.execute(sa.delete(ApiToken))
        db.session.commit()


@pytest.fixture
def data_plane() -> Iterator[Callable[..., tuple[Flask, CorsControl]]]:
    """``data_plane(url, token, **options)``: a plain Flask API in control-plane mode."""
    controls: list[CorsControl] = []

    def build(url: str, token: str, **options) -> tuple[Flask, CorsControl]:
        api = Flask(f"edge{len(controls)}")
        api.add_url_rule("/api/orders", "orders", lambda: "orders")
        control = CorsControl(api, control_plane=url, token=token, **options)
        assert control.feed is not None
        control.feed.wait = FEED_WAIT
        api.add_url_rule("/healthz/cors", "health", control.health_view)
        controls.append(control)
        return api, control

    yield build
    for control in controls:
        control.close()


def allowed(api: Flask, origin: str = APP_ORIGIN) -> bool:
    response = api.test_client().get("/api/orders", headers={"Origin": origin})
    return response.headers.get("Access-Control-Allow-Origin") == origin


def preflight_status(api: Flask) -> int:
    return api.test_client().options("/api/orders", headers={
        "Origin": APP_ORIGIN, "Access-Control-Request-Method": "GET"}).status_code


def rule_id(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Rule.id).where(Rule.path == "/api/*"))


# -- the policy ----------------------------------------------------------------------------


def test_a_data_plane_serves_the_policy_and_a_change_soon_after_it_is_made(
        app, control_plane, secret, data_plane):
    api, control = data_plane(control_plane.url, secret)
    assert allowed(api)
    assert not allowed(api, NEW_ORIGIN)
    status = control.status()
    assert (status["mode"], status["serving_from"], status["stale"]) == (
        "control-plane", "control-plane", False)
    with app.app_context():
        add_origin(rule_id(app), NEW_ORIGIN, actor=ADMIN)
    # Pushed by the long poll: well within a second here; the bound only stops a hang.
    wait_until(lambda: allowed(api, NEW_ORIGIN), "the data plane serves the new origin")
    assert control.status()["version"] == control.feed.status()["received_version"]


def test_through_an_outage_the_last_policy_stays_in_service_and_status_says_stale(
        control_plane, secret, data_plane):
    api, control = data_plane(control_plane.url, secret)
    assert allowed(api)  # the first request starts the feed
    control_plane.stop()
    wait_until(lambda: control.status()["stale"], "the status says stale")
    status = control.status()
    assert "unreachable" in status["last_error"]
    assert status["serving_from"] == "control-plane"
    assert allowed(api)
    health = api.test_client().get("/healthz/cors")
    assert health.status_code == 200
    assert health.json["stale"] is True


def test_a_restarted_data_plane_serves_its_cache_file_while_the_control_plane_is_down(
        control_plane, secret, data_plane, tmp_path):
    cache_file = tmp_path / "policy.json"
    api, _control = data_plane(control_plane.url, secret, cache_file=str(cache_file))
    assert allowed(api)
    wait_until(cache_file.exists, "the policy is written to the cache file")
    assert stat.S_IMODE(os.stat(cache_file).st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cors-policy-")]
    control_plane.stop()

    restarted, control = data_plane(control_plane.url, secret, cache_file=str(cache_file))
    assert allowed(restarted)
    status = control.status()
    assert (status["serving_from"], status["stale"]) == ("cache-file", True)
    assert "unreachable" in status["last_error"]


def test_the_cache_file_can_come_from_the_apps_config(control_plane, secret, tmp_path):
    cache_file = tmp_path / "from-config.json"
    api = Flask("configured")
    api.config["CORS_POLICY_CACHE_FILE"] = str(cache_file)
    api.add_url_rule("/api/orders", "orders", lambda: "orders")
    control = CorsControl(api, control_plane=control_plane.url, token=secret)
    try:
        assert allowed(api)
        wait_until(cache_file.exists, "the policy is written to the configured file")
    finally:
        control.close()


def test_without_a_policy_or_a_cache_file_the_api_prefixes_fail_closed(secret, data_plane):
    api, control = data_plane(unused_url(), secret)
    assert preflight_status(api) == 403
    assert not allowed(api)
    health = api.test_client().get("/healthz/cors")
    assert health.status_code == 503
    assert (health.json["serving_from"], health.json["version"]) == ("none", None)
    assert "unreachable" in health.json["last_error"]


def test_an_unreadable_cache_file_is_logged_and_ignored(secret, data_plane, tmp_path, caplog):
    cache_file = tmp_path / "policy.json"
    cache_file.write_text('{"format": 1, "version": "seven"}')
    api, control = data_plane(unused_url(), secret, cache_file=str(cache_file))
    with caplog.at_level(logging.ERROR, logger="cors_control"):
        assert preflight_status(api) == 403
    assert f"CORS policy cache file {cache_file} ignored: version must be a whole number" \
        in caplog.text
    assert control.status()["serving_from"] == "none"


def test_a_refused_token_shows_in_the_status_and_the_log(control_plane, data_plane, caplog):
    api, control = data_plane(control_plane.url, "cc_not-a-real-token")
    with caplog.at_level(logging.ERROR, logger="cors_control"):
        assert preflight_status(api) == 403
    status = control.status()
    assert status["last_error"].startswith("the control plane refused the token (401: this "
                                           "token is not valid")
    assert "--role data-plane" in status["last_error"]
    assert "refused the token (401" in caplog.text


def test_a_token_of_another_role_is_refused_with_403(app, control_plane, data_plane):
    with app.app_context():
        editor = create_token("an-editor", "editor", actor=ADMIN).secret
    _api, control = data_plane(control_plane.url, editor)
    control.cache.get()
    assert "refused the token (403: only data-plane tokens and admins fetch the compiled " \
           "policy)" in control.status()["last_error"]


def test_a_policy_of_an_unknown_format_is_refused_clearly_and_the_last_one_kept(
        secret, data_plane, tmp_path, caplog):
    """A newer control plane: the document says format 2. The data plane keeps the policy
    it has (here from its cache file) and says what to upgrade."""
    newer = Server(lambda environ, start_response: (
        start_response("200 OK", [("Content-Type", "application/json")]),
        [json.dumps({"format": 2, "version": 99, "everything": "different"}).encode()])[1])
    cache_file = tmp_path / "policy.json"
    cache_file.write_text(json.dumps(encode_policy(
        3, [RuleSpec("/api/*", origins=(OriginEntry(APP_ORIGIN),))], [])))
    try:
        api, control = data_plane(newer.url, secret, cache_file=str(cache_file))
        with caplog.at_level(logging.ERROR, logger="cors_control"):
            assert allowed(api)
        status = control.status()
    finally:
        newer.stop()
    assert "control plane sends policy format 2; this cors_control reads 1: upgrade " \
           "cors-control" in caplog.text
    assert (status["version"], status["serving_from"]) == (3, "cache-file")
    assert "upgrade cors-control" in status["last_error"]


@pytest.mark.parametrize(("options", "message"), [
    ({"control_plane": "cors-admin.internal", "token": "cc_x"}, "is not the base URL"),
    ({"control_plane": "https://cors-admin.internal"}, "needs a token"),
])
def test_a_misconfigured_control_plane_mode_says_what_to_fix(options, message):
    with pytest.raises(ValueError, match=message):
        CorsControl(Flask("misconfigured"), **options)


@pytest.mark.parametrize(("options", "message"), [
    ({}, "exactly one policy source.*not none"),
    ({"token": "cc_x"}, "exactly one policy source.*not none"),
    ({"control_plane": "https://cors-admin.internal", "token": "cc_x",
      "source": object()}, "not source and control_plane"),
])
def test_control_plane_mode_is_given_alone_with_its_token(options, message):
    with pytest.raises(TypeError, match=message):
        CorsControl(Flask("misconfigured"), **options)


# -- refusals ------------------------------------------------------------------------------


def refusal(origin: str, **changes) -> RefusalRow:
    now = time.time()
    values = dict(bucket_start=now - now % 3600, rule_path="/api/*", tenant="", origin=origin,
                  reason="origin-not-allowed", detail="", mode="enforce", rule_id=None,
                  count=2, first_seen=now - 1, last_seen=now, path="/api/orders",
                  method="GET", preflight=False, request_method="", request_headers="",
                  user_agent="", referer="")
    values.update(changes)
    return RefusalRow(**values)


def test_the_refusal_sink_posts_rows_that_then_appear_in_the_request_log(
        app, control_plane, secret):
    sink = ControlPlaneRefusalSink(control_plane.url, secret, source="edge-1")
    rows = [refusal(f"https://o{n}.example", rule_id=rule_id(app)) for n in range(1001)]
    sink.write(rows)  # two documents: 1000 rows and 1
    sink.write(rows[:1])
    with app.app_context():
        stored = dict(db.session.execute(sa.select(RequestLogEntry.origin,
                                                   RequestLogEntry.count)).all())
        assert db.session.scalar(sa.select(sa.func.count(RequestLogEntry.rule_id))) == 1001
    assert len(stored) == 1001
    assert stored["https://o0.example"] == 4
    assert stored["https://o1000.example"] == 2


def test_the_refusal_sink_says_unavailable_when_the_control_plane_is_down_or_refuses_it(
        control_plane, secret):
    with pytest.raises(SinkUnavailable, match="unreachable"):
        ControlPlaneRefusalSink(unused_url(), secret).write([refusal("https://a.example")])
    with pytest.raises(SinkUnavailable, match="401"):
        ControlPlaneRefusalSink(control_plane.url, "cc_revoked").write(
            [refusal("https://a.example")])


def test_rows_the_control_plane_refuses_raise_a_value_error_with_its_message(
        app, control_plane, secret):
    with pytest.raises(ValueError, match=r"\(422\)") as refused:
        ControlPlaneRefusalSink(control_plane.url, secret).write(
            [refusal("https://a.example", mode="sometimes")])
    assert not isinstance(refused.value, SinkUnavailable)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RequestLogEntry)) == 0


def test_the_refusal_sink_splits_a_document_over_the_control_planes_body_limit(
        make_app, secret):
    """The control plane here takes 20 kB at most; 200 rows are about 100 kB."""
    small = make_app(DATA_PLANE_REFUSALS_MAX_BYTES=20_000)
    server = Server(small)
    try:
        ControlPlaneRefusalSink(server.url, secret).write(
            [refusal(f"https://o{n}.example", user_agent="a" * 200) for n in range(200)])
    finally:
        server.stop()
    with small.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RequestLogEntry)) \
            == 200


def test_a_data_plane_never_goes_back_to_an_older_policy(secret, data_plane, caplog):
    """A control plane restored to an earlier state answers with version 3 after 5: the data
    plane keeps 5 and says why."""
    answers = iter([5])
    asked = []

    def restored(environ, start_response):
        asked.append(environ.get("HTTP_IF_NONE_MATCH"))
        body = json.dumps(encode_policy(next(answers, 3), [RuleSpec(
            "/api/*", origins=(OriginEntry(APP_ORIGIN),))], [])).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    server = Server(restored)
    try:
        api, control = data_plane(server.url, secret)
        with caplog.at_level(logging.WARNING, logger="cors_control"):
            assert allowed(api)
            wait_until(lambda: len(asked) >= 3, "the feed asked again twice")
            status = control.status()
    finally:
        server.stop()
    assert asked[1:3] == ['"policy-5"', '"policy-5"']
    assert (status["version"], status["received_version"]) == (5, 5)
    assert "sent policy version 3, older than the 5 this process serves; keeping 5" \
        in caplog.text
