"""Shared origin lists: read, create, describe, delete; add and remove origins; attach a
list to a rule and detach it. Each write is one change of every rule that uses the list."""

from __future__ import annotations

from typing import Any

from flask import request, url_for

from ..services import origin_lists as lists
from ..services.errors import FieldError, ValidationError
from . import bp
from .auth import current_actor, require_writer
from .inputs import PageRequest, json_body, no_content, page_of_rows
from .representation import rule_resource

LIST_ID = "<int:list_id>"


@bp.get("/origin-lists")
def origin_lists():
    """The lists the caller sees: all of them, or for a tenant role its tenant's and the
    platform's (read-only to it)."""
    paging = PageRequest.from_args()
    every = lists.list_lists(current_actor())
    start = (paging.page - 1) * paging.per_page
    return page_of_rows(every[start:start + paging.per_page], len(every), paging,
                        _resource)


@bp.post("/origin-lists")
def origin_list_create():
    actor = require_writer()
    created = lists.create_list(_object(json_body()), actor=actor)
    return _resource(created), 201, {"Location": url_for("api.origin_list",
                                                         list_id=created.id)}


@bp.get(f"/origin-lists/{LIST_ID}")
def origin_list(list_id: int):
    return _resource(lists.get_list(list_id, current_actor()))


@bp.patch(f"/origin-lists/{LIST_ID}")
def origin_list_update(list_id: int):
    actor = require_writer()
    return _resource(lists.update_list(list_id, _object(json_body()), actor=actor))


@bp.delete(f"/origin-lists/{LIST_ID}")
def origin_list_delete(list_id: int):
    """A list that rules use is refused (409, naming them) unless ``?detach=true``."""
    actor = require_writer()
    detach = request.args.get("detach", "false")
    if detach not in ("true", "false"):
        raise ValidationError([FieldError("detach", "detach is true or false")])
    lists.delete_list(list_id, actor=actor, detach=detach == "true")
    return no_content()


@bp.post(f"/origin-lists/{LIST_ID}/origins")
def origin_list_add(list_id: int):
    """Add ``{"value", "note", "expires_at"}``: 201 when added, 200 when already there."""
    actor = require_writer()
    body = _object(json_body())
    unknown = sorted(set(body) - {"value", "note", "expires_at"})
    if unknown:
        raise ValidationError([FieldError(unknown[0], "unknown field; send value, note and "
                                                      "expires_at")])
    note = body.get("note", "")
    if not isinstance(note, str):
        raise ValidationError([FieldError("note", "a note is text")])
    entry, created = lists.add_origin_to_list(actor, list_id, body.get("value"), note=note,
                                              expires_at=body.get("expires_at"))
    return _resource(entry.origin_list), 201 if created else 200


@bp.delete(f"/origin-lists/{LIST_ID}/origins/<path:origin>")
def origin_list_remove(list_id: int, origin: str):
    """Idempotent: 204 also when the origin was not on the list."""
    actor = require_writer()
    lists.remove_origin_from_list(actor, list_id, origin)
    return no_content()


@bp.put(f"/origin-lists/{LIST_ID}/rules/<int:rule_id>")
def origin_list_attach(list_id: int, rule_id: int):
    """Let the rule use the list; answers with the rule."""
    actor = require_writer()
    return rule_resource(lists.attach_list(rule_id, list_id, actor=actor), actor)


@bp.delete(f"/origin-lists/{LIST_ID}/rules/<int:rule_id>")
def origin_list_detach(list_id: int, rule_id: int):
    actor = require_writer()
    return rule_resource(lists.detach_list(rule_id, list_id, actor=actor), actor)


def _resource(origin_list: Any) -> dict[str, Any]:
    data = lists.list_to_dict(origin_list)
    data["writable"] = lists.may_change_list(current_actor(), origin_list)
    return data


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError([FieldError("", "send a JSON object")])
    return body
