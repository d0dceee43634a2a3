"""Alerts: webhooks configured by admins, computed from the request log by the alert job,
delivered to a real HTTP receiver started by the test, signed, retried with backoff."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AlertDelivery, AlertState, AuditEntry, RequestLogEntry, Webhook
from app.runtime import get_alert_job
from app.services import alerts
from app.services.access import Actor
from app.services.errors import Forbidden, ValidationError
from app.services.policy import create_rule

ADMIN = Actor("root@example.com", "cli")
HTMX = {"HX-Request": "true"}
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SECRET = "0123456789abcdef-secret"
HOSTILE = 'https://x.example"><script>alert(1)</script>'


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1; answers each POST with the next status queued."""

    server: ThreadingHTTPServer
    requests: list[dict] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  # http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec: Receiver = state["receiver"]
            with rec.lock:
                rec.requests.append({"headers": self.headers, "body": body,
                                     "path": self.path})
                status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Receiver(server)
    state["receiver"] = rec
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def _closed_port_url() -> str:
    """A URL nothing listens on: a receiver that is down."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/hook"


def _hook(url: str, **fields) -> Webhook:
    values = {"name": "ops", "url": url, "threshold_count": "5", "window_minutes": "10",
              "quiet_days": "7", **fields}
    webhook = alerts.create_webhook(alerts.WebhookInput(**values), actor=ADMIN)
    db.session.refresh(webhook)
    db.session.expunge(webhook)  # usable after the app context ends
    return webhook


def _refusals(origin: str, count: int, *, at: datetime, rule: str = "/api/*",
              reason: str = "origin-not-allowed", first: datetime | None = None,
              mode: str = "enforce") -> None:
    bucket = at.replace(minute=0, second=0, microsecond=0)
    db.session.add(RequestLogEntry(
        bucket_start=bucket, rule_id=None, rule_path=rule, tenant="", origin=origin,
        reason=reason, detail="", mode=mode, count=count, first_seen=first or at,
        last_seen=at, path="/api/orders", method="GET", preflight=False, request_method="",
        request_headers="", user_agent="test", referer=""))
    db.session.commit()


def _run(app, now: datetime = NOW):
    """One round of the job, as the job's thread runs it, at the moment *now*."""
    with app.app_context():
        evaluation = alerts.evaluate_alerts(now=now)
        sent = alerts.deliver_due(now=now)
    return evaluation, sent


def _bodies(receiver: Receiver) -> list[dict]:
    return [json.loads(r["body"]) for r in receiver.requests]


# -- thresholds, once per origin and rule, clearing ----------------------------------------


def test_an_origin_refused_enough_times_that_was_quiet_before_fires_once(app, receiver):
    with app.app_context():
        _hook(receiver.url)
        _refusals("https://new.example", 5, at=NOW - timedelta(minutes=3))
        _refusals("https://few.example", 4, at=NOW - timedelta(minutes=3))
        _refusals("https://old.example", 5, at=NOW - timedelta(minutes=2))
        _refusals("https://old.example", 1, at=NOW - timedelta(days=3))
        _refusals("https://longago.example", 6, at=NOW - timedelta(minutes=1))
        _refusals("https://longago.example", 1, at=NOW - timedelta(days=8))
        _refusals("https://stale.example", 9, at=NOW - timedelta(minutes=30))
    evaluation, sent = _run(app)
    assert evaluation.fired == 2 and sent == 2
    assert sorted(b["origin"] for b in _bodies(receiver)) == [
        "https://longago.example", "https://new.example"]
    # Once per origin and rule: the next rounds send nothing while it keeps firing.
    with app.app_context():
        _refusals("https://new.example", 50, at=NOW + timedelta(minutes=1))
    assert _run(app, NOW + timedelta(minutes=2)) == (alerts.Evaluation(0, 0), 0)
    assert len(receiver.requests) == 2


def test_what_only_a_draft_would_refuse_never_fires(app, receiver):
    """Draft rows are requests the live rule allowed: nobody was refused. Report-only rows
    are what a rule being tried would refuse, and alert as the README says."""
    with app.app_context():
        _hook(receiver.url)
        _refusals("https://drafted.example", 50, at=NOW - timedelta(minutes=3), mode="draft")
        _refusals("https://watched.example", 5, at=NOW - timedelta(minutes=3),
                  mode="report-only")
    evaluation, sent = _run(app)
    assert (evaluation.fired, sent) == (1, 1)
    assert [b["origin"] for b in _bodies(receiver)] == ["https://watched.example"]


def test_a_refusal_earlier_in_the_same_bucket_counts_as_refused_before(app, receiver):
    """The window is as fine as the log's rows: a row that began before the window says the
    origin was refused before it, so the alert is not about a new origin."""
    with app.app_context():
        _hook(receiver.url)
        _refusals("https://same-hour.example", 6, at=NOW - timedelta(minutes=1),
                  first=NOW - timedelta(minutes=40))
    assert _run(app)[0].fired == 0


def test_the_payload_names_origin_rule_reasons_counts_and_links_to_the_log_group(
        make_app, receiver):
    app = make_app(CORS_CONTROL_PUBLIC_URL="https://cors.example.com/")
    with app.app_context():
        _hook(receiver.url)
        _refusals("https://new.example", 4, at=NOW - timedelta(minutes=3))
        _refusals("https://new.example", 2, at=NOW - timedelta(minutes=2),
                  reason="method-not-allowed")
    _run(app)
    [body] = _bodies(receiver)
    assert body["event"] == "cors.refusal.alert"
    assert (body["origin"], body["rule"], body["reason"], body["count"]) == (
        "https://new.example", "/api/*", "origin-not-allowed", 6)
    assert [(r["reason"], r["count"]) for r in body["reasons"]] == [
        ("origin-not-allowed", 4), ("method-not-allowed", 2)]
    link = urlsplit(body["link"])
    assert (link.scheme, link.netloc, link.path) == ("https", "cors.example.com", "/admin/log")
    assert parse_qs(link.query) == {"group": ["origin"], "origin": ["https://new.example"],
                                    "rule": ["/api/*"], "reason": ["origin-not-allowed"]}
    assert "link_note" not in body
    assert body["threshold"] == {"count": 5, "window_minutes": 10, "quiet_days": 7}


def test_without_a_public_url_the_link_is_relative_and_the_payload_says_so(app, receiver):
    with app.app_context():
        _hook(receiver.url)
        _refusals("https://new.example", 5, at=NOW - timedelta(minutes=3))
    _run(app)
    [body] = _bodies(receiver)
    assert body["link"].startswith("/admin/log?")
    assert "CORS_CONTROL_PUBLIC_URL" in body["link_note"]


def test_an_alert_clears_when_the_window_is_empty_and_fires_again_after(app, receiver):
    with app.app_context():
        _hook(receiver.url, quiet_days="0")
        _refusals("https://new.example", 5, at=NOW - timedelta(minutes=3))
    assert _run(app)[0].fired == 1
    assert _run(app, NOW + timedelta(minutes=5))[0] == alerts.Evaluation(0, 0)
    assert _run(app, NOW + timedelta(minutes=20))[0] == alerts.Evaluation(0, 1)
    with app.app_context():
        state = db.session.scalars(sa.select(AlertState)).one()
        assert state.cleared_at == NOW + timedelta(minutes=20)
        _refusals("https://new.example", 5, at=NOW + timedelta(minutes=30))
    assert _run(app, NOW + timedelta(minutes=31))[0].fired == 1
    assert len(receiver.requests) == 2
    with app.app_context():
        state = db.session.scalars(sa.select(AlertState)).one()
        assert state.cleared_at is None and state.fired_at == NOW + timedelta(minutes=31)


def test_after_clearing_the_quiet_period_keeps_a_known_origin_silent(app, receiver):
    with app.app_context():
        _hook(receiver.url, quiet_days="7")
        _refusals("https://new.example", 5, at=NOW - timedelta(minutes=3))
    _run(app)
    _run(app, NOW + timedelta(minutes=20))
    with app.app_context():
        _refusals("https://new.example", 5, at=NOW + timedelta(minutes=30))
    assert _run(app, NOW + timedelta(minutes=31))[0].fired == 0
    assert len(receiver.requests) == 1


def test_rule_and_reason_filters_limit_what_a_webhook_covers(app, receiver):
    with app.app_context():
        create_rule({"path": "/api/orders", "origins": []}, actor=ADMIN)
        _hook(receiver.url, rules="/api/orders", reasons=("method-not-allowed",))
        _refusals("https://a.example", 9, at=NOW - timedelta(minutes=1))  # other rule
        _refusals("https://b.example", 9, at=NOW - timedelta(minutes=1), rule="/api/orders")
        _refusals("https://c.example", 9, at=NOW - timedelta(minutes=1), rule="/api/orders",
                  reason="method-not-allowed")
    _run(app)
    assert [b["origin"] for b in _bodies(receiver)] == ["https://c.example"]


def test_a_disabled_webhook_fires_nothing_and_holds_its_pending_messages(app, receiver):
    with app.app_context():
        _hook(receiver.url, enabled=False)
        _refusals("https://new.example", 5, at=NOW - timedelta(minutes=3))
    assert _run(app) == (alerts.Evaluation(0, 0), 0)
    with app.app_context():
        db.session.execute(sa.update(Webhook).values(enabled=True))
        db.session.commit()
        assert alerts.evaluate_alerts(now=NOW).fired == 1
        db.session.execute(sa.update(Webhook).values(enabled=False))
        db.session.commit()
        assert alerts.deliver_due(now=NOW) == 0
    assert receiver.requests == []


# -- signatures and formats ----------------------------------------------------------------


def test_a_signed_message_verifies_with_the_secret_and_its_timestamp(app, receiver):
    with app.app_context():
        _hook(receiver.url, secret=SECRET)
        _refusals("https://new.example", 5, at=NOW - timedelta(minutes=3))
    _run(app)
    [request] = receiver.requests
    headers = request["headers"]
    timestamp = headers["X-CORS-Control-Timestamp"]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request["body"],
                        hashlib.sha256).hexdigest()
    assert headers["X-CORS-Control-Signature"] == f"sha256={expected}"
    wrong = hmac.new(b"another-secret-value", f"{timestamp}.".encode() + request["body"],
                     hashlib.sha256).hexdigest()
    assert headers["X-CORS-Control-Signature"] != f"sha256={wrong}"
    assert request["path"] == "/hook?token=abc"


def test_an_unsigned_webhook_sends_no_signature(app, receiver):
    with app.app_context():
        _hook(receiver.url)
        _refusals("https://new.example", 5, at=NOW - timedelta(minutes=3))
    _run(app)
    assert "X-CORS-Control-Signature" not in receiver.requests[0]["headers"]


def test_the_slack_format_sends_text_with_the_hostile_origin_escaped(app, receiver):
    with app.app_context():
        _hook(receiver.url, format="slack")
        _refusals(HOSTILE, 5, at=NOW - timedelta(minutes=3))
    _run(app)
    [body] = _bodies(receiver)
    assert list(body) == ["text"]
    assert "&lt;script&gt;" in body["text"] and "<script>" not in body["text"]
    assert "refused 5 times" in body["text"]


def test_a_json_payload_carries_a_hostile_origin_as_data(app, receiver):
    with app.app_context():
        _hook(receiver.url)
        _refusals(HOSTILE, 5, at=NOW - timedelta(minutes=3))
    _run(app)
    [body] = _bodies(receiver)
    assert body["origin"] == HOSTILE
    assert parse_qs(urlsplit(body["link"]).query)["origin"] == [HOSTILE]


# -- retries -------------------------------------------------------------------------------


def _delivery(app) -> AlertDelivery:
    with app.app_context():
        delivery = db.session.scalars(sa.select(AlertDelivery)).one()
        db.session.expunge(delivery)
        return delivery


def test_a_receiver_answering_500_is_retried_with_exponential_backoff(app, receiver):
    receiver.statuses.extend([500, 500])
    with app.app_context():
        _hook(receiver.url)
        _refusals("https://new.example", 5, at=NOW - timedelta(minutes=3))
    _run(app)
    first = _delivery(app)
    assert (first.state, first.attempts, first.last_status) == ("pending", 1, 500)
    assert "HTTP 500" in first.last_error
    assert first.next_attempt_at >= NOW + timedelta(seconds=30)
    # Not due yet: nothing is sent.
    assert _run(app, NOW + timedelta(seconds=10))[1] == 0
    _run(app, first.next_attempt_at)
    second = _delivery(app)
    assert (second.state, second.attempts) == ("pending", 2)
    # The second wait is twice the first.
    assert second.next_attempt_at - first.next_attempt_at >= timedelta(seconds=60)
    _run(app, second.next_attempt_at)
    third = _delivery(app)
    assert (third.state, third.attempts, third.last_status) == ("delivered", 3, 200)
    assert third.next_attempt_at is None and third.delivered_at is not None
    assert len(receiver.requests) == 3
    assert len({r["body"] for r in receiver.requests}) == 1


def test_backoff_is_capped(app):
    with app.app_context():
        assert alerts.retry_delay(1) == timedelta(seconds=30)
        assert alerts.retry_delay(3) == timedelta(seconds=120)
        assert alerts.retry_delay(30) == timedelta(seconds=3600)


def test_a_receiver_that_is_down_is_retried_then_given_up(make_app):
    app = make_app(ALERTS_MAX_ATTEMPTS=2, ALERTS_HTTP_TIMEOUT=2)
    with app.app_context():
        _hook(_closed_port_url())
        _refusals("https://new.example", 5, at=NOW - timedelta(minutes=3))
    _run(app)
    first = _delivery(app)
    assert (first.state, first.attempts, first.last_status) == ("pending", 1, None)
    assert "could not reach the receiver" in first.last_error
    _run(app, first.next_attempt_at)
    given_up = _delivery(app)
    assert (given_up.state, given_up.attempts, given_up.next_attempt_at) == ("failed", 2, None)


def test_two_runners_at_once_send_each_delivery_once(app, receiver):
    with app.app_context():
        _hook(receiver.url)
        for n in range(8):
            _refusals(f"https://n{n}.example", 5, at=NOW - timedelta(minutes=3))
    barrier = threading.Barrier(2)
    results: list = []

    def runner() -> None:
        with app.app_context():
            barrier.wait()
            try:
                results.append(alerts.evaluate_alerts(now=NOW).fired)
                barrier.wait()
                results.append(alerts.deliver_due(now=NOW))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4
    origins = sorted(b["origin"] for b in _bodies(receiver))
    assert origins == sorted(f"https://n{n}.example" for n in range(8))
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery)) == 8
        assert set(db.session.scalars(sa.select(AlertDelivery.state))) == {"delivered"}


def test_the_job_survives_a_database_it_cannot_reach(make_app, caplog):
    app = make_app(SQLALCHEMY_DATABASE_URI="postgresql+psycopg://postgres@127.0.0.1:1/none")
    job = get_alert_job(app)
    assert job.run_once() == (alerts.Evaluation(), 0)
    assert job.run_once() == (alerts.Evaluation(), 0)
    failures = [r for r in caplog.records if "alert job failed" in r.getMessage()]
    assert len(failures) == 1  # logged once, not every round


def test_the_job_is_not_started_when_disabled_and_stops_with_the_app(make_app):
    app = make_app(ALERTS_JOB_ENABLED=True, ALERTS_INTERVAL=0.05)
    job = get_alert_job(app)
    job(None)  # what the first policy check does
    assert job.running
    from app import close_app

    close_app(app, flush_log=False)
    assert not job.running
    disabled = get_alert_job(make_app())
    disabled(None)
    assert not disabled.running


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"url": "ftp://hooks.example.com/x"}, "url", "http:// or https://"),
    ({"url": "javascript:alert(1)"}, "url", "http:// or https://"),
    ({"url": "https:///nohost"}, "url", "needs a host"),
    ({"url": "https://user:pw@hooks.example.com/"}, "url", "no user name"),
    ({"url": "https://hooks.example.com:99999/"}, "url", "port"),
    ({"url": ""}, "url", "enter the URL"),
    ({"name": ""}, "name", "name the webhook"),
    ({"secret": "short"}, "secret", "16 to 200"),
    ({"threshold_count": "0"}, "threshold_count", "from 1 to"),
    ({"window_minutes": "ten"}, "window_minutes", "whole number"),
    ({"quiet_days": "-1"}, "quiet_days", "whole number"),
    ({"format": "xml"}, "format", "json or slack"),
    ({"reasons": ("bogus",)}, "reasons", "unknown reason bogus"),
    ({"rules": "/api/nothing"}, "rules", "no rule has the path /api/nothing"),
])
def test_bad_webhook_input_is_refused_with_a_message_that_says_how_to_fix_it(
        app, fields, field, words):
    values = {"name": "ops", "url": "https://hooks.example.com/cors", **fields}
    with app.app_context(), pytest.raises(ValidationError) as caught:
        alerts.create_webhook(alerts.WebhookInput(**values), actor=ADMIN)
    assert any(words in message for message in caught.value.for_field(field))
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Webhook)) == 0


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_admins_configure_webhooks_in_the_service(app, role):
    with app.app_context(), pytest.raises(Forbidden):
        alerts.create_webhook(alerts.WebhookInput(name="x", url="https://h.example/"),
                              actor=Actor("someone", "cli", role))


def test_changes_are_audited_without_the_secret_or_the_url_path(app):
    with app.app_context():
        hook = _hook("https://hooks.slack.example/services/T000/B000/XXXX", secret=SECRET)
        alerts.update_webhook(hook.id, alerts.WebhookInput(
            name="ops", url=hook.url, threshold_count="3"), actor=ADMIN)
        assert db.session.get(Webhook, hook.id).secret == SECRET  # empty keeps it
        alerts.delete_webhook(hook.id, actor=ADMIN)
        entries = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [e.action for e in entries] == ["webhook.create", "webhook.update", "webhook.delete"]
    text = json.dumps([[e.summary, e.before, e.after] for e in entries])
    assert SECRET not in text and "XXXX" not in text
    assert entries[0].after["secret"] == "set"
    assert entries[0].after["url"] == "https://hooks.slack.example/…"
    assert entries[1].before["threshold_count"] == 5 and entries[1].after["threshold_count"] == 3


# -- the dashboard -------------------------------------------------------------------------


def _form(client, **fields) -> dict:
    return {"name": "ops", "url": "https://hooks.example.com/cors", "secret": "",
            "threshold_count": "5", "window_minutes": "10", "quiet_days": "7",
            "format": "json", "enabled": "1", "rules": "", "csrf_token": client.csrf, **fields}


def test_the_alerts_page_is_in_the_nav_and_is_a_page_and_a_fragment(sign_in):
    admin = sign_in("admin")
    page = admin.get("/admin/webhooks")
    fragment = admin.get("/admin/webhooks", headers=HTMX)
    assert page.status_code == fragment.status_code == 200
    assert 'href="/admin/webhooks" aria-current="page">Alerts</a>' in page.get_data(as_text=True)
    assert "<html" not in fragment.get_data(as_text=True)
    assert "No webhooks yet" in fragment.get_data(as_text=True)
    assert "HX-Request" in page.headers["Vary"]


def test_an_admin_creates_a_webhook_whose_secret_is_never_shown_again(app, sign_in):
    admin = sign_in("admin")
    response = admin.post("/admin/webhooks", data=_form(admin, secret=SECRET))
    assert response.status_code == 303
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "Created webhook ops" in page and "secret set" in page
    assert SECRET not in page
    listing = admin.get("/admin/webhooks").get_data(as_text=True)
    assert SECRET not in listing and "hooks.example.com/…" in listing
    with app.app_context():
        assert db.session.scalars(sa.select(Webhook)).one().secret == SECRET


def test_the_form_shows_each_error_beside_its_field_and_keeps_what_was_typed(sign_in):
    admin = sign_in("admin")
    response = admin.post("/admin/webhooks", data=_form(admin, url="ftp://x.example/",
                                                       name="keep-me"))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="new-webhook-url-error"' in html and "http:// or https://" in html
    assert 'value="keep-me"' in html
    fragment = admin.post("/admin/webhooks", data=_form(admin, url="ftp://x.example/"),
                          headers=HTMX)
    assert fragment.status_code == 200 and "<html" not in fragment.get_data(as_text=True)


def test_creating_through_htmx_goes_to_the_webhook_page(sign_in):
    admin = sign_in("admin")
    response = admin.post("/admin/webhooks", data=_form(admin), headers=HTMX)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"].startswith("/admin/webhooks/")


def test_send_a_test_delivers_now_and_shows_the_result(app, sign_in, receiver):
    with app.app_context():
        hook = _hook(receiver.url, secret=SECRET)
    admin = sign_in("admin")
    for headers in ({}, HTMX):
        response = admin.post(f"/admin/webhooks/{hook.id}/test",
                              data={"csrf_token": admin.csrf}, headers=headers)
        assert response.status_code == 200
        assert "Test delivered: the receiver answered HTTP 200" in response.get_data(
            as_text=True)
    body = _bodies(receiver)[0]
    assert body["event"] == "cors.webhook.test" and body["test"] is True
    assert "X-CORS-Control-Signature" in receiver.requests[0]["headers"]
    receiver.statuses.append(500)
    failed = admin.post(f"/admin/webhooks/{hook.id}/test", data={"csrf_token": admin.csrf},
                        headers=HTMX).get_data(as_text=True)
    assert "Test not delivered: the receiver answered HTTP 500" in failed
    with app.app_context():
        tests = db.session.scalars(sa.select(AlertDelivery.state).where(
            AlertDelivery.kind == "test").order_by(AlertDelivery.id)).all()
    assert tests == ["delivered", "delivered", "failed"]


def test_the_webhook_page_shows_alerts_failures_retries_and_the_next_attempt(
        app, sign_in, receiver):
    receiver.statuses.append(503)
    with app.app_context():
        hook = _hook(receiver.url)
        _refusals(HOSTILE, 5, at=NOW - timedelta(minutes=3))
    _run(app)
    admin = sign_in("admin")
    for url in (f"/admin/webhooks/{hook.id}", f"/admin/webhooks/{hook.id}/deliveries"):
        html = admin.get(url, headers=HTMX).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "HTTP 503" in html and "firing" in html and "1 pending" in html
        assert (NOW + timedelta(seconds=30)).strftime("%Y-%m-%d") in html


def test_editing_keeps_the_secret_unless_it_is_removed(app, sign_in):
    with app.app_context():
        hook = _hook("https://hooks.example.com/cors", secret=SECRET)
    admin = sign_in("admin")
    response = admin.post(f"/admin/webhooks/{hook.id}", data=_form(admin, quiet_days="0"),
                          headers=HTMX)
    assert response.status_code == 200 and "Saved." in response.get_data(as_text=True)
    with app.app_context():
        saved = db.session.get(Webhook, hook.id)
        assert (saved.secret, saved.quiet_days) == (SECRET, 0)
    admin.post(f"/admin/webhooks/{hook.id}", data=_form(admin, clear_secret="1"))
    with app.app_context():
        assert db.session.get(Webhook, hook.id).secret is None


def test_delete_asks_first_on_a_page_of_its_own_then_deletes_everything(app, sign_in,
                                                                        receiver):
    with app.app_context():
        hook = _hook(receiver.url)
        _refusals("https://new.example", 5, at=NOW - timedelta(minutes=3))
    _run(app)
    admin = sign_in("admin")
    confirm = admin.get(f"/admin/webhooks/{hook.id}/delete")
    assert confirm.status_code == 200
    assert "Delete webhook ops?" in confirm.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Webhook, hook.id) is not None
    gone = admin.post(f"/admin/webhooks/{hook.id}/delete", data={"csrf_token": admin.csrf})
    assert gone.status_code == 303
    with app.app_context():
        for model in (Webhook, AlertState, AlertDelivery):
            assert db.session.scalar(sa.select(sa.func.count()).select_from(model)) == 0
    assert admin.get(f"/admin/webhooks/{hook.id}").status_code == 404


def test_state_changes_need_the_csrf_token(app, sign_in):
    with app.app_context():
        hook = _hook("https://hooks.example.com/cors")
    admin = sign_in("admin")
    assert admin.post("/admin/webhooks", data={**_form(admin), "csrf_token": ""}
                      ).status_code == 400
    assert admin.post(f"/admin/webhooks/{hook.id}/delete").status_code == 400
    with app.app_context():
        assert db.session.get(Webhook, hook.id) is not None


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_admins_see_or_change_webhooks_in_the_dashboard(app, sign_in, role):
    with app.app_context():
        hook = _hook("https://hooks.example.com/cors")
    client = sign_in(role)
    for url in ("/admin/webhooks", f"/admin/webhooks/{hook.id}",
                f"/admin/webhooks/{hook.id}/deliveries", f"/admin/webhooks/{hook.id}/delete"):
        assert client.get(url).status_code == 403
    for url in ("/admin/webhooks", f"/admin/webhooks/{hook.id}",
                f"/admin/webhooks/{hook.id}/test", f"/admin/webhooks/{hook.id}/delete"):
        assert client.post(url, data=_form(client)).status_code == 403
    assert ">Alerts</a>" not in client.get("/admin/").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Webhook, hook.id).name == "ops"


# -- the API -------------------------------------------------------------------------------


def _bearer(app, role: str) -> dict:
    from app.services.tokens import create_token

    with app.app_context():
        secret = create_token(f"{role}-bot", role, actor=ADMIN).secret
    return {"Authorization": f"Bearer {secret}"}


def test_the_api_creates_reads_changes_and_deletes_webhooks_without_showing_the_secret(
        app, client):
    headers = _bearer(app, "admin")
    created = client.post("/admin/api/v1/webhooks", headers=headers, json={
        "name": "ops", "url": "https://hooks.example.com/cors", "secret": SECRET,
        "reasons": ["origin-not-allowed"], "quiet_days": 0, "format": "slack"})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert SECRET not in created.get_data(as_text=True)
    assert (body["secret_set"], body["quiet_days"], body["format"]) == (True, 0, "slack")
    location = created.headers["Location"]
    assert client.get(location, headers=headers).get_json()["name"] == "ops"
    changed = client.patch(location, headers=headers, json={"threshold_count": 3,
                                                           "secret": None})
    assert changed.status_code == 200
    assert (changed.get_json()["threshold_count"], changed.get_json()["secret_set"],
            changed.get_json()["format"]) == (3, False, "slack")
    wrong = client.patch(location, headers=headers, json={"url": "gopher://x.example"})
    assert wrong.status_code == 422
    assert "http:// or https://" in wrong.get_data(as_text=True)
    listing = client.get("/admin/api/v1/webhooks", headers=headers).get_json()
    assert [item["name"] for item in listing["items"]] == ["ops"]
    assert client.delete(location, headers=headers).status_code == 204
    assert client.get(location, headers=headers).status_code == 404


def test_the_api_refuses_webhooks_to_roles_below_admin(app, client):
    with app.app_context():
        hook = _hook("https://hooks.example.com/cors")
    headers = _bearer(app, "editor")
    assert client.get("/admin/api/v1/webhooks", headers=headers).status_code == 403
    assert client.post("/admin/api/v1/webhooks", headers=headers, json={
        "name": "x", "url": "https://h.example/"}).status_code == 403
    assert client.delete(f"/admin/api/v1/webhooks/{hook.id}",
                         headers=headers).status_code == 403
    with app.app_context():
        assert db.session.get(Webhook, hook.id) is not None


def test_a_rule_path_with_a_nul_character_is_refused_before_it_reaches_sql(app):
    with app.app_context(), pytest.raises(ValidationError) as caught:
        alerts.create_webhook(alerts.WebhookInput(name="ops", url="https://h.example/",
                                                  rules="/api/\x00"), actor=ADMIN)
    assert "printable" in str(caught.value)
