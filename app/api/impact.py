"""``dry_run``: a write's preview, what it would take away and give, with nothing written.

Rule create, replace, change and delete and the import take ``?dry_run=true``; the change is
rehearsed through the same service call as the real one (so it is refused for the same
reasons) and answered with :class:`~app.services.impact.Impact` as JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, jsonify

from ..services.access import Actor
from ..services.changes import policy_version
from ..services.impact import Impact, rehearse
from .inputs import bool_arg


def wants_dry_run() -> bool:
    return bool_arg("dry_run")


def impact_document(impact: Impact) -> dict[str, Any]:
    return impact.as_dict()


def dry_run_response(change: Callable[[], object], actor: Actor) -> Response:
    impact = rehearse(change, actor=actor)
    return jsonify({"dry_run": True, "policy_version": policy_version(),
                    **impact_document(impact)})
