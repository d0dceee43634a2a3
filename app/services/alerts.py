"""Alerts about new refusals, sent to webhooks (README, "Alerts").

An admin configures webhooks: a URL, an optional secret (each message then carries an
HMAC-SHA256 signature), the rules and reasons covered, and a threshold: "an origin refused at
least N times within M minutes that was not refused in the D days before". A background job
(:mod:`app.runtime.alerts`) calls :func:`evaluate_alerts` and :func:`deliver_due`; nothing here
runs on the request path of the governed API.

The request log keeps refusals in buckets (one row per hour by default) with a count and the
first and last time seen, so the window is only as fine as a bucket:

* a row counts towards the window when its ``last_seen`` falls inside it, with its whole
  count, so the count may include refusals up to one bucket older than the window;
* "not refused in the D days before" is exact at the row's ``first_seen``: a row that began
  before the window (or any row of the D days before) means the origin was refused earlier.

Each (webhook, origin, rule) fires once and stays silent until it clears: when no refusal
of that origin on that rule falls within the window any more. A delivery is claimed with a
conditional UPDATE, so of several processes sharing the database exactly one sends it;
failures are retried with exponential backoff up to a cap, then the delivery is marked failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app

from cors_control.vocabulary import DRAFT

from ..extensions import db
from ..models import (
    WEBHOOK_FORMATS,
    AlertDelivery,
    AlertState,
    RequestLogEntry,
    Rule,
    Webhook,
)
from ..timefmt import iso_utc
from .access import Actor, require_admin
from .changes import policy_change
from .errors import Conflict, FieldError, NotFound, ValidationError
from .request_log import REASONS

logger = logging.getLogger("app.alerts")

SIGNATURE_HEADER = "X-CORS-Control-Signature"
TIMESTAMP_HEADER = "X-CORS-Control-Timestamp"
EVENT_ALERT = "cors.refusal.alert"
EVENT_TEST = "cors.webhook.test"
USER_AGENT = "CORS-Control-Alerts/1"
# How long a runner owns a delivery it claimed: longer than one send can take.
CLAIM_SECONDS = 120
MAX_WEBHOOKS_PAGE = 200
MAX_THRESHOLD = 1_000_000
MAX_WINDOW_MINUTES = 7 * 24 * 60
MAX_QUIET_DAYS = 365
MAX_FILTER_ITEMS = 100
_log = RequestLogEntry.__table__


@dataclass(frozen=True, slots=True)
class WebhookInput:
    """What an admin types for a webhook; every field is text, as a form sends it."""

    name: str = ""
    url: str = ""
    secret: str = ""  # "" keeps the current secret on an update
    clear_secret: bool = False
    enabled: bool = True
    rules: str = ""  # one rule path a line (or comma-separated); empty: every rule
    reasons: tuple[str, ...] = ()  # empty: every reason
    threshold_count: str = "5"
    window_minutes: str = "10"
    quiet_days: str = "7"
    format: str = "json"


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    status: int | None
    error: str


# -- configuration -------------------------------------------------------------------------


def list_webhooks(*, actor: Actor) -> list[Webhook]:
    require_admin(actor, to="see webhooks")
    return list(db.session.scalars(sa.select(Webhook).order_by(Webhook.name)
                                   .limit(MAX_WEBHOOKS_PAGE)))


def get_webhook(webhook_id: int, *, actor: Actor) -> Webhook:
    require_admin(actor, to="see webhooks")
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFound(f"there is no webhook {webhook_id}")
    return webhook


def describe(webhook: Webhook) -> dict[str, Any]:
    """What the audit trail records of a webhook: never the secret, and the URL without its
    path and query (a Slack URL's path is its credential)."""
    return {
        "name": webhook.name, "url": redacted_url(webhook.url), "enabled": webhook.enabled,
        "secret": "set" if webhook.secret else "not set",
        "rules": list(webhook.rules), "reasons": list(webhook.reasons),
        "threshold_count": webhook.threshold_count, "window_minutes": webhook.window_minutes,
        "quiet_days": webhook.quiet_days, "format": webhook.format,
    }


def redacted_url(url: str) -> str:
    parts = urlsplit(url)
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}" \
           f"{rest}"


def create_webhook(data: WebhookInput, *, actor: Actor) -> Webhook:
    require_admin(actor, to="configure webhooks")
    values = _validated(data, creating=True)
    with policy_change(actor, bump_version=False,
                       conflict=f"a webhook named {values['name']} already exists; "
                                "choose another name") as change:
        _refuse_taken_name(values["name"])
        webhook = Webhook(**values, created_by=actor.name)
        db.session.add(webhook)
        db.session.flush()
        change.audit("webhook.create", f"created webhook {webhook.name}",
                     after=describe(webhook))
    return webhook


def update_webhook(webhook_id: int, data: WebhookInput, *, actor: Actor) -> Webhook:
    require_admin(actor, to="configure webhooks")
    values = _validated(data, creating=False)
    with policy_change(actor, bump_version=False,
                       conflict=f"a webhook named {values['name']} already exists; "
                                "choose another name") as change:
        webhook = db.session.get(Webhook, webhook_id)
        if webhook is None:
            raise NotFound(f"there is no webhook {webhook_id}")
        before = describe(webhook)
        if values["name"] != webhook.name:
            _refuse_taken_name(values["name"])
        if "secret" not in values and data.clear_secret:
            values["secret"] = None
        for field, value in values.items():
            setattr(webhook, field, value)
        webhook.updated_at = datetime.now(UTC)
        after = describe(webhook)
        if "secret" in values and data.secret:
            after["secret"] = "changed"
        change.audit("webhook.update", f"updated webhook {webhook.name}",
                     before=before, after=after)
    return webhook


def delete_webhook(webhook_id: int, *, actor: Actor) -> str:
    require_admin(actor, to="configure webhooks")
    with policy_change(actor, bump_version=False) as change:
        webhook = db.session.get(Webhook, webhook_id)
        if webhook is None:
            raise NotFound(f"there is no webhook {webhook_id}")
        name = webhook.name
        before = describe(webhook)
        # The children go explicitly: SQLite enforces ON DELETE CASCADE only when asked to.
        db.session.execute(sa.delete(AlertDelivery).where(AlertDelivery.webhook_id == webhook.id))
        db.session.execute(sa.delete(AlertState).where(AlertState.webhook_id == webhook.id))
        db.session.delete(webhook)
        change.audit("webhook.delete", f"deleted webhook {name}", before=before)
    return name


def _refuse_taken_name(name: str) -> None:
    if db.session.scalar(sa.select(Webhook.id).where(Webhook.name == name)) is not None:
        raise Conflict(f"a webhook named {name} already exists; choose another name")


def _validated(data: WebhookInput, *, creating: bool) -> dict[str, Any]:
    errors: list[FieldError] = []
    name = data.name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        errors.append(FieldError("name", "name the webhook after where it goes, such as "
                                         "ops-slack (1 to 100 printable characters)"))
    url = data.url.strip()
    url_error = _url_problem(url)
    if url_error:
        errors.append(FieldError("url", url_error))
    secret = data.secret
    if secret and (len(secret) < 16 or len(secret) > 200 or not secret.isprintable()):
        errors.append(FieldError("secret", "use 16 to 200 printable characters (for example "
                                           "the output of `openssl rand -hex 32`), or leave "
                                           "it empty for unsigned messages"))
    rules = sorted({part.strip() for part in data.rules.replace(",", "\n").splitlines()
                    if part.strip()})
    if any(len(path) > 500 or not path.isprintable() for path in rules):
        errors.append(FieldError("rules", "a rule path is at most 500 printable characters, "
                                          "such as /api/*"))
    elif len(rules) > MAX_FILTER_ITEMS:
        errors.append(FieldError("rules", f"list at most {MAX_FILTER_ITEMS} rules, or none "
                                          "for every rule"))
    elif rules:
        known = set(db.session.scalars(sa.select(Rule.path).where(Rule.path.in_(rules))))
        unknown = [path for path in rules if path not in known]
        if unknown:
            errors.append(FieldError("rules", f"no rule has the path {', '.join(unknown)}; "
                                              "write rule paths as on the rules page, one a "
                                              "line, or leave empty for every rule"))
    reasons = sorted(set(data.reasons))
    wrong = [reason for reason in reasons if reason not in REASONS]
    if wrong:
        errors.append(FieldError("reasons", f"unknown reason {', '.join(wrong)}; choose from "
                                            f"{', '.join(REASONS)}"))
    threshold = _whole(data.threshold_count, "threshold_count", 1, MAX_THRESHOLD,
                       "refusals", errors)
    window = _whole(data.window_minutes, "window_minutes", 1, MAX_WINDOW_MINUTES,
                    "minutes", errors)
    quiet = _whole(data.quiet_days, "quiet_days", 0, MAX_QUIET_DAYS, "days", errors)
    if data.format not in WEBHOOK_FORMATS:
        errors.append(FieldError("format", f"choose {' or '.join(WEBHOOK_FORMATS)}"))
    if errors:
        raise ValidationError(errors)
    values: dict[str, Any] = {
        "name": name, "url": url, "enabled": data.enabled, "rules": rules,
        "reasons": reasons, "threshold_count": threshold, "window_minutes": window,
        "quiet_days": quiet, "format": data.format,
    }
    if secret or creating:
        values["secret"] = secret or None
    return values


def _url_problem(url: str) -> str | None:
    if not url:
        return "enter the URL the alerts are POSTed to, such as https://hooks.example.com/cors"
    if len(url) > 2000:
        return "the URL is longer than 2000 characters"
    if not url.isprintable() or any(c.isspace() for c in url):
        return "the URL may not contain spaces or control characters"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return "use an http:// or https:// URL (alerts are sent as an HTTP POST)"
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        return "the URL's port must be a number from 1 to 65535"
    if not parts.hostname:
        return "the URL needs a host, such as https://hooks.example.com/cors"
    if parts.username or parts.password:
        return "put no user name or password in the URL; use the secret to sign messages"
    return None


def _whole(text: str, field: str, low: int, high: int, unit: str,
           errors: list[FieldError]) -> int:
    raw = str(text).strip()
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        errors.append(FieldError(field, f"enter a whole number of {unit} from {low} to "
                                        f"{high}"))
        return low
    return int(raw)


# -- links and payloads --------------------------------------------------------------------


def log_group_link(origin: str, rule_path: str, reason: str) -> tuple[str, bool]:
    """The request log grouped by origin, filtered to this group (where its one-click fix
    is), and whether the link is absolute (``CORS_CONTROL_PUBLIC_URL`` is set)."""
    adapter = current_app.url_map.bind("localhost", script_name="/")
    path = adapter.build("admin.request_log", {
        "group": "origin", "origin": origin, "rule": rule_path, "reason": reason})
    base = (current_app.config.get("CORS_CONTROL_PUBLIC_URL") or "").rstrip("/")
    return (base + path, True) if base else (path, False)


def alert_payload(webhook: Webhook, *, origin: str, rule_path: str,
                  reasons: list[tuple[str, int]], count: int, first_seen: datetime,
                  last_seen: datetime, fired_at: datetime,
                  event: str = EVENT_ALERT) -> dict[str, Any]:
    top_reason = reasons[0][0] if reasons else ""
    link, absolute = log_group_link(origin, rule_path, top_reason)
    payload: dict[str, Any] = {
        "event": event,
        "webhook": webhook.name,
        "origin": origin,
        "rule": rule_path,
        "reason": top_reason,
        "count": count,
        "reasons": [{"reason": reason, "count": n,
                     "link": log_group_link(origin, rule_path, reason)[0]}
                    for reason, n in reasons],
        "threshold": {"count": webhook.threshold_count,
                      "window_minutes": webhook.window_minutes,
                      "quiet_days": webhook.quiet_days},
        "first_seen": iso_utc(first_seen),
        "last_seen": iso_utc(last_seen),
        "fired_at": iso_utc(fired_at),
        "link": link,
        "fix": "Open the link: the request log group offers the fix for this refusal "
               "(allow the origin, or the rule's edit form filled in).",
    }
    if not absolute:
        payload["link_note"] = ("relative link: set CORS_CONTROL_PUBLIC_URL to the "
                                "dashboard's address for an absolute one")
    return payload


def sample_payload(webhook: Webhook) -> dict[str, Any]:
    now = datetime.now(UTC)
    payload = alert_payload(
        webhook, origin="https://test.example", rule_path="/api/example",
        reasons=[("origin-not-allowed", webhook.threshold_count)],
        count=webhook.threshold_count, first_seen=now, last_seen=now, fired_at=now,
        event=EVENT_TEST)
    payload["test"] = True
    return payload


def _slack_escape(text: object) -> str:
    # Slack's mrkdwn treats &, < and > as control characters (links, mentions).
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(payload: dict[str, Any]) -> str:
    e = _slack_escape
    reasons = ", ".join(f"{e(r['reason'])} ×{r['count']}" for r in payload["reasons"])
    threshold = payload["threshold"]
    head = "Test from CORS Control" if payload.get("test") else "New CORS refusals"
    quiet = (f", not refused in the {threshold['quiet_days']} days before"
             if threshold["quiet_days"] else "")
    link = payload["link"]
    link_text = f"<{e(link)}|Open the log group and fix>" if link.startswith("http") \
        else f"Log group: {e(link)}"
    return (f"*{head}*: origin `{e(payload['origin'])}` refused {payload['count']} times on "
            f"rule `{e(payload['rule'] or '(no rule)')}` ({reasons}) within "
            f"{threshold['window_minutes']} min{quiet}.\n{link_text}")


def encode_body(webhook: Webhook, payload: dict[str, Any]) -> str:
    if webhook.format == "slack":
        return json.dumps({"text": slack_text(payload)}, ensure_ascii=False)
    return json.dumps(payload, ensure_ascii=False, sort_keys=True)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>`` with the webhook's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# -- sending -------------------------------------------------------------------------------


def send(url: str, body: str, *, secret: str | None, timeout: float) -> SendResult:
    """POST *body* to *url*; any 2xx is delivered. Never raises for the receiver's faults."""
    data = body.encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if secret:
        timestamp = int(time.time())
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, data)
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  # http(s) only, validated
            status = response.status
    except urllib.error.HTTPError as error:
        return SendResult(False, error.code, f"the receiver answered HTTP {error.code}")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return SendResult(False, None, f"could not reach the receiver: "
                                       f"{type(reason).__name__}: {reason}"[:500])
    if 200 <= status < 300:
        return SendResult(True, status, "")
    return SendResult(False, status, f"the receiver answered HTTP {status}")


def send_test(webhook_id: int, *, actor: Actor) -> tuple[AlertDelivery, SendResult]:
    """Send a test message now (the dashboard's "send a test"), recorded as a delivery that is
    not retried."""
    require_admin(actor, to="test webhooks")
    webhook = get_webhook(webhook_id, actor=actor)
    body = encode_body(webhook, sample_payload(webhook))
    result = send(webhook.url, body, secret=webhook.secret, timeout=_timeout())
    now = datetime.now(UTC)
    delivery = AlertDelivery(
        webhook_id=webhook.id, kind="test", payload=body, attempts=1,
        state="delivered" if result.ok else "failed", last_status=result.status,
        last_error=result.error, delivered_at=now if result.ok else None, created_at=now)
    db.session.add(delivery)
    db.session.commit()
    _log_result(webhook, delivery, result)
    return delivery, result


def _timeout() -> float:
    return float(current_app.config.get("ALERTS_HTTP_TIMEOUT", 5.0))


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff after *attempts* failed sends: base, 2×base, 4×base… up to the cap."""
    base = float(current_app.config.get("ALERTS_RETRY_BASE_SECONDS", 30.0))
    cap = float(current_app.config.get("ALERTS_RETRY_CAP_SECONDS", 3600.0))
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


def deliver_due(*, now: datetime | None = None, limit: int = 50) -> int:
    """Send the pending deliveries that are due; returns how many this runner sent
    (successfully or not). Each is claimed first, so no two runners send the same one."""
    now = now or datetime.now(UTC)
    due = list(db.session.scalars(
        sa.select(AlertDelivery.id)
        .join(Webhook, Webhook.id == AlertDelivery.webhook_id)
        .where(Webhook.enabled.is_(True))  # a disabled webhook's messages wait
        .where(AlertDelivery.state == "pending", AlertDelivery.next_attempt_at <= now,
               sa.or_(AlertDelivery.claimed_until.is_(None),
                      AlertDelivery.claimed_until < now))
        .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id).limit(limit)))
    db.session.rollback()  # end the read: no transaction stays open while sending
    sent = 0
    for delivery_id in due:
        if _deliver_one(delivery_id, now):
            sent += 1
    return sent


def _claim(delivery_id: int, now: datetime) -> str | None:
    token = secrets.token_hex(16)
    claimed = db.session.execute(
        sa.update(AlertDelivery)
        .where(AlertDelivery.id == delivery_id, AlertDelivery.state == "pending",
               AlertDelivery.next_attempt_at <= now,
               sa.or_(AlertDelivery.claimed_until.is_(None),
                      AlertDelivery.claimed_until < now))
        .values(claim=token, claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
        .execution_options(synchronize_session=False))
    db.session.commit()
    return token if claimed.rowcount == 1 else None  # type: ignore[attr-defined]  # a CursorResult


def _deliver_one(delivery_id: int, now: datetime) -> bool:
    token = _claim(delivery_id, now)
    if token is None:
        return False  # another runner has it
    delivery = db.session.get(AlertDelivery, delivery_id)
    webhook = db.session.get(Webhook, delivery.webhook_id) if delivery else None
    if delivery is None or webhook is None:
        db.session.rollback()
        return False
    url, secret, body = webhook.url, webhook.secret, delivery.payload
    db.session.rollback()  # no transaction held across the HTTP call
    result = send(url, body, secret=secret, timeout=_timeout())
    delivery = db.session.get(AlertDelivery, delivery_id)
    if delivery is None or delivery.claim != token:
        db.session.rollback()
        return True
    delivery.attempts += 1
    delivery.last_status = result.status
    delivery.last_error = result.error
    delivery.claimed_until = None
    delivery.claim = ""
    finished = datetime.now(UTC)
    if result.ok:
        delivery.state = "delivered"
        delivery.delivered_at = finished
        delivery.next_attempt_at = None
    elif delivery.attempts >= int(current_app.config.get("ALERTS_MAX_ATTEMPTS", 8)):
        delivery.state = "failed"
        delivery.next_attempt_at = None
    else:
        delivery.next_attempt_at = max(now, finished) + retry_delay(delivery.attempts)
    db.session.commit()
    _log_result(webhook, delivery, result)
    return True


def _log_result(webhook: Webhook, delivery: AlertDelivery, result: SendResult) -> None:
    # Never the URL's path or query, never the secret: the host is enough to find it.
    where = f"webhook {webhook.id} ({redacted_url(webhook.url)})"
    if result.ok:
        logger.info("alert delivery %s to %s: delivered (HTTP %s)", delivery.id, where,
                    result.status)
    elif delivery.state == "failed":
        logger.warning("alert delivery %s to %s failed for good after %s attempts: %s",
                       delivery.id, where, delivery.attempts, result.error)
    else:
        logger.warning("alert delivery %s to %s failed (attempt %s), next attempt at %s: %s",
                       delivery.id, where, delivery.attempts,
                       iso_utc(delivery.next_attempt_at) if delivery.next_attempt_at else "-",
                       result.error)


# -- computing alerts ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evaluation:
    fired: int = 0
    cleared: int = 0


def evaluate_alerts(*, now: datetime | None = None) -> Evaluation:
    """Fire and clear alerts for every enabled webhook, from the request log."""
    now = now or datetime.now(UTC)
    fired = cleared = 0
    webhooks = list(db.session.scalars(sa.select(Webhook).where(Webhook.enabled.is_(True))
                                       .order_by(Webhook.id)))
    for webhook in webhooks:
        result = _evaluate(webhook, now)
        fired += result.fired
        cleared += result.cleared
    db.session.rollback()
    return Evaluation(fired, cleared)


def _covered(webhook: Webhook, table: Any) -> list[sa.ColumnElement[bool]]:
    # A draft's rows are requests the live rule allowed: nobody was refused.
    conditions: list[sa.ColumnElement[bool]] = [table.c.origin != "", table.c.mode != DRAFT]
    if webhook.rules:
        conditions.append(table.c.rule_path.in_(list(webhook.rules)))
    if webhook.reasons:
        conditions.append(table.c.reason.in_(list(webhook.reasons)))
    return conditions


def _evaluate(webhook: Webhook, now: datetime) -> Evaluation:
    window_start = now - timedelta(minutes=webhook.window_minutes)
    recent = sa.and_(*_covered(webhook, _log), _log.c.last_seen >= window_start,
                     _log.c.first_seen <= now)
    candidates = (
        sa.select(_log.c.origin, _log.c.rule_path, sa.func.sum(_log.c.count).label("total"),
                  sa.func.min(_log.c.first_seen).label("first_seen"),
                  sa.func.max(_log.c.last_seen).label("last_seen"))
        .where(recent)
        .group_by(_log.c.origin, _log.c.rule_path)
        .having(sa.func.sum(_log.c.count) >= webhook.threshold_count)
    )
    if webhook.quiet_days:
        earlier = _log.alias("earlier")
        quiet_start = window_start - timedelta(days=webhook.quiet_days)
        candidates = candidates.where(~sa.exists().where(
            *_covered(webhook, earlier),
            earlier.c.origin == _log.c.origin, earlier.c.rule_path == _log.c.rule_path,
            earlier.c.first_seen < window_start, earlier.c.last_seen >= quiet_start))
    rows = db.session.execute(candidates).all()
    active = {(state.origin, state.rule_path): state for state in db.session.scalars(
        sa.select(AlertState).where(AlertState.webhook_id == webhook.id,
                                    AlertState.cleared_at.is_(None)))}
    cleared = _clear(webhook, active, recent, now)
    fired = 0
    for row in rows:
        if (row.origin, row.rule_path) in active:
            continue
        if _fire(webhook, row, recent, now):
            fired += 1
    return Evaluation(fired, cleared)


def _clear(webhook: Webhook, active: dict[tuple[str, str], AlertState],
           recent: sa.ColumnElement[bool], now: datetime) -> int:
    if not active:
        return 0
    still = {(origin, rule_path) for origin, rule_path in db.session.execute(
        sa.select(_log.c.origin, _log.c.rule_path).where(recent).distinct())}
    cleared = 0
    for key, state in list(active.items()):
        if key in still:
            continue
        done = db.session.execute(
            sa.update(AlertState).where(AlertState.id == state.id,
                                        AlertState.cleared_at.is_(None))
            .values(cleared_at=now).execution_options(synchronize_session=False))
        db.session.commit()
        del active[key]
        cleared += done.rowcount  # type: ignore[attr-defined]  # a CursorResult
    return cleared


def _fire(webhook: Webhook, row: sa.Row, recent: sa.ColumnElement[bool],
          now: datetime) -> bool:
    """Record the alert and its delivery in one transaction, unless another runner did."""
    reasons = [(reason, int(total)) for reason, total in db.session.execute(
        sa.select(_log.c.reason, sa.func.sum(_log.c.count))
        .where(recent, _log.c.origin == row.origin, _log.c.rule_path == row.rule_path)
        .group_by(_log.c.reason).order_by(sa.func.sum(_log.c.count).desc(), _log.c.reason))]
    payload = alert_payload(webhook, origin=row.origin, rule_path=row.rule_path,
                            reasons=reasons, count=int(row.total), first_seen=row.first_seen,
                            last_seen=row.last_seen, fired_at=now)
    try:
        state = db.session.scalar(sa.select(AlertState).where(
            AlertState.webhook_id == webhook.id, AlertState.origin == row.origin,
            AlertState.rule_path == row.rule_path))
        if state is None:
            db.session.add(AlertState(webhook_id=webhook.id, origin=row.origin,
                                      rule_path=row.rule_path, fired_at=now,
                                      count=int(row.total)))
        else:
            # Fire again only if it is still cleared: a concurrent runner may have fired it.
            again = db.session.execute(
                sa.update(AlertState).where(AlertState.id == state.id,
                                            AlertState.cleared_at.is_not(None))
                .values(fired_at=now, cleared_at=None, count=int(row.total))
                .execution_options(synchronize_session=False))
            if again.rowcount != 1:  # type: ignore[attr-defined]  # a CursorResult
                db.session.rollback()
                return False
        db.session.add(AlertDelivery(
            webhook_id=webhook.id, kind="alert", origin=row.origin, rule_path=row.rule_path,
            payload=encode_body(webhook, payload), next_attempt_at=now, created_at=now))
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()  # another runner recorded this alert first
        return False
    logger.info("alert fired: webhook %s, rule %r, %s refusals", webhook.id, row.rule_path,
                int(row.total))
    return True


# -- the webhook's page --------------------------------------------------------------------


def recent_deliveries(webhook_id: int, *, actor: Actor, limit: int = 50) -> list[AlertDelivery]:
    require_admin(actor, to="see webhooks")
    return list(db.session.scalars(
        sa.select(AlertDelivery).where(AlertDelivery.webhook_id == webhook_id)
        .order_by(AlertDelivery.created_at.desc(), AlertDelivery.id.desc()).limit(limit)))


def alert_states(webhook_id: int, *, actor: Actor, limit: int = 50) -> list[AlertState]:
    require_admin(actor, to="see webhooks")
    return list(db.session.scalars(
        sa.select(AlertState).where(AlertState.webhook_id == webhook_id)
        .order_by(AlertState.cleared_at.is_not(None), AlertState.fired_at.desc())
        .limit(limit)))


def delivery_summary(webhook_id: int) -> dict[str, int]:
    """How many deliveries of the webhook are pending, delivered and failed."""
    counts = {state: count for state, count in db.session.execute(
        sa.select(AlertDelivery.state, sa.func.count()).where(
            AlertDelivery.webhook_id == webhook_id).group_by(AlertDelivery.state))}
    return {state: int(counts.get(state, 0)) for state in ("pending", "delivered", "failed")}
