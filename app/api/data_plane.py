"""The two endpoints of data planes (hosts running the engine in control-plane mode).

``GET /data-plane/policy`` serves the compiled policy (:func:`cors_control.wire.encode_policy`)
with its ETag. A data plane sends the ETag it holds in ``If-None-Match``: the answer then
waits, up to ``?wait=`` seconds (25 by default, 60 at most), until the policy changes (200
with the new one) or the time is up (304). ``POST /data-plane/refusals`` takes a data plane's
aggregated refusals (:func:`cors_control.wire.encode_refusals`) into the request log.

Tokens of the data-plane role may call these two and nothing else (see :mod:`.auth`); of the
other roles only admins may call them, to see what data planes receive and to test a setup.
"""

from __future__ import annotations

from flask import current_app, json, request
from flask.typing import ResponseReturnValue

from cors_control.wire import (
    POLICY_MEDIA_TYPE,
    PayloadError,
    UnknownFormat,
    decode_refusals,
    etag_version,
    policy_etag,
)

from ..extensions import db
from ..runtime import get_publication
from ..services.access import require_data_plane
from ..services.data_plane import store_refusals
from ..services.errors import FieldError, ValidationError
from ..services.limits import MAX_JSON_DEPTH, nesting_exceeds, whole_number
from . import bp
from .auth import current_actor
from .inputs import require_json_media_type
from .problems import ApiProblem

DEFAULT_WAIT = 25
MAX_WAIT = 60
# How soon a data plane turned away by the bound on waiting polls should ask again.
BUSY_RETRY_AFTER = 5


@bp.get("/data-plane/policy")
def data_plane_policy() -> ResponseReturnValue:
    require_data_plane(current_actor(), to="fetch the compiled policy")
    wait = _wait_arg()
    publication = get_publication(current_app)
    version, body = publication.current()
    held = etag_version(request.headers.get("If-None-Match"))
    # The data plane holds this version, or a newer one (another admin process, ahead of
    # this one): wait for a newer one; it never receives an older one than it holds.
    if held is not None and held >= version:
        db.session.close()  # a waiting poll holds no database connection
        newer = publication.wait_for_newer(held, wait) if wait else False
        if not newer:
            headers = {"ETag": policy_etag(held), "Cache-Control": "no-cache"}
            if newer is None:  # too many polls waiting: answered at once, asked to wait
                headers["Retry-After"] = str(BUSY_RETRY_AFTER)
            return "", 304, headers
        version, body = publication.current()
    return current_app.response_class(body, status=200, mimetype=POLICY_MEDIA_TYPE, headers={
        "ETag": policy_etag(version), "Cache-Control": "no-cache"})


@bp.post("/data-plane/refusals")
def data_plane_refusals() -> ResponseReturnValue:
    actor = current_actor()
    require_data_plane(actor, to="send refusals")
    # Set before the body is read: a batch of refusals may be larger than other bodies.
    request.max_content_length = current_app.config["DATA_PLANE_REFUSALS_MAX_BYTES"]
    document = _refusals_document()
    try:
        rows = decode_refusals(document)
    except UnknownFormat as error:
        raise ApiProblem(400, "unknown-format", "Unknown refusals format", str(error)) \
            from None
    except PayloadError as error:
        raise ApiProblem(400, "malformed-body", "Malformed refusals document", str(error)) \
            from None
    return {"stored": store_refusals(rows, actor=actor)}, 202


def _wait_arg() -> int:
    text = request.args.get("wait")
    if text is None:
        return DEFAULT_WAIT
    wait = whole_number(text)
    if wait is None or wait > MAX_WAIT:
        raise ValidationError([FieldError("wait", f"wait must be a whole number of seconds "
                                                  f"from 0 to {MAX_WAIT}")])
    return wait


def _refusals_document() -> object:
    """The JSON body as it is: its strings are another host's text and are made storable
    row by row (control characters escaped), not refused as other endpoints refuse them."""
    data = request.get_data()
    require_json_media_type()
    if not data:
        raise _malformed("the request has no body; send a refusals document")
    if nesting_exceeds(data, MAX_JSON_DEPTH):
        raise _malformed(f"the JSON document nests arrays and objects more than "
                         f"{MAX_JSON_DEPTH} deep; a refusals document needs 3")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise _malformed("the body is not UTF-8 text") from None
    except ValueError as error:
        raise _malformed(f"the body is not valid JSON: {error}") from None


def _malformed(detail: str) -> ApiProblem:
    return ApiProblem(400, "malformed-body", "Malformed request body", detail)
