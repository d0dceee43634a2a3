"""Shared origin lists: see every list with its origins and the rules that use it, create and
delete lists, add and remove origins (each one change of every rule that uses the list), and
on a rule's page attach and detach lists.

Tenant roles see their tenant's lists and the platform's; the platform's are read-only to
them (the services refuse the change; the page offers none).
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, request, url_for

from cors_control import get_control

from ..models import Rule
from ..services import origin_lists as lists
from ..services.access import can_change_options
from ..services.errors import Conflict, Forbidden, ServiceError, ValidationError
from ..services.list_fix import fix_request_with_list, list_targets
from ..services.policy_read import get_rule
from . import bp
from .access import current_actor, requires
from .rendering import is_htmx, render
from .simulator import Question, render_with_message


@bp.app_context_processor
def origin_list_helpers() -> dict:
    return {"rule_origin_lists": rule_lists_context,
            "simulator_list_targets": lambda fix: list_targets(fix, current_actor())}


@bp.post("/simulator/fix-list")
@requires("editor")
def simulator_fix_list():
    """Add the simulated request's refused origin to a shared list the simulator offers
    (worked out again from the question, never taken from the form but the list's id)."""
    question = Question.from_values(request.form)
    validation = question.validate()
    if validation.request is None:
        return render_with_message(question, "Nothing was changed: the question is not "
                                             "valid.", "error")
    control = get_control(current_app)
    try:
        message = fix_request_with_list(validation.request, control.cache.get(),
                                        request.form.get("list_id", type=int) or 0,
                                        actor=current_actor(), routes=control)
    except ServiceError as error:
        return render_with_message(question, f"Nothing was changed: {error}.", "error")
    control.cache.refresh()  # this process answers at once; others within the interval
    return render_with_message(question, message, "")


def rule_lists_context(rule: Rule) -> dict[str, Any]:
    """What a rule page shows of shared lists: the lists it uses with the origins each
    contributes (marked read-only for a tenant role that may not change them), and (for
    whoever may choose them) the lists it may still use."""
    actor = current_actor()
    used = lists.lists_of_rule(rule, actor)
    may_attach = can_change_options(actor, rule)
    available = [o for o in lists.list_lists(actor)
                 if o not in used and (o.tenant_id is None or o.tenant_id == rule.tenant_id)] \
        if may_attach else []
    # A tenant role reads what it may not change (the platform's lists) and is told so.
    read_only = {o.id for o in used if not lists.may_change_list(actor, o)} \
        if actor is not None and actor.scoped else set()
    return {"used": used, "available": available, "may_attach": may_attach,
            "read_only": read_only}


@bp.get("/lists")
@requires("viewer")
def origin_lists():
    return render("admin/origin_lists.html", "admin/_origin_lists.html", **_page_context())


@bp.post("/lists")
@requires("editor")
def origin_list_create():
    form = {name: request.form.get(name, "").strip()
            for name in ("name", "description", "tenant", "origins")}
    data = {"name": form["name"], "description": form["description"],
            "origins": form["origins"].replace(",", " ").split()}
    if form["tenant"]:
        data["tenant"] = form["tenant"]
    try:
        created = lists.create_list(data, actor=current_actor())
    except (ValidationError, Conflict) as error:
        return render("admin/origin_lists.html", "admin/_origin_lists.html",
                      status=200 if is_htmx() else 422, **_page_context(form=form, error=error))
    return _done(f"Created origin list {created.name}. Attach it to rules on their pages.")


@bp.post("/lists/<int:list_id>/origins")
@requires("editor")
def origin_list_add(list_id: int):
    value = request.form.get("origin", "").strip()
    try:
        entry, created = lists.add_origin_to_list(current_actor(), list_id, value,
                                                  note=request.form.get("note", "").strip())
    except ValidationError as error:
        return render("admin/origin_lists.html", "admin/_origin_lists.html",
                      status=200 if is_htmx() else 422,
                      **_page_context(add_error=(list_id, value, error)))
    origin_list = lists.get_list(list_id, current_actor())
    rules = lists.describe_rules(lists.rules_using(origin_list))
    return _done(f"Added {entry.value} to {origin_list.name} ({rules})." if created
                 else f"{entry.value} is already on {origin_list.name}; nothing changed.")


@bp.post("/lists/<int:list_id>/origins/remove")
@requires("editor")
def origin_list_remove(list_id: int):
    value = request.form.get("origin", "")
    origin_list = lists.get_list(list_id, current_actor())
    rules = lists.describe_rules(lists.rules_using(origin_list))
    if lists.remove_origin_from_list(current_actor(), list_id, value):
        return _done(f"Removed {value} from {origin_list.name} ({rules}).")
    return _done(f"{value} was not on {origin_list.name}; nothing changed.", "error")


@bp.post("/lists/<int:list_id>/delete")
@requires("editor")
def origin_list_delete(list_id: int):
    origin_list = lists.get_list(list_id, current_actor())
    name = origin_list.name
    try:
        detached = lists.delete_list(list_id, actor=current_actor(),
                                     detach=request.form.get("detach") == "yes")
    except Conflict as error:
        return _done(f"{error}.", "error")
    return _done(f"Deleted origin list {name}"
                 + (f"; {', '.join(detached)} no longer allow its origins." if detached
                    else "."))


@bp.post("/rules/<int:rule_id>/lists")
@requires("editor")
def rule_list_attach(rule_id: int):
    return _rule_lists_change(rule_id, attach=True)


@bp.post("/rules/<int:rule_id>/lists/detach")
@requires("editor")
def rule_list_detach(rule_id: int):
    return _rule_lists_change(rule_id, attach=False)


def _rule_lists_change(rule_id: int, *, attach: bool):
    actor = current_actor()
    list_id = request.form.get("list_id", type=int) or 0
    error: str | None = None
    notice: str | None = None
    try:
        if attach:
            rule = lists.attach_list(rule_id, list_id, actor=actor)
        else:
            rule = lists.detach_list(rule_id, list_id, actor=actor)
        name = lists.get_list(list_id, actor).name
        notice = (f"{rule.path} now allows the origins of {name}." if attach
                  else f"{rule.path} no longer allows the origins of {name} (unless listed "
                       "on the rule itself).")
    except (ValidationError, Forbidden) as refused:
        if isinstance(refused, Forbidden) and not is_htmx():
            raise  # a plain form post gets the 403 page with the reason
        rule = get_rule(rule_id, actor)
        error = "; ".join(e.message for e in refused.errors) \
            if isinstance(refused, ValidationError) else str(refused)
    if is_htmx():
        # On success the rule's version moved: the edit form's version follows, out of band.
        return render("admin/_rule_lists.html", rule=rule, lists_notice=notice,
                      lists_error=error, version_oob=error is None,
                      form_version=rule.version, status=200)
    flash(error or notice or "", "error" if error else "message")
    return redirect(url_for("admin.rule", rule_id=rule_id))


def _done(message: str, category: str = "message"):
    if is_htmx():
        return render("admin/origin_lists.html", "admin/_origin_lists.html",
                      **_page_context(notice=message, notice_category=category))
    flash(message, category)
    return redirect(url_for("admin.origin_lists"))


def _page_context(*, form: dict[str, str] | None = None, error: ServiceError | None = None,
                  notice: str | None = None, notice_category: str = "message",
                  add_error: tuple[int, str, ValidationError] | None = None) -> dict[str, Any]:
    actor = current_actor()
    every = lists.list_lists(actor)
    return {
        "origin_lists": [{"list": o, "rules": lists.rules_using(o),
                          "writable": lists.may_change_list(actor, o),
                          "owner": lists.owner_slug(o) or "platform"} for o in every],
        "may_create": actor.can_write,
        "form": form or {"name": "", "description": "", "tenant": "", "origins": ""},
        "field_errors": error.by_field() if isinstance(error, ValidationError) else {},
        "form_error": str(error) if isinstance(error, Conflict) else None,
        "add_error": ({"list_id": add_error[0], "value": add_error[1],
                       "messages": [m for ms in add_error[2].by_field().values() for m in ms]}
                      if add_error else None),
        "notice": notice,
        "notice_category": notice_category,
    }
