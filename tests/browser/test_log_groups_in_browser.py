"""The request log's group-and-fix flow in Chromium: a refused cross-origin fetch appears as a
group of its origin, "allow" fixes it, and the same fetch then succeeds."""

from __future__ import annotations

import json
import re
import time

from playwright.sync_api import expect

from tests.browser.test_cors_in_browser import wait_for_version
from tests.browser.test_dashboard_in_browser import fetch_until, sign_in


def test_a_refused_origin_is_grouped_and_allowed_from_its_group(browser, live_server,
                                                                other_origin, admin_account,
                                                                app):
    from app.services.access import Actor
    from app.services.policy import import_policy

    with app.app_context():
        result = import_policy({"rules": [{"path": "/api/orders",
                                           "origins": ["https://ok.example"],
                                           "methods": ["GET"]}]},
                               actor=Actor("browser-test", "cli"))
    # The fetch must be refused by the rule, not by a server still without it.
    wait_for_version(live_server, result.policy_version, timeout=30)
    front = browser.new_context().new_page()
    front.goto(other_origin.url)
    api = f"{live_server.url}/api/orders"
    refused = fetch_until(front, api, ok=False)
    assert not refused["ok"], refused
    front.evaluate("url => fetch(url).catch(() => null)", api)  # refused twice

    admin = browser.new_context().new_page()
    admin.on("dialog", lambda dialog: dialog.accept())  # the "Allow ...?" confirmation
    sign_in(admin, live_server, admin_account)
    group = admin.locator("tr.log-group", has_text=other_origin.url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        admin.goto(f"{live_server.url}/admin/log")
        if group.count():
            break
        time.sleep(0.3)
    expect(admin.locator("#log-results")).to_contain_text("group by origin")
    expect(group).to_contain_text("origin-not-allowed")
    expect(group).to_contain_text("/api/orders")
    expect(group.locator("svg.sparkline")).to_be_visible()

    group.get_by_role("button", name=re.compile("Allow on this rule")).click()
    expect(admin.locator("body")).to_contain_text(f"Allowed {other_origin.url} on /api/orders")
    expect(admin.locator("tr.log-group", has_text=other_origin.url)).to_contain_text(
        "allowed now")

    allowed = fetch_until(front, api, ok=True)
    assert allowed["ok"] and allowed["status"] == 200, allowed
    assert json.loads(allowed["body"])["orders"]
