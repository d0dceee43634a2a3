"""In Chromium: while the database is down, an htmx action shows the outage notice above the
page (once, however often it is tried) instead of nothing, and the notice goes on recovery."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask_migrate import upgrade
from playwright.sync_api import expect

from app import close_app, create_app
from app.services.users import create_user
from tests.browser.conftest import PASSWORD, LiveServer, _require_chromium
from tests.browser.test_dashboard_in_browser import sign_in
from tests.conftest import _test_config
from tests.test_outage import PrivatePostgres

EMAIL = "outage-admin@example.com"


@pytest.fixture
def outage_server(tmp_path) -> Iterator[tuple[PrivatePostgres, LiveServer]]:
    """The app in gunicorn on a PostgreSQL server of its own, with one admin."""
    _require_chromium()
    database = PrivatePostgres()
    server = None
    try:
        database.create()
        app = create_app(_test_config(database.url, tmp_path))
        try:
            with app.app_context():
                upgrade()
                create_user(EMAIL, PASSWORD, role="admin")
        finally:
            close_app(app, flush_log=False)
        server = LiveServer(database.url, tmp_path / "instance")
        yield database, server
    finally:
        if server is not None:
            server.stop()
        database.remove()


@pytest.mark.slow
def test_htmx_action_shows_the_outage_notice_above_the_page(page, outage_server):
    database, server = outage_server
    sign_in(page, server, (EMAIL, PASSWORD))
    refresh = page.locator("#overview a", has_text="Refresh")
    notice = page.locator("#main > #database-unreachable")

    database.stop()
    refresh.click()
    expect(notice).to_contain_text("The database is unreachable; the engine keeps serving")
    refresh.click()
    expect(notice).to_have_count(1)
    expect(page.locator("#overview")).to_be_visible()  # the page is still there

    database.start()
    refresh.click()
    expect(notice).to_have_count(0)
