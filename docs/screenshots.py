"""Take the README's screenshots of the dashboard: ``make screenshots``.

Everything happens in a temporary folder that is deleted at the end: the app is migrated and
bootstrapped there on SQLite as ``make run`` does (``flask db upgrade``, ``flask bootstrap``
with the demo policy and an admin whose password this script chooses), given some policy
history through the service layer (a shared origin list on ``/api/*``, a draft, a few
changes by other people, an alert webhook pointed at a receiver this script runs), served by
gunicorn, sent real cross-origin requests over HTTP (so the request log, the overview and
the alert come from the engine itself), and photographed with Playwright in Chromium at
1280x800. The pictures land in ``docs/screenshots/``; nothing else is written.

The script stops with a message and exit status 1 when a page does not load or lacks what it
is meant to show. It is not part of ``make test``.

    .venv/bin/python docs/screenshots.py [--out DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the app is imported from here
    sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "screenshots-demo-password"
WIDTH, HEIGHT = 1280, 800
MAX_BYTES = 250_000

# Origins that call the demo API: refused ones (a new shop front end, a partner's staging
# site, a scanner), and the demo's own localhost front end with a header the rule lacks.
NEW_SHOP = "https://new-shop.example.com"
PARTNER = "https://staging.partner.example"
SCANNER = "https://scanner.attacker.example"
LOCAL = "http://localhost:3000"
LEGACY = "http://127.0.0.1:8000"


class Failed(Exception):
    """A step that did not work; the message says which and why."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNG files go")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary instance folder and print where it is")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"screenshots: Chromium is needed at {CHROMIUM} (apt-get install chromium, or "
              "set CHROMIUM_PATH)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="cors-control-shots-"))
    try:
        shots = take_all(work, args.out)
    except Failed as error:
        print(f"screenshots: FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"screenshots: the instance is kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for path in shots:
        print(f"screenshots: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
              f" ({path.stat().st_size // 1000} kB)")
    return 0


# -- the instance ----------------------------------------------------------------------------


def environment(work: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{work / 'cors-control.db'}",
        "INSTANCE_PATH": str(work / "instance"),
        "SECRET_KEY": "screenshots-secret",
        "ADMIN_EMAIL": ADMIN_EMAIL,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DEMO_POLICY": "1",
        "FLASK_APP": "wsgi.py",
        "CORS_REFRESH_INTERVAL": "0.2",
        "REQUEST_LOG_FLUSH_INTERVAL": "0.2",
        "ALERTS_INTERVAL": "0.5",
        "CORS_CONTROL_PUBLIC_URL": "",
    }


def run_flask(env: dict[str, str], *args: str) -> str:
    flask = Path(sys.executable).with_name("flask")
    done = subprocess.run([str(flask), *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise Failed(f"`flask {' '.join(args)}` exited {done.returncode}:\n"
                     f"{done.stdout}{done.stderr}")
    return done.stdout


@contextmanager
def app_context(env: dict[str, str]) -> Iterator[Any]:
    """The app of the temporary instance, in this process, for the service layer."""
    os.environ.update(env)
    from app import close_app, create_app

    app = create_app()
    try:
        with app.app_context():
            yield app
    finally:
        close_app(app, flush_log=False)


def shape_policy(env: dict[str, str], receiver_url: str) -> dict[str, int]:
    """History a team would have after a few days: a shared list, a narrower rule, edits by
    two people and a CI token, a draft that tightens /api/*, an alert webhook."""
    from app.extensions import db
    from app.models import AuditEntry, Rule
    from app.services import alerts, drafts, origin_lists, policy, users
    from app.services.access import Actor

    with app_context(env):
        users.create_user("dana@example.com", ADMIN_PASSWORD + "-dana", role="editor")
        admin = Actor(ADMIN_EMAIL, "dashboard")
        dana = Actor("dana@example.com", "dashboard", role="editor")
        ci = Actor("token:ci", "api", role="editor")
        api = db.session.scalar(db.select(Rule).where(Rule.path == "/api/*"))
        if api is None:
            raise Failed("the demo policy has no /api/* rule; did `flask bootstrap` load it?")
        origin_lists.create_list({
            "name": "frontends", "description": "Our own web front ends",
            "origins": ["https://app.example.com", "https://admin.example.com"]}, actor=admin)
        origin_lists.create_list({
            "name": "partners", "description": "Partners allowed to call the public API",
            "origins": ["https://shop.partner.example", "https://*.reseller.example"]},
            actor=dana)
        origin_lists.attach_list(api.id, "frontends", actor=admin)
        orders = policy.create_rule({
            "path": "/api/orders", "origins": [],
            "methods": ["GET", "POST"], "allow_headers": ["content-type", "authorization"],
            "supports_credentials": True, "max_age": 600, "mode": "enforce",
            "description": "Orders: signed-in front ends only, with cookies."}, actor=dana)
        origin_lists.attach_list(orders.id, "frontends", actor=dana)
        policy.add_origin(api.id, "https://beta.example.com", actor=dana,
                          note="beta front end, until the launch")
        restore_from = db.session.scalar(db.select(db.func.max(AuditEntry.id)))
        policy.add_origin(api.id, "https://ci-preview.example.com", actor=ci,
                          note="preview deployments")
        policy.add_origin(api.id, "https://docs.example.com", actor=admin)
        drafts.save_draft(api.id, {
            "origins": ["http://localhost:*", "https://beta.example.com",
                        "https://docs.example.com"],
            "methods": ["GET", "HEAD", "POST"]}, actor=admin)
        webhook = alerts.create_webhook(alerts.WebhookInput(
            name="ops", url=receiver_url, secret="screenshots-signing-secret", rules="/api/*",
            threshold_count="5", window_minutes="10", quiet_days="7"), actor=admin)
        return {"api": api.id, "restore_entry": int(restore_from or 0), "webhook": webhook.id}


def backfill_history(env: dict[str, str]) -> None:
    """Earlier hours of the day for the origins refused now, so trends and the 24-hour chart
    have a shape; not for the new shop, whose first refusals are the point of the alert, nor
    for the draft's rows (the draft was started just now). The rows are copies of what the
    engine recorded this hour, moved back and scaled."""
    from app.extensions import db
    from app.models import RequestLogEntry

    # Multiples of this hour's count, for the 23 hours before it (oldest first).
    shapes = {PARTNER: [0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 6, 5, 4, 4, 3, 2, 2, 1, 1, 1],
              SCANNER: [0, 0, 6, 9, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 12, 4, 0, 0, 0, 0, 0, 0],
              LOCAL: [1, 0, 0, 0, 0, 0, 1, 2, 3, 3, 2, 2, 3, 3, 2, 1, 1, 2, 2, 1, 1, 0, 0]}
    with app_context(env):
        rows = db.session.scalars(db.select(RequestLogEntry)).all()
        if not rows:
            raise Failed("the request log is empty after the traffic; the engine recorded "
                         "nothing (is REQUEST_LOG_FLUSH_INTERVAL honoured?)")
        columns = [c.key for c in RequestLogEntry.__table__.columns if c.key != "id"]
        for row in rows:
            shape = shapes.get(row.origin)
            if shape is None or row.mode == "draft":
                continue
            for back, factor in enumerate(reversed(shape), start=1):
                if not factor:
                    continue
                hours = timedelta(hours=back)
                copy = {c: getattr(row, c) for c in columns}
                copy.update(bucket_start=row.bucket_start - hours,
                            first_seen=row.first_seen - hours,
                            last_seen=row.last_seen - hours, count=row.count * factor)
                db.session.add(RequestLogEntry(**copy))
        db.session.commit()


# -- serving and traffic ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """A webhook receiver on loopback that answers 204 to every POST."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/cors"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Server:
    """The app in gunicorn, as in production and the browser tests."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4",
             "-b", self.url.removeprefix("http://"), "--log-level", "warning", "wsgi:app"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log.open("wb"),
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Failed(f"the app server exited at start:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise Failed("the app server did not answer /healthz within 60 seconds")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def call(base: str, path: str, origin: str, method: str = "GET",
         headers: dict[str, str] | None = None) -> None:
    request = urllib.request.Request(f"{base}{path}", method=method,
                                     headers={"Origin": origin, **(headers or {}),
                                              "User-Agent": "Mozilla/5.0 (screenshots)"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except urllib.error.HTTPError as error:  # /api/fail and refused preflights
        error.read()


def preflight(base: str, path: str, origin: str, method: str, headers: str = "") -> None:
    wanted = {"Access-Control-Request-Method": method}
    if headers:
        wanted["Access-Control-Request-Headers"] = headers
    call(base, path, origin, "OPTIONS", wanted)


def traffic(base: str) -> None:
    for _ in range(9):
        call(base, "/api/orders", NEW_SHOP)
        preflight(base, "/api/echo", NEW_SHOP, "PUT", "content-type")
    for _ in range(4):
        call(base, "/api/echo", PARTNER)
    call(base, "/api/public/status", PARTNER, "POST")
    for _ in range(3):
        preflight(base, "/api/echo", SCANNER, "DELETE", "x-debug")
    call(base, "/api/orders", SCANNER)
    for _ in range(3):
        preflight(base, "/api/echo", LOCAL, "POST", "content-type, x-trace-id")
    for _ in range(3):  # allowed live, refused by the draft of /api/*
        call(base, "/api/echo", LEGACY)
    preflight(base, "/api/echo", "http://localhost:5173", "DELETE")


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise Failed(f"timed out waiting for {what}")


# -- the pictures ----------------------------------------------------------------------------


def take_all(work: Path, out: Path) -> list[Path]:
    env = environment(work)
    run_flask(env, "db", "upgrade")
    run_flask(env, "bootstrap")
    receiver = Receiver()
    try:
        ids = shape_policy(env, receiver.url)
        server = Server(env, work / "server.log")
        try:
            traffic(server.url)
            wait_for("the alert to reach the webhook receiver", lambda: bool(receiver.received))
            time.sleep(1)  # the last log flush and the delivery's answer are recorded
            server.stop()
            backfill_history(env)
            server = Server(env, work / "server2.log")
            return photograph(server.url, ids, out)
        finally:
            server.stop()
    finally:
        receiver.stop()


def photograph(base: str, ids: dict[str, int], out: Path) -> list[Path]:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}).new_page()
            page.set_default_timeout(20_000)

            def visit(path: str, expect: str) -> None:
                response = page.goto(f"{base}{path}")
                if response is None or response.status != 200:
                    status = response.status if response else "no answer"
                    raise Failed(f"{path} answered {status}")
                if page.locator(expect).count() == 0:
                    raise Failed(f"{path} loaded but shows no {expect!r}")

            def shot(name: str, *, full_page: bool = True,
                     between: tuple[str, str] | None = None) -> None:
                """The page, or the full-width band from the top of one element to the
                bottom of another."""
                path = out / f"{name}.png"
                if between:
                    page.evaluate("window.scrollTo(0, 0)")
                    top, bottom = (page.locator(s).first.bounding_box() for s in between)
                    if top is None or bottom is None:
                        raise Failed(f"{page.url} shows no {between[0]!r} or {between[1]!r}")
                    y = max(0, top["y"] - 12)
                    height = bottom["y"] + bottom["height"] + 16 - y
                    page.screenshot(path=str(path), full_page=True,
                                    clip={"x": 0, "y": y, "width": WIDTH, "height": height})
                else:
                    page.screenshot(path=str(path), full_page=full_page)
                taken.append(path)

            try:
                visit("/admin/login", "input[name=password]")
                page.fill("input[name=email]", ADMIN_EMAIL)
                page.fill("input[name=password]", ADMIN_PASSWORD)
                page.locator("form button, form input[type=submit]").first.click()
                page.wait_for_load_state()
                if "/login" in page.url:
                    raise Failed("signing in as the admin did not work")

                visit("/admin/", "svg")
                shot("overview")

                visit("/admin/log?group=origin&since=24h", "svg.sparkline")
                shot("request-log")

                # The rule's page below its options (those are in the next picture): its
                # origins with who added them, the draft with its effect, the shared lists.
                visit(f"/admin/rules/{ids['api']}", "#draft")
                shot("rule", between=("#rule-detail + *", "#rule-lists"))

                page.fill("#rule-form input[name=methods]", "GET, HEAD, POST")
                page.locator("#rule-form input[name=methods]").dispatch_event("change")
                page.wait_for_selector("#impact-preview h3")
                shot("rule-edit-preview", between=("body", "#rule-form"))

                visit(f"/admin/simulator?origin={NEW_SHOP}&method=PUT&path=/api/echo"
                      "&headers=content-type", "form[action$='/simulator/fix']")
                shot("simulator", full_page=True)

                visit("/admin/lists", "main")
                shot("origin-lists", full_page=True)

                visit(f"/admin/webhooks/{ids['webhook']}", "main")
                shot("alerts-webhook", full_page=True)

                visit(f"/admin/audit/{ids['restore_entry']}/restore?state=before", "main")
                shot("audit-restore", full_page=True)
            except PlaywrightError as error:
                raise Failed(f"the browser failed on {page.url}: {error}") from error
        finally:
            browser.close()
    too_big = [f"{p.name} ({p.stat().st_size} bytes)" for p in taken
               if p.stat().st_size > MAX_BYTES]
    if too_big:
        raise Failed(f"larger than {MAX_BYTES} bytes: {', '.join(too_big)}; crop them "
                     "(an element, or full_page=False)")
    return taken


if __name__ == "__main__":
    sys.exit(main())
