"""Path patterns (cors_control.paths): parsing, matching, precedence, ties and the index.

Pure functions, no app and no database. The index is checked against the plain definition
("every pattern that matches, the most specific one wins") on generated pattern sets.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cors_control.paths import (
    MAX_PATTERN_LENGTH,
    PathPattern,
    PatternError,
    PatternIndex,
    covers,
    find_tie,
    overlaps,
    parse_new_pattern,
    parse_pattern,
)

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- parse_pattern -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "segments", "open_ended"),
    [
        ("/", ("",), False),
        ("/api", ("api",), False),
        ("/api/", ("api", ""), False),
        ("/api/users", ("api", "users"), False),
        ("/api/*", ("api",), True),
        ("/*", (), True),
        ("/api/*/items", ("api", None, "items"), False),
        ("/api/*/*", ("api", None), True),
        ("/*/b", (None, "b"), False),
        ("/*/", (None, ""), False),
        ("//", ("", ""), False),
        ("/a/b/c/d", ("a", "b", "c", "d"), False),
        ("/v1.0/~user/caf%C3%A9", ("v1.0", "~user", "caf%C3%A9"), False),
        ("/a:b/@x/!$&'()+,;=", ("a:b", "@x", "!$&'()+,;="), False),
    ],
)
def test_pattern_is_parsed_into_literal_and_wildcard_segments(
    text: str, segments: tuple[str | None, ...], open_ended: bool
) -> None:
    pattern = parse_pattern(text)
    assert pattern.text == text
    assert pattern.segments == segments
    assert pattern.open_ended is open_ended


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["empty", "/api/*"]),
        ("api/*", ["starts with /", "use /api/*"]),
        ("*", ["starts with /", "use /*"]),
        (" /api", ["no whitespace"]),
        ("/api ", ["no whitespace"]),
        ("/api/ users", ["no whitespace"]),
        ("/api\t", ["no whitespace"]),
        ("/api?x=1", ["no query or fragment"]),
        ("/api#top", ["no query or fragment"]),
        ("/api/*?x", ["no query or fragment"]),
        ("/api/**", ["'**'", "whole segment", "trailing /*"]),
        ("/api/v*", ["'v*'", "whole segment"]),
        ("/api/*.json", ["'*.json'", "whole segment"]),
        ("/*a/b", ["'*a'", "whole segment"]),
        ("/api/<id>", ["'<id>'", "cannot hold"]),
        ("/api/\"x\"", ["cannot hold"]),
        ("/api/a\\b", ["cannot hold"]),
        ("/api/caf\u00e9", ["cannot hold"]),
        ("/api/\x00", ["control characters"]),
        ("/api/\x7f/x", ["control characters"]),
        ("/a" * 251, [f"longer than {MAX_PATTERN_LENGTH}"]),
    ],
)
def test_refused_pattern_message_names_the_problem(text: str, expected: list[str]) -> None:
    with pytest.raises(PatternError) as caught:
        parse_pattern(text)
    for fragment in expected:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("//", ["empty segment (//)", "use /"]),
        ("/api//orders", ["empty segment", "use /api/orders"]),
        ("/api//*", ["empty segment", "use /api/*"]),
        ("/api/./orders", ["segment .", "path it leads to"]),
        ("/api/../admin", ["segment ..", "path it leads to"]),
        ("/api/..", ["segment .."]),
        ("/v1/caf%C3%A9", ["caf%C3%A9", "%-escape", "/api/orders"]),
        ("/api/%2e%2e/x", ["%-escape"]),
    ],
)
def test_a_new_pattern_that_could_never_match_is_refused_with_the_fix(
    text: str, expected: list[str]
) -> None:
    parse_pattern(text)  # a rule stored before these checks still loads
    with pytest.raises(PatternError) as caught:
        parse_new_pattern(text)
    for fragment in expected:
        assert fragment in str(caught.value)


@pytest.mark.parametrize("text", ["/", "/api/", "/api/*", "/*", "/v1.0/*/x", "/a..b/.x/x."])
def test_a_new_pattern_may_hold_dots_inside_segments_and_a_trailing_slash(text: str) -> None:
    assert parse_new_pattern(text) == parse_pattern(text)


def test_pattern_of_maximum_length_is_accepted() -> None:
    text = "/" + "a" * (MAX_PATTERN_LENGTH - 1)
    assert parse_pattern(text).segments == ("a" * (MAX_PATTERN_LENGTH - 1),)
    with pytest.raises(PatternError, match="longer than"):
        parse_pattern(text + "a")


@pytest.mark.parametrize("value", [None, 7, b"/api"])
def test_non_text_pattern_is_refused_with_pattern_error(value: object) -> None:
    with pytest.raises(PatternError):
        parse_pattern(value)  # type: ignore[arg-type]


# --- PathPattern.matches -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        # A trailing /* matches one or more segments after the prefix, never the prefix.
        ("/api/*", "/api/", True),
        ("/api/*", "/api/a", True),
        ("/api/*", "/api/a/b", True),
        ("/api/*", "/api/a/b/", True),
        ("/api/*", "/api", False),
        ("/api/*", "/apix", False),
        ("/api/*", "/apix/a", False),
        ("/api/*", "/x/api/a", False),
        ("/api/*", "/API/a", False),
        ("/api/*", "api/a", False),
        ("/api/*", "", False),
        ("/*", "/", True),
        ("/*", "/a", True),
        ("/*", "/a/b/c", True),
        ("/*", "", False),
        ("/*", "a", False),
        # * elsewhere is exactly one segment, possibly empty.
        ("/api/*/items", "/api/1/items", True),
        ("/api/*/items", "/api//items", True),
        ("/api/*/items", "/api/items", False),
        ("/api/*/items", "/api/1/2/items", False),
        ("/api/*/items", "/api/1/items/", False),
        ("/api/*/items", "/api/1/Items", False),
        ("/*/b", "/a/b", True),
        ("/*/b", "//b", True),
        ("/*/b", "/b", False),
        ("/api/*/*", "/api/1/x", True),
        ("/api/*/*", "/api/1/x/y", True),
        ("/api/*/*", "/api/1", False),
        ("/api/*/*", "/api/1/", True),
        # Literals are exact and case-sensitive; a trailing slash is a segment.
        ("/api", "/api", True),
        ("/api", "/api/", False),
        ("/api", "/API", False),
        ("/api", "/Api", False),
        ("/api/", "/api/", True),
        ("/api/", "/api", False),
        ("/", "/", True),
        ("/", "/a", False),
        ("/", "", False),
        ("/a.b", "/aXb", False),
        ("/a+b", "/aab", False),
    ],
)
def test_pattern_matches_path(pattern: str, path: str, expected: bool) -> None:
    assert parse_pattern(pattern).matches(path) is expected


# --- Specificity and precedence ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "specificity"),
    [
        ("/api/users", (2, 0)),
        ("/api/*", (1, -1)),
        ("/*", (0, -1)),
        ("/", (1, 0)),
        ("/*/*", (0, -2)),
        ("/a/*/c", (2, -1)),
        ("/a/*/c/*", (2, -2)),
    ],
)
def test_specificity_counts_literal_segments_then_wildcards(
    text: str, specificity: tuple[int, int]
) -> None:
    assert parse_pattern(text).specificity == specificity


@pytest.mark.parametrize(
    ("patterns", "path", "winner"),
    [
        (["/api/*", "/api/users"], "/api/users", "/api/users"),
        (["/api/*", "/api/users"], "/api/users/1", "/api/*"),
        (["/api/*", "/api/users/*"], "/api/users/1", "/api/users/*"),
        (["/api/*", "/api/*/items"], "/api/1/items", "/api/*/items"),
        (["/*", "/api/*"], "/api/x", "/api/*"),
        (["/*", "/api/*"], "/other", "/*"),
        (["/*", "/api"], "/api", "/api"),
        # Equal literals: fewer wildcards wins.
        (["/a/*", "/a/*/*"], "/a/x/y", "/a/*"),
        (["/a/*/c", "/a/*/c/*"], "/a/b/c/d", "/a/*/c/*"),
        (["/a/*/c", "/a/*/*"], "/a/b/c", "/a/*/c"),
        # Nothing matches.
        (["/api/*", "/api/users"], "/other", None),
        (["/api/*"], "/api", None),
        (["/api"], "/API", None),
        (["/api/*", "/api/users"], "/api/Users", "/api/*"),
        ([], "/", None),
        (["/*"], "no-leading-slash", None),
    ],
)
def test_most_specific_pattern_wins(patterns: list[str], path: str, winner: str | None) -> None:
    parsed = [parse_pattern(text) for text in patterns]
    for pattern in parsed:
        assert find_tie(pattern, [other for other in parsed if other is not pattern]) is None
    index = PatternIndex([(pattern, pattern.text) for pattern in parsed])
    assert index.lookup(path) == winner


# --- Overlaps and ties -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "witness"),
    [
        ("/api/users/*", "/api/*/items", "/api/users/items"),
        ("/a/*/c", "/a/b/*", "/a/b/c"),
        ("/*/b", "/a/*", "/a/b"),
        ("/x/*", "/*/y", "/x/y"),
        ("/*/*", "/*/*", "/a/b"),
        ("/api", "/api", "/api"),
        ("/*", "/*", "/"),
    ],
)
def test_overlapping_patterns_of_equal_specificity_are_a_tie(a: str, b: str, witness: str) -> None:
    first, second = parse_pattern(a), parse_pattern(b)
    assert first.matches(witness) and second.matches(witness)
    assert find_tie(first, [second]) is second
    assert find_tie(second, [first]) is first


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("/a/*", "/b/*"),
        ("/a", "/b"),
        ("/a/*/c", "/a/*/d"),
        ("/api/*", "/api/users"),  # overlap, but the literal wins
        ("/a/*", "/a/*/*"),  # overlap, but fewer wildcards wins
        ("/*/b", "/a/*/c"),
        ("/a/*", "/a"),  # /a/* never matches /a
        ("/a/b", "/a/b/"),
        ("/a/*", "/*/b/*"),  # overlap on /a/b/c, but (1, -1) beats (1, -2)
    ],
)
def test_patterns_that_never_tie_are_not_reported(a: str, b: str) -> None:
    first, second = parse_pattern(a), parse_pattern(b)
    assert find_tie(first, [second]) is None
    assert find_tie(second, [first]) is None


def test_find_tie_reports_the_first_tying_pattern_among_many() -> None:
    candidate = parse_pattern("/api/users/*")
    others = [parse_pattern(t) for t in ["/api/*", "/other/*", "/api/*/items", "/*/users/*"]]
    assert find_tie(candidate, others) is others[2]
    assert find_tie(candidate, []) is None


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("/a/*", "/a", False),
        ("/a/*", "/a/b", True),
        ("/a/*", "/a/b/c", True),
        ("/a/*", "/b/c", False),
        ("/a/b/*", "/a/*", True),
        ("/a", "/a/b", False),
        ("/*", "/", True),
        ("/*/c", "/a/*", True),
        ("/a/*/c", "/a/b/d", False),
    ],
)
def test_overlaps_is_true_exactly_when_some_path_matches_both(
    a: str, b: str, expected: bool
) -> None:
    first, second = parse_pattern(a), parse_pattern(b)
    assert overlaps(first, second) is expected
    assert overlaps(second, first) is expected


# --- Hypothesis: strategies --------------------------------------------------------------

# Few distinct literals so that generated patterns and paths meet often.
LITERALS = ["a", "b", "c", ""]
PATTERN_SEGMENT = st.sampled_from([*LITERALS, None])
PATH_SEGMENT = st.sampled_from(["a", "b", "c", "d", "", "A"])


@st.composite
def patterns(draw: st.DrawFn) -> PathPattern:
    """A pattern over few literals. A closed pattern ending in * reads as open-ended, as
    the text says; the parsed pattern is what the tests use."""
    open_ended = draw(st.booleans())
    segments = draw(st.lists(PATTERN_SEGMENT, min_size=0 if open_ended else 1, max_size=3))
    text = "/" + "/".join("*" if s is None else s for s in segments)
    if open_ended:
        text = text + "/*" if segments else "/*"
    return parse_pattern(text)


PATHS = st.one_of(
    st.lists(PATH_SEGMENT, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts)),
    st.sampled_from(["", "a", "a/b", "/"]),
)


def _as_regex(pattern: PathPattern) -> re.Pattern[str]:
    """The pattern's meaning written independently of its implementation."""
    body = "".join("/" + ("[^/]*" if s is None else re.escape(s)) for s in pattern.segments)
    return re.compile(body + ("(?:/[^/]*)+" if pattern.open_ended else ""))


def _witness_paths(a: PathPattern, b: PathPattern) -> list[str]:
    """Every path that could tell whether two patterns overlap: over their literals plus one
    other segment, and one segment longer than the longer pattern."""
    alphabet = sorted({s for s in (*a.segments, *b.segments) if s is not None} | {"zz"})
    longest = max(len(a.segments), len(b.segments)) + 1
    return [
        "/" + "/".join(parts)
        for length in range(1, longest + 1)
        for parts in itertools.product(alphabet, repeat=length)
    ]


# --- Hypothesis: properties --------------------------------------------------------------


@PROPERTY_SETTINGS
@given(patterns(), PATHS)
@example(parse_pattern("/api/*"), "/api")
@example(parse_pattern("/*"), "/")
def test_matches_agrees_with_the_written_definition(pattern: PathPattern, path: str) -> None:
    assert pattern.matches(path) is (_as_regex(pattern).fullmatch(path) is not None)


@PROPERTY_SETTINGS
@given(patterns(), patterns())
def test_overlaps_agrees_with_a_search_for_a_common_path(a: PathPattern, b: PathPattern) -> None:
    common = any(a.matches(path) and b.matches(path) for path in _witness_paths(a, b))
    assert overlaps(a, b) is common
    assert overlaps(b, a) is common


@PROPERTY_SETTINGS
@given(patterns(), patterns())
@example(parse_pattern("/api/t/acme/*"), parse_pattern("/api/t/*/orders"))
@example(parse_pattern("/api/*"), parse_pattern("/api"))
def test_covers_agrees_with_a_search_for_a_path_only_the_inner_pattern_matches(
    outer: PathPattern, inner: PathPattern
) -> None:
    escapes = any(inner.matches(p) and not outer.matches(p)
                  for p in _witness_paths(outer, inner))
    assert covers(outer, inner) is not escapes


@PROPERTY_SETTINGS
@given(patterns(), patterns())
def test_find_tie_reports_exactly_the_pairs_a_path_could_not_choose_between(
    a: PathPattern, b: PathPattern
) -> None:
    ambiguous = a.text == b.text or (
        a.specificity == b.specificity
        and any(a.matches(path) and b.matches(path) for path in _witness_paths(a, b))
    )
    assert (find_tie(a, [b]) is b) is ambiguous


@st.composite
def tie_free_pattern_sets(draw: st.DrawFn) -> list[PathPattern]:
    """Patterns kept in generation order, each dropped if it ties with one already kept,
    as saving them one by one would."""
    kept: list[PathPattern] = []
    for candidate in draw(st.lists(patterns(), min_size=0, max_size=12)):
        if find_tie(candidate, kept) is None:
            kept.append(candidate)
    return kept


def _brute_force_winner(patterns: list[PathPattern], path: str) -> PathPattern | None:
    matching = [pattern for pattern in patterns if pattern.matches(path)]
    if not matching:
        return None
    best = max(pattern.specificity for pattern in matching)
    winners = [pattern for pattern in matching if pattern.specificity == best]
    assert len(winners) == 1, "a tie-free set has one winner per path"
    return winners[0]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tie_free_pattern_sets(), st.lists(PATHS, min_size=1, max_size=10))
@example([parse_pattern("/*"), parse_pattern("/a/*"), parse_pattern("/a/b")], ["/a/b", "/a"])
@example([parse_pattern("/a/*"), parse_pattern("/a/*/*")], ["/a/x/y", "/a/x"])
@example([parse_pattern("/*/b"), parse_pattern("/a/*/c")], ["/a/b", "/a/b/c", "/a"])
def test_index_lookup_agrees_with_brute_force(
    patterns: list[PathPattern], paths: list[str]
) -> None:
    # Payloads are distinct objects, as the compiled rules of a snapshot are.
    payloads = {pattern.text: object() for pattern in patterns}
    index = PatternIndex([(pattern, payloads[pattern.text]) for pattern in patterns])
    for path in paths:
        expected = _brute_force_winner(patterns, path)
        found = index.lookup(path)
        assert found is (None if expected is None else payloads[expected.text]), path


@PROPERTY_SETTINGS
@given(tie_free_pattern_sets(), st.permutations(range(12)), st.lists(PATHS, max_size=6))
def test_index_lookup_does_not_depend_on_the_order_patterns_are_given(
    patterns: list[PathPattern], order: list[int], paths: list[str]
) -> None:
    shuffled = [patterns[i] for i in order if i < len(patterns)]
    forward = PatternIndex([(pattern, pattern.text) for pattern in patterns])
    backward = PatternIndex([(pattern, pattern.text) for pattern in shuffled])
    for path in paths:
        assert forward.lookup(path) == backward.lookup(path)


@PROPERTY_SETTINGS
@given(tie_free_pattern_sets(), st.lists(PATHS, min_size=1, max_size=10))
@example([parse_pattern("/*"), parse_pattern("/a/*"), parse_pattern("/a/b")], ["/a/b"])
def test_index_lookup_all_lists_every_match_most_specific_first(
    patterns: list[PathPattern], paths: list[str]
) -> None:
    payloads = {pattern.text: object() for pattern in patterns}
    index = PatternIndex([(pattern, payloads[pattern.text]) for pattern in patterns])
    for path in paths:
        matching = sorted((p for p in patterns if p.matches(path)),
                          key=lambda p: p.specificity, reverse=True)
        found = index.lookup_all(path)
        assert found == [payloads[p.text] for p in matching], path
        assert (found[0] if found else None) is index.lookup(path)


@PROPERTY_SETTINGS
@given(tie_free_pattern_sets(), st.lists(st.booleans(), min_size=12, max_size=12),
       st.lists(PATHS, min_size=1, max_size=10))
@example([parse_pattern("/a/*"), parse_pattern("/a/b/*"), parse_pattern("/a/b/c")],
         [False, True, True] + [False] * 9, ["/a/b/c"])
def test_a_path_is_answered_by_its_most_specific_enforcing_rule_behind_report_only_ones(
    patterns: list[PathPattern], report_only: list[bool], paths: list[str]
) -> None:
    from cors_control.snapshot import RuleSpec, compile_policy

    modes = {p.text: "report-only" if report_only[i] else "enforce"
             for i, p in enumerate(patterns)}
    snapshot = compile_policy(1, [RuleSpec(p.text, mode=modes[p.text]) for p in patterns])
    for path in paths:
        matching = sorted((p.text for p in patterns if p.matches(path)),
                          key=lambda text: parse_pattern(text).specificity, reverse=True)
        enforcing = [text for text in matching if modes[text] == "enforce"]
        answering = enforcing[0] if enforcing else None
        watching = matching[:matching.index(answering)] if answering else matching
        route = snapshot.route_for(path)
        assert (route.rule.path if route.rule else None) == answering, path
        assert [rule.path for rule in route.shadows] == watching, path
        assert snapshot.rule_for(path) is route.rule
