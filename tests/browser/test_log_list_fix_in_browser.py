"""The request log's "Add to list X" in Chromium: a refused cross-origin fetch is fixed by
adding its origin to the shared list the rule uses, and the same fetch then succeeds."""

from __future__ import annotations

import json
import re
import time

from playwright.sync_api import expect

from tests.browser.test_cors_in_browser import wait_for_version
from tests.browser.test_dashboard_in_browser import fetch_until, sign_in


def test_a_refused_origin_is_added_to_a_shared_list_from_the_log(browser, live_server,
                                                                 other_origin, admin_account,
                                                                 app):
    from app.services import origin_lists as lists
    from app.services.access import Actor
    from app.services.policy import import_policy

    actor = Actor("browser-test", "cli")
    with app.app_context():
        import_policy({"rules": [{"path": "/api/orders", "origins": ["https://ok.example"],
                                  "methods": ["GET"]}]}, actor=actor)
        lists.create_list({"name": "frontends"}, actor=actor)
        lists.attach_list(_rule_id(), "frontends", actor=actor)
        version = _policy_version()
    # Only once the server serves the rule is the fetch refused by it (a fetch before that is
    # refused as governed by no rule, and its log group offers no list to add it to).
    wait_for_version(live_server, version, timeout=30)
    front = browser.new_context().new_page()
    front.goto(other_origin.url)
    api = f"{live_server.url}/api/orders"
    refused = fetch_until(front, api, ok=False)
    assert not refused["ok"], refused

    admin = browser.new_context().new_page()
    confirmations: list[str] = []

    def accept(dialog) -> None:
        confirmations.append(dialog.message)
        dialog.accept()

    admin.on("dialog", accept)
    sign_in(admin, live_server, admin_account)
    group = admin.locator("tr.log-group", has_text=other_origin.url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        admin.goto(f"{live_server.url}/admin/log")
        if group.count():
            break
        time.sleep(0.3)
    group.get_by_role("button", name=re.compile("Add to list frontends")).click()
    expect(admin.locator("body")).to_contain_text(
        f"Done: added {other_origin.url} to the list frontends, which changes /api/orders.")
    assert confirmations and "This changes every rule that uses it: /api/orders" \
        in confirmations[0]

    allowed = fetch_until(front, api, ok=True)
    assert allowed["ok"] and allowed["status"] == 200, allowed
    assert json.loads(allowed["body"])["orders"]


def _rule_id() -> int:
    from app.services.policy_read import get_rule_by_path

    return get_rule_by_path("/api/orders").id


def _policy_version() -> int:
    from app.extensions import db
    from app.models import PolicyState

    state = db.session.get(PolicyState, 1)
    assert state is not None
    return state.version
