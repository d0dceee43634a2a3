"""Alerts: admins configure the webhooks that hear about new refusals, send a test, and see
each webhook's alerts and deliveries (:mod:`app.services.alerts`).

A webhook's secret is never shown again after it is saved: the pages say "set" or "not set",
and an empty secret field on the edit form keeps the current one.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from ..models import WEBHOOK_FORMATS, Webhook
from ..services import alerts
from ..services.errors import Conflict, ServiceError, ValidationError
from ..services.request_log import REASONS
from . import bp
from .access import current_actor, requires_platform
from .rendering import is_htmx, render

NEW_FORM = {"name": "", "url": "", "rules": "", "reasons": [], "threshold_count": "5",
            "window_minutes": "10", "quiet_days": "7", "format": "json", "enabled": True}


@bp.get("/webhooks")
@requires_platform("admin")
def webhooks():
    return render("admin/webhooks.html", "admin/_webhooks.html", **_list_context())


@bp.post("/webhooks")
@requires_platform("admin")
def webhook_create():
    data = _input()
    try:
        webhook = alerts.create_webhook(data, actor=current_actor())
    except (ValidationError, Conflict) as error:
        return render("admin/webhooks.html", "admin/_webhooks.html",
                      status=200 if is_htmx() else 422,
                      **_list_context(form=_form_of(data), error=error))
    flash(f"Created webhook {webhook.name}. Send a test to check that it arrives.")
    return _navigate(url_for("admin.webhook", webhook_id=webhook.id))


@bp.get("/webhooks/<int:webhook_id>")
@requires_platform("admin")
def webhook(webhook_id: int):
    return render("admin/webhook.html", "admin/_webhook.html", **_page_context(webhook_id))


@bp.post("/webhooks/<int:webhook_id>")
@requires_platform("admin")
def webhook_update(webhook_id: int):
    data = _input()
    try:
        alerts.update_webhook(webhook_id, data, actor=current_actor())
    except (ValidationError, Conflict) as error:
        return render("admin/webhook.html", "admin/_webhook.html",
                      status=200 if is_htmx() else 422,
                      **_page_context(webhook_id, form=_form_of(data), error=error))
    return render("admin/webhook.html", "admin/_webhook.html",
                  **_page_context(webhook_id, notice="Saved."))


@bp.get("/webhooks/<int:webhook_id>/deliveries")
@requires_platform("admin")
def webhook_deliveries(webhook_id: int):
    """The deliveries and alerts alone (the page refreshes them while it is open)."""
    return render("admin/webhook.html", "admin/_webhook_activity.html",
                  **_page_context(webhook_id))


@bp.post("/webhooks/<int:webhook_id>/test")
@requires_platform("admin")
def webhook_test(webhook_id: int):
    delivery, result = alerts.send_test(webhook_id, actor=current_actor())
    return render("admin/webhook.html", "admin/_webhook.html",
                  **_page_context(webhook_id, test=result))


@bp.get("/webhooks/<int:webhook_id>/delete")
@requires_platform("admin")
def webhook_delete_confirm(webhook_id: int):
    """The confirmation step, a page of its own so that it works without JavaScript."""
    webhook = alerts.get_webhook(webhook_id, actor=current_actor())
    return render("admin/webhook_delete.html", webhook=webhook)


@bp.post("/webhooks/<int:webhook_id>/delete")
@requires_platform("admin")
def webhook_delete(webhook_id: int):
    name = alerts.delete_webhook(webhook_id, actor=current_actor())
    flash(f"Deleted webhook {name}, its alerts and its deliveries.")
    return _navigate(url_for("admin.webhooks"))


def _navigate(url: str) -> Response:
    if is_htmx():
        response = Response(status=204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)


def _input() -> alerts.WebhookInput:
    form = request.form
    return alerts.WebhookInput(
        name=form.get("name", ""), url=form.get("url", ""), secret=form.get("secret", ""),
        clear_secret=form.get("clear_secret") == "1", enabled=form.get("enabled") == "1",
        rules=form.get("rules", ""), reasons=tuple(form.getlist("reasons")),
        threshold_count=form.get("threshold_count", ""),
        window_minutes=form.get("window_minutes", ""), quiet_days=form.get("quiet_days", ""),
        format=form.get("format", ""))


def _form_of(data: alerts.WebhookInput) -> dict[str, Any]:
    """What was typed, to show again beside its errors (never the secret)."""
    return {"name": data.name, "url": data.url, "rules": data.rules,
            "reasons": list(data.reasons), "threshold_count": data.threshold_count,
            "window_minutes": data.window_minutes, "quiet_days": data.quiet_days,
            "format": data.format, "enabled": data.enabled}


def _form_of_webhook(webhook: Webhook) -> dict[str, Any]:
    return {"name": webhook.name, "url": webhook.url, "rules": "\n".join(webhook.rules),
            "reasons": list(webhook.reasons), "threshold_count": str(webhook.threshold_count),
            "window_minutes": str(webhook.window_minutes),
            "quiet_days": str(webhook.quiet_days), "format": webhook.format,
            "enabled": webhook.enabled}


def _errors(error: ServiceError | None) -> dict[str, Any]:
    return {
        "field_errors": error.by_field() if isinstance(error, ValidationError) else {},
        "form_error": str(error) if isinstance(error, Conflict) else None,
    }


def _list_context(*, form: dict[str, Any] | None = None,
                  error: ServiceError | None = None) -> dict[str, Any]:
    actor = current_actor()
    hooks = alerts.list_webhooks(actor=actor)
    return {
        "webhooks": [(hook, alerts.delivery_summary(hook.id)) for hook in hooks],
        "form": form or dict(NEW_FORM), "reasons": REASONS, "formats": WEBHOOK_FORMATS,
        "redacted_url": alerts.redacted_url, **_errors(error),
    }


def _page_context(webhook_id: int, *, form: dict[str, Any] | None = None,
                  error: ServiceError | None = None, notice: str | None = None,
                  test: alerts.SendResult | None = None) -> dict[str, Any]:
    actor = current_actor()
    webhook = alerts.get_webhook(webhook_id, actor=actor)
    return {
        "webhook": webhook,
        "form": form or _form_of_webhook(webhook),
        "reasons": REASONS, "formats": WEBHOOK_FORMATS,
        "deliveries": alerts.recent_deliveries(webhook_id, actor=actor),
        "states": alerts.alert_states(webhook_id, actor=actor),
        "summary": alerts.delivery_summary(webhook_id),
        "notice": notice, "test": test, "redacted_url": alerts.redacted_url,
        **_errors(error),
    }
