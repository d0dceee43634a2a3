"""Page numbers from the query string: lenient about text, strict about size."""

from __future__ import annotations

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from ..services.limits import MAX_PAGE, page_message, whole_number


def page_arg(args: MultiDict[str, str], name: str = "page", default: int = 1) -> int:
    """The page (or page size) a link asks for. Text that is no number falls back to
    *default*, as a hand-edited link always has; a number past :data:`MAX_PAGE` would
    overflow the database's offset, so it answers 400 with the bound."""
    text = args.get(name)
    value = whole_number(text) if text else None
    if value is None or value < 1:
        return default
    if value > MAX_PAGE:
        raise BadRequest(page_message(name))
    return value
