"""The API tokens page in Chromium: the secret appears once, with a working copy button."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.test_dashboard_in_browser import sign_in


def test_a_token_created_in_the_browser_shows_its_secret_once(browser, live_server,
                                                             admin_account):
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    errors: list[str] = []  # script errors and CSP violations (not the missing favicon)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, live_server, admin_account)
    page.goto(f"{live_server.url}/admin/tokens")
    page.fill("#tokens input[name=name]", "deploy-bot")
    page.select_option("#tokens select[name=role]", "editor")
    page.click("#tokens button:has-text('Create token')")  # swapped in by htmx

    secret = page.locator("#token-secret")
    expect(secret).to_contain_text("cc_")
    copy = page.locator("button[data-copy=token-secret]")
    expect(copy).to_have_text("Copy")
    expect(copy).to_be_visible()
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret.inner_text().strip()

    page.reload()
    expect(page.locator("#tokens")).to_contain_text("deploy-bot")
    expect(page.locator("#token-secret")).to_have_count(0)

    page.click("#tokens button:has-text('Revoke')")
    expect(page.locator("#tokens")).to_contain_text("Revoked token deploy-bot")
    assert errors == []  # no CSP violation, no script error
    context.close()
