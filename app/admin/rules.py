"""Rules: the searchable list, one rule's page with its origins, and the routes they cover.

Every form is a real form that posts and redirects; htmx upgrades it to swap the same partial
the page includes. Writes go through :mod:`app.services.policy`, whose messages are shown
beside the fields they name. Validation errors answer 422 and conflicts 409 on a full page;
to htmx they answer 200, because htmx does not swap 4xx responses.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from cors_control import get_control
from cors_control.snapshot import DEFAULT_METHODS
from cors_control.vocabulary import (
    APPLIED_MODES,
    ENFORCE,
    MODES,
    NO_TENANT_SOURCE,
    OFF,
    REFUSE_UNKNOWN_TENANT,
    TENANT_SOURCES,
    UNKNOWN_TENANT_OPTIONS,
)

from ..extensions import db
from ..models import Rule
from ..services import access, log_fixes, origin_find, policy, policy_read, rules_query
from ..services.errors import Conflict, ValidationError
from ..services.tenants import list_tenants
from ..services.validation import validate_origin, validate_rule
from ..services.warnings import report_only_warnings, rule_warnings
from . import bp
from .access import current_actor, requires, requires_platform
from .paging import page_arg
from .rendering import is_htmx, render
from .review import Review, create_change, review, update_change

# The fields of the rule form, in the policy file's vocabulary (the service's field names).
OPTION_FIELDS = ("path", "methods", "allow_headers", "expose_headers", "supports_credentials",
                 "max_age", "allow_private_network", "mode", "description")
LIST_FIELDS = ("methods", "allow_headers", "expose_headers")
FLAG_FIELDS = ("supports_credentials", "allow_private_network")
# Field names the service gives to one origin's problems, and the add form's inputs.
ORIGIN_FIELDS = {"origin": "value", "origin.note": "note", "origin.expires_at": "expires_at"}
# The tenancy inputs (platform users see them): the owner tenant and the tenant selector, with
# the service's field name for each.
TENANCY_FIELDS = {"tenant": "tenant", "tenant_source": "tenant_selector.source",
                  "tenant_key": "tenant_selector.key", "tenant_unknown": "tenant_selector.unknown"}


# -- the list ------------------------------------------------------------------------------


@bp.get("/rules")
@requires("viewer")
def rules():
    return render("admin/rules.html", "admin/_rules_results.html", **_list_context())


@bp.post("/rules")
@requires("editor")
def rule_create():
    form = _form_from_request()
    try:
        # What the rule takes from broader ones is shown, and confirmed, before it is saved.
        preview = review(_rule_data(form), create_change)
        if preview.blocks:
            return render("admin/rules.html", "admin/_rule_form.html",
                          **_list_context(form=form), review=preview)
        rule = policy.create_rule(preview.data, actor=current_actor())
    except ValidationError as error:
        return render("admin/rules.html", "admin/_rule_form.html", status=_error_status(422),
                      **_list_context(form=form, errors=_field_errors(error)))
    flash(f"Created rule {rule.path}. Add its origins below.")
    for warning in _warnings_of(rule):
        flash(warning, "warning")
    return _navigate(url_for("admin.rule", rule_id=rule.id))


def _list_context(*, form: dict[str, Any] | None = None,
                  errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Everything rules.html needs: the filtered page of rules and the create form."""
    rule_filter = rules_query.RuleFilter.from_args(request.args)
    listing = rules_query.search_rules(
        rule_filter,
        page=page_arg(request.args),
        per_page=page_arg(request.args, "per_page", rules_query.RULES_PER_PAGE),
        actor=current_actor(),
    )
    found = None
    if origin_find.looks_like_origin(rule_filter.text):
        # An origin typed in the search: where it is allowed, by which entry.
        found = origin_find.find_origin(rule_filter.text, actor=current_actor())
    return {
        "found": found,
        "listing": listing,
        "rule_filter": rule_filter,
        "modes": MODES,
        "rule": None,
        "form": form or _blank_form(),
        "errors": errors or {},
        **_tenancy_context(),
    }


def _tenancy_context() -> dict[str, Any]:
    """What the rule form's tenancy fields and the list's tenant filter offer: the tenants,
    for platform users (a tenant role's rules are always its own tenant's)."""
    platform = not current_actor().scoped
    return {
        "form_tenants": list_tenants() if platform else [],
        "edits_tenancy": platform,
        "tenant_sources": TENANT_SOURCES,
        "unknown_tenant_options": UNKNOWN_TENANT_OPTIONS,
    }


# -- one rule ------------------------------------------------------------------------------


@bp.get("/rules/<int:rule_id>")
@requires("viewer")
def rule(rule_id: int):
    """The rule's options and origins; as a fragment, the (searched) origins list. The
    request log links here with a change of the options filled in (:mod:`..services.log_fixes`):
    the form shows it, unsaved, with its consequence."""
    rule = policy_read.get_rule(rule_id, current_actor())
    proposal = log_fixes.propose(rule, request.args) \
        if access.can_change_options(current_actor(), rule) else None
    form = {**_form_of(rule), **proposal.changes} if proposal is not None else None
    return render("admin/rule.html", "admin/_origin_results.html",
                  **_rule_context(rule, form=form), proposal=proposal)


@bp.post("/rules/<int:rule_id>")
@requires("editor")
def rule_update(rule_id: int):
    form = _form_from_request()
    expected = request.form.get("version", type=int)
    try:
        preview = review(_rule_data(form), update_change(rule_id, expected), copies=False)
        if preview.blocks:
            return _rule_page(_existing(rule_id), form=form, expected_version=expected,
                              review=preview)
        rule = policy.update_rule(rule_id, preview.data, actor=current_actor(),
                                  expected_version=expected)
    except ValidationError as error:
        return _rule_page(_existing(rule_id), status=422, form=form,
                          errors=_field_errors(error), expected_version=expected)
    except Conflict as conflict:
        # Keep what the user typed; show what is saved now beside it. The form now carries
        # the current version, so saving again deliberately replaces the saved values.
        current = _existing(rule_id)
        message = str(conflict) if conflict.current_version is None else (
            f"{current.path} was changed by {current.updated_by or 'someone'} since you "
            f"loaded it (version {current.version}, you had {expected})")
        return _rule_page(current, status=409, form=form, conflict=message)
    if expected is not None and rule.version == expected:
        return _saved(rule, "Nothing to save: the rule already has these values.")
    return _saved(rule, f"Saved rule {rule.path}.")


@bp.post("/rules/<int:rule_id>/disable")
@requires("editor")
def rule_disable(rule_id: int):
    rule = _set_mode(rule_id, OFF)
    return _saved(rule, f"Disabled rule {rule.path}: the engine ignores it, as if absent.")


@bp.post("/rules/<int:rule_id>/enable")
@requires("editor")
def rule_enable(rule_id: int):
    mode = request.form.get("mode", ENFORCE)
    rule = _set_mode(rule_id, mode if mode in APPLIED_MODES else ENFORCE)
    return _saved(rule, f"Enabled rule {rule.path} in mode {rule.mode}.")


@bp.post("/rules/<int:rule_id>/delete")
@requires("editor")
def rule_delete(rule_id: int):
    path = policy_read.get_rule(rule_id, current_actor()).path
    policy.delete_rule(rule_id, actor=current_actor())
    flash(f"Deleted rule {path}.")
    return _navigate(url_for("admin.rules"))


def _set_mode(rule_id: int, mode: str) -> Rule:
    return policy.update_rule(rule_id, {"mode": mode}, actor=current_actor())


def _saved(rule: Rule, message: str) -> Response:
    """After a change of options: the detail partial for htmx, else flash and redirect."""
    warnings = _warnings_of(rule)
    if is_htmx():
        return _rule_page(rule, saved=message, warnings=warnings)
    flash(message)
    for warning in warnings:
        flash(warning, "warning")
    return redirect(url_for("admin.rule", rule_id=rule.id))


def _rule_page(rule: Rule, *, status: int = 200, **context: Any) -> Response:
    return render("admin/rule.html", "admin/_rule_detail.html",
                  status=_error_status(status),
                  **_rule_context(rule, **context))


def _rule_context(rule: Rule, *, form: dict[str, Any] | None = None,
                  errors: dict[str, list[str]] | None = None, conflict: str | None = None,
                  saved: str | None = None, warnings: list[str] | None = None,
                  expected_version: int | None = None,
                  origin_form: dict[str, str] | None = None,
                  origin_errors: dict[str, list[str]] | None = None,
                  origin_check: dict[str, Any] | None = None,
                  review: Review | None = None) -> dict[str, Any]:
    """Everything rule.html and its partials need, built in one place: what the signed-in
    user may see of the rule (a tenant role: its own allowlist on a rule that selects tenants)
    and may do with it."""
    actor = current_actor()
    saved_form = _form_of(rule)
    form = form or saved_form
    origins = rules_query.rule_origins(
        rule, text=request.args.get("oq", ""),
        page=page_arg(request.args, "opage"),
        per_page=page_arg(request.args, "per_page", rules_query.ORIGINS_PER_PAGE),
        api_is_https=_api_is_https(), actor=actor)
    selects_tenant = rule.tenant_source != NO_TENANT_SOURCE
    return {
        "rule": rule,
        "can_change": access.can_change_options(actor, rule),
        "can_edit_origins": actor.can_write,
        "selects_tenant": selects_tenant,
        # Admins and editors choose whose allowlist an origin goes on; a tenant role's
        # always goes on its own.
        "origin_tenants": list_tenants() if selects_tenant and actor.can_write
        and not actor.scoped else [],
        "form": form,
        "saved_form": saved_form,
        "differs": _differences(form, saved_form),
        "errors": errors or {},
        "conflict": conflict,
        "saved": saved,
        "warnings": warnings or [],
        # After a validation error the form keeps the version the user loaded, so a change
        # made meanwhile is still detected on the next save.
        "form_version": expected_version if expected_version is not None else rule.version,
        "modes": MODES,
        "origins": origins,
        "origin_total": rules_query.origin_counts([rule.id], actor=actor)[rule.id],
        "origin_form": origin_form or {"value": "", "note": "", "expires_at": "", "tenant": ""},
        "origin_errors": origin_errors or {},
        "origin_check": origin_check,
        "review": review,
        "shared_origins": rules_query.shared_origins_for_tenant(rule, actor=actor),
        **_tenancy_context(),
    }


# -- origins -------------------------------------------------------------------------------


@bp.get("/rules/<int:rule_id>/origins/check")
@requires("editor")
def origin_check(rule_id: int):
    """Check an origin as it is typed, with the messages the service (and the CLI) give."""
    rule = policy_read.get_rule(rule_id, current_actor())
    value = request.args.get("value", "")
    check = _check_origin(rule, value)
    return render("admin/rule.html", "admin/_origin_check.html",
                  **_rule_context(rule, origin_form={"value": value, "note": "",
                                                      "expires_at": "", "tenant": ""},
                                  origin_check=check))


@bp.post("/rules/<int:rule_id>/origins")
@requires("editor")
def origin_add(rule_id: int):
    origin_form = {name: request.form.get(name, "").strip()
                   for name in (*ORIGIN_FIELDS.values(), "tenant")}
    try:
        origin, created = policy.add_origin(
            rule_id, origin_form["value"], actor=current_actor(), note=origin_form["note"],
            expires_at=origin_form["expires_at"] or None, tenant=origin_form["tenant"] or None)
    except ValidationError as error:
        errors = {name: error.for_field(field) for field, name in ORIGIN_FIELDS.items()}
        errors["tenant"] = error.for_field("tenant")
        return render("admin/rule.html", "admin/_origin_add.html", status=_error_status(422),
                      **_rule_context(_existing(rule_id), origin_form=origin_form,
                                      origin_errors=errors))
    rule = policy_read.get_rule(rule_id, current_actor())
    where = (f"{rule.path} for tenant {origin.tenant.slug}" if origin.tenant is not None
             else rule.path)
    if created:
        message = f"Allowed {origin.value} on {where}."
    else:
        message = f"{origin.value} is already allowed on {where}; nothing changed."
    row = rules_query.origin_rows(rule, [origin], api_is_https=_api_is_https())[0]
    if not is_htmx():
        flash(message)
        for warning in row.warnings if created else ():
            flash(warning, "warning")
        return redirect(url_for("admin.rule", rule_id=rule_id))
    return render("admin/rule.html", "admin/_origin_add.html",
                  **_rule_context(rule, origin_check={"status": message,
                                                      "warnings": row.warnings}),
                  new_row=row if created else None,
                  version_oob=_version_followed(rule, created))


@bp.get("/rules/<int:rule_id>/origins/remove")
@requires("editor")
def origin_remove_confirm(rule_id: int):
    """The confirmation step before removing an origin, for the Remove button without
    JavaScript (with htmx the button asks with ``hx-confirm`` and posts)."""
    rule = policy_read.get_rule(rule_id, current_actor())
    return render("admin/origin_remove.html", rule=rule,
                  value=request.args.get("value", "")[:2048],
                  tenant=request.args.get("tenant", "")[:200])


@bp.post("/rules/<int:rule_id>/origins/remove")
@requires("editor")
def origin_remove(rule_id: int):
    value = request.form.get("value", "")
    removed = policy.remove_origin(rule_id, value, actor=current_actor(),
                                   tenant=request.form.get("tenant") or None)
    rule = policy_read.get_rule(rule_id, current_actor())
    message = (f"Removed {value} from {rule.path}." if removed
               else f"{value} was not on {rule.path}; nothing changed.")
    if not is_htmx():
        flash(message)
        return redirect(url_for("admin.rule", rule_id=rule_id))
    # The row goes away (empty main content); what the removal changed follows out of band.
    return render("admin/rule.html", "admin/_origin_removed.html",
                  **_rule_context(rule, origin_check={"status": message}),
                  version_oob=_version_followed(rule, removed))


def _check_origin(rule: Rule, value: str) -> dict[str, Any]:
    if not value.strip():
        return {}
    try:
        parsed = validate_origin(value.strip(), credentials=rule.supports_credentials)
    except ValidationError as error:
        return {"errors": error.for_field("origin")}
    already = rules_query.has_origin(rule.id, parsed.value, actor=current_actor())
    advice = rules_query.origin_advice(rule, [parsed], api_is_https=_api_is_https())[0]
    return {"origin": parsed, "already": already, "warnings": advice,
            "stored_differently": parsed.value != value.strip()}


def _version_followed(rule: Rule, changed: bool) -> bool:
    """Whether the options form may take the rule's new version after an origin change: only
    when this change alone moved it (the form's version plus one), so an edit made by someone
    else meanwhile is still caught as a conflict."""
    seen = request.form.get("version", type=int)
    return changed and seen is not None and rule.version == seen + 1


# -- coverage ------------------------------------------------------------------------------


@bp.get("/coverage")
@requires_platform("viewer")
def coverage():
    """Every route of this app the engine may govern, and the rule that governs it."""
    routes = rules_query.route_coverage(
        current_app.url_map.iter_rules(),
        excluded_prefixes=tuple(current_app.config.get("CORS_EXCLUDED_PREFIXES", ())))
    show = request.args.get("show", "all")
    if show == "uncovered":
        routes = [route for route in routes if route.rule is None]
    return render("admin/coverage.html", "admin/_coverage_table.html", routes=routes,
                  show=show)


# -- helpers -------------------------------------------------------------------------------


def _existing(rule_id: int) -> Rule:
    db.session.rollback()  # after a failed write, read what is saved now
    return policy_read.get_rule(rule_id, current_actor())


def _error_status(status: int) -> int:
    return 200 if is_htmx() else status


def _navigate(url: str) -> Response:
    """Go to another page: a redirect, or for htmx a full-page ``HX-Redirect``."""
    if is_htmx():
        response = Response(status=204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url)


def _api_is_https() -> bool:
    """Whether the governed API is served over https, for the plain-http origin warning."""
    return request.is_secure or bool(current_app.config.get("CORS_API_IS_HTTPS"))


def _warnings_of(rule: Rule) -> list[str]:
    rule_input = validate_rule(policy_read.rule_to_dict(rule))
    warnings = rule_warnings(rule_input, api_is_https=_api_is_https())
    warnings += report_only_warnings(rule, get_control(current_app).cache.get(),
                                     actor=current_actor())
    return [w.message for w in warnings]


def _blank_form() -> dict[str, Any]:
    """The create form's starting values: the service's defaults."""
    return {"path": "", "methods": ", ".join(DEFAULT_METHODS), "allow_headers": "*",
            "expose_headers": "", "supports_credentials": False, "max_age": "",
            "allow_private_network": False, "mode": ENFORCE, "description": "",
            "tenant": "", "tenant_source": NO_TENANT_SOURCE, "tenant_key": "",
            "tenant_unknown": REFUSE_UNKNOWN_TENANT}


def _form_of(rule: Rule) -> dict[str, Any]:
    """The form's values for a saved rule: lists as comma-separated text."""
    return {
        "path": rule.path,
        "methods": ", ".join(rule.methods),
        "allow_headers": ", ".join(rule.allow_headers),
        "expose_headers": ", ".join(rule.expose_headers),
        "supports_credentials": bool(rule.supports_credentials),
        "max_age": "" if rule.max_age is None else str(rule.max_age),
        "allow_private_network": bool(rule.allow_private_network),
        "mode": rule.mode,
        "description": rule.description or "",
        "tenant": rule.tenant.slug if rule.tenant is not None else "",
        "tenant_source": rule.tenant_source,
        "tenant_key": rule.tenant_key or "",
        "tenant_unknown": rule.unknown_tenant,
    }


def form_data() -> dict[str, Any]:
    """The rule form of this request as the service's input."""
    return _rule_data(_form_from_request())


def _form_from_request() -> dict[str, Any]:
    """The form as typed, kept as is so it can be shown again after an error."""
    form: dict[str, Any] = {name: request.form.get(name, "") for name in OPTION_FIELDS}
    for name in FLAG_FIELDS:
        form[name] = request.form.get(name) in ("on", "true", "1", "yes")
    # Tenancy fields only when the form has them, so a form without them changes none.
    for name in TENANCY_FIELDS:
        if name in request.form:
            form[name] = request.form[name].strip()
    return form


def _rule_data(form: dict[str, Any]) -> dict[str, Any]:
    """The service's input: lists split on commas; a blank max-age means none. Anything that
    does not parse is passed through, for the service to explain."""
    data = {name: form[name] for name in OPTION_FIELDS}
    data["path"] = form["path"].strip()
    for name in LIST_FIELDS:
        data[name] = [part.strip() for part in form[name].split(",") if part.strip()]
    max_age = form["max_age"].strip()
    data["max_age"] = None if max_age == "" else int(max_age) if _is_int(max_age) else max_age
    if "tenant" in form:
        data["tenant"] = form["tenant"] or None
    if "tenant_source" in form:
        source = form["tenant_source"] or NO_TENANT_SOURCE
        data["tenant_selector"] = None if source == NO_TENANT_SOURCE else {
            "source": source, "key": form.get("tenant_key", ""),
            "unknown": form.get("tenant_unknown") or REFUSE_UNKNOWN_TENANT}
    return data


def _is_int(text: str) -> bool:
    # int() of thousands of digits is refused; max_age's bound is far below 18 digits.
    return text.lstrip("-").isdigit() and text.isascii() and len(text) <= 18


def _differences(form: dict[str, Any], saved: dict[str, Any]) -> set[str]:
    """The fields where what the user typed means something else than what is saved."""
    typed, stored = _rule_data(form), _rule_data(saved)
    return {name for name in OPTION_FIELDS if typed[name] != stored[name]}


def _field_errors(error: ValidationError) -> dict[str, list[str]]:
    """Messages per form field. On a save the stored origins are checked against the new
    options (``*`` with credentials): those show beside the credentials checkbox."""
    errors = {name: error.for_field(name) for name in OPTION_FIELDS}
    errors["supports_credentials"] += [
        e.message for e in error.errors if e.field.startswith("origins")]
    for name, field in TENANCY_FIELDS.items():
        errors[name] = error.for_field(field)
    errors["tenant_source"] += error.for_field("tenant_selector")
    # A tenant role's form has no tenancy fields: their messages go above the form.
    tenancy = set() if current_actor().scoped else {*TENANCY_FIELDS.values(), "tenant_selector"}
    errors["form"] = [str(e) for e in error.errors
                      if e.field not in OPTION_FIELDS and e.field not in tenancy
                      and not e.field.startswith("origins")]
    return errors

