"""The Import page in Chromium: a policy file chosen in the file input is previewed (what the
routes lose, nothing written), applied after ticking the box, and served at once; the
browser's own multipart form carries the previewed document back unchanged."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from tests.browser.test_cors_in_browser import load_policy
from tests.browser.test_dashboard_in_browser import fetch_until, sign_in


def test_a_policy_file_is_previewed_then_applied(app, live_server, other_origin, browser,
                                                 admin_account, tmp_path):
    load_policy(app, live_server, {"path": "/api/*", "origins": ["https://old.example.com"]})
    front = browser.new_context().new_page()
    front.goto(other_origin.url)
    assert not fetch_until(front, f"{live_server.url}/api/orders", ok=False)["ok"]

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"rules": [
        {"path": "/api/*", "origins": [other_origin.url],
         "description": "línea\nnueva \"quoted\" <b>"}]}, indent=2))
    admin = browser.new_context().new_page()
    sign_in(admin, live_server, admin_account)
    admin.click("nav >> text=Import")
    admin.set_input_files("input[name=file]", str(policy))
    admin.click("#import-form button[type=submit]")
    preview = admin.locator("#import-preview")
    expect(preview).to_contain_text("0 added, 1 changed, 0 removed, 0 unchanged")
    expect(preview).to_contain_text("origin https://old.example.com")

    # Without the box ticked the import is shown again, not applied.
    admin.click("#import-preview button[type=submit]")
    expect(admin.locator("#import-preview")).to_contain_text("I understand")
    expect(admin.locator("body")).to_contain_text("Not applied yet")
    admin.check("#import-preview input[name=confirm_impact]")
    admin.click("#import-preview button[type=submit]")
    expect(admin).to_have_url(re.compile(r"/admin/import$"))
    expect(admin.locator(".flash")).to_contain_text("Imported (merge): 0 added, 1 changed")

    result = fetch_until(front, f"{live_server.url}/api/orders", ok=True)
    assert result["ok"] and result["status"] == 200, result
