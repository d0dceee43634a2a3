"""Browser tests: the real app served over HTTP, driven by Debian's Chromium via Playwright.

The app runs in a gunicorn process on the test database; a second server on another
loopback origin serves the page that makes cross-origin requests. Without Chromium the tests
are skipped with a message, except in CI (``CI`` set), where a missing browser fails them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
PASSWORD = "browser-test-password"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = (f"browser tests need Chromium at {CHROMIUM}: install Debian's chromium "
               "(apt-get install chromium); .ci/run does")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The app in its own gunicorn process, sharing the test database."""

    def __init__(self, database_url: str, instance: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SECRET_KEY": "browser-test-secret",
            "INSTANCE_PATH": str(instance),
            "CORS_REFRESH_INTERVAL": "0.2",
            "REQUEST_LOG_FLUSH_INTERVAL": "0.2",
            "DEMO_POLICY": "0",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4",
             "-b", f"127.0.0.1:{self.port}", "--log-level", "warning", "wsgi:app"],
            cwd=ROOT, env=env)
        self._wait()

    def _wait(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the app server exited before it became ready")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # worker booting
                time.sleep(0.1)
        raise RuntimeError("the app server did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class OtherOrigin:
    """A page on another loopback origin (another port) that calls the app with fetch()."""

    PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>front end</title>
</head><body><p id="status">ready</p></body></html>"""

    def __init__(self) -> None:
        page = self.PAGE

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def live_server(database_url, tmp_path) -> Iterator[LiveServer]:
    from tests.conftest import empty_database

    _require_chromium()
    empty_database(database_url)
    server = LiveServer(database_url, tmp_path / "instance")
    yield server
    server.stop()


@pytest.fixture
def other_origin() -> Iterator[OtherOrigin]:
    site = OtherOrigin()
    yield site
    site.stop()


@pytest.fixture(scope="session")
def browser():
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.dialogs = dialogs
    yield page
    context.close()


@pytest.fixture
def admin_account(live_server, app):
    """An admin in the shared database (created through the service layer)."""
    from app.services.users import create_user

    with app.app_context():
        create_user("browser-admin@example.com", PASSWORD, role="admin")
    return "browser-admin@example.com", PASSWORD
