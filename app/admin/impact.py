"""The preview routes: the rule forms' panel, refreshed by htmx as the form changes, and the
page that shows what deleting a rule takes away before the confirmed delete."""

from __future__ import annotations

from collections.abc import Callable

from flask import abort, request

from ..services import access, policy, policy_read, rules_query
from ..services.errors import Conflict, ValidationError
from ..services.impact import Impact, rehearse
from . import bp
from .access import current_actor, requires
from .rendering import render
from .review import Review, create_change, review, update_change
from .rules import form_data


@bp.post("/rules/preview")
@requires("editor")
def rule_create_preview():
    """The create form's preview panel, refreshed as the form changes."""
    return _panel(lambda: review(form_data(), create_change), None)


@bp.post("/rules/<int:rule_id>/preview")
@requires("editor")
def rule_update_preview(rule_id: int):
    expected = request.form.get("version", type=int)
    return _panel(lambda: review(form_data(), update_change(rule_id, expected),
                                      copies=False), rule_id)


def _panel(build: Callable[[], Review], rule_id: int | None):
    try:
        preview = build()
    except ValidationError as error:
        preview = Review(Impact(), {}, errors=[str(e) for e in error.errors])
    except Conflict as conflict:
        preview = Review(Impact(), {}, errors=[str(conflict)])
    return render("admin/_impact.html", review=preview, preview_rule_id=rule_id,
                  preview_live=True)


@bp.get("/rules/<int:rule_id>/delete")
@requires("editor")
def rule_delete_review(rule_id: int):
    """What deleting the rule takes away, before the confirmed delete."""
    actor = current_actor()
    rule = policy_read.get_rule(rule_id, actor)
    if not access.can_change_options(actor, rule):
        abort(403)
    impact = rehearse(lambda: policy.delete_rule(rule_id, actor=actor), actor=actor)
    return render("admin/rule_delete.html", "admin/_delete_impact.html", rule=rule,
                  impact=impact, origin_total=rules_query.origin_counts([rule.id])[rule.id])
