"""The policy file in the dashboard: export it, and import one in two steps.

The first POST previews: the document (an uploaded file or pasted JSON) goes through the
import's own dry run and the route-by-route impact, and nothing is written. The page then
carries the document (as canonical JSON, in a hidden field) and a token signed with the
app's secret that binds its SHA-256, the mode and the policy version the preview was made
on. The second POST applies exactly that document, and only on that version: the service
checks the version under the write lock, and a policy changed meanwhile gets the new
preview instead of a write.

Policy files may be larger than other forms (``IMPORT_MAX_BYTES``, as the JSON API), so
these views read their form themselves, after raising the limits, and check the CSRF token
then (:func:`_read_form`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import current_app, flash, redirect, request, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from ..security import csrf
from ..services.changes import policy_version
from ..services.errors import Conflict, FieldError, Forbidden, ServiceError, ValidationError
from ..services.impact import Impact, import_impact
from ..services.limits import MAX_JSON_DEPTH, body_limit_text, nesting_exceeds
from ..services.policy import ImportResult, import_policy
from ..services.policy_read import export_policy
from . import bp
from .access import current_actor, requires
from .rendering import render

MODES = {"merge": False, "replace": True}
# A preview can be applied for as long as a CSRF token lasts.
PREVIEW_MAX_AGE = 3600
# Multipart boundaries, the CSRF token and the mode around the document itself.
FORM_OVERHEAD = 64 * 1024
PAGE = "admin/import.html"
FRAGMENT = "admin/_import_result.html"


class ImportInputError(Exception):
    """What the person sent cannot be read as a policy document; the message says why."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Preview:
    """One import, shown before it is applied."""

    document: Any
    canonical: str
    replace: bool
    version: int
    result: ImportResult
    impact: Impact
    token: str = ""

    @property
    def mode(self) -> str:
        return "replace" if self.replace else "merge"


@dataclass
class Refusal:
    """Why nothing was previewed or written: one message, or the document's field errors."""

    message: str
    errors: list[FieldError] = field(default_factory=list)
    status: int = 422


# -- export --------------------------------------------------------------------------------


@bp.get("/export")
@requires("viewer")
def policy_export():
    """The policy file as ``flask cors export`` writes it (a tenant role gets its own
    tenant's part, as from the JSON API)."""
    text = json.dumps(export_policy(current_actor()), indent=2, sort_keys=True) + "\n"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Response(text, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="cors-policy-{stamp}.json"'})


# -- import --------------------------------------------------------------------------------


@bp.get("/import")
@requires("editor", platform=True)
def policy_import():
    return _page()


@bp.post("/import/preview")
@csrf.exempt  # checked by _read_form, once the larger limit is set
@requires("editor", platform=True)
def policy_import_preview():
    """What importing the document would change, route by route; nothing is written."""
    form, refusal = _read_form()
    if refusal is not None:
        return _page(refusal=refusal, form=form)
    try:
        replace = _mode(form)
        document = _document(form)
        preview = _preview(document, replace=replace)
    except _REFUSED as error:
        return _page(refusal=_refusal(error), form=form)
    return _page(preview=preview, form=form)


@bp.post("/import/apply")
@csrf.exempt  # checked by _read_form, once the larger limit is set
@requires("editor", platform=True)
def policy_import_apply():
    """Apply a previewed document, exactly as previewed: the same document on the same policy
    version, or the new preview instead of a write."""
    form, refusal = _read_form()
    if refusal is not None:
        return _page(refusal=refusal)
    try:
        replace = _mode(form)
        document = _parse(form.get("document", ""), what="the previewed document")
        canonical = _canonical(document)
    except _REFUSED as error:
        return _page(refusal=_refusal(error))
    stale = _check_token(form, canonical, replace)
    if stale is not None:
        return _fresh_preview(document, replace, *stale)
    try:
        result = import_policy(document, actor=current_actor(), replace=replace,
                               expected_version=_token_version(form))
    except Conflict as conflict:
        if conflict.current_version is not None:
            return _fresh_preview(document, replace, f"Nothing was written: {conflict}.")
        return _page(refusal=_refusal(conflict))
    except _REFUSED as error:
        return _page(refusal=_refusal(error))
    if result.has_changes:
        flash(f"Imported ({'replace' if replace else 'merge'}): {_counts(result)}; the "
              f"policy is at version {result.policy_version}.", "message")
    else:
        flash("The policy already was as the file says; nothing was written.", "message")
    return redirect(url_for("admin.policy_import"), 303)


# -- reading the request -------------------------------------------------------------------


_REFUSED = (ImportInputError, ServiceError)


def _limit() -> int:
    return int(current_app.config["IMPORT_MAX_BYTES"])


def _read_form() -> tuple[MultiDict[str, str], Refusal | None]:
    """The posted form, read under the import's limit, after the CSRF check."""
    request.max_content_length = _limit() + FORM_OVERHEAD
    request.max_form_memory_size = _limit()
    try:
        form: MultiDict[str, str] = MultiDict(request.form)
        request.files  # noqa: B018 - read now, under the limit
    except RequestEntityTooLarge:
        return MultiDict(), _too_large()
    if current_app.config.get("WTF_CSRF_ENABLED", True) and \
            current_app.config.get("WTF_CSRF_CHECK_DEFAULT", True):
        csrf.protect()
    return form, None


def _too_large() -> Refusal:
    return Refusal(f"The policy file is larger than {body_limit_text(_limit())}, the most an "
                   "import accepts (IMPORT_MAX_BYTES, as for the JSON API). Nothing was "
                   "written. Split the file and import the parts in merge mode, or ask the "
                   "operator to raise IMPORT_MAX_BYTES.", status=413)


def _mode(form: MultiDict[str, str]) -> bool:
    mode = form.get("mode", "merge")
    if mode not in MODES:
        raise ImportInputError("Choose how to import: merge (rules of the file are created "
                               "or overwritten, the others stay) or replace (rules not in "
                               "the file are deleted).")
    return MODES[mode]


def _document(form: MultiDict[str, str]) -> Any:
    """The document of an uploaded file or of the pasted text (one of them)."""
    upload = request.files.get("file")
    name = upload.filename if upload is not None and upload.filename else ""
    data = upload.read() if upload is not None and name else b""
    pasted = form.get("document", "")
    if pasted.strip() and data:
        raise ImportInputError("Choose a file or paste the JSON, not both: clear the text "
                               "box to import the file.")
    if data:
        if len(data) > _limit():
            raise ImportInputError(_too_large().message, status=413)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ImportInputError(f"{name} is not UTF-8 text; save the policy "
                                   "file as UTF-8 JSON (flask cors export writes one)") \
                from None
        return _parse(text, what=name)
    if not pasted.strip():
        raise ImportInputError("Choose a policy file or paste its JSON, then preview the "
                               "import.")
    return _parse(pasted, what="the pasted text")


def _parse(text: str, *, what: str) -> Any:
    if not text.strip():
        raise ImportInputError(f"{what} is empty; a policy is a JSON object such as "
                               '{"rules": [...]}')
    if nesting_exceeds(text.encode("utf-8", "surrogatepass"), MAX_JSON_DEPTH):
        raise ImportInputError(f"{what} nests arrays or objects more than {MAX_JSON_DEPTH} "
                               "deep; a policy file needs 4. Nothing was written.")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportInputError(f"{what} is not valid JSON: {error.msg} at line "
                               f"{error.lineno}, column {error.colno}. Nothing was "
                               "written.") from None
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ImportInputError(f"{what} contains an escape of half a character (such as "
                               "\\ud800), which no text can store; remove it") from None
    return document


def _canonical(document: Any) -> str:
    """The document as one line of ASCII JSON: whitespace and key order make no difference,
    and a hidden form field carries it unchanged (no line break to be rewritten)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# -- preview and token ---------------------------------------------------------------------


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt="policy-import-preview")


def _preview(document: Any, *, replace: bool) -> Preview:
    """The import's dry run and impact, on the version read first: a change made while the
    preview is computed makes it stale, never wrongly current."""
    actor = current_actor()
    version = policy_version()
    result = import_policy(document, actor=actor, replace=replace, dry_run=True)
    impact = import_impact(document, replace=replace, actor=actor)
    canonical = _canonical(document)
    preview = Preview(document, canonical, replace, version, result, impact)
    preview.token = str(_serializer().dumps({
        "sha256": hashlib.sha256(canonical.encode()).hexdigest(), "replace": replace,
        "version": version, "takes_away": impact.takes_away}))
    return preview


def _check_token(form: MultiDict[str, str], canonical: str,
                 replace: bool) -> tuple[str, int] | None:
    """None when the form's token is this document's preview on the current version and
    the confirmation it asks for was given; else why the document is shown (again), and the
    status to answer with."""
    try:
        claims = _serializer().loads(form.get("token", ""), max_age=PREVIEW_MAX_AGE)
    except SignatureExpired:
        return ("Nothing was written: the preview is more than an hour old. Here it is "
                "again.", 409)
    except BadSignature:
        return ("Nothing was written: apply an import from its preview. Here is the "
                "preview.", 409)
    if not isinstance(claims, dict) \
            or claims.get("sha256") != hashlib.sha256(canonical.encode()).hexdigest() \
            or claims.get("replace") is not replace:
        return ("Nothing was written: the document or the mode differs from the one "
                "previewed. Here is the preview of what was sent.", 409)
    if claims.get("version") != policy_version():
        return (f"Nothing was written: the policy changed since the preview (version "
                f"{claims.get('version')}, now {policy_version()}). Here is the new preview.",
                409)
    if claims.get("takes_away") and form.get("confirm_impact") != "yes":
        return ("Not applied yet: this import takes something away. Tick the box to apply "
                "it anyway.", 200)
    return None


def _token_version(form: MultiDict[str, str]) -> int:
    """The version of a token :func:`_check_token` accepted."""
    return int(_serializer().loads(form.get("token", ""))["version"])


def _fresh_preview(document: Any, replace: bool, notice: str, status: int = 409) -> Response:
    try:
        preview = _preview(document, replace=replace)
    except _REFUSED as error:
        return _page(refusal=_refusal(error), notice=notice)
    return _page(preview=preview, notice=notice, status=status)


# -- answers -------------------------------------------------------------------------------


def _refusal(error: Exception) -> Refusal:
    if isinstance(error, ValidationError):
        return Refusal("The file is not a valid policy; nothing was written. Fix these "
                       "entries and preview again:", list(error.errors))
    if isinstance(error, ImportInputError):
        return Refusal(str(error), status=error.status)
    status = 403 if isinstance(error, Forbidden) else 409 if isinstance(error, Conflict) \
        else 422
    return Refusal(f"Nothing was written: {error}", status=status)


def _counts(result: ImportResult) -> str:
    return (f"{len(result.added)} added, {len(result.changed)} changed, "
            f"{len(result.removed)} removed, {len(result.unchanged)} unchanged")


def _page(*, preview: Preview | None = None, refusal: Refusal | None = None,
          form: MultiDict[str, str] | None = None, notice: str = "", status: int | None = None
          ) -> Response:
    pasted = form.get("document", "") if form is not None else ""
    mode = form.get("mode", "merge") if form is not None else "merge"
    if preview is not None:
        mode = preview.mode
    return render(PAGE, FRAGMENT,
                  status=status or (refusal.status if refusal is not None else 200),
                  preview=preview, refusal=refusal, notice=notice,
                  pasted=pasted,
                  mode=mode if mode in MODES else "merge",
                  limit=body_limit_text(_limit()), counts=_counts)
