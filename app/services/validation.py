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

from ..cors.origins import OriginError, OriginKind, parse_origin
from ..cors.paths import PathPattern, PatternError, parse_pattern
from ..cors.snapshot import DEFAULT_METHODS, MODES
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
)
MAX_AGE_LIMIT = 86400
MAX_DESCRIPTION = 2000
MAX_NOTE = 500
MAX_LIST = 100
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass(frozen=True, slots=True)
class OriginInput:
    value: str
    kind: str
    note: str = ""
    expires_at: datetime | None = None


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
    mode: str = "enforce"
    description: str = ""


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
            pattern = parse_pattern(data["path"])
        except PatternError as exc:
            err("path", str(exc))
        else:
            reserved = next((p for p in reserved_prefixes if _under(pattern.text, p)), None)
            if reserved is not None:
                err("path", f"{reserved} is never governed by the engine; choose another path")

    credentials = _boolean(data, "supports_credentials", False, err)
    rule = RuleInput(
        path=pattern.text if pattern else "",
        pattern=pattern,  # type: ignore[arg-type]
        methods=_methods(data.get("methods", list(DEFAULT_METHODS)), err),
        allow_headers=_header_list(data.get("allow_headers", ["*"]), "allow_headers", err,
                                   lower=True, star=True),
        expose_headers=_header_list(data.get("expose_headers", []), "expose_headers", err,
                                    lower=False, star=not credentials),
        supports_credentials=credentials,
        max_age=_max_age(data.get("max_age"), err),
        allow_private_network=_boolean(data, "allow_private_network", False, err),
        mode=_mode(data.get("mode", "enforce"), err),
        description=_text(data.get("description", ""), "description", MAX_DESCRIPTION, err),
    )
    rule.origins = validate_origins(data.get("origins", []), credentials=credentials,
                                    where=f"{where}origins", errors=errors)
    if errors:
        raise ValidationError(errors)
    return rule


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
        seen: dict[str, int] = {}
        for index, item in enumerate(values):
            name = f"{where}[{index}]"
            try:
                origin = validate_origin(item, credentials=credentials)
            except ValidationError as exc:
                errors.extend(FieldError(name + e.field.removeprefix("origin"), e.message)
                              for e in exc.errors)
                continue
            if origin.value in seen:
                errors.append(FieldError(name, f"{origin.value} is already listed at position "
                                               f"{seen[origin.value]}; list it once"))
                continue
            seen[origin.value] = index
            result.append(origin)
    if own and errors:
        raise ValidationError(errors)
    return result


def validate_origin(item: Any, *, credentials: bool) -> OriginInput:
    """One allowlist entry, typed as text or given as an object with a note and expiry."""
    note, expires_at = "", None
    errors: list[FieldError] = []
    if isinstance(item, Mapping):
        unknown = [k for k in item if k not in ("value", "note", "expires_at")]
        if unknown:
            errors.append(FieldError("origin", f"unknown field {unknown[0]!r}; an origin entry "
                                               "has value, note and expires_at"))
        value = item.get("value")
        note = _text(item.get("note", ""), "note", MAX_NOTE,
                     lambda _f, m: errors.append(FieldError("origin.note", m)))
        expires_at = _timestamp(item.get("expires_at"),
                                lambda _f, m: errors.append(FieldError("origin.expires_at", m)))
    else:
        value = item
    try:
        spec = parse_origin(value)
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
    return OriginInput(spec.value, spec.kind.value, note, expires_at)


def _under(path: str, prefix: str) -> bool:
    return path == prefix.rstrip("/") or path.startswith(prefix.rstrip("/") + "/") \
        or path.startswith(prefix)


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
        return "enforce"
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
    return value


def _timestamp(value: Any, err) -> datetime | None:
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
    return parsed.astimezone(UTC)


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return repr(text[:60])
