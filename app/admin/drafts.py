"""A rule's draft on the dashboard: start it, edit it, see its effect, publish or discard it.

The rule's page shows the Draft section (:func:`draft_context`, a template global, so the
rule page's own context stays as it is); the draft's page holds its edit form; publishing
goes through a confirmation page that lists what the draft takes away and adds, so it works
without JavaScript. Every form posts with CSRF; writes go through :mod:`app.services.drafts`.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from cors_control import get_control

from ..models import Rule, RuleDraft
from ..services import access, drafts
from ..services.errors import Conflict, NotFound, ValidationError
from . import bp
from .access import current_actor, requires
from .rendering import is_htmx, render

LIST_FIELDS = ("methods", "allow_headers", "expose_headers")
FLAG_FIELDS = ("supports_credentials", "allow_private_network")
FORM_FIELDS = ("origins", *LIST_FIELDS, "max_age", *FLAG_FIELDS)


@bp.app_context_processor
def draft_helpers() -> dict[str, Any]:
    return {"draft_context": draft_context}


def draft_context(rule: Rule) -> dict[str, Any]:
    """What the Draft section of a rule's page shows: the draft if the signed-in user owns
    the rule, what publishing it changes, and its effect over the period asked for."""
    actor = current_actor()
    _rule, draft = drafts.rule_with_draft(rule.id, actor)
    period = request.args.get("draft_period", drafts.DEFAULT_EFFECT_PERIOD)
    if period not in drafts.EFFECT_PERIODS:
        period = drafts.DEFAULT_EFFECT_PERIOD
    return {
        "rule": rule,
        "draft": draft,
        "owner": access.owns(actor, rule),
        "can_draft": access.can_change_options(actor, rule),
        "changes": drafts.draft_changes(rule, draft) if draft is not None else None,
        "effect": drafts.draft_effect(rule, draft, period=period, actor=actor)
        if draft is not None else None,
        "periods": list(drafts.EFFECT_PERIODS),
    }


# -- the draft's page and its section ------------------------------------------------------


@bp.get("/rules/<int:rule_id>/draft")
@requires("viewer")
def rule_draft(rule_id: int):
    """The draft's page (its edit form); for htmx, the Draft section (a period switch)."""
    rule, draft = drafts.get_draft(rule_id, current_actor())
    return render("admin/rule_draft.html", "admin/_draft_section.html",
                  **_page_context(rule, draft))


@bp.post("/rules/<int:rule_id>/draft")
@requires("editor")
def rule_draft_start(rule_id: int):
    draft, created = drafts.start_draft(rule_id, actor=current_actor())
    _serve_now()
    flash(f"Started a draft of {draft.rule.path}: change it below; the live rule keeps "
          "deciding until you publish it." if created
          else f"{draft.rule.path} already has a draft.")
    return redirect(url_for("admin.rule_draft", rule_id=rule_id))


@bp.post("/rules/<int:rule_id>/draft/edit")
@requires("editor")
def rule_draft_save(rule_id: int):
    form = _form_from_request()
    expected = request.form.get("version", type=int)
    try:
        current = drafts.get_draft(rule_id, current_actor())[1]
        draft, _created = drafts.save_draft(
            rule_id, _draft_data(form, drafts.draft_body(current)), actor=current_actor(),
            expected_version=expected)
    except ValidationError as error:
        rule, draft = drafts.get_draft(rule_id, current_actor())
        return render("admin/rule_draft.html", status=422,
                      **_page_context(rule, draft, form=form, errors=_errors(error)))
    except Conflict as conflict:
        rule, draft = drafts.get_draft(rule_id, current_actor())
        return render("admin/rule_draft.html", status=409,
                      **_page_context(rule, draft, form=form, conflict=str(conflict)))
    _serve_now()
    flash(f"Saved the draft of {draft.rule.path}.")
    return redirect(url_for("admin.rule_draft", rule_id=rule_id))


@bp.post("/rules/<int:rule_id>/draft/discard")
@requires("editor")
def rule_draft_discard(rule_id: int):
    rule = drafts.rule_with_draft(rule_id, current_actor())[0]
    discarded = drafts.discard_draft(rule_id, actor=current_actor())
    _serve_now()
    flash(f"Discarded the draft of {rule.path}; the live rule is unchanged." if discarded
          else f"{rule.path} has no draft; nothing changed.")
    return _to_rule(rule_id)


# -- publishing: a confirmation, then one change -------------------------------------------


@bp.get("/rules/<int:rule_id>/draft/publish")
@requires("editor")
def rule_draft_confirm(rule_id: int):
    """What publishing takes away and adds, and the button that does it."""
    rule, draft = drafts.get_draft(rule_id, current_actor())
    return render("admin/draft_publish.html", **_page_context(rule, draft))


@bp.post("/rules/<int:rule_id>/draft/publish")
@requires("editor")
def rule_draft_publish(rule_id: int):
    expected = request.form.get("version", type=int)
    if request.form.get("confirm") != "yes":
        return redirect(url_for("admin.rule_draft_confirm", rule_id=rule_id))
    try:
        rule, changes = drafts.publish_draft(rule_id, actor=current_actor(),
                                             expected_version=expected)
    except (ValidationError, Conflict) as error:
        try:
            rule, draft = drafts.get_draft(rule_id, current_actor())
        except NotFound:
            flash(f"Not published: {error}.", "error")
            return _to_rule(rule_id)
        return render("admin/draft_publish.html", status=409 if isinstance(error, Conflict)
                      else 422, **_page_context(rule, draft, conflict=str(error)))
    _serve_now()
    flash(f"Published the draft of {rule.path}"
          + (": " + "; ".join(_summary(changes)) if not changes.empty else
             " (it did not change the rule)") + ".")
    return _to_rule(rule_id)


def _summary(changes: drafts.DraftChanges) -> list[str]:
    parts = []
    if changes.origins_removed:
        parts.append(f"removed {', '.join(changes.origins_removed)}")
    if changes.origins_added:
        parts.append(f"added {', '.join(changes.origins_added)}")
    parts.extend(f"{c.name} is now {_text(c.draft)}" for c in changes.options)
    return parts


# -- helpers -------------------------------------------------------------------------------


def _page_context(rule: Rule, draft: RuleDraft, *, form: dict[str, Any] | None = None,
                  errors: dict[str, list[str]] | None = None,
                  conflict: str | None = None) -> dict[str, Any]:
    return {
        "d": draft_context(rule),
        "rule": rule,
        "form": form or _form_of(draft),
        "errors": errors or {},
        "conflict": conflict,
        "form_version": draft.version,
    }


def _to_rule(rule_id: int) -> Response:
    url = url_for("admin.rule", rule_id=rule_id) + "#draft"
    if is_htmx():
        response = Response(status=204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)


def _serve_now() -> None:
    """This process serves the change at once (others follow within the refresh interval)."""
    get_control(current_app).cache.refresh()


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if value is None:
        return "(none)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _form_of(draft: RuleDraft) -> dict[str, Any]:
    """The draft as the form shows it: lists as comma-separated text, one origin a line
    (``tenant origin`` for an origin on a tenant's allowlist)."""
    body = drafts.draft_body(draft)
    lines = []
    for entry in body.get("origins", []):
        if isinstance(entry, str):
            lines.append(entry)
        else:
            tenant = entry.get("tenant")
            lines.append(f"{tenant} {entry['value']}" if tenant else entry["value"])
    return {
        "origins": "\n".join(lines),
        **{name: ", ".join(body[name]) for name in LIST_FIELDS},
        "max_age": "" if body["max_age"] is None else str(body["max_age"]),
        **{name: bool(body[name]) for name in FLAG_FIELDS},
    }


def _form_from_request() -> dict[str, Any]:
    form: dict[str, Any] = {name: request.form.get(name, "") for name in FORM_FIELDS}
    for name in FLAG_FIELDS:
        form[name] = request.form.get(name) in ("on", "true", "1", "yes")
    return form


def _draft_data(form: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The service's input. An origin kept from the draft keeps its note and expiry."""
    data: dict[str, Any] = {name: [p.strip() for p in form[name].split(",") if p.strip()]
                            for name in LIST_FIELDS}
    max_age = form["max_age"].strip()
    data["max_age"] = None if max_age == "" else (
        int(max_age) if max_age.lstrip("-").isdigit() and max_age.isascii()
        and len(max_age) <= 18 else max_age)
    for name in FLAG_FIELDS:
        data[name] = form[name]
    kept = {_key(entry): entry for entry in current.get("origins", [])}
    data["origins"] = [kept.get(_key(entry), entry) for entry in
                       (_origin_entry(line) for line in form["origins"].splitlines()
                        if line.strip())]
    return data


def _origin_entry(line: str) -> Any:
    parts = line.split()
    if len(parts) == 2:
        return {"value": parts[1], "tenant": parts[0]}
    return line.strip()


def _key(entry: Any) -> tuple[str, str]:
    if isinstance(entry, str):
        return ("", entry)
    return (entry.get("tenant") or "", str(entry.get("value")))


def _errors(error: ValidationError) -> dict[str, list[str]]:
    """Messages per form field; origins' (``origins[2]``) beside the origins box."""
    errors: dict[str, list[str]] = {name: error.for_field(name) for name in FORM_FIELDS}
    errors["origins"] += [f"{e.field}: {e.message}" for e in error.errors
                          if e.field.startswith("origins")]
    errors["form"] = [str(e) for e in error.errors
                      if e.field not in FORM_FIELDS and not e.field.startswith("origins")]
    return errors
