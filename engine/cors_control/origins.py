"""Parse, normalise and validate the origin values people type into an allowlist.

Everything an operator enters (dashboard, CLI, JSON API, import file) passes through
:func:`parse_origin`, which returns the canonical form the engine stores and compares, or
raises :class:`OriginError` with a message that names the problem and the fix.

Canonical form, as browsers serialise the ``Origin`` header: lowercase scheme and host,
international names as punycode, IPv6 bracketed and compressed, default port removed, no
trailing slash. Matching is then an exact string comparison, never a regular expression.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

import idna
from publicsuffixlist import PublicSuffixList

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_ORIGIN_LENGTH = 300

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ASCII_HOST_CHARS = re.compile(r"^[A-Za-z0-9.\-]+$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
# The common entry, already in canonical form: lower-case http(s), a name whose last label
# starts with a letter (so it is no IPv4 address), at most 253 characters and no "xn--" in
# it (an international name is checked by the full parse), an optional port from 1 to 65535
# without leading zeros that is not the scheme's default (267 characters at most in all, so
# within MAX_ORIGIN_LENGTH). Labels are matched possessively (a label ends at a dot, a colon
# or the end: there is nothing to take back), which halves the time a million stored entries
# take to recognise.
_CANONICAL_LABEL = r"(?!-)[a-z0-9-]{1,63}+(?<!-)"
_CANONICAL_HOST = (r"(?![a-z0-9.-]{254})"
                   rf"(?:{_CANONICAL_LABEL}\.)*+(?=[a-z]){_CANONICAL_LABEL}")
_CANONICAL_PORT = (r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}"
                   r"|655[0-2][0-9]|6553[0-5])")
_CANONICAL_EXACT = re.compile(
    r"(?!.*xn--)"
    rf"(?:http://{_CANONICAL_HOST}(?::(?!80\Z){_CANONICAL_PORT})?"
    rf"|https://{_CANONICAL_HOST}(?::(?!443\Z){_CANONICAL_PORT})?)"
)
_MISTYPED_SCHEME = re.compile(r"^(?:[a-z][a-z0-9+.\-]*:(?=/)|https?:|:)?/*", re.IGNORECASE)


class OriginKind(enum.StrEnum):
    """How an allowlist entry matches a request's ``Origin``."""

    EXACT = "exact"
    SUBDOMAIN_WILDCARD = "subdomain-wildcard"
    ANY_PORT = "any-port"
    ANY = "any"


class OriginError(ValueError):
    """An allowlist entry that cannot be accepted; the message says why and how to fix it."""


@dataclass(frozen=True, slots=True)
class OriginSpec:
    """One validated allowlist entry.

    ``value`` is the canonical text that is stored and shown. For a subdomain wildcard
    ``host`` is the suffix after ``*.``; for ``any-port`` it is the host whose every port
    is allowed; for ``any`` scheme and host are empty.
    """

    value: str
    kind: OriginKind
    scheme: str = ""
    host: str = ""
    port: int | None = None


ANY_ORIGIN = OriginSpec(value="*", kind=OriginKind.ANY)


def parse_origin(text: object) -> OriginSpec:
    """Validate *text* as an allowlist entry and return its canonical form.

    Accepted: ``http(s)://host[:port]``, ``https://*.example.com`` (one or more whole labels
    in front of the suffix), ``http://localhost:*`` (any port, loopback only) and ``*``.
    Whether ``*`` fits the rule (no credentials) is the rule's check, not this function's;
    what only a new entry must also meet is :func:`parse_new_origin`'s.
    """
    plain = _plain_exact(text)
    return plain if plain is not None else _parse(text)


def _parse(text: object) -> OriginSpec:
    """:func:`parse_origin` of any entry, step by step, with a message for each mistake."""
    text = _check_text(text)
    if text == "*":
        return ANY_ORIGIN
    if text.lower() == "null":
        raise OriginError(
            "null is sent by sandboxed frames, file: pages and redirects, which any site can "
            "produce, so it can never be allowed; allow the real origin of the page instead"
        )
    scheme, rest = _split_scheme(text)
    authority, suffix = _split_authority(rest)
    if "@" in authority:
        raise OriginError(
            "an origin has no user name or password; use "
            f"{scheme}://{_shown(authority.rsplit('@', 1)[1])}"
        )
    host_text, port_text = _split_port(authority)
    spec_port, any_port = _parse_port(port_text, scheme)
    if suffix:
        fixed = _canonical_for_message(scheme, host_text, port_text)
        what = {"?": "query", "#": "fragment"}.get(suffix[0], "path")
        raise OriginError(f"an origin has no {what}; use {fixed}")
    if host_text.startswith("*."):
        return _subdomain_wildcard(scheme, host_text, spec_port, any_port)
    if "*" in host_text:
        raise OriginError(
            "a wildcard may only stand for whole leading labels, as in https://*.example.com"
        )
    host = _parse_host(host_text, scheme)
    if any_port:
        return _any_port(scheme, host)
    return OriginSpec(
        f"{scheme}://{host}{_port_suffix(spec_port)}", OriginKind.EXACT, scheme, host, spec_port
    )


def is_canonical_exact(text: object) -> bool:
    """Whether *text* is an exact origin already in the canonical form :func:`parse_origin`
    gives, so that parsing it would return it unchanged: the shortcut for loading stored
    entries, which the services saved in that form (see :func:`_plain_exact`)."""
    return isinstance(text, str) and _CANONICAL_EXACT.fullmatch(text) is not None


def all_canonical_exact(texts: Iterable[object]) -> bool:
    """Whether :func:`is_canonical_exact` holds for every one of *texts*: one pass of the
    pattern over each, with no Python call per entry (a policy loads a million of them)."""
    try:
        return all(map(_CANONICAL_EXACT.fullmatch, texts))  # type: ignore[arg-type]
    except TypeError:  # an entry that is not text: the full parse says what is wrong
        return False


def parse_new_origin(text: object) -> OriginSpec:
    """:func:`parse_origin`, plus the rules an entry must meet when it is saved: a subdomain
    wildcard names a registered domain, never a public suffix (``*.co.uk``,
    ``*.github.io``), where every registrant is a different site.

    Entries stored before this rule still load through :func:`parse_origin`, so the engine
    keeps serving them; only saving one again is refused.
    """
    spec = parse_origin(text)
    if spec.kind is OriginKind.SUBDOMAIN_WILDCARD and _public_suffixes().is_public(spec.host):
        raise OriginError(
            f"*.{spec.host} would allow every site registered under the public suffix "
            f"{spec.host}; name the registered domain, as in "
            f"{spec.scheme}://*.example.{spec.host}"
        )
    return spec


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    """The Public Suffix List shipped with the package (ICANN and private sections), read
    once per process on the first save that needs it, never per request."""
    return PublicSuffixList()


def _plain_exact(text: object) -> OriginSpec | None:
    """The spec of an entry already in canonical form (``https://app.example.com``,
    ``http://localhost:3000``), recognised by one match; None sends anything else, or
    anything this cannot vouch for (international names, a default or out-of-range port),
    through the full parse, which gives the same spec for what this accepts. A policy of
    100,000 origins is parsed in a fraction of the time."""
    if not is_canonical_exact(text):
        return None
    assert isinstance(text, str)  # is_canonical_exact says so
    scheme, _, authority = text.partition("://")
    host, _, port_text = authority.partition(":")
    return OriginSpec(text, OriginKind.EXACT, scheme, host, int(port_text) if port_text else None)


def _check_text(text: object) -> str:
    """What any entry must be before it is read as an origin: short printable text."""
    if not isinstance(text, str):
        raise OriginError("an origin must be text such as https://app.example.com")
    if text == "":
        raise OriginError("the origin is empty; enter one such as https://app.example.com")
    if len(text) > MAX_ORIGIN_LENGTH:
        raise OriginError(
            f"the origin is {len(text)} characters long; an origin has at most "
            f"{MAX_ORIGIN_LENGTH}"
        )
    if text.isascii() and text.isprintable() and " " not in text:
        # Printable ASCII without a space holds no whitespace and no control character: the
        # checks below, without a loop per character (a million entries load at start-up).
        return text
    if text != text.strip():
        raise OriginError(
            f"an origin has no surrounding whitespace; use {_shown(text.strip())}"
        )
    if any(ch.isspace() for ch in text):
        raise OriginError("an origin has no whitespace inside it; enter one origin per entry")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise OriginError("the origin contains control characters; type it again")
    return text


def _split_scheme(text: str) -> tuple[str, str]:
    """``https://rest`` into (``https``, ``rest``), for the two schemes browsers send."""
    scheme_match = _SCHEME.match(text)
    if scheme_match is None or not text[scheme_match.end():].startswith("//"):
        raise OriginError(
            f"the origin has no scheme; use https://{_shown(_strip_scheme_like(text))}"
        )
    scheme = scheme_match.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise OriginError(
            f"the scheme {scheme}: is not served by browsers' CORS; use http:// or https://"
        )
    return scheme, text[scheme_match.end() + 2:]


def _subdomain_wildcard(scheme: str, host_text: str, port: int | None,
                        any_port: bool) -> OriginSpec:
    if any_port:
        raise OriginError(
            "a subdomain wildcard cannot also allow any port; list the port, "
            f"as in {scheme}://{_shown(host_text)}:8443, or leave it out"
        )
    suffix_host = _parse_name(host_text[2:], scheme)
    if "." not in suffix_host:
        raise OriginError(
            f"*.{suffix_host} would allow every host under a top-level domain; "
            "use a registered domain such as *.example.com"
        )
    if _looks_numeric(suffix_host):
        # *.0.0.1 would match https://127.0.0.1: labels of an IP address are not subdomains.
        raise OriginError(
            f"*.{suffix_host} is part of an IP address, not a domain; list each address, "
            f"as in {scheme}://192.0.2.10"
        )
    value = f"{scheme}://*.{suffix_host}{_port_suffix(port)}"
    return OriginSpec(value, OriginKind.SUBDOMAIN_WILDCARD, scheme, suffix_host, port)


def _any_port(scheme: str, host: str) -> OriginSpec:
    if host not in {"localhost", "127.0.0.1", "[::1]"}:
        raise OriginError(
            "any port (:*) is allowed only for local development on localhost, "
            f"127.0.0.1 or [::1]; list the port of {scheme}://{host} instead"
        )
    return OriginSpec(f"{scheme}://{host}:*", OriginKind.ANY_PORT, scheme, host, None)


_AUTHORITY_END = re.compile(r"[/?#]")


def _split_authority(rest: str) -> tuple[str, str]:
    """Split ``host:port/path?query`` at the first ``/``, ``?`` or ``#``."""
    match = _AUTHORITY_END.search(rest)
    if match is None:
        return rest, ""
    return rest[:match.start()], rest[match.start():]


def _split_port(authority: str) -> tuple[str, str | None]:
    if authority.startswith("["):
        end = authority.find("]")
        if end == -1:
            raise OriginError("the IPv6 address has no closing ]; write it as http://[::1]:8080")
        host, after = authority[: end + 1], authority[end + 1:]
        if after == "":
            return host, None
        if not after.startswith(":"):
            raise OriginError("after an IPv6 address only :port may follow, as in http://[::1]:8080")
        return host, after[1:]
    if authority.count(":") > 1:
        raise OriginError("an IPv6 address must be in brackets, as in http://[2001:db8::1]")
    if ":" in authority:
        host, port = authority.split(":", 1)
        return host, port
    return authority, None


def _parse_port(port_text: str | None, scheme: str) -> tuple[int | None, bool]:
    """Return (explicit non-default port or None, whether the port is ``*``)."""
    if port_text is None:
        return None, False
    if port_text == "*":
        return None, True
    if port_text == "":
        raise OriginError(f"the port after : is empty; remove the : or give a port such as {scheme}://host:8080")
    if not _PORT.match(port_text):
        raise OriginError(f"the port {_shown(port_text)} is not a number from 1 to 65535")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise OriginError(f"the port {port} is not a number from 1 to 65535")
    if port == DEFAULT_PORTS[scheme]:
        return None, False
    return port, False


def _parse_host(host_text: str, scheme: str) -> str:
    if host_text == "":
        raise OriginError(f"the origin has no host; use {scheme}://app.example.com")
    if host_text.startswith("["):
        if "%" in host_text:
            # ipaddress accepts zone ids (fe80::1%eth0); browsers never send one in an origin.
            raise OriginError(
                f"{_shown(host_text)} has a zone id after %; an origin has none, remove it"
            )
        try:
            address = ipaddress.IPv6Address(host_text[1:-1])
        except ValueError:
            raise OriginError(f"{_shown(host_text)} is not a valid IPv6 address") from None
        return f"[{address.compressed}]"
    if not host_text.isascii():
        # Map international text first (fullwidth digits become ASCII), as browsers do, so a
        # name that maps to a number is checked as an IPv4 address below.
        host_text = _parse_name(host_text, scheme)
        if not _looks_numeric(host_text):
            return host_text
    if _looks_numeric(host_text):
        try:
            return str(ipaddress.IPv4Address(host_text))
        except ValueError:
            raise OriginError(
                f"{_shown(host_text)} is not a valid IPv4 address; write four numbers "
                "from 0 to 255, as in 192.0.2.10"
            ) from None
    return _parse_name(host_text, scheme)


def _looks_numeric(host: str) -> bool:
    last = host.rstrip(".").rsplit(".", 1)[-1]
    return last != "" and ((last.isascii() and last.isdigit()) or last.lower().startswith("0x"))


def _parse_name(name: str, scheme: str) -> str:
    if name == "":
        raise OriginError(f"the origin has no host; use {scheme}://app.example.com")
    if name.endswith("."):
        raise OriginError(
            f"browsers do not send a trailing dot; use {scheme}://{_shown(name.rstrip('.'))}"
        )
    if _ASCII_HOST_CHARS.match(name):
        ascii_name = name.lower()
        labels = ascii_name.split(".")
        if any(label.startswith("xn--") for label in labels):
            try:
                idna.decode(ascii_name)
            except idna.IDNAError:
                raise OriginError(f"{_shown(name)} is not a valid international name") from None
    else:
        try:
            ascii_name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise OriginError(
                f"{_shown(name)} is not a valid host name; use letters, digits, hyphens and "
                "dots, or a valid international name"
            ) from None
    labels = ascii_name.split(".")
    for label in labels:
        if label == "":
            raise OriginError(f"{_shown(name)} has an empty label (two dots in a row)")
        if not _LABEL.match(label):
            raise OriginError(
                f"{_shown(label)} in {_shown(name)} is not a valid host label; labels are "
                "1 to 63 letters, digits or hyphens and do not start or end with a hyphen"
            )
    if len(ascii_name) > 253:
        raise OriginError("the host name is longer than 253 characters")
    return ascii_name


def _port_suffix(port: int | None) -> str:
    return "" if port is None else f":{port}"


def _canonical_for_message(scheme: str, host_text: str, port_text: str | None) -> str:
    """Best-effort canonical origin for a "use ..." hint; falls back to the typed text."""
    try:
        port = "" if port_text is None else f":{port_text}"
        return parse_origin(f"{scheme}://{host_text}{port}").value
    except OriginError:
        return f"{scheme}://{_shown(host_text)}"


def _strip_scheme_like(text: str) -> str:
    # Drop a mistyped scheme ("https:/host", "https:host", "://host") so the hint does not
    # read https://https:/host; "localhost:3000" keeps its port.
    text = _MISTYPED_SCHEME.sub("", text, count=1)
    return text.split("/", 1)[0] or "app.example.com"


def _shown(text: str) -> str:
    """A fragment of user input safe to quote in a message: printable, bounded."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text)
    return cleaned if len(cleaned) <= 80 else cleaned[:77] + "..."
