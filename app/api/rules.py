"""Rules and their allowlists: list, read, create, replace, change, delete; one origin at a time.

Writes go through :mod:`app.services.policy`. ``GET /rules/{id}`` sends the rule's version as
a strong ETag. ``PUT`` replaces the whole rule (its allowlist included) and so requires
``If-Match`` (428 without); ``PATCH`` and ``DELETE`` accept it and then refuse a stale value
with 412, and without it apply to whatever is stored (last writer wins).
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, url_for
from sqlalchemy.orm.attributes import set_committed_value

from cors_control.origins import OriginError, parse_origin
from cors_control.snapshot import DEFAULT_METHODS
from cors_control.vocabulary import ENFORCE, MODES

from ..models import Rule
from ..services import policy
from ..services.access import Actor
from ..services.errors import Conflict, FieldError, ValidationError
from ..services.origin_find import find_origin
from ..services.policy_read import get_rule, origin_page
from ..services.rules_query import RuleFilter, search_rules
from . import bp
from .auth import current_actor, require_writer
from .impact import dry_run_response, wants_dry_run
from .inputs import (
    PageRequest,
    if_match_version,
    json_body,
    no_content,
    page_of,
    page_of_rows,
    stale,
    text_arg,
)
from .problems import ApiProblem
from .representation import (
    READ_ONLY_RULE_FIELDS,
    origin_resource,
    rule_resource,
    rule_summary,
)

RULE_ID = "<int:rule_id>"
# What PUT gives the fields a replacement leaves out: the defaults of a new rule.
RULE_DEFAULTS: dict[str, Any] = {
    "origins": [], "methods": list(DEFAULT_METHODS), "allow_headers": ["*"],
    "expose_headers": [], "supports_credentials": False, "max_age": None,
    "allow_private_network": False, "mode": ENFORCE, "description": "", "tenant": None,
    "tenant_selector": None,
}


# -- the list ------------------------------------------------------------------------------


@bp.get("/rules")
def rules():
    origin = text_arg("origin")
    if origin is not None:
        # Where is this origin allowed: every entry that lets it through, on every rule.
        found, grants = find_origin(origin, actor=current_actor())
        return {"origin": found, "items": [grant.as_dict() for grant in grants],
                "total": len(grants)}
    paging = PageRequest.from_args()
    listing = search_rules(_rule_filter(), page=paging.page, per_page=paging.per_page,
                           max_per_page=paging.per_page, actor=current_actor())
    for listed in listing.rules:
        # A list shows how many origins each rule has, never the origins themselves (a rule
        # may have thousands): this read-only request never loads them.
        set_committed_value(listed, "origins", [])
    return page_of(listing.pagination,
                   lambda rule: rule_summary(rule, listing.origin_counts[rule.id]))


def _rule_filter() -> RuleFilter:
    """``q`` (text in the path or the description), ``mode`` and ``tenant`` (the owner's
    slug); an unknown mode is refused, where the dashboard's filter form ignores it."""
    mode = text_arg("mode")
    if mode is not None and mode not in MODES:
        raise ValidationError([FieldError("mode", f"mode must be one of {', '.join(MODES)}")])
    return RuleFilter(text=(text_arg("q") or "").strip(), mode=mode, tenant=text_arg("tenant"))


@bp.post("/rules")
def rule_create():
    actor = require_writer()
    if wants_dry_run():
        data = _rule_input(json_body())
        return dry_run_response(lambda: policy.create_rule(data, actor=actor), actor)
    rule = policy.create_rule(_rule_input(json_body()), actor=actor)
    response = _rule_response(rule, status=201)
    response.headers["Location"] = url_for("api.rule", rule_id=rule.id)
    return response


# -- one rule ------------------------------------------------------------------------------


@bp.get(f"/rules/{RULE_ID}")
def rule(rule_id: int):
    return _rule_response(get_rule(rule_id, current_actor()))


@bp.put(f"/rules/{RULE_ID}")
def rule_replace(rule_id: int):
    """Replace every field: the ones left out take the defaults of a new rule."""
    actor = require_writer()
    data = _rule_input(json_body())
    expected = _precondition(rule_id, required=True)
    replacement = {**RULE_DEFAULTS, **data} if isinstance(data, dict) else data
    if wants_dry_run():
        return dry_run_response(lambda: _update(rule_id, replacement, actor, expected), actor)
    return _rule_response(_update(rule_id, replacement, actor, expected))


@bp.patch(f"/rules/{RULE_ID}")
def rule_update(rule_id: int):
    """Change the fields present in the body; the others keep their values."""
    actor = require_writer()
    data = _rule_input(json_body())
    expected = _precondition(rule_id, required=False)
    if wants_dry_run():
        return dry_run_response(lambda: _update(rule_id, data, actor, expected), actor)
    return _rule_response(_update(rule_id, data, actor, expected))


@bp.delete(f"/rules/{RULE_ID}")
def rule_delete(rule_id: int):
    actor = require_writer()
    expected = _precondition(rule_id, required=False)
    if wants_dry_run():
        return dry_run_response(
            lambda: policy.delete_rule(rule_id, actor=actor, expected_version=expected), actor)
    try:
        policy.delete_rule(rule_id, actor=actor, expected_version=expected)
    except Conflict as conflict:
        raise _stale_or(conflict, expected) from None
    return no_content()


def _update(rule_id: int, data: Any, actor: Actor, expected: int | None) -> Rule:
    if not isinstance(data, dict):
        raise ValidationError([FieldError("", "a rule must be a JSON object")])
    try:
        return policy.update_rule(rule_id, data, actor=actor, expected_version=expected)
    except Conflict as conflict:
        raise _stale_or(conflict, expected) from None


def _stale_or(conflict: Conflict, expected: int | None) -> Exception:
    """A version that moved between the If-Match check and the write is a failed
    precondition (412); any other conflict stays one (409)."""
    if expected is not None and conflict.current_version is not None:
        return stale(conflict.current_version)
    return conflict


def _precondition(rule_id: int, *, required: bool) -> int | None:
    """The version ``If-Match`` pins the write to (after a 404 for a rule the caller cannot
    see, so a precondition never reveals that a rule exists)."""
    current = get_rule(rule_id, current_actor()).version
    expected = if_match_version(current)
    if expected is None and required:
        raise ApiProblem(428, "precondition-required", "Precondition Required",
                         "PUT replaces the whole rule, so it needs If-Match with the rule's "
                         "ETag from GET (or use PATCH to change some fields)")
    return expected


def _rule_input(data: Any) -> Any:
    """The body without the read-only fields a GET returns, so a read rule can be sent back.
    A rule read with only the first page of its origins (``origins_next`` set) cannot: its
    ``origins`` would replace the whole allowlist with that page."""
    if isinstance(data, dict):
        if data.get("origins_next") and "origins" in data:
            raise ValidationError([FieldError("origins", (
                f"origins holds only the first {len(data['origins'] or [])} of the rule's "
                f"{data.get('origin_count', 'many')} origins (the rest are at origins_next); "
                "send the whole allowlist without origins_next, or leave origins out to keep "
                "it (PATCH), or change origins one by one with PUT and DELETE "
                "/rules/{id}/origins/{origin}"))])
        return {k: v for k, v in data.items() if k not in READ_ONLY_RULE_FIELDS}
    return data


def _rule_response(rule: Rule, *, status: int = 200) -> Response:
    response = jsonify(rule_resource(rule, current_actor()))
    response.status_code = status
    response.set_etag(str(rule.version))
    return response


# -- the allowlist of one rule -------------------------------------------------------------


@bp.get(f"/rules/{RULE_ID}/origins")
def origins(rule_id: int):
    actor = current_actor()
    rule = get_rule(rule_id, actor)
    paging = PageRequest.from_args()
    # On a shared tenant-selecting rule, a tenant sees its own allowlist only.
    found = origin_page(rule, actor, page=paging.page, per_page=paging.per_page)
    return page_of_rows(found.items, found.total, paging, origin_resource)


@bp.put(f"/rules/{RULE_ID}/origins/<path:origin>")
def origin_add(rule_id: int, origin: str):
    """Allow one origin (URL-encoded in the path); 201 when added, 200 when already there."""
    actor = require_writer()
    body = json_body(required=False)
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise ValidationError([FieldError("", 'the body is an object such as {"note": "..."}')])
    unknown = sorted(set(body) - {"note", "expires_at", "tenant"})
    if unknown:
        raise ValidationError([FieldError(unknown[0], "unknown field; the body may have note, "
                                                      "expires_at and tenant")])
    tenant = body.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise ValidationError([FieldError("tenant", "tenant is a tenant's slug, such as acme")])
    added, created = policy.add_origin(
        rule_id, origin, actor=actor, note=body.get("note", ""),
        expires_at=body.get("expires_at"), tenant=tenant or None)
    response = jsonify(origin_resource(added))
    response.status_code = 201 if created else 200
    if created:
        response.headers["Location"] = url_for("api.origins", rule_id=rule_id)
    return response


@bp.delete(f"/rules/{RULE_ID}/origins/<path:origin>")
def origin_remove(rule_id: int, origin: str):
    """Remove one origin; 204 whether it was there or not (the request is idempotent)."""
    actor = require_writer()
    policy.remove_origin(rule_id, _stored_form(origin), actor=actor,
                         tenant=text_arg("tenant"))
    return no_content()


def _stored_form(value: str) -> str:
    """Origins are stored as browsers serialise them; ``HTTPS://App.example.com:443`` names
    the stored ``https://app.example.com``. Text that is no origin is looked up as typed."""
    try:
        return parse_origin(value).value
    except OriginError:
        return value

