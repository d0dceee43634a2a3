"""Reading requests: JSON bodies, query arguments, pages, and ``If-Match`` preconditions.

Problems with the request's form (not JSON, wrong media type) are answered here; problems
with its content are the service layer's ``ValidationError``, raised as is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Response, json, request
from flask_sqlalchemy.pagination import Pagination

from ..services.errors import FieldError, ValidationError
from ..services.limits import (
    MAX_JSON_DEPTH,
    MAX_PAGE,
    check_ids,
    nesting_exceeds,
    page_message,
    whole_number,
)
from .problems import ApiProblem

MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")


def json_body(*, required: bool = True) -> Any:
    """The request's JSON document; None when the body is empty and *required* is false."""
    if not request.get_data(cache=True):
        if not required:
            return None
        require_json_media_type()
        raise _malformed("the request has no body; send a JSON document")
    require_json_media_type()
    if nesting_exceeds(request.get_data(), MAX_JSON_DEPTH):
        raise _malformed(f"the JSON document nests arrays and objects more than "
                         f"{MAX_JSON_DEPTH} deep; no document of this API needs more than 5")
    try:
        document = json.loads(request.get_data().decode("utf-8"))
    except UnicodeDecodeError:
        raise _malformed("the body is not UTF-8 text") from None
    except ValueError as error:
        raise _malformed(f"the body is not valid JSON: {error}") from None
    problems = list(_unstorable_text(document, ""))
    if problems:
        raise ValidationError(problems)
    return document


def _malformed(detail: str) -> ApiProblem:
    return ApiProblem(400, "malformed-body", "Malformed request body", detail)


def require_json_media_type() -> None:
    mimetype = request.mimetype
    if mimetype != "application/json" and not (
            mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise ApiProblem(415, "unsupported-media-type", "Unsupported Media Type",
                         "send the body as JSON with Content-Type: application/json",
                         headers={"Accept-Patch": "application/json"}
                         if request.method == "PATCH" else None)


def _unstorable_text(value: Any, where: str) -> Iterator[FieldError]:
    """Text no database column can hold: NUL characters, lone surrogates."""
    if isinstance(value, str):
        if "\x00" in value or not _encodable(value):
            yield FieldError(where, "text cannot contain NUL characters or invalid Unicode")
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            if not _encodable(key) or "\x00" in key:
                yield FieldError(where, "field names cannot contain NUL characters or "
                                        "invalid Unicode")
            else:
                yield from _unstorable_text(item, name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable_text(item, f"{where}[{index}]")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_arguments() -> None:
    """Query arguments and URL parts reach SQL: PostgreSQL text cannot hold NUL, and ids are
    32-bit integers (a larger one names nothing)."""
    view_args = request.view_args or {}
    errors = [FieldError(name, "text cannot contain NUL characters")
              for name, value in [*request.args.items(multi=True), *view_args.items()]
              if isinstance(value, str) and "\x00" in value]
    if errors:
        raise ValidationError(errors)
    check_ids(view_args)


def text_arg(name: str) -> str | None:
    value = request.args.get(name)
    return value if value else None


def bool_arg(name: str, *, default: bool = False) -> bool:
    value = request.args.get(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValidationError([FieldError(name, f"{name} must be true or false")])


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int
    per_page: int

    @classmethod
    def from_args(cls) -> PageRequest:
        """``page`` from 1; ``per_page`` from 1, larger values are capped at
        :data:`MAX_PER_PAGE` (the response says which size was used)."""
        errors: list[FieldError] = []
        page = _whole_number("page", 1, MAX_PAGE, errors)
        per_page = _whole_number("per_page", DEFAULT_PER_PAGE, None, errors)
        if errors:
            raise ValidationError(errors)
        return cls(page, min(per_page, MAX_PER_PAGE))


def _whole_number(name: str, default: int, maximum: int | None,
                  errors: list[FieldError]) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    value = whole_number(text) or 0
    if value < 1 or (maximum is not None and value > maximum):
        errors.append(FieldError(name, page_message(name) if maximum
                                 else f"{name} must be a whole number from 1"))
        return default
    return value


def no_content() -> Response:
    """204: no body, so no Content-Type either."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def page_of(pagination: Pagination, item: Callable[[Any], Any]) -> dict[str, Any]:
    """The API's page shape: ``{items, page, per_page, total}``."""
    return {"items": [item(row) for row in pagination.items], "page": pagination.page,
            "per_page": pagination.per_page, "total": pagination.total or 0}


def page_of_rows(rows: Iterable[Any], total: int, paging: PageRequest,
                 item: Callable[[Any], Any]) -> dict[str, Any]:
    """The same page shape for *rows* a service has already cut to *paging*."""
    return {"items": [item(row) for row in rows], "page": paging.page,
            "per_page": paging.per_page, "total": total}


def if_match_version(current: int) -> int | None:
    """The rule version the caller's ``If-Match`` names, checked against *current*.

    None when the request has no ``If-Match``; a stale or malformed value is refused with
    412 (a weak tag never matches: the comparison is strong, RFC 9110 section 13.1.1).
    """
    if "If-Match" not in request.headers:
        return None
    tags = request.if_match
    if tags.star_tag or tags.contains(str(current)):
        return current
    raise stale(current)


def stale(current: int) -> ApiProblem:
    """412: the rule is no longer at the version the caller read."""
    return ApiProblem(412, "precondition-failed", "Precondition Failed",
                      f'the rule changed since you read it (its ETag is now "{current}"); GET '
                      "it again, reapply your change and send the new ETag in If-Match",
                      current_version=current)
