"""Attacker-controlled text (Origin, paths, header names) made safe for logs and messages."""

from __future__ import annotations


def printable(text: str, limit: int = 300) -> str:
    """One line of printable text: control and non-printable characters become ``\\xNN`` (or
    ``\\uNNNN``) escapes, so nothing raw reaches a log line or a terminal; cut at *limit*."""
    if text.isprintable() and text.isascii():
        escaped = text
    else:
        escaped = "".join(ch if ch.isprintable() and ch.isascii() else _escape(ch)
                          for ch in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def escape_unprintable(text: str) -> str:
    """*text* with control and other non-printable characters (NUL, CR, LF, bidi overrides)
    as ``\\xNN`` escapes; printable non-ASCII letters are kept, for exports read by people."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def truncate(text: str, limit: int) -> str:
    """Cut stored data to the column's size; the value is kept as is otherwise."""
    return text if len(text) <= limit else text[:limit]


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"
