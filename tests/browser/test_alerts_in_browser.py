"""The Alerts page in Chromium: create a webhook, send a test to a real local receiver, see
the delivery, delete the webhook after its confirmation page."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.browser.test_dashboard_in_browser import sign_in
from tests.test_alerts import receiver  # noqa: F401  # the receiver fixture

SECRET = "browser-webhook-secret-0123"


def test_an_admin_creates_a_webhook_sends_a_test_and_deletes_it(page, live_server,
                                                                admin_account, receiver):  # noqa: F811
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    sign_in(page, live_server, admin_account)
    page.goto(f"{live_server.url}/admin/")
    page.click("nav a:has-text('Alerts')")
    expect(page.locator("#webhooks")).to_contain_text("No webhooks yet")
    page.fill("#new-webhook-name", "ops")
    page.fill("#new-webhook-url", "ftp://wrong.example/")
    page.click("#webhooks button:has-text('Create webhook')")  # htmx: errors in place
    expect(page.locator("#new-webhook-url-error")).to_contain_text("http:// or https://")
    page.fill("#new-webhook-url", receiver.url)
    page.fill("#new-webhook-secret", SECRET)
    page.click("#webhooks button:has-text('Create webhook')")
    expect(page.locator("h1")).to_contain_text("Webhook ops")
    expect(page.locator("#webhook")).to_contain_text("secret set")
    assert SECRET not in page.content()

    page.click("button:has-text('Send a test')")
    expect(page.locator("#test-result")).to_contain_text("Test delivered")
    expect(page.locator("#webhook-activity")).to_contain_text("1 delivered")
    assert len(receiver.requests) == 1
    assert json.loads(receiver.requests[0]["body"])["event"] == "cors.webhook.test"
    assert "X-CORS-Control-Signature" in receiver.requests[0]["headers"]

    page.click("a:has-text('Delete this webhook')")
    expect(page.locator("h1")).to_contain_text("Delete webhook ops?")
    page.click("button:has-text('Delete webhook ops')")
    expect(page.locator("#webhooks")).to_contain_text("No webhooks yet")
    expect(page.locator("main")).to_contain_text("Deleted webhook ops")
    assert errors == []
