"""A rule's draft: read, create or replace, discard, publish, and its effect.

Writes go through :mod:`app.services.drafts`. ``GET /rules/{id}/draft`` sends the draft's
ETag (``"<draft id>.<version>"``: a discarded and restarted draft never matches an old tag);
``PUT``, ``DELETE`` and ``POST .../publish`` accept it in ``If-Match`` and then refuse a
stale value with 412. A draft's representation lists what publishing it would take away and
add (``changes``), so a client can show it before it publishes.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request, url_for

from ..models import Rule, RuleDraft
from ..services import drafts
from ..services.access import Actor
from ..services.errors import Conflict
from . import bp
from .auth import current_actor, require_writer
from .inputs import json_body, no_content, text_arg
from .problems import ApiProblem
from .representation import iso, rule_resource

RULE_ID = "<int:rule_id>"
READ_ONLY_DRAFT_FIELDS = ("rule_id", "rule_path", "version", "created_at", "created_by",
                          "updated_at", "updated_by", "changes")


@bp.get(f"/rules/{RULE_ID}/draft")
def draft(rule_id: int):
    rule, found = drafts.get_draft(rule_id, current_actor())
    return _draft_response(rule, found)


@bp.put(f"/rules/{RULE_ID}/draft")
def draft_replace(rule_id: int):
    """Create the draft (201) or replace it (200): fields left out take the live rule's
    values, so ``{"origins": [...]}`` drafts a tighter allowlist and nothing else."""
    actor = require_writer()
    data = json_body()
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in READ_ONLY_DRAFT_FIELDS}
    expected = _precondition(rule_id, actor)
    try:
        saved, created = drafts.save_draft(rule_id, data, actor=actor, replace=True,
                                           expected_version=expected)
    except Conflict as conflict:
        raise _stale_or(conflict, expected) from None
    response = _draft_response(saved.rule, saved, status=201 if created else 200)
    if created:
        response.headers["Location"] = url_for("api.draft", rule_id=rule_id)
    return response


@bp.delete(f"/rules/{RULE_ID}/draft")
def draft_discard(rule_id: int):
    """Discard the draft; 204 whether there was one or not (the request is idempotent)."""
    actor = require_writer()
    _precondition(rule_id, actor)
    drafts.discard_draft(rule_id, actor=actor)
    return no_content()


@bp.post(f"/rules/{RULE_ID}/draft/publish")
def draft_publish(rule_id: int):
    """Put the draft in place of the rule's options and allowlist (one policy version, one
    audit entry); answers with the rule as it now is and what the publication changed."""
    actor = require_writer()
    expected = _precondition(rule_id, actor)
    try:
        rule, changes = drafts.publish_draft(rule_id, actor=actor, expected_version=expected)
    except Conflict as conflict:
        raise _stale_or(conflict, expected) from None
    response = jsonify({"rule": rule_resource(rule, actor), "changes": changes.as_dict()})
    response.set_etag(str(rule.version))
    return response


@bp.get(f"/rules/{RULE_ID}/draft/effect")
def draft_effect(rule_id: int):
    """What the draft would have refused that the live rule allowed, over ``period``
    (``24h`` or ``7d``), grouped by origin and reason."""
    actor = current_actor()
    period = drafts.parse_period(text_arg("period"))
    rule, found = drafts.get_draft(rule_id, actor)
    return drafts.draft_effect(rule, found, period=period, actor=actor).as_dict()


def draft_resource(rule: Rule, found: RuleDraft) -> dict[str, Any]:
    return {
        "rule_id": rule.id,
        "rule_path": rule.path,
        "version": found.version,
        "created_at": iso(found.created_at),
        "created_by": found.created_by or "",
        "updated_at": iso(found.updated_at),
        "updated_by": found.updated_by or "",
        **drafts.draft_body(found),
        "changes": drafts.draft_changes(rule, found).as_dict(),
    }


def _etag(found: RuleDraft) -> str:
    return f"{found.id}.{found.version}"


def _draft_response(rule: Rule, found: RuleDraft, *, status: int = 200) -> Response:
    response = jsonify(draft_resource(rule, found))
    response.status_code = status
    response.set_etag(_etag(found))
    return response


def _precondition(rule_id: int, actor: Actor) -> int | None:
    """The draft version ``If-Match`` pins the write to; None without ``If-Match``. A tag
    of no current draft (discarded, or never started) fails with 412."""
    if "If-Match" not in request.headers:
        return None
    _rule, found = drafts.rule_with_draft(rule_id, actor)
    tags = request.if_match
    if found is not None and (tags.star_tag or tags.contains(_etag(found))):
        return found.version
    raise _stale(found)


def _stale(found: RuleDraft | None) -> ApiProblem:
    if found is None:
        return ApiProblem(412, "precondition-failed", "Precondition Failed",
                          "the rule has no draft now (it was published or discarded); GET "
                          "the rule and its draft again")
    return ApiProblem(412, "precondition-failed", "Precondition Failed",
                      f'the draft changed since you read it (its ETag is now "{_etag(found)}"'
                      "); GET it again, reapply your change and send the new ETag in "
                      "If-Match")


def _stale_or(conflict: Conflict, expected: int | None) -> Exception:
    if expected is not None and conflict.current_version is not None:
        return ApiProblem(412, "precondition-failed", "Precondition Failed", str(conflict))
    return conflict
