"""The dashboard's pages in Chromium at 1280 px: tables keep words whole, the origin field's
accessible name stays its label, the keyboard sees where it is, and Remove asks first without
JavaScript."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_dashboard_in_browser import sign_in

# The words in table cells and badges that are drawn on more than one line ("P ATCH",
# "https://new.example.c om"). A line may still break after a hyphen, as text does; origin
# cells and badges are checked whole below.
BROKEN_WORDS = """() => {
  const broken = [];
  const roots = document.querySelectorAll("table, .badge");
  for (const root of roots) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const pattern = /[^\\s-]+/g;
      let match;
      while ((match = pattern.exec(node.textContent))) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
        if (lines.size > 1) broken.push(match[0]);
      }
    }
  }
  return broken;
}"""

LONG_ORIGINS = ["https://new.example.com", "https://checkout-staging.new.example.com",
                "https://partner-portal.eu-west.example.org"]


@pytest.fixture
def busy_rule(app, live_server):
    """A rule with every method, long headers and a long description, and long origins."""
    from app.services.access import Actor
    from app.services.policy import add_origin, create_rule

    admin = Actor("seed@example.com", "cli")
    with app.app_context():
        rule = create_rule({
            "path": "/api/orders/*/line-items/*",
            "methods": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            "allow_headers": ["content-type", "x-request-id", "x-correlation-id"],
            "mode": "report-only",
            "description": "Order line items for the checkout, the partner portal and the "
                           "back office; credentials are not needed here at all.",
        }, actor=admin)
        for value in LONG_ORIGINS:
            add_origin(rule.id, value, actor=admin,
                       note="added for the autumn release of the storefront")
        create_rule({"path": "/api/status", "methods": ["GET", "PATCH"]}, actor=admin)
        return rule.id


def test_tables_keep_words_whole_at_1280_px(page, live_server, admin_account, busy_rule):
    page.set_viewport_size({"width": 1280, "height": 800})
    sign_in(page, live_server, admin_account)
    for url in (f"{live_server.url}/admin/rules", f"{live_server.url}/admin/rules/{busy_rule}",
                f"{live_server.url}/admin/coverage", f"{live_server.url}/admin/audit"):
        page.goto(url)
        assert page.evaluate(BROKEN_WORDS) == [], url
    page.goto(f"{live_server.url}/admin/rules/{busy_rule}")
    for value in LONG_ORIGINS:
        cell = page.locator("#origin-rows span.mono", has_text=value)
        assert cell.evaluate("(el) => el.getClientRects().length") == 1, value


def test_origin_field_keeps_its_name_while_the_check_describes_it(
        page, live_server, admin_account, busy_rule):
    sign_in(page, live_server, admin_account)
    page.goto(f"{live_server.url}/admin/rules/{busy_rule}")
    field = page.get_by_role("textbox", name="Origin", exact=True)
    field.fill("not an origin")
    expect(page.locator("#origin-value-check .field-error")).to_be_visible()
    expect(field).to_have_accessible_name("Origin")
    expect(field).to_have_accessible_description(re.compile(r"\S"))


def test_keyboard_reaches_a_skip_link_first_and_sees_a_focus_ring(
        page, live_server, admin_account):
    sign_in(page, live_server, admin_account)
    page.goto(f"{live_server.url}/admin/rules")
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None and box["x"] >= 0  # on screen once focused
    assert skip.evaluate("(el) => getComputedStyle(el).outlineStyle") != "none"
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()


def test_remove_asks_for_confirmation_without_javascript(
        browser, live_server, admin_account, busy_rule):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, live_server, admin_account)
        page.goto(f"{live_server.url}/admin/rules/{busy_rule}")
        row = page.locator("#origin-rows tr", has_text="https://new.example.com")
        row.get_by_role("button", name="Remove").click()
        expect(page.locator("h1")).to_contain_text("Remove https://new.example.com")
        page.get_by_role("button", name="Remove").click()
        expect(page.locator(".flash")).to_contain_text("Removed https://new.example.com")
        expect(page.locator("#origin-rows tr", has_text="https://new.example.com")) \
            .to_have_count(0)

        page.get_by_role("link", name="Delete rule").click()
        expect(page.locator("h1")).to_contain_text("Delete the rule")
        page.get_by_role("link", name="Cancel").click()
        expect(page.locator("#rule-detail")).to_be_visible()
    finally:
        context.close()


def test_removing_with_htmx_updates_the_count_version_and_empty_state(
        page, live_server, admin_account, app):
    from app.services.access import Actor
    from app.services.policy import add_origin, create_rule

    with app.app_context():
        rule = create_rule({"path": "/api/one"}, actor=Actor("seed@example.com", "cli"))
        add_origin(rule.id, "https://only.example.com", actor=Actor("seed@example.com", "cli"))
        rule_id = rule.id
    sign_in(page, live_server, admin_account)
    page.goto(f"{live_server.url}/admin/rules/{rule_id}")
    line = page.locator("#rule-version-line").inner_text()
    version = int(re.search(r"Version (\d+)", line).group(1))
    expect(page.locator("#origin-empty")).to_be_hidden()
    page.locator("#origin-rows").get_by_role("button", name="Remove").click()
    expect(page.locator("#origin-empty")).to_contain_text("No origins yet")
    expect(page.locator("#origin-count")).to_have_text("0")
    expect(page.locator("#rule-version-line")).to_contain_text(f"Version {version + 1} ")
    expect(page.locator("#origin-value-check")).to_contain_text("Removed https://only")
    assert page.dialogs == ["Remove https://only.example.com from /api/one?"]
    page.get_by_role("textbox", name="Origin", exact=True).fill("https://again.example.com")
    page.get_by_role("button", name="Allow origin").click()
    expect(page.locator("#origin-rows tr")).to_have_count(1)
    expect(page.locator("#origin-empty")).to_be_hidden()
    expect(page.locator("#rule-version-line")).to_contain_text(f"Version {version + 2} ")
