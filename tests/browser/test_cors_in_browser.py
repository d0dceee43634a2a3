"""What a real browser accepts: cross-origin fetches from a page on another loopback origin."""

from __future__ import annotations

import json
import time
import urllib.request

from app.services.access import Actor
from app.services.policy import import_policy

FETCH = """async ([url, init]) => {
  try {
    const response = await fetch(url, init);
    return {ok: true, status: response.status, body: await response.text(),
            requestId: response.headers.get("X-Request-Id")};
  } catch (error) {
    return {ok: false, error: String(error)};
  }
}"""


def load_policy(app, live_server, *rules) -> None:
    """Write the policy through the service layer; wait until the server process serves it."""
    with app.app_context():
        result = import_policy({"rules": list(rules)}, actor=Actor("browser-test", "cli"),
                               replace=True)
    wait_for_version(live_server, result.policy_version)


def wait_for_version(live_server, version: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{live_server.url}/healthz", timeout=2) as response:
            if json.load(response)["policy_version"] >= version:
                return
        time.sleep(0.05)
    raise AssertionError(f"the server did not load policy version {version}")


def test_preflighted_put_with_authorization_succeeds_when_allowed(app, live_server,
                                                                 other_origin, page):
    load_policy(app, live_server, {
        "path": "/api/*", "origins": [other_origin.url], "methods": ["GET", "PUT"],
        "allow_headers": ["authorization", "content-type"], "expose_headers": ["X-Request-Id"],
        "max_age": 0,
    })
    page.goto(other_origin.url)
    result = page.evaluate(FETCH, [f"{live_server.url}/api/echo", {
        "method": "PUT", "headers": {"Authorization": "Bearer t0ken",
                                     "Content-Type": "application/json"},
        "body": '{"a": 1}'}])
    assert result["ok"], result
    body = json.loads(result["body"])
    assert body["method"] == "PUT" and body["headers"]["Authorization"] == "Bearer t0ken"
    assert body["origin"] == other_origin.url
    assert result["requestId"]  # exposed by expose_headers, so script can read it


def test_preflighted_put_fails_when_authorization_is_not_allowed(app, live_server,
                                                                other_origin, page):
    load_policy(app, live_server, {
        "path": "/api/*", "origins": [other_origin.url], "methods": ["GET", "PUT"],
        "allow_headers": ["content-type"], "max_age": 0,
    })
    page.goto(other_origin.url)
    result = page.evaluate(FETCH, [f"{live_server.url}/api/echo", {
        "method": "PUT", "headers": {"Authorization": "Bearer t0ken"}}])
    assert not result["ok"] and "Failed to fetch" in result["error"]


def test_error_responses_reach_the_script_with_their_real_status(app, live_server,
                                                                 other_origin, page):
    load_policy(app, live_server, {"path": "/api/*", "origins": [other_origin.url]})
    page.goto(other_origin.url)
    missing = page.evaluate(FETCH, [f"{live_server.url}/api/no-such-route", {}])
    failing = page.evaluate(FETCH, [f"{live_server.url}/api/fail", {}])
    assert missing["ok"] and missing["status"] == 404
    assert failing["ok"] and failing["status"] == 500


def test_unexposed_headers_stay_hidden_and_other_origins_are_refused(app, live_server,
                                                                    other_origin, page):
    load_policy(app, live_server, {"path": "/api/*", "origins": ["https://elsewhere.example"]})
    page.goto(other_origin.url)
    refused = page.evaluate(FETCH, [f"{live_server.url}/api/orders", {}])
    assert not refused["ok"]
    load_policy(app, live_server, {"path": "/api/*", "origins": [other_origin.url]})
    allowed = page.evaluate(FETCH, [f"{live_server.url}/api/echo", {}])
    assert allowed["ok"] and allowed["requestId"] is None
