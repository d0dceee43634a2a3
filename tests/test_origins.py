"""Origin parsing (cors_control.origins) and origin matching (OriginSet in cors_control.snapshot).

Pure functions, no app and no database: every case states what an operator may store and
what a request's ``Origin`` header must look like to be granted.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from cors_control.origins import (
    ANY_ORIGIN,
    MAX_ORIGIN_LENGTH,
    OriginError,
    OriginKind,
    OriginSpec,
    _parse,
    _plain_exact,
    all_canonical_exact,
    is_canonical_exact,
    parse_new_origin,
    parse_origin,
)
from cors_control.snapshot import OriginEntry, OriginSet

NOW = 1_700_000_000.0
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- parse_origin: accepted entries ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        ("https://app.example.com", "https://app.example.com", OriginKind.EXACT),
        ("http://app.example.com", "http://app.example.com", OriginKind.EXACT),
        ("HTTPS://App.Example.COM", "https://app.example.com", OriginKind.EXACT),
        ("hTTp://APP.example.com", "http://app.example.com", OriginKind.EXACT),
        ("https://app.example.com:443", "https://app.example.com", OriginKind.EXACT),
        ("http://app.example.com:80", "http://app.example.com", OriginKind.EXACT),
        ("https://app.example.com:0443", "https://app.example.com", OriginKind.EXACT),
        ("http://app.example.com:443", "http://app.example.com:443", OriginKind.EXACT),
        ("https://app.example.com:80", "https://app.example.com:80", OriginKind.EXACT),
        ("https://app.example.com:8443", "https://app.example.com:8443", OriginKind.EXACT),
        ("https://app.example.com:08443", "https://app.example.com:8443", OriginKind.EXACT),
        ("https://app.example.com:65535", "https://app.example.com:65535", OriginKind.EXACT),
        ("http://localhost:3000", "http://localhost:3000", OriginKind.EXACT),
        ("https://a-b.example.com", "https://a-b.example.com", OriginKind.EXACT),
        ("https://1.example.com", "https://1.example.com", OriginKind.EXACT),
        ("https://" + "a" * 63 + ".com", "https://" + "a" * 63 + ".com", OriginKind.EXACT),
        # International names are stored as the punycode browsers send.
        ("https://straße.de", "https://xn--strae-oqa.de", OriginKind.EXACT),
        ("https://bücher.example", "https://xn--bcher-kva.example", OriginKind.EXACT),
        ("https://BÜCHER.example", "https://xn--bcher-kva.example", OriginKind.EXACT),
        ("https://XN--BCHER-KVA.example", "https://xn--bcher-kva.example", OriginKind.EXACT),
        ("https://例え.テスト", "https://xn--r8jz45g.xn--zckzah", OriginKind.EXACT),
        ("https://ｅｘａｍｐｌｅ.com", "https://example.com", OriginKind.EXACT),
        ("https://example。com", "https://example.com", OriginKind.EXACT),
        # IP addresses: IPv4 as dotted quad, IPv6 bracketed and compressed, lowercase.
        ("http://192.0.2.10", "http://192.0.2.10", OriginKind.EXACT),
        ("http://192.0.2.10:8080", "http://192.0.2.10:8080", OriginKind.EXACT),
        ("http://127.0.0.1:80", "http://127.0.0.1", OriginKind.EXACT),
        ("http://[::1]", "http://[::1]", OriginKind.EXACT),
        ("http://[0:0:0:0:0:0:0:1]:8080", "http://[::1]:8080", OriginKind.EXACT),
        ("https://[2001:DB8:0:0:0:0:0:1]", "https://[2001:db8::1]", OriginKind.EXACT),
        ("https://[2001:db8:0:0:1:0:0:1]", "https://[2001:db8::1:0:0:1]", OriginKind.EXACT),
        ("https://[2001:db8:0:1:1:1:1:1]", "https://[2001:db8:0:1:1:1:1:1]", OriginKind.EXACT),
        ("https://[::ffff:127.0.0.1]", "https://[::ffff:7f00:1]", OriginKind.EXACT),
        # Subdomain wildcards.
        ("https://*.example.com", "https://*.example.com", OriginKind.SUBDOMAIN_WILDCARD),
        ("HTTPS://*.Example.COM", "https://*.example.com", OriginKind.SUBDOMAIN_WILDCARD),
        ("https://*.example.com:443", "https://*.example.com", OriginKind.SUBDOMAIN_WILDCARD),
        ("https://*.example.com:8443", "https://*.example.com:8443",
         OriginKind.SUBDOMAIN_WILDCARD),
        ("http://*.dev.example.com", "http://*.dev.example.com", OriginKind.SUBDOMAIN_WILDCARD),
        ("https://*.bücher.de", "https://*.xn--bcher-kva.de", OriginKind.SUBDOMAIN_WILDCARD),
        # Any port, loopback only.
        ("http://localhost:*", "http://localhost:*", OriginKind.ANY_PORT),
        ("http://LOCALHOST:*", "http://localhost:*", OriginKind.ANY_PORT),
        ("https://localhost:*", "https://localhost:*", OriginKind.ANY_PORT),
        ("http://127.0.0.1:*", "http://127.0.0.1:*", OriginKind.ANY_PORT),
        ("http://[::1]:*", "http://[::1]:*", OriginKind.ANY_PORT),
        ("http://[0:0::1]:*", "http://[::1]:*", OriginKind.ANY_PORT),
        # Any origin.
        ("*", "*", OriginKind.ANY),
    ],
)
def test_accepted_origin_is_stored_in_canonical_form(
    text: str, value: str, kind: OriginKind
) -> None:
    spec = parse_origin(text)
    assert spec.value == value
    assert spec.kind is kind


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port"),
    [
        ("https://App.Example.com:8443", "https", "app.example.com", 8443),
        ("https://app.example.com:443", "https", "app.example.com", None),
        ("http://[::1]:8080", "http", "[::1]", 8080),
        ("https://*.Example.com:8443", "https", "example.com", 8443),
        ("https://*.example.com", "https", "example.com", None),
        ("http://localhost:*", "http", "localhost", None),
    ],
)
def test_parsed_origin_exposes_scheme_host_and_non_default_port(
    text: str, scheme: str, host: str, port: int | None
) -> None:
    spec = parse_origin(text)
    assert (spec.scheme, spec.host, spec.port) == (scheme, host, port)


def test_any_origin_is_the_shared_constant_with_no_scheme_or_host() -> None:
    assert parse_origin("*") == ANY_ORIGIN
    assert (ANY_ORIGIN.scheme, ANY_ORIGIN.host, ANY_ORIGIN.port) == ("", "", None)


def test_length_limit_refuses_one_character_more_than_the_maximum() -> None:
    at_limit = "https://" + "a" * (MAX_ORIGIN_LENGTH - len("https://"))
    with pytest.raises(OriginError) as caught:
        parse_origin(at_limit)
    assert "characters long" not in str(caught.value)
    with pytest.raises(OriginError, match=f"is {MAX_ORIGIN_LENGTH + 1} characters long"):
        parse_origin(at_limit + "a")


# --- parse_origin: refused entries -------------------------------------------------------


def test_trailing_slash_is_refused_with_the_exact_fix() -> None:
    with pytest.raises(OriginError) as caught:
        parse_origin("https://app.example.com/")
    assert str(caught.value) == "an origin has no path; use https://app.example.com"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Paths, queries, fragments; the fix is the canonical origin.
        ("https://app.example.com/api", ["no path", "use https://app.example.com"]),
        ("HTTPS://App.example.com:443/", ["no path", "use https://app.example.com"]),
        ("https://app.example.com:8443/x", ["no path", "use https://app.example.com:8443"]),
        ("https://*.example.com/", ["no path", "use https://*.example.com"]),
        ("https://app.example.com?", ["no query", "use https://app.example.com"]),
        ("https://app.example.com?a=1", ["no query", "use https://app.example.com"]),
        ("https://app.example.com#top", ["no fragment", "use https://app.example.com"]),
        # User info, including the classic trick where the real host comes after @.
        ("https://user@app.example.com", ["no user name or password",
                                          "use https://app.example.com"]),
        ("https://user:secret@app.example.com", ["no user name or password"]),
        ("https://app.example.com@evil.net", ["no user name or password",
                                              "use https://evil.net"]),
        ("https://app.example.com\\@evil.net", ["no user name or password"]),
        # Whitespace and control characters.
        (" https://app.example.com", ["surrounding whitespace", "use https://app.example.com"]),
        ("https://app.example.com\n", ["surrounding whitespace"]),
        ("\thttps://app.example.com", ["surrounding whitespace"]),
        ("https://app.example.com\u00a0", ["surrounding whitespace"]),
        ("https://app. example.com", ["no whitespace inside", "one origin per entry"]),
        ("https://a.example.com https://b.example.com", ["no whitespace inside"]),
        ("https://a.example.com,b.example.com", ["not a valid host name"]),
        ("https://app.exa\x00mple.com", ["control characters"]),
        ("https://app.example.com\x7f", ["control characters"]),
        ("https://app.exa\x1bmple.com", ["control characters"]),
        # Missing or unsupported scheme.
        ("app.example.com", ["no scheme", "use https://app.example.com"]),
        ("app.example.com/path", ["no scheme", "use https://app.example.com"]),
        ("//app.example.com", ["no scheme", "use https://app.example.com"]),
        ("://app.example.com", ["no scheme", "use https://app.example.com"]),
        ("localhost:3000", ["no scheme", "use https://localhost:3000"]),
        ("https:/app.example.com", ["no scheme", "use https://app.example.com"]),
        ("https:app.example.com", ["no scheme", "use https://app.example.com"]),
        ("ftp://files.example.com", ["scheme ftp:", "use http:// or https://"]),
        ("FTP://files.example.com", ["scheme ftp:", "use http:// or https://"]),
        ("ws://app.example.com", ["scheme ws:"]),
        ("wss://app.example.com", ["scheme wss:"]),
        ("file:///etc/passwd", ["scheme file:"]),
        ("chrome-extension://abcdef", ["scheme chrome-extension:"]),
        ("javascript://alert(1)", ["scheme javascript:"]),
        # null, in any case.
        ("null", ["null", "can never be allowed", "allow the real origin"]),
        ("NULL", ["null", "can never be allowed"]),
        ("Null", ["null", "can never be allowed"]),
        # Empty and overlong.
        ("", ["empty", "https://app.example.com"]),
        ("https://" + "a" * 400, ["408 characters", f"at most {MAX_ORIGIN_LENGTH}"]),
        # Malformed host names.
        ("https://", ["no host", "use https://app.example.com"]),
        ("https://:8080", ["no host"]),
        ("https://a..example.com", ["empty label"]),
        ("https://.example.com", ["empty label"]),
        ("https://example.com.", ["trailing dot", "use https://example.com"]),
        ("https://example.com..", ["trailing dot", "use https://example.com"]),
        ("https://-app.example.com", ["-app", "not a valid host label"]),
        ("https://app-.example.com", ["app-", "not a valid host label"]),
        ("https://" + "a" * 64 + ".com", ["not a valid host label", "1 to 63"]),
        ("https://" + ".".join(["a" * 60] * 4) + "." + "b" * 10 + ".com", ["longer than 253"]),
        ("https://app_1.example.com", ["not a valid host name"]),
        ("https://evil.net\\.example.com", ["not a valid host name"]),
        ("https://💩.la", ["not a valid host name"]),
        ("https://xn--a.com", ["not a valid international name"]),
        ("https://xn--ls8h.la", ["not a valid international name"]),
        # Malformed IP addresses.
        ("https://256.1.1.1", ["not a valid IPv4 address", "0 to 255"]),
        ("https://1.2.3", ["not a valid IPv4 address"]),
        ("https://0x7f.0.0.1", ["not a valid IPv4 address"]),
        ("https://example.123", ["not a valid IPv4 address"]),
        ("https://2001:db8::1", ["must be in brackets", "http://[2001:db8::1]"]),
        ("https://[::1", ["no closing ]"]),
        ("https://[::1]x", ["only :port may follow"]),
        ("https://[2001:db8::g]", ["not a valid IPv6 address"]),
        ("https://[1:2:3:4:5:6:7:8:9]", ["not a valid IPv6 address"]),
        ("https://[]", ["not a valid IPv6 address"]),
        ("https://[fe80::1%eth0]", ["zone id", "remove it"]),
        ("https://[fe80::1%25eth0]:8080", ["zone id"]),
        # Malformed ports.
        ("https://app.example.com:", ["port after : is empty", "https://host:8080"]),
        ("https://app.example.com:0", ["port 0", "from 1 to 65535"]),
        ("https://app.example.com:00000", ["port 0", "from 1 to 65535"]),
        ("https://app.example.com:65536", ["port 65536", "from 1 to 65535"]),
        ("https://app.example.com:123456", ["port 123456", "from 1 to 65535"]),
        ("https://app.example.com:http", ["port http", "not a number"]),
        ("https://app.example.com:-1", ["port -1", "not a number"]),
        ("https://app.example.com:+443", ["port +443", "not a number"]),
        ("https://app.example.com:٨٠", ["not a number"]),
        ("https://app.example.com:80:80", ["must be in brackets"]),
        # Wildcards other than *.domain, :* away from loopback.
        ("https://app.example.com:*", ["any port (:*)", "localhost", "list the port"]),
        ("http://192.0.2.10:*", ["any port (:*)"]),
        ("https://*.example.com:*", ["cannot also allow any port"]),
        ("https://*.com", ["top-level domain", "*.example.com"]),
        ("https://*.localhost", ["top-level domain"]),
        ("https://*.0.0.1", ["IP address", "list each address"]),
        ("https://*.168.1.1", ["IP address"]),
        ("https://*", ["whole leading labels", "https://*.example.com"]),
        ("https://*example.com", ["whole leading labels"]),
        ("https://app*.example.com", ["whole leading labels"]),
        ("https://app.*.example.com", ["whole leading labels"]),
        ("https://example.*", ["whole leading labels"]),
        ("https://*.*.example.com", ["not a valid host name"]),
        ("https://*.", ["no host"]),
        ("https://**.example.com", ["whole leading labels"]),
        ("*://app.example.com", ["no scheme"]),
        ("**", ["no scheme"]),
    ],
)
def test_refused_origin_message_names_the_problem_and_the_fix(
    text: str, expected: list[str]
) -> None:
    with pytest.raises(OriginError) as caught:
        parse_origin(text)
    message = str(caught.value)
    for fragment in expected:
        assert fragment in message


@pytest.mark.parametrize(
    ("text", "suffix"),
    [
        ("https://*.co.uk", "co.uk"),
        ("https://*.github.io", "github.io"),
        ("http://*.blogspot.com", "blogspot.com"),
        ("https://*.com.au:8443", "com.au"),
        ("https://*.公司.cn", "xn--55qx5d.cn"),
    ],
)
def test_a_new_wildcard_under_a_public_suffix_is_refused_naming_the_suffix(
    text: str, suffix: str
) -> None:
    stored = parse_origin(text)  # an entry stored before the rule still loads and matches
    assert OriginSet([OriginEntry(stored.value)]).allows(
        stored.value.replace("*", "anyone", 1), NOW)
    with pytest.raises(OriginError) as caught:
        parse_new_origin(text)
    message = str(caught.value)
    assert f"the public suffix {suffix};" in message
    assert f"*.example.{suffix}" in message


@pytest.mark.parametrize("text", [
    "https://*.example.co.uk", "https://*.acme.github.io", "https://*.example.com",
    "https://app.co.uk", "https://github.io", "http://localhost:*", "*",
])
def test_a_new_entry_under_a_registered_domain_is_accepted(text: str) -> None:
    assert parse_new_origin(text) == parse_origin(text)


@pytest.mark.parametrize("value", [None, 42, b"https://app.example.com", ["*"]])
def test_non_text_origin_is_refused_with_origin_error(value: object) -> None:
    with pytest.raises(OriginError, match="must be text"):
        parse_origin(value)  # type: ignore[arg-type]


def test_refusal_message_does_not_echo_control_characters_or_unbounded_input() -> None:
    hostile = "https://evil\u202e" + "x" * 200 + ".com"
    with pytest.raises(OriginError) as caught:
        parse_origin(hostile)
    message = str(caught.value)
    assert "\u202e" not in message
    assert message.isprintable()
    assert len(message) < 250


# --- OriginSet: matching -----------------------------------------------------------------

PITFALL_SET = OriginSet(
    [OriginEntry("https://*.example.com"), OriginEntry("https://app.example.com")]
)


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        "https://a.example.com",
        "https://a.b.example.com",
        "https://xn--bcher-kva.example.com",
        "https://1.example.com",
        "https://a-b.example.com",
        "https://" + "a" * 63 + ".example.com",
    ],
)
def test_listed_origins_and_real_subdomains_are_allowed(origin: str) -> None:
    assert PITFALL_SET.allows(origin, NOW)


HOSTILE_ORIGINS = [
    # The bare domain and lookalike domains (unanchored suffix or prefix matching).
    "https://example.com",
    "https://example.com.evil.net",
    "https://app.example.com.evil.net",
    "https://a.example.com.evil.net",
    "https://evilexample.com",
    "https://evil-example.com",
    "https://appexample.com",
    "https://1example.com.evil",
    "https://1example.com",
    "https://example.co",
    "https://example.comm",
    "https://app.example.co",
    "https://app.example.comx",
    "https://example.com-evil.net",
    "https://evil.net/.example.com",
    "https://evil.net?.example.com",
    "https://evil.net#.example.com",
    "https://evil.net%2e.example.com",
    "https://evil.net%2eexample.com",
    # null and empty.
    "null",
    "Null",
    "NULL",
    "",
    "*",
    "https://*.example.com",
    # Case variants: the browser serializes lowercase, so these are not its origin.
    "https://App.example.com",
    "HTTPS://app.example.com",
    "https://APP.EXAMPLE.COM",
    "https://A.example.com",
    "https://a.Example.com",
    "Https://a.example.com",
    # Scheme and port variants.
    "http://app.example.com",
    "http://a.example.com",
    "https://app.example.com:443",
    "https://a.example.com:443",
    "https://app.example.com:8443",
    "https://a.example.com:8443",
    "https://a.example.com:",
    "https://app.example.com:",
    "wss://a.example.com",
    "ftp://app.example.com",
    "//app.example.com",
    "app.example.com",
    "a.example.com",
    # Paths and trailing slashes.
    "https://app.example.com/",
    "https://a.example.com/",
    "https://a.example.com/x",
    "https://a.example.com?x",
    "https://a.example.com#x",
    # Unicode instead of punycode, punycode of a lookalike.
    "https://bücher.example.com",
    "https://exämple.com",
    "https://a.exämple.com",
    "https://xn--exmple-cua.com",
    "https://app.ｅｘａｍｐｌｅ.com",
    "https://a.example。com",
    # User info.
    "https://example.com@evil.net",
    "https://app.example.com@evil.net",
    "https://a.example.com@evil.net",
    "https://evil.net@app.example.com",
    "https://evil.net@a.example.com",
    "https://user:pass@a.example.com",
    # Backslashes.
    "https://evil.net\\.example.com",
    "https://evil.net\\@a.example.com",
    "https://a.example.com\\@evil.net",
    "https:\\\\a.example.com",
    # Trailing dots and empty labels.
    "https://app.example.com.",
    "https://a.example.com.",
    "https://example.com.",
    "https://.example.com",
    "https://..example.com",
    "https://a..example.com",
    "https://-.example.com",
    "https://-a.example.com",
    "https://a-.example.com",
    "https://a_b.example.com",
    "https://*.a.example.com",
    # Whitespace and control characters.
    " https://app.example.com",
    "https://app.example.com ",
    "https://app.example.com\n",
    "https://a.example.com\r\n",
    "https://a.example.com\x00",
    "https://a.example.com\t",
    "\thttps://a.example.com",
    "https://a.example.com\u00a0",
    "https://a.example.com\u200b",
    "https://a\u200b.example.com",
    "https://app.example.com\r\nSet-Cookie: x=1",
    # Very long input: no DNS name is longer than 253 characters or has longer labels.
    "https://app.example.com" + "a" * 10_000,
    "https://" + "a" * 10_000 + ".evil.net",
    "https://" + "a." * 5_000 + "evil.net",
    "https://" + "a" * 64 + ".example.com",
    "https://" + "a." * 200 + "example.com",
    "https://" + "a" * 100_000 + ".example.com",
]


@pytest.mark.parametrize("origin", HOSTILE_ORIGINS)
def test_hostile_origin_from_the_pitfalls_list_is_not_allowed(origin: str) -> None:
    assert not PITFALL_SET.allows(origin, NOW)


def test_wildcard_never_matches_the_bare_domain() -> None:
    origins = OriginSet([OriginEntry("https://*.example.com")])
    assert not origins.allows("https://example.com", NOW)
    assert origins.allows("https://www.example.com", NOW)


def test_wildcard_on_a_port_matches_only_that_port() -> None:
    origins = OriginSet([OriginEntry("https://*.example.com:8443")])
    assert origins.allows("https://a.example.com:8443", NOW)
    assert not origins.allows("https://a.example.com", NOW)
    assert not origins.allows("https://a.example.com:443", NOW)
    assert not origins.allows("https://a.example.com:08443", NOW)


def test_wildcard_with_international_suffix_matches_punycode_subdomains() -> None:
    origins = OriginSet([OriginEntry("https://*.bücher.de")])
    assert origins.allows("https://shop.xn--bcher-kva.de", NOW)
    assert not origins.allows("https://shop.bücher.de", NOW)
    assert not origins.allows("https://xn--bcher-kva.de", NOW)


def test_stored_origin_is_compared_in_canonical_form() -> None:
    origins = OriginSet([OriginEntry("HTTPS://App.Example.com:443")])
    assert origins.allows("https://app.example.com", NOW)
    assert not origins.allows("https://App.Example.com", NOW)
    assert not origins.allows("HTTPS://App.Example.com:443", NOW)


def test_stored_international_origin_matches_only_the_punycode_header() -> None:
    origins = OriginSet([OriginEntry("https://straße.de")])
    assert origins.allows("https://xn--strae-oqa.de", NOW)
    assert not origins.allows("https://straße.de", NOW)
    # casefold would make straße equal strasse: a different domain.
    assert not origins.allows("https://strasse.de", NOW)


def test_stored_ipv6_origin_matches_the_compressed_header() -> None:
    origins = OriginSet([OriginEntry("http://[0:0:0:0:0:0:0:1]:8080")])
    assert origins.allows("http://[::1]:8080", NOW)
    assert not origins.allows("http://[0:0:0:0:0:0:0:1]:8080", NOW)
    assert not origins.allows("http://[::1]", NOW)


@pytest.mark.parametrize(
    ("entry", "origin"),
    [
        ("http://localhost:*", "http://localhost"),
        ("http://localhost:*", "http://localhost:3000"),
        ("http://localhost:*", "http://localhost:65535"),
        ("http://127.0.0.1:*", "http://127.0.0.1:5173"),
        ("http://[::1]:*", "http://[::1]:8080"),
        ("http://[::1]:*", "http://[::1]"),
        ("https://localhost:*", "https://localhost:8443"),
    ],
)
def test_any_port_entry_allows_every_port_of_its_loopback_host(entry: str, origin: str) -> None:
    assert OriginSet([OriginEntry(entry)]).allows(origin, NOW)


@pytest.mark.parametrize(
    "origin",
    [
        "https://localhost:3000",
        "http://LOCALHOST:3000",
        "http://localhost.evil.net:3000",
        "http://evil.localhost:3000",
        "http://localhost:3000/",
        "http://localhost:3000/evil",
        "http://localhost:",
        "http://localhost:*",
        "http://localhost:abc",
        "http://localhost:-1",
        "http://localhost:٣٠٠٠",
        "http://localhost:123456",
        "http://user@localhost:3000",
        "http://evil.net#localhost:3000",
        "http://127.0.0.1:3000",
        "http://[::1]:3000",
        "localhost:3000",
        "http://localhost :3000",
    ],
)
def test_any_port_entry_refuses_other_hosts_schemes_and_malformed_ports(origin: str) -> None:
    assert not OriginSet([OriginEntry("http://localhost:*")]).allows(origin, NOW)


def test_ipv6_any_port_entry_refuses_lookalike_addresses() -> None:
    origins = OriginSet([OriginEntry("http://[::1]:*")])
    for origin in ["http://[::1", "http://[::1]:", "http://[::10]:80", "http://[::]:1",
                   "http://[0::1]:80", "http://::1:80"]:
        assert not origins.allows(origin, NOW), origin


def test_any_origin_is_not_a_match_for_allows_but_for_allows_any() -> None:
    # "*" is granted as "*" by the decision, never by echoing the request's origin.
    origins = OriginSet([OriginEntry("*")])
    assert not origins.allows("https://anything.example", NOW)
    assert origins.allows_any(NOW)
    assert not OriginSet([OriginEntry("https://app.example.com")]).allows_any(NOW)


def test_len_counts_entries_other_than_any_and_merges_duplicates() -> None:
    origins = OriginSet(
        [
            OriginEntry("https://app.example.com"),
            OriginEntry("HTTPS://APP.example.com:443"),
            OriginEntry("https://*.example.com"),
            OriginEntry("http://localhost:*"),
            OriginEntry("*"),
        ]
    )
    assert len(origins) == 3


def test_empty_origin_set_allows_nothing() -> None:
    origins = OriginSet([])
    assert len(origins) == 0
    assert not origins.allows("https://app.example.com", NOW)
    assert not origins.allows_any(NOW)


def test_invalid_stored_entry_is_set_aside_when_the_set_is_built() -> None:
    origins = OriginSet([OriginEntry("https://app.example.com/")])
    assert origins.invalid == ["https://app.example.com/"]
    assert not origins.allows("https://app.example.com/")
    assert not origins.allows("https://app.example.com")


# --- OriginSet: expiry -------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    ["https://app.example.com", "https://*.example.com", "http://localhost:*"],
)
def test_entry_stops_matching_at_the_exact_moment_it_expires(entry: str) -> None:
    origin = {
        "https://app.example.com": "https://app.example.com",
        "https://*.example.com": "https://a.example.com",
        "http://localhost:*": "http://localhost:3000",
    }[entry]
    origins = OriginSet([OriginEntry(entry, expires_at=1000.0)])
    assert origins.allows(origin, 999.999)
    assert not origins.allows(origin, 1000.0)
    assert not origins.allows(origin, 1000.001)


def test_any_origin_stops_matching_at_the_exact_moment_it_expires() -> None:
    origins = OriginSet([OriginEntry("*", expires_at=1000.0)])
    assert origins.allows_any(999.0)
    assert not origins.allows_any(1000.0)


def test_now_of_zero_is_a_real_instant_not_the_wall_clock() -> None:
    origins = OriginSet([OriginEntry("https://app.example.com", expires_at=5.0)])
    assert origins.allows("https://app.example.com", 0.0)
    assert not origins.allows("https://app.example.com", 5.0)


def test_without_now_the_wall_clock_decides_expiry() -> None:
    origins = OriginSet(
        [
            OriginEntry("https://old.example.com", expires_at=1.0),
            OriginEntry("https://new.example.com", expires_at=4_102_444_800.0),  # 2100
        ]
    )
    assert not origins.allows("https://old.example.com")
    assert origins.allows("https://new.example.com")


def test_duplicate_entries_keep_the_later_expiry_and_none_means_never() -> None:
    later = OriginSet(
        [
            OriginEntry("https://app.example.com", expires_at=100.0),
            OriginEntry("https://APP.example.com", expires_at=200.0),
            OriginEntry("https://app.example.com", expires_at=150.0),
        ]
    )
    assert later.allows("https://app.example.com", 199.0)
    assert not later.allows("https://app.example.com", 200.0)
    never = OriginSet(
        [
            OriginEntry("https://*.example.com", expires_at=100.0),
            OriginEntry("https://*.example.com"),
            OriginEntry("https://*.example.com", expires_at=50.0),
        ]
    )
    assert never.allows("https://a.example.com", 1e12)


def test_duplicate_any_entries_keep_the_later_expiry() -> None:
    assert not OriginSet([OriginEntry("*", expires_at=-5.0)]).allows_any(-3.0)
    origins = OriginSet([OriginEntry("*", expires_at=10.0), OriginEntry("*", expires_at=20.0)])
    assert origins.allows_any(15.0)
    assert not origins.allows_any(20.0)
    assert OriginSet([OriginEntry("*", 10.0), OriginEntry("*")]).allows_any(1e12)


def test_expired_exact_entry_does_not_hide_a_live_wildcard() -> None:
    origins = OriginSet(
        [
            OriginEntry("https://app.example.com", expires_at=100.0),
            OriginEntry("https://*.example.com"),
        ]
    )
    assert origins.allows("https://app.example.com", 500.0)


@PROPERTY_SETTINGS
@given(
    expires_at=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
    now=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
    entry=st.sampled_from(["https://app.example.com", "https://*.example.com",
                           "http://localhost:*"]),
)
@example(expires_at=5.0, now=0.0, entry="https://app.example.com")
@example(expires_at=5.0, now=5.0, entry="https://*.example.com")
def test_entry_matches_exactly_while_now_is_before_its_expiry(
    expires_at: float, now: float, entry: str
) -> None:
    origin = {"https://*.example.com": "https://a.example.com",
              "http://localhost:*": "http://localhost:3000"}.get(entry, entry)
    origins = OriginSet([OriginEntry(entry, expires_at)])
    assert origins.allows(origin, now) is (now < expires_at)
    assert OriginSet([OriginEntry("*", expires_at)]).allows_any(now) is (now < expires_at)


# --- Hypothesis strategies ---------------------------------------------------------------

# A DNS label as browsers send it: lowercase letters, digits, inner hyphens. Labels starting
# xn-- must be valid punycode to be stored, so the generator leaves them out.
LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True).filter(
    lambda label: not label.startswith("xn--")
)
TLD = st.from_regex(r"[a-z]{2,6}", fullmatch=True)
SUFFIX = st.builds(lambda labels, tld: ".".join([*labels, tld]),
                   st.lists(LABEL, min_size=1, max_size=3), TLD)
SCHEME = st.sampled_from(["http", "https"])
PORT = st.one_of(st.none(), st.integers(min_value=1, max_value=65535))
DEFAULT_PORTS = {"http": 80, "https": 443}


def _randomly_cased(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(ch.upper() if flip else ch for ch, flip in zip(text, flips, strict=True))


def _port_text(scheme: str, port: int | None) -> str:
    """The port as a browser serializes it: absent when default."""
    return "" if port is None or port == DEFAULT_PORTS[scheme] else str(port)


# --- Property (1): a wildcard never matches outside its suffix ---------------------------


class WildcardCase(NamedTuple):
    entry: str  # the stored wildcard, canonical
    scheme: str
    suffix: str
    port: str  # "" for the default port
    request_scheme: str
    request_host: str
    request_port: str

    @property
    def request(self) -> str:
        port = f":{self.request_port}" if self.request_port else ""
        return f"{self.request_scheme}://{self.request_host}{port}"


@st.composite
def wildcard_cases(draw: st.DrawFn) -> WildcardCase:
    """A wildcard entry and a request origin that is a subdomain or a near miss of it."""
    scheme = draw(SCHEME)
    suffix = draw(SUFFIX)
    port = _port_text(scheme, draw(PORT))
    entry = f"{scheme}://*.{suffix}" + (f":{port}" if port else "")
    leading = draw(st.lists(LABEL, min_size=1, max_size=3))
    other = draw(SUFFIX)
    parent = suffix.split(".", 1)[1]
    host = draw(
        st.sampled_from(
            [
                ".".join([*leading, suffix]),  # a real subdomain
                suffix,  # the bare domain
                "".join(leading) + suffix,  # glued on: evilexample.com
                "".join(leading) + "-" + suffix,
                ".".join([*leading, suffix, other]),  # example.com.evil.net
                ".".join([suffix, *leading]),
                ".".join([*leading, other]),  # another domain
                ".".join([*leading, parent]),  # under the suffix's parent
                parent,
            ]
        )
    )
    request_scheme = draw(st.sampled_from(["http", "https"]))
    request_port = draw(
        st.sampled_from([port, "", str(DEFAULT_PORTS[request_scheme]), "8443", "0" + port])
    )
    return WildcardCase(entry, scheme, suffix, port, request_scheme, host, request_port)


@PROPERTY_SETTINGS
@given(wildcard_cases())
@example(WildcardCase("https://*.example.com", "https", "example.com", "", "https",
                      "a.example.com", ""))
@example(WildcardCase("https://*.example.com", "https", "example.com", "", "https",
                      "example.com", ""))
@example(WildcardCase("https://*.example.com", "https", "example.com", "", "https",
                      "evilexample.com", ""))
@example(WildcardCase("http://*.example.com:8080", "http", "example.com", "8080", "http",
                      "a.b.example.com", "8080"))
def test_wildcard_never_matches_outside_its_suffix(case: WildcardCase) -> None:
    host = case.request_host
    leading = host.removesuffix("." + case.suffix) if host.endswith("." + case.suffix) else ""
    expected = (
        case.request_scheme == case.scheme
        and case.request_port == case.port
        and leading != ""
        and all(label != "" for label in leading.split("."))
        and len(host) <= 253
    )
    assert OriginSet([OriginEntry(case.entry)]).allows(case.request, NOW) is expected


# --- Property (2): canonical values round-trip -------------------------------------------

# International labels that IDNA 2008 accepts, in different scripts.
IDN_LABEL = st.sampled_from(
    ["bücher", "straße", "münchen", "例え", "テスト", "пример", "δοκιμή", "éxample", "日本語"]
)


@st.composite
def valid_origin_text(draw: st.DrawFn) -> str:
    """Origins as an operator might type them: any case, default ports, IDN, IPv4, IPv6."""
    scheme = _randomly_cased(draw, draw(SCHEME))
    kind = draw(st.sampled_from(["name", "idn", "ipv4", "ipv6", "wildcard", "any-port"]))
    if kind == "any-port":
        host = draw(st.sampled_from(["localhost", "LocalHost", "127.0.0.1", "[::1]",
                                     "[0:0:0:0:0:0:0:1]"]))
        return f"{scheme}://{host}:*"
    if kind == "ipv4":
        host = str(draw(st.ip_addresses(v=4)))
    elif kind == "ipv6":
        address = draw(st.ip_addresses(v=6))
        form = draw(st.sampled_from(["compressed", "exploded"]))
        host = "[" + _randomly_cased(draw, getattr(address, form)) + "]"
    else:
        labels = draw(st.lists(st.one_of(LABEL, IDN_LABEL) if kind == "idn" else LABEL,
                               min_size=1, max_size=3))
        host = _randomly_cased(draw, ".".join([*labels, draw(TLD)]))
        if kind == "wildcard":
            host = "*." + host
    port = draw(st.one_of(st.none(), st.just(DEFAULT_PORTS[scheme.lower()]),
                          st.integers(min_value=1, max_value=65535)))
    return f"{scheme}://{host}" + ("" if port is None else f":{port}")


@PROPERTY_SETTINGS
@given(valid_origin_text())
@example("HTTPS://Bücher.Example:443")
@example("http://[2001:DB8:0:0:0:0:0:1]:80")
@example("https://[::ffff:192.0.2.1]")
def test_canonical_value_round_trips_and_is_what_browsers_send(text: str) -> None:
    spec = parse_origin(text)
    again = parse_origin(spec.value)
    assert again == spec
    assert spec.value == spec.value.lower()
    assert spec.value.isascii()
    assert not spec.value.endswith("/")
    assert spec.port != DEFAULT_PORTS[spec.scheme]
    scheme_and_host = text.split(":*")[0] if spec.kind is OriginKind.ANY_PORT else text
    host = _host_of(scheme_and_host)
    if host.startswith("["):
        assert spec.host == f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
    elif re.fullmatch(r"[0-9.]+", host):
        assert spec.host == str(ipaddress.IPv4Address(host))
    elif host.isascii():
        assert spec.host == host.lower().removeprefix("*.")


def _host_of(text: str) -> str:
    authority = text.split("://", 1)[1]
    if authority.startswith("["):
        return authority[: authority.index("]") + 1]
    return authority.rsplit(":", 1)[0] if ":" in authority else authority


# --- Property (3): parse_origin only ever raises OriginError -----------------------------

ORIGINISH_PIECES = st.sampled_from(
    [
        "https://", "http://", "HTTPS://", "ftp://", "//", ":", ":*", "*", "*.", ".", "..",
        "/", "?", "#", "@", "\\", "[", "]", "::1", "%", "%25", "-", "_", "0x", "xn--",
        "example", "com", "localhost", "127.0.0.1", "443", "80", "8080", "99999", "0",
        "null", "ß", "ü", "例", "\u200b", "\u00ad", "。", "ｅ", " ", "\t", "\n", "\x00",
        "\u202e", "a", "Z", "9",
    ]
)
ORIGINISH_TEXT = st.lists(ORIGINISH_PIECES, max_size=16).map("".join)
ANY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="ascii")),
    ORIGINISH_TEXT,
    st.builds(lambda prefix, rest: prefix + rest,
              st.sampled_from(["https://", "http://", "https://*.", "http://["]), st.text()),
)


@settings(max_examples=600, deadline=None)
@given(ANY_TEXT)
@example("https://xn--a.com")
@example("https://" + "\u00df" * 300)
@example("https://[fe80::1%eth0]")
@example("https://\ud800.com")
def test_parse_origin_on_any_text_raises_only_origin_error(text: str) -> None:
    try:
        spec = parse_origin(text)
    except OriginError as error:
        # Messages reach logs and HTML: never control characters, never the whole input.
        message = str(error)
        assert message.isprintable()
        assert len(message) <= 400
        return
    assert isinstance(spec, OriginSpec)
    assert parse_origin(spec.value) == spec


# --- Property (4): OriginSet.allows on arbitrary text ------------------------------------

STORED = ["https://app.example.com", "https://*.example.com", "http://*.example.org:8443",
          "http://localhost:*", "http://[::1]:8080"]
STORED_SET = OriginSet([OriginEntry(value) for value in STORED])
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


def _is_real_subdomain(origin: str, wildcard: str) -> bool:
    """Whether *origin* is scheme://label(s).suffix[:port] for the wildcard *wildcard*."""
    spec = parse_origin(wildcard)
    port = "" if spec.port is None else f":{spec.port}"
    prefix, suffix = f"{spec.scheme}://", f".{spec.host}{port}"
    if not (origin.startswith(prefix) and origin.endswith(suffix)):
        return False
    leading = origin[len(prefix): -len(suffix)]
    host = leading + "." + spec.host
    labels = re.fullmatch(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*", leading)
    return labels is not None and len(host) <= 253


def _is_loopback_any_port(origin: str, entry: str) -> bool:
    base = entry.removesuffix(":*")
    return origin == base or re.fullmatch(re.escape(base) + r":[0-9]{1,5}", origin) is not None


def _oracle_allows(origin: str) -> bool:
    for value in STORED:
        kind = parse_origin(value).kind
        if kind is OriginKind.EXACT and origin == value:
            return True
        if kind is OriginKind.SUBDOMAIN_WILDCARD and _is_real_subdomain(origin, value):
            return True
        if kind is OriginKind.ANY_PORT and _is_loopback_any_port(origin, value):
            return True
    return False


SUBDOMAINISH_TEXT = st.builds(
    lambda scheme, middle, suffix: scheme + middle + suffix,
    st.sampled_from(["https://", "http://", "HTTPS://", ""]),
    st.one_of(st.text(max_size=20), ORIGINISH_TEXT, LABEL),
    st.sampled_from([".example.com", "example.com", ".example.com.", ".example.org:8443",
                     ".example.org", ":8080", "", ".example.com:443", ":3000"]),
)


@settings(max_examples=600, deadline=None)
@given(st.one_of(ANY_TEXT, SUBDOMAINISH_TEXT))
@example("https://a.example.com")
@example("http://a.b.example.org:8443")
@example("http://localhost:5173")
@example("http://[::1]:8080")
def test_allows_on_any_text_is_true_only_for_stored_values_and_real_subdomains(
    origin: str,
) -> None:
    assert STORED_SET.allows(origin, NOW) is _oracle_allows(origin)


@PROPERTY_SETTINGS
@given(valid_origin_text())
def test_a_stored_canonical_origin_is_allowed_when_sent_back_as_is(text: str) -> None:
    spec = parse_origin(text)
    assume(spec.kind is OriginKind.EXACT)
    assert OriginSet([OriginEntry(text)]).allows(spec.value, NOW)


def test_an_invalid_stored_entry_never_matches_and_does_not_break_the_set():
    entries = [OriginEntry("https://*.0.0.1"), OriginEntry("https://app.example.com")]
    origins = OriginSet(entries)
    assert origins.invalid == ["https://*.0.0.1"]
    assert origins.allows("https://app.example.com")
    assert not origins.allows("https://127.0.0.1")


_PLAIN_LIKE = st.from_regex(
    r"\A(https?|HTTPS?)://([a-z0-9-]{1,12}\.){0,3}(xn--)?[a-z0-9-]{1,12}\.?(:[0-9]{1,6})?\Z")


@given(st.one_of(_PLAIN_LIKE, st.text(max_size=40)))
@example("http://localhost:3000")
@example("https://app.example.com:443")
@example("https://app.example.com:65536")
@example("https://xn--bcher-kva.example")
@example("https://1.2.3.4")
@example("https://-bad.example.com")
def test_the_quick_path_for_canonical_entries_agrees_with_the_full_parse(text: str) -> None:
    """An entry already in canonical form is recognised by one match (imports of 100,000
    origins); whatever it accepts, the full parse accepts with the same spec."""
    quick = _plain_exact(text)
    if quick is not None:
        assert quick == _parse(text)


_LONGEST_HOST = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters


@pytest.mark.parametrize("text", [
    "https://app.example.com", "http://app.example.com:443", "https://app.example.com:80",
    "https://app.example.com:65535", "https://app.example.com:1", "http://a", "https://a-1.b2",
    f"https://{_LONGEST_HOST}", f"http://{_LONGEST_HOST}:65535",
])
def test_canonical_stored_origins_are_recognised_without_parsing(text: str) -> None:
    assert is_canonical_exact(text)
    assert all_canonical_exact([text, "https://other.example"])
    assert _plain_exact(text) == _parse(text)


@pytest.mark.parametrize("text", [
    "https://app.example.com:443", "http://app.example.com:80", "https://app.example.com:0",
    "https://app.example.com:65536", "https://app.example.com:08080", "https://app.example.com:",
    f"https://{_LONGEST_HOST}b", "https://a.xn--bcher-kva.example", "https://axn--b.example",
    "https://app.example.com.", "https://-app.example.com", "https://app-.example.com",
    "https://a..example", "https://1.2.3.4", "https://app.example.123", "HTTPS://app.example",
    "https://app.example.com\n", "https://App.example.com", "https://*.example.com", "*",
    "https://" + "a" * 64 + ".example",
])
def test_origins_the_full_parse_might_change_or_refuse_are_not_taken_as_canonical(
    text: str,
) -> None:
    assert not is_canonical_exact(text)
    assert not all_canonical_exact(["https://other.example", text])
    assert _plain_exact(text) is None


def test_an_entry_that_is_not_text_is_left_to_the_full_parse() -> None:
    assert not is_canonical_exact(None)
    assert not all_canonical_exact(["https://app.example.com", 42])
    origins = OriginSet([OriginEntry("https://app.example.com"), OriginEntry(42)])  # type: ignore[arg-type]
    assert origins.invalid == [42]
    assert origins.allows("https://app.example.com", NOW)


_STORED_VALUES = ("https://a.example", "https://b.example:8443", "https://A.example",
                  "https://a.example:443", "https://*.c.example", "http://localhost:*", "*",
                  "not an origin")


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(st.sampled_from(_STORED_VALUES),
                          st.sampled_from((None, 10.0, 2000.0))), max_size=8))
def test_a_set_holds_each_entry_as_parsed_with_its_latest_expiry(
    entries: list[tuple[str, float | None]],
) -> None:
    """Whether its entries are all canonical (built in one step) or not (one at a time)."""
    def later(a: float | None | bool, b: float | None) -> float | None:
        return b if a is False else None if a is None or b is None else max(a, b)  # type: ignore[type-var]

    any_: float | None | bool = False
    tables: tuple[dict, dict, dict] = ({}, {}, {})
    invalid = []
    for value, expiry in entries:
        try:
            spec = parse_origin(value)
        except OriginError:
            invalid.append(value)
            continue
        if spec.kind is OriginKind.ANY:
            any_ = later(any_, expiry)
            continue
        table, key = {
            OriginKind.EXACT: (tables[0], spec.value),
            OriginKind.SUBDOMAIN_WILDCARD: (
                tables[1], (spec.scheme, spec.host, "" if spec.port is None else str(spec.port))),
            OriginKind.ANY_PORT: (tables[2], (spec.scheme, spec.host)),
        }[spec.kind]
        table[key] = later(table.get(key, False), expiry)
    origins = OriginSet([OriginEntry(value, expiry) for value, expiry in entries])
    assert origins.contents() == (any_, *tables)
    assert origins.invalid == invalid
