"""The everyday task end to end, in Chromium: a front end is blocked, the operator sees why in
the request log, allows it with one click, and the same fetch works, with no restart."""

from __future__ import annotations

import json
import re
import time
import urllib.request

from playwright.sync_api import expect

from tests.browser.test_cors_in_browser import FETCH, wait_for_version

XSS_ORIGIN = 'https://x.example"><script>alert(1)</script>'


def _served_version(live_server) -> int:
    with urllib.request.urlopen(f"{live_server.url}/healthz", timeout=2) as response:
        return int(json.load(response)["policy_version"] or 0)


def sign_in(page, live_server, account) -> None:
    email, password = account
    page.goto(f"{live_server.url}/admin/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/$"))


def fetch_until(page, url: str, ok: bool, timeout: float = 5.0) -> dict:
    """Fetch from the front end's page until the outcome is *ok* (the server picks up a
    change within its refresh interval); returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = page.evaluate(FETCH, [url, {}])
        if result["ok"] == ok or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_blocked_front_end_is_allowed_from_the_request_log(browser, live_server,
                                                           other_origin, admin_account):
    admin = browser.new_context().new_page()
    admin.on("dialog", lambda dialog: dialog.accept())  # the "Allow ...?" confirmation
    sign_in(admin, live_server, admin_account)

    # Create a rule for the demo API route, with no origins yet.
    before = _served_version(live_server)
    admin.goto(f"{live_server.url}/admin/rules")
    admin.click("summary:has-text('New rule')")
    admin.fill("#rule-form input[name=path]", "/api/orders")
    admin.fill("#rule-form input[name=methods]", "GET")
    admin.click("#rule-form button[type=submit]")
    expect(admin.locator("body")).to_contain_text("/api/orders")
    # Refused by the rule, not by a server that has not loaded it yet.
    wait_for_version(live_server, before + 1, timeout=30)

    # The front end on another loopback origin cannot read the API.
    front = browser.new_context().new_page()
    front.goto(other_origin.url)
    api = f"{live_server.url}/api/orders"
    refused = fetch_until(front, api, ok=False)
    assert not refused["ok"], refused

    # The refusal appears in the request log; one click allows the origin on the rule.
    row = admin.locator("tr", has_text=other_origin.url).first
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        admin.goto(f"{live_server.url}/admin/log")
        if row.count():
            break
        time.sleep(0.3)
    expect(row).to_contain_text("origin-not-allowed")
    row.get_by_role("button", name=re.compile("Allow")).click()
    expect(admin.locator("body")).to_contain_text(other_origin.url)

    # The same fetch now succeeds, without restarting anything.
    allowed = fetch_until(front, api, ok=True)
    assert allowed["ok"] and allowed["status"] == 200, allowed
    assert json.loads(allowed["body"])["orders"]


def test_an_xss_payload_in_the_origin_is_shown_as_text(page, live_server, admin_account,
                                                      app):
    from app.services.access import Actor
    from app.services.policy import import_policy

    with app.app_context():
        import_policy({"rules": [{"path": "/api/*", "origins": ["https://ok.example"]}]},
                      actor=Actor("browser-test", "cli"))
    time.sleep(0.5)  # the server's refresh interval is 0.2 s
    request = urllib.request.Request(f"{live_server.url}/api/orders",
                                     headers={"Origin": XSS_ORIGIN})
    urllib.request.urlopen(request, timeout=5).close()
    sign_in(page, live_server, admin_account)
    deadline = time.monotonic() + 10
    cell = page.get_by_text(XSS_ORIGIN, exact=False)
    while time.monotonic() < deadline:
        page.goto(f"{live_server.url}/admin/log")
        if cell.count():
            break
        time.sleep(0.3)
    expect(cell.first).to_be_visible()
    assert page.dialogs == []  # no alert(1) ran
    assert page.locator("script:not([src])").count() == 0
