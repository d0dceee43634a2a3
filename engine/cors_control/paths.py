"""Path patterns: which request paths a rule governs, and which rule wins.

A pattern is an absolute path split into ``/``-separated segments:

* a literal segment matches itself, case-sensitively;
* ``*`` as a whole segment matches exactly one segment (any text, even empty);
* a trailing ``/*`` matches any suffix of one or more segments: ``/api/*`` matches
  ``/api/``, ``/api/a`` and ``/api/a/b``, but not ``/api``.

When several patterns match a path, the one with more literal segments wins, then the one
with fewer wildcards. Two patterns that could match the same path with the same score are a
tie; :func:`find_tie` finds them so that such a rule is refused on save.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_PATTERN_LENGTH = 500
_SEGMENT = re.compile(r"^[A-Za-z0-9\-._~!$&'()+,;=:@%]*$")


class PatternError(ValueError):
    """A path pattern that cannot be accepted; the message says why and how to fix it."""


@dataclass(frozen=True, slots=True)
class PathPattern:
    """A parsed path pattern. ``segments`` holds literals and ``None`` for ``*``."""

    text: str
    segments: tuple[str | None, ...]
    open_ended: bool

    @property
    def literal_count(self) -> int:
        return sum(1 for segment in self.segments if segment is not None)

    @property
    def wildcard_count(self) -> int:
        return len(self.segments) - self.literal_count + (1 if self.open_ended else 0)

    @property
    def specificity(self) -> tuple[int, int]:
        """Higher sorts first: more literal segments, then fewer wildcards."""
        return (self.literal_count, -self.wildcard_count)

    def matches(self, path: str) -> bool:
        parts = path.split("/")[1:] if path.startswith("/") else None
        if parts is None:
            return False
        if self.open_ended:
            if len(parts) <= len(self.segments):
                return False
        elif len(parts) != len(self.segments):
            return False
        return all(s is None or s == p for s, p in zip(self.segments, parts, strict=False))


def parse_pattern(text: str) -> PathPattern:
    """Validate *text* as a path pattern and return it parsed."""
    if not isinstance(text, str) or text == "":
        raise PatternError("the path is empty; use a pattern such as /api/*")
    if len(text) > MAX_PATTERN_LENGTH:
        raise PatternError(f"the path is longer than {MAX_PATTERN_LENGTH} characters")
    if text != text.strip() or any(ch.isspace() for ch in text):
        raise PatternError("a path has no whitespace; remove the spaces")
    if not text.startswith("/"):
        raise PatternError(f"a path starts with /; use /{text.lstrip('/')}")
    if "?" in text or "#" in text:
        raise PatternError("a path pattern has no query or fragment; remove what follows ? or #")
    if not text.isprintable():
        raise PatternError("the path contains control characters; type it again")
    parts = text.split("/")[1:]
    open_ended = len(parts) > 1 and parts[-1] == "*" or text == "/*"
    if open_ended:
        parts = parts[:-1]
    segments: list[str | None] = []
    for part in parts:
        if part == "*":
            segments.append(None)
        elif "*" in part:
            raise PatternError(
                f"* stands for a whole segment; {part!r} mixes it with text. Use /* for one "
                "segment or a trailing /* for any suffix"
            )
        elif not _SEGMENT.match(part):
            raise PatternError(f"the segment {part!r} has characters a URL path cannot hold")
        else:
            segments.append(part)
    return PathPattern(text=text, segments=tuple(segments), open_ended=open_ended)


def parse_new_pattern(text: str) -> PathPattern:
    """:func:`parse_pattern`, plus the rules a pattern must meet when it is saved: nothing
    that could never match the path Flask routes. Patterns stored before these rules still
    load through :func:`parse_pattern` (they match nothing, as before)."""
    pattern = parse_pattern(text)
    if "//" in text:
        raise PatternError(
            f"the path has an empty segment (//), which the path of a request never has; "
            f"use {_shown(re.sub('/{2,}', '/', text))}"
        )
    for part in text.split("/"):
        if part in (".", ".."):
            raise PatternError(
                f"the segment {part} is resolved by browsers and servers before a request "
                "is routed, so it never matches; write the path it leads to"
            )
        if "%" in part:
            raise PatternError(
                f"the segment {_shown(part)} has a %-escape, which the decoded path Flask "
                "routes never holds; write the segment as the app's route names it, such as "
                "/api/orders"
            )
    return pattern


def _shown(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def overlaps(a: PathPattern, b: PathPattern) -> bool:
    """Whether some path is matched by both patterns."""
    if not a.open_ended and not b.open_ended and len(a.segments) != len(b.segments):
        return False
    if a.open_ended and not b.open_ended and len(b.segments) <= len(a.segments):
        return False
    if b.open_ended and not a.open_ended and len(a.segments) <= len(b.segments):
        return False
    return all(
        x is None or y is None or x == y for x, y in zip(a.segments, b.segments, strict=False)
    )


def covers(outer: PathPattern, inner: PathPattern) -> bool:
    """Whether every path *inner* matches is matched by *outer* too: ``/api/t/acme/*`` covers
    ``/api/t/acme/orders`` and itself, not ``/api/*`` nor ``/api/t/*/orders``."""
    if outer.open_ended:
        # outer matches more segments than it has; inner must never match fewer.
        shortest = len(inner.segments) + (1 if inner.open_ended else 0)
        if shortest <= len(outer.segments):
            return False
    elif inner.open_ended or len(inner.segments) != len(outer.segments):
        return False
    return all(
        o is None or o == i for o, i in zip(outer.segments, inner.segments, strict=False)
    )


def find_tie(candidate: PathPattern, others: list[PathPattern]) -> PathPattern | None:
    """Return a pattern among *others* that would tie with *candidate* on some path."""
    for other in others:
        if other.text == candidate.text:
            return other
        if other.specificity == candidate.specificity and overlaps(candidate, other):
            return other
    return None


@dataclass(slots=True)
class _Node:
    literals: dict[str, _Node] = field(default_factory=dict)
    wildcard: _Node | None = None
    exact: object | None = None  # payload of a pattern that ends here
    open_ended: object | None = None  # payload of a pattern that ends here with /*


class PatternIndex:
    """Finds the most specific pattern matching a path, in time bounded by the path's depth
    and the number of wildcard branches, not by the number of patterns."""

    __slots__ = ("_root", "_rank")

    def __init__(self, entries: list[tuple[PathPattern, object]]) -> None:
        self._root = _Node()
        self._rank: dict[int, tuple[int, int]] = {}
        for pattern, payload in entries:
            node = self._root
            for segment in pattern.segments:
                if segment is None:
                    if node.wildcard is None:
                        node.wildcard = _Node()
                    node = node.wildcard
                else:
                    node = node.literals.setdefault(segment, _Node())
            if pattern.open_ended:
                node.open_ended = payload
            else:
                node.exact = payload
            self._rank[id(payload)] = pattern.specificity

    def lookup(self, path: str) -> object | None:
        return self._walk(path, None)

    def lookup_all(self, path: str) -> list[object]:
        """Every payload whose pattern matches *path*, the most specific first (the first is
        the one :meth:`lookup` returns, ties included); for what stands behind the winner."""
        found: list[tuple[tuple[int, int], int, object]] = []
        self._walk(path, found)
        found.sort(key=lambda entry: entry[:2], reverse=True)
        return [payload for _rank, _order, payload in found]

    def _walk(self, path: str,
              found: list[tuple[tuple[int, int], int, object]] | None) -> object | None:
        """The most specific payload matching *path* (among equals, the first found); with
        *found*, every match is also appended to it as (rank, -order found, payload)."""
        if not path.startswith("/"):
            return None
        parts = path.split("/")
        best: object | None = None
        best_rank = (-1, 0)
        rank = self._rank
        # Depth-first over (node, position); parts[0] is the empty text before the first /.
        stack = [(self._root, 1)]
        last = len(parts)
        while stack:
            node, position = stack.pop()
            matched = node.open_ended if position < last else None
            if position == last:
                matched = node.exact
            if matched is not None:
                r = rank[id(matched)]
                if r > best_rank:
                    best, best_rank = matched, r
                if found is not None:
                    found.append((r, -len(found), matched))
            if position == last:
                continue
            if node.wildcard is not None:
                stack.append((node.wildcard, position + 1))
            child = node.literals.get(parts[position])
            if child is not None:
                stack.append((child, position + 1))
        return best
