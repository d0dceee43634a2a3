"""The takeover of issue 9, in Chromium: a tenant-editor tries to govern a platform route from
the dashboard, is refused with its namespaces named, and the platform's front end keeps
reading that route."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.test_cors_in_browser import FETCH, load_policy
from tests.browser.test_dashboard_in_browser import sign_in
from tests.conftest import PASSWORD


def test_a_tenant_editor_cannot_take_over_a_platform_route(app, live_server, other_origin,
                                                           browser):
    from app.services.access import Actor
    from app.services.tenants import create_tenant
    from app.services.users import create_user

    load_policy(app, live_server, {"path": "/api/*", "origins": [other_origin.url],
                                   "methods": ["GET"]})
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=Actor("test", "cli"))
        create_user("ed@acme.example", PASSWORD, role="tenant-editor", tenant="acme")

    editor = browser.new_context().new_page()
    sign_in(editor, live_server, ("ed@acme.example", PASSWORD))
    editor.goto(f"{live_server.url}/admin/rules")
    editor.click("summary:has-text('New rule')")
    editor.fill("#rule-form input[name=path]", "/api/echo")
    editor.fill("#rule-form input[name=methods]", "GET")
    editor.click("#rule-form button[type=submit]")
    expect(editor.locator("#rule-form")).to_contain_text(
        re.compile(r"/api/echo lies outside the namespaces of tenant acme \(/api/t/acme/\*\)"))

    front = browser.new_context().new_page()
    front.goto(other_origin.url)
    result = front.evaluate(FETCH, [f"{live_server.url}/api/echo", {}])
    assert result["ok"] and result["status"] == 200, result
