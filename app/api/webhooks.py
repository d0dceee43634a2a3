"""Webhooks for alerts (admins only, as in the dashboard): list, create, read, change, delete.

A webhook's secret is write-only: it is sent in ``secret`` (``null`` removes it, leaving it
out keeps it) and read back only as ``secret_set``.
"""

from __future__ import annotations

from typing import Any

from flask import url_for

from ..models import Webhook
from ..services import alerts
from ..services.errors import FieldError, ValidationError
from ..timefmt import iso_utc
from . import bp
from .auth import current_actor
from .inputs import PageRequest, json_body, no_content, page_of_rows

FIELDS = ("name", "url", "secret", "enabled", "rules", "reasons", "threshold_count",
          "window_minutes", "quiet_days", "format")
WEBHOOK_ID = "<int:webhook_id>"


@bp.get("/webhooks")
def webhooks():
    paging = PageRequest.from_args()
    every = alerts.list_webhooks(actor=current_actor())
    start = (paging.page - 1) * paging.per_page
    return page_of_rows(every[start:start + paging.per_page], len(every), paging,
                        webhook_resource)


@bp.post("/webhooks")
def webhook_create():
    body = _object(json_body())
    for required in ("name", "url"):
        if required not in body:
            raise ValidationError([FieldError(required, f"send the webhook's {required}")])
    webhook = alerts.create_webhook(_input(body, None), actor=current_actor())
    return webhook_resource(webhook), 201, {
        "Location": url_for("api.webhook", webhook_id=webhook.id)}


@bp.get(f"/webhooks/{WEBHOOK_ID}")
def webhook(webhook_id: int):
    return webhook_resource(alerts.get_webhook(webhook_id, actor=current_actor()))


@bp.patch(f"/webhooks/{WEBHOOK_ID}")
def webhook_update(webhook_id: int):
    """Change the fields sent; the others keep their values."""
    actor = current_actor()
    body = _object(json_body())
    current = alerts.get_webhook(webhook_id, actor=actor)
    return webhook_resource(alerts.update_webhook(webhook_id, _input(body, current),
                                                  actor=actor))


@bp.delete(f"/webhooks/{WEBHOOK_ID}")
def webhook_delete(webhook_id: int):
    alerts.delete_webhook(webhook_id, actor=current_actor())
    return no_content()


def webhook_resource(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": webhook.id, "name": webhook.name, "url": webhook.url,
        "secret_set": webhook.secret is not None, "enabled": webhook.enabled,
        "rules": list(webhook.rules), "reasons": list(webhook.reasons),
        "threshold_count": webhook.threshold_count, "window_minutes": webhook.window_minutes,
        "quiet_days": webhook.quiet_days, "format": webhook.format,
        "created_by": webhook.created_by, "created_at": iso_utc(webhook.created_at),
        "updated_at": iso_utc(webhook.updated_at),
        "deliveries": alerts.delivery_summary(webhook.id),
    }


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError([FieldError("", "a webhook is a JSON object")])
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ValidationError([FieldError(unknown[0], f"unknown field; send {', '.join(FIELDS)}")])
    return body


def _input(body: dict[str, Any], current: Webhook | None) -> alerts.WebhookInput:
    """The service's input from the JSON fields, each of its type; *current* fills the rest."""
    errors: list[FieldError] = []

    def text(name: str, default: str) -> str:
        value = body.get(name, default)
        if not isinstance(value, str):
            errors.append(FieldError(name, f"{name} is text"))
            return default
        return value

    def strings(name: str, default: list[str]) -> list[str]:
        value = body.get(name, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            errors.append(FieldError(name, f'{name} is a list of text, such as ["/api/*"]'))
            return default
        return value

    def number(name: str, default: int) -> str:
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(FieldError(name, f"{name} is a whole number"))
            return str(default)
        return str(value)

    enabled = body.get("enabled", current.enabled if current else True)
    if not isinstance(enabled, bool):
        errors.append(FieldError("enabled", "enabled is true or false"))
    secret = body.get("secret", "")
    if secret is not None and not isinstance(secret, str):
        errors.append(FieldError("secret", "secret is text, or null to remove it"))
    rules = strings("rules", list(current.rules) if current else [])
    if any("," in path or "\n" in path for path in rules):
        errors.append(FieldError("rules", "a rule path has no comma or line break"))
    data = alerts.WebhookInput(
        name=text("name", current.name if current else ""),
        url=text("url", current.url if current else ""),
        secret=secret if isinstance(secret, str) else "",
        clear_secret=secret is None,
        enabled=enabled is True,
        rules="\n".join(rules),
        reasons=tuple(strings("reasons", list(current.reasons) if current else [])),
        threshold_count=number("threshold_count", current.threshold_count if current else 5),
        window_minutes=number("window_minutes", current.window_minutes if current else 10),
        quiet_days=number("quiet_days", current.quiet_days if current else 7),
        format=text("format", current.format if current else "json"),
    )
    if errors:
        raise ValidationError(errors)
    return data
