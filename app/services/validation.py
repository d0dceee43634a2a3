"""Validation of rule input, done once here for every channel.

Input is a plain mapping in the policy file's vocabulary (flask-cors's option names). The
result is a :class:`RuleInput` holding canonical values, or a :class:`ValidationError` that
lists every problem, each naming its field and saying how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cors_control.origins import OriginError, OriginKind, parse_new_origin, parse_origin
from cors_control.paths import PathPattern, PatternError, parse_new_pattern
from cors_control.snapshot import DEFAULT_METHODS
from cors_control.vocabulary import (
    ENFORCE,
    MODES,
    NO_TENANT_SOURCE,
    REFUSE_UNKNOWN_TENANT,
    TENANT_FROM_HEADER,
    TENANT_FROM_SUBDOMAIN,
    TENANT_FROM_VIEW_ARG,
    TENANT_SOURCES,
    UNKNOWN_TENANT_OPTIONS,
)

from .errors import FieldError, ValidationError

RULE_FIELDS = (
    "path",
    "origins",
    "methods",
    "allow_headers",
    "expose_headers",
    "supports_credentials",
    "max_age",
    "allow_private_network",
    "mode",
    "description",
    "tenant",
    "tenant_selector",
)
TENANT_SELECTOR_FIELDS = ("source", "key", "unknown")
# What a draft may change of a rule: its options and its allowlist (not where it applies,
# how, or whose it is).
DRAFT_FIELDS = (
    "origins",
    "methods",
    "allow_headers",
    "expose_headers",
    "supports_credentials",
    "max_age",
    "allow_private_network",
)
MAX_AGE_LIMIT = 86400
MAX_DESCRIPTION = 2000
MAX_NOTE = 500
MAX_LIST = 100
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
TENANT_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


@dataclass(frozen=True, slots=True)
class OriginInput:
    value: str
    kind: str
    note: str = ""
    expires_at: datetime | None = None
    tenant: str | None = None  # slug: whose allowlist on a tenant-selecting rule

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant or "", self.value)


@dataclass(frozen=True, slots=True)
class TenantSelector:
    """Where a rule finds the request's tenant: ``view-arg`` (a URL variable of the Flask
    route, named by ``key``), ``subdomain`` (the label in front of the domain ``key``) or
    ``header`` (the header named ``key``); ``unknown`` is ``refuse`` or ``shared``."""

    source: str = NO_TENANT_SOURCE
    key: str = ""
    unknown: str = REFUSE_UNKNOWN_TENANT


@dataclass(slots=True)
class RuleInput:
    path: str
    pattern: PathPattern
    origins: list[OriginInput] = field(default_factory=list)
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    allow_headers: list[str] = field(default_factory=lambda: ["*"])
    expose_headers: list[str] = field(default_factory=list)
    supports_credentials: bool = False
    max_age: int | None = None
    allow_private_network: bool = False
    mode: str = ENFORCE
    description: str = ""
    tenant: str | None = None  # the owner's slug
    selector: TenantSelector = field(default_factory=TenantSelector)
    # In a policy file: the rule's draft, validated (see validate_draft), or None.
    draft: RuleInput | None = None


def validate_rule(
    data: Any,
    *,
    reserved_prefixes: tuple[str, ...] = (),
    where: str = "",
) -> RuleInput:
    """Validate a whole rule. *where* prefixes field names (``rules[3].``) in errors."""
    errors: list[FieldError] = []

    def err(name: str, message: str) -> None:
        errors.append(FieldError(f"{where}{name}", message))

    if not isinstance(data, Mapping):
        raise ValidationError([FieldError(where.rstrip("."), "a rule must be a JSON object")])
    for key in data:
        if key not in RULE_FIELDS:
            err(str(key), f"unknown field; the fields of a rule are {', '.join(RULE_FIELDS)}")

    pattern = None
    if "path" not in data:
        err("path", "a rule needs a path, such as /api/*")
    else:
        try:
            pattern = parse_new_pattern(data["path"])
        except PatternError as exc:
            err("path", str(exc))
        else:
            reserved = next((p for p in reserved_prefixes if _under(pattern.text, p)), None)
            if reserved is not None:
                err("path", f"{reserved} is never governed by the engine; choose another path")

    credentials = _boolean(data, "supports_credentials", False, err)
    rule = RuleInput(
        path=pattern.text if pattern else "",
        pattern=pattern,  # type: ignore[arg-type]  # None only with errors, raised below
        methods=_methods(data.get("methods", list(DEFAULT_METHODS)), err),
        allow_headers=_header_list(data.get("allow_headers", ["*"]), "allow_headers", err,
                                   lower=True, star=True),
        expose_headers=_header_list(data.get("expose_headers", []), "expose_headers", err,
                                    lower=False, star=not credentials),
        supports_credentials=credentials,
        max_age=_max_age(data.get("max_age"), err),
        allow_private_network=_boolean(data, "allow_private_network", False, err),
        mode=_mode(data.get("mode", ENFORCE), err),
        description=_text(data.get("description", ""), "description", MAX_DESCRIPTION, err),
        tenant=_tenant_slug(data.get("tenant"), "tenant", err),
        selector=_selector(data.get("tenant_selector"), err),
    )
    rule.origins = validate_origins(data.get("origins", []), credentials=credentials,
                                    where=f"{where}origins", errors=errors)
    if rule.selector.source == NO_TENANT_SOURCE:
        for index, origin in enumerate(rule.origins):
            if origin.tenant is not None:
                err(f"origins[{index}].tenant", "only a rule with a tenant_selector keeps "
                    "allowlists per tenant; remove the tenant or add a tenant_selector")
    if errors:
        raise ValidationError(errors)
    return rule


def validate_draft(
    base: Mapping[str, Any], data: Any, *, reserved_prefixes: tuple[str, ...] = (),
    where: str = "",
) -> RuleInput:
    """Validate a draft of the rule *base* (in the policy file's form): the fields of *data*
    (a subset of :data:`DRAFT_FIELDS`) replace the rule's, and the result is validated as an
    edit of the rule would be. Returns the rule as the draft would make it."""
    if not isinstance(data, Mapping):
        raise ValidationError([FieldError(where.rstrip(".") or "draft", (
            'a draft is a JSON object of a rule\'s options and origins, such as '
            '{"origins": ["https://app.example.com"], "supports_credentials": true}'))])
    unknown = [key for key in data if key not in DRAFT_FIELDS]
    if unknown:
        raise ValidationError([FieldError(f"{where}{key}", (
            f"a draft changes only a rule's {', '.join(DRAFT_FIELDS)}; change the path, "
            "mode, description, tenant or tenant_selector by editing the rule itself"))
            for key in unknown])
    if base.get("mode", ENFORCE) != ENFORCE:
        raise ValidationError([FieldError(where.rstrip(".") or "draft", (
            f"a draft is tried beside an enforced rule, and this rule is {base.get('mode')}; "
            "set its mode to enforce first, or edit the rule itself"))])
    merged = {**base, **{key: data[key] for key in DRAFT_FIELDS if key in data}}
    return validate_rule(merged, reserved_prefixes=reserved_prefixes, where=where)


def validate_origins(
    values: Any, *, credentials: bool, where: str = "origins",
    errors: list[FieldError] | None = None,
) -> list[OriginInput]:
    """Validate an allowlist: a list of strings or ``{"value", "note", "expires_at"}``."""
    own = errors is None
    errors = [] if errors is None else errors
    result: list[OriginInput] = []
    if not isinstance(values, list):
        errors.append(FieldError(where, 'origins must be a list, such as ["https://app.example.com"]'))
    else:
        seen: dict[tuple[str, str], int] = {}
        for index, item in enumerate(values):
            name = f"{where}[{index}]"
            try:
                origin = validate_origin(item, credentials=credentials)
            except ValidationError as exc:
                errors.extend(FieldError(name + e.field.removeprefix("origin"), e.message)
                              for e in exc.errors)
                continue
            if origin.key in seen:
                errors.append(FieldError(name, f"{origin.value} is already listed at position "
                                               f"{seen[origin.key]}; list it once"))
                continue
            seen[origin.key] = index
            result.append(origin)
    if own and errors:
        raise ValidationError(errors)
    return result


def validate_origin(item: Any, *, credentials: bool) -> OriginInput:
    """One allowlist entry, typed as text or given as an object with a note, an expiry and,
    on a tenant-selecting rule, the tenant whose allowlist it belongs to."""
    note, expires_at, tenant = "", None, None
    errors: list[FieldError] = []
    if isinstance(item, Mapping):
        unknown = [k for k in item if k not in ("value", "note", "expires_at", "tenant")]
        if unknown:
            errors.append(FieldError("origin", f"unknown field {unknown[0]!r}; an origin entry "
                                               "has value, note, expires_at and tenant"))
        tenant = _tenant_slug(item.get("tenant"), "tenant",
                              lambda _f, m: errors.append(FieldError("origin.tenant", m)))
        value = item.get("value")
        note = _text(item.get("note", ""), "note", MAX_NOTE,
                     lambda _f, m: errors.append(FieldError("origin.note", m)))
        expires_at = parse_expiry(item.get("expires_at"),
                                  lambda _f, m: errors.append(FieldError("origin.expires_at", m)))
    else:
        value = item
    try:
        spec = parse_new_origin(value)
    except OriginError as exc:
        errors.append(FieldError("origin", str(exc)))
    else:
        if spec.kind is OriginKind.ANY and credentials:
            errors.append(FieldError(
                "origin", "* (any origin) cannot be combined with supports_credentials, or any "
                          "site could read responses with its visitors' cookies; list the "
                          "origins, or turn credentials off"))
    if errors:
        raise ValidationError(errors)
    return OriginInput(spec.value, spec.kind.value, note, expires_at, tenant)


def _tenant_slug(value: Any, name: str, err) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not TENANT_SLUG.match(value):
        err(name, "a tenant is named by its slug: lowercase letters, digits and hyphens, "
                  "such as acme")
        return None
    return value


def _selector(value: Any, err) -> TenantSelector:
    if value is None:
        return TenantSelector()
    if not isinstance(value, Mapping):
        err("tenant_selector", 'tenant_selector is an object such as {"source": "view-arg", '
                               '"key": "tenant"}')
        return TenantSelector()
    unknown = [k for k in value if k not in TENANT_SELECTOR_FIELDS]
    if unknown:
        err("tenant_selector", f"unknown field {unknown[0]!r}; a tenant_selector has "
                               "source, key and unknown")
    source = value.get("source", NO_TENANT_SOURCE)
    key = value.get("key", "")
    behaviour = value.get("unknown", REFUSE_UNKNOWN_TENANT)
    if source not in TENANT_SOURCES:
        err("tenant_selector.source", f"source must be one of {', '.join(TENANT_SOURCES)}")
        return TenantSelector()
    if behaviour not in UNKNOWN_TENANT_OPTIONS:
        err("tenant_selector.unknown", "unknown must be refuse (an unknown tenant is refused) "
                                       "or shared (it gets the rule's shared origins)")
    if source == NO_TENANT_SOURCE:
        return TenantSelector()
    if isinstance(key, str) and len(key) > 200:
        err("tenant_selector.key", "key is longer than 200 characters")
        return TenantSelector(source, "", behaviour)
    if not isinstance(key, str) or not key:
        hint = {
            TENANT_FROM_VIEW_ARG: "the URL variable, such as tenant for /api/t/<tenant>/orders",
            TENANT_FROM_SUBDOMAIN: "the domain under which tenants are subdomains, such as "
                                   "api.example.com",
            TENANT_FROM_HEADER: "the header name, such as X-Tenant",
        }[source]
        err("tenant_selector.key", f"key names {hint}")
        return TenantSelector(source, "", behaviour)
    if source == TENANT_FROM_VIEW_ARG and not _IDENTIFIER.match(key):
        err("tenant_selector.key", "a URL variable name is letters, digits and underscores")
    elif source == TENANT_FROM_HEADER and not _TOKEN.match(key):
        err("tenant_selector.key", "a header name is letters, digits and hyphens")
    elif source == TENANT_FROM_SUBDOMAIN:
        try:
            key = parse_origin(f"https://{key}").host
        except OriginError:
            err("tenant_selector.key", "the domain must be a host name such as "
                                       "api.example.com")
    return TenantSelector(source, key, behaviour)


def _under(path: str, prefix: str) -> bool:
    root = prefix.rstrip("/")
    return path == root or path.startswith(root + "/")


def _boolean(data: Mapping, name: str, default: bool, err) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        err(name, f"{name} must be true or false")
        return default
    return value


def _methods(value: Any, err) -> list[str]:
    if not isinstance(value, list) or not value:
        err("methods", 'methods must be a non-empty list, such as ["GET", "POST"]')
        return list(DEFAULT_METHODS)
    result: list[str] = []
    for item in value:
        if not isinstance(item, str) or not _TOKEN.match(item) or item == "*":
            err("methods", f"{_quote(item)} is not a method name; list methods by name, "
                           "such as GET or PUT")
            continue
        method = item.upper()
        if method not in result:
            result.append(method)
    if len(result) > MAX_LIST:
        err("methods", f"at most {MAX_LIST} methods")
    return result


def _header_list(value: Any, name: str, err, *, lower: bool, star: bool) -> list[str]:
    if not isinstance(value, list):
        err(name, f'{name} must be a list of header names, such as ["Content-Type"]')
        return []
    result: list[str] = []
    seen: set[str] = set()
    for item in value:
        if item == "*":
            if not star:
                err(name, "* cannot be used with supports_credentials; list the header names")
                continue
        elif not isinstance(item, str) or not _TOKEN.match(item):
            err(name, f"{_quote(item)} is not a header name; use letters, digits and hyphens")
            continue
        elif name == "expose_headers" and item.lower() == "set-cookie":
            err(name, "Set-Cookie is never exposed to scripts by browsers; remove it")
            continue
        key = item.lower()
        if key not in seen:
            seen.add(key)
            result.append(key if lower else item)
    if len(result) > MAX_LIST:
        err(name, f"at most {MAX_LIST} header names")
    return result


def _max_age(value: Any, err) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        err("max_age", "max_age must be a whole number of seconds, or null for none")
        return None
    if value < 0 or value > MAX_AGE_LIMIT:
        err("max_age", f"max_age must be from 0 to {MAX_AGE_LIMIT} seconds (Firefox caps "
                       "preflights at 86400, Chromium at 7200)")
        return None
    return value


def _mode(value: Any, err) -> str:
    if value not in MODES:
        err("mode", f"mode must be one of {', '.join(MODES)}")
        return ENFORCE
    return value


def _text(value: Any, name: str, limit: int, err) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        err(name, f"{name} must be text")
        return ""
    if len(value) > limit:
        err(name, f"{name} is longer than {limit} characters")
        return value[:limit]
    if "\x00" in value or not value.isprintable() and any(
            ord(ch) < 0x20 and ch not in "\t\n\r" for ch in value):
        err(name, f"{name} contains control characters; type it again as plain text")
        return ""
    return value


def parse_expiry(value: Any, err) -> datetime | None:
    """An origin's or a token's ``expires_at``: a time or ISO 8601 text, UTC when it names no
    zone; None for none. A malformed value is reported through *err* (field, message)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            err("expires_at", "expires_at must be an ISO 8601 time such as "
                              "2026-12-31T18:00:00Z")
            return None
    else:
        err("expires_at", "expires_at must be an ISO 8601 time such as 2026-12-31T18:00:00Z")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-12:00 is past the last day a date can hold
        err("expires_at", "expires_at must fall between the years 1 and 9999 in UTC")
        return None


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return repr(text[:60])
