"""Issue 9's narrower rule, in Chromium: creating /api/orders under /api/* shows, as the form
is filled in, that the origins of /api/* stop applying there; saving waits for the box that
names them; copying the broader rule's origins keeps the front end working."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.test_cors_in_browser import load_policy
from tests.browser.test_dashboard_in_browser import fetch_until, sign_in


def test_a_narrower_rule_shows_what_it_takes_and_copies_the_origins(app, live_server,
                                                                    other_origin, browser,
                                                                    admin_account):
    load_policy(app, live_server, {"path": "/api/*", "origins": [other_origin.url]})
    admin = browser.new_context().new_page()
    sign_in(admin, live_server, admin_account)
    admin.goto(f"{live_server.url}/admin/rules")
    admin.click("summary:has-text('New rule')")
    admin.fill("#rule-form input[name=path]", "/api/orders")
    admin.locator("#rule-form input[name=methods]").fill(
        "GET, HEAD, POST, OPTIONS, PUT, PATCH, DELETE")
    admin.locator("#rule-form input[name=methods]").dispatch_event("change")
    panel = admin.locator("#impact-preview")
    expect(panel).to_contain_text(f"origin {other_origin.url}")
    expect(panel).to_contain_text("I understand that saving takes this away")

    # Saving without the box is a review, not a save.
    admin.click("#rule-form button[type=submit]")
    expect(admin.locator("#rule-form")).to_contain_text("Not saved yet")

    # Copying the origins of /api/* takes nothing away: the rule saves at once.
    admin.check("#rule-form input[name=copy_origins]")
    expect(admin.locator("#impact-preview")).not_to_contain_text("I understand")
    admin.click("#rule-form button[type=submit]")
    expect(admin).to_have_url(re.compile(r"/admin/rules/\d+$"))
    expect(admin.locator("body")).to_contain_text(other_origin.url)

    front = browser.new_context().new_page()
    front.goto(other_origin.url)
    result = fetch_until(front, f"{live_server.url}/api/orders", ok=True)
    assert result["ok"] and result["status"] == 200, result
