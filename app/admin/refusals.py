"""What the simulator and the request log offer about a refusal: a link to the rule that
decided, and one click to allow the refused origin on it (the rule of what may be allowed,
and the write, are :mod:`app.services.simulator`'s)."""

from __future__ import annotations

from flask import current_app, url_for

from cors_control import get_control

from ..services.errors import NotFound, ValidationError
from ..services.simulator import allow_refused_origin
from .access import current_actor


def allow_on_rule(rule_id: int, origin: str, *, tenant: str | None = None) -> tuple[str, str]:
    """Allow *origin* on a rule (for *tenant*, on a rule with an allowlist per tenant) as the
    signed-in user, and serve the change in this process at once.
    Returns (message, flash category)."""
    try:
        message = allow_refused_origin(rule_id, origin, actor=current_actor(), tenant=tenant)
    except (NotFound, ValidationError) as error:
        return f"{origin} was not allowed: {error}.", "error"
    # Other processes follow within the refresh interval; this one answers the next
    # simulation (or request) with the change.
    get_control(current_app).cache.refresh()
    return message, ""


def rule_link(rule_id: int | None) -> str | None:
    """The rule's page, when the rules area provides one."""
    if rule_id is None or "admin.rule" not in current_app.view_functions:
        return None
    return url_for("admin.rule", rule_id=rule_id)
