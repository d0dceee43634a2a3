"""Issue 11's shared lists in Chromium: a front end on another origin is refused; an editor
adds its origin to a list the rule uses, on the dashboard's Origin lists page; the same
front end's fetch then succeeds, with no restart of the server."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.test_cors_in_browser import FETCH, load_policy
from tests.browser.test_dashboard_in_browser import fetch_until, sign_in


def test_a_shared_list_edit_reaches_a_cross_origin_fetch_without_a_restart(
        app, live_server, other_origin, browser, admin_account):
    from app.services import origin_lists as lists
    from app.services.access import Actor

    load_policy(app, live_server, {"path": "/api/*", "origins": ["https://own.example.com"],
                                   "methods": ["GET"]})
    with app.app_context():
        lists.create_list({"name": "frontends"}, actor=Actor("browser-test", "cli"))

    front = browser.new_context().new_page()
    front.goto(other_origin.url)
    refused = front.evaluate(FETCH, [f"{live_server.url}/api/echo", {}])
    assert not refused["ok"], refused  # no Access-Control-Allow-Origin: the fetch fails

    admin = browser.new_context().new_page()
    admin.on("dialog", lambda dialog: dialog.accept())
    sign_in(admin, live_server, admin_account)
    # The rule page attaches the list.
    admin.goto(f"{live_server.url}/admin/rules")
    admin.click("a:has-text('/api/*')")
    admin.select_option("#rule-list-attach", label="frontends (platform, 0 origins)")
    admin.click("#rule-lists button:has-text('Use list')")
    expect(admin.locator("#rule-lists")).to_contain_text("/api/* now allows the origins of "
                                                         "frontends")
    # The Origin lists page adds the front end's origin, through htmx.
    admin.click("nav a:has-text('Origin lists')")
    card = admin.locator("section:has(h2:has-text('frontends'))")
    card.locator("input[name=origin]").fill(other_origin.url)
    card.locator("button:has-text('Add to frontends')").click()
    expect(admin.locator("#origin-lists")).to_contain_text(
        f"Added {other_origin.url} to frontends (used by /api/*)")

    allowed = fetch_until(front, f"{live_server.url}/api/echo", ok=True)
    assert allowed["ok"] and allowed["status"] == 200, allowed
