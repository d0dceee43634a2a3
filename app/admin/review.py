"""Previews on the dashboard: what creating or editing a rule, or deleting it, takes away.

The rule forms carry a panel that htmx refreshes as the form changes (``/rules/preview``,
``/rules/<id>/preview``); without JavaScript the same panel appears when the form is saved.
A change that takes something away is saved only with the panel's confirmation ticked, and a
confirmation names the losses it was given for (:attr:`Impact.fingerprint`), so a form
changed after confirming asks again. A new narrower rule can carry over the origins of the
broader rule it takes routes from (the ``copy_origins`` checkbox).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import request

from ..services import policy
from ..services.impact import CopyOffer, Impact, rehearse
from .access import current_actor


@dataclass
class Review:
    """The preview of a form's change: its impact, the copy offers (of the change as typed,
    before any copy), which one was chosen, and whether saving may go ahead."""

    impact: Impact
    data: dict[str, Any]
    offers: tuple[CopyOffer, ...] = ()
    copy_chosen: int | None = None
    confirmed: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def blocks(self) -> bool:
        """Whether saving must wait for a confirmation."""
        return self.impact.takes_away and not self.confirmed


def review(data: dict[str, Any], change: Callable[[dict[str, Any]], object], *,
           copies: bool = True) -> Review:
    """Rehearse ``change(data)``, with the chosen copy offer applied (*copies*: a new rule,
    whose origins are all in *data*); raises what the change would raise (validation
    errors, conflicts)."""
    actor = current_actor()
    impact = rehearse(lambda: change(data), actor=actor)
    offers = impact.offers if copies else ()
    chosen = request.form.get("copy_origins", type=int)
    offer = next((o for o in offers if o.rule.rule_id == chosen), None)
    if offer is not None:
        typed = [o for o in data.get("origins", []) if o not in offer.origins]
        data = {**data, "origins": [*typed, *offer.origins]}
        impact = rehearse(lambda: change(data), actor=actor)
    confirmed = request.form.get("confirm_impact") == impact.fingerprint
    return Review(impact, data, offers, offer.rule.rule_id if offer else None, confirmed)


def create_change(data: dict[str, Any]) -> object:
    return policy.create_rule(data, actor=current_actor())


def update_change(rule_id: int, expected: int | None) -> Callable[[dict[str, Any]], object]:
    return lambda data: policy.update_rule(rule_id, data, actor=current_actor(),
                                           expected_version=expected)
