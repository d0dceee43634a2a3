"""Bounds on the numbers a request may carry: ids, page numbers, look-back durations.

Numbers from URLs and query strings reach SQL. Past these bounds the databases overflow
(ids are INTEGER columns, 32-bit on PostgreSQL; offsets and dates have ends too), so every
channel checks here first and answers 400 or 404 with a message instead of a 500.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from .errors import NotFound

MAX_ID = 2**31 - 1
MAX_PAGE = 2**31 - 1
# The request log keeps weeks; ten years is far past anything stored and far from the
# end of the calendar.
MAX_LOOKBACK = timedelta(days=3650)
# JSON documents (API bodies, policy files) nest at most this deep: the parser recurses once
# per level, and 100,000 "[" would exhaust the stack.
MAX_JSON_DEPTH = 32
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
OPENING_BRACKETS = frozenset(b"[{")
NOT_A_BRACKET = bytes(set(range(256)) - set(b"[]{}"))


def whole_number(text: str) -> int | None:
    """*text* as a non-negative whole number, or None when it is not one.

    Past 18 digits a number is only "too large": int() of thousands of digits is slow (and
    refused by Python), and no bound here comes near 10**18.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")
    return int(digits or "0") if len(digits) <= 18 else 10**18


def page_message(name: str = "page") -> str:
    return f"{name} must be a whole number from 1 to {MAX_PAGE}"


def check_ids(view_args: Mapping[str, Any] | None) -> None:
    """Refuse ids in a URL (``/rules/<int:rule_id>``) that no row can have: 404 with the
    id named, before the number reaches SQL."""
    for name, value in (view_args or {}).items():
        if name.endswith("_id") and isinstance(value, int) and value > MAX_ID:
            what = name.removesuffix("_id").replace("_", " ")
            raise NotFound(f"there is no {what} with id {value}")


def body_limit_text(limit: int | None) -> str:
    """A request body limit as people read it: ``1 MB (1,048,576 bytes)``."""
    if limit is None:
        return "the server's limit"
    megabytes = limit / (1024 * 1024)
    shown = f"{megabytes:g} MB" if megabytes >= 1 else f"{limit / 1024:g} KB"
    return f"{shown} ({limit:,} bytes)"


def nesting_exceeds(data: bytes, limit: int) -> bool:
    """Whether the JSON text *data* opens more than *limit* arrays or objects inside each
    other, found without parsing it: the parser recurses once per level, and a body of
    100,000 ``[`` would exhaust the stack. Brackets inside strings do not count."""
    depth = 0
    for byte in JSON_STRING.sub(b"", data).translate(None, NOT_A_BRACKET):
        depth += 1 if byte in OPENING_BRACKETS else -1
        if depth > limit:
            return True
    return False
