"""The policy and the refusals as they travel between a control plane and its data planes.

The control plane (the admin application) serves the compiled policy, not its database rows:
the rules as :class:`~.snapshot.RuleSpec` sees them, the tenants, and the version. A data
plane sends back its refusals, aggregated. Both documents carry a ``format`` number; a reader
refuses a format it does not know with :class:`UnknownFormat`, which says what to upgrade,
instead of guessing at its meaning.

Everything here is pure: JSON-ready dicts in, specs out, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .snapshot import OriginEntry, OriginListSpec, RuleSpec

POLICY_FORMAT = 1
REFUSALS_FORMAT = 1
POLICY_MEDIA_TYPE = "application/vnd.cors-control.policy+json"
REFUSALS_MEDIA_TYPE = "application/vnd.cors-control.refusals+json"
# At most this many refusal rows in one document (a data plane sends more in several).
MAX_REFUSAL_ROWS = 1000
# Where a control plane serves its data planes, below its base URL.
DATA_PLANE_POLICY_PATH = "/admin/api/v1/data-plane/policy"
DATA_PLANE_REFUSALS_PATH = "/admin/api/v1/data-plane/refusals"


class PayloadError(ValueError):
    """A document that is not what its format promises; the message says what is wrong."""


class UnknownFormat(PayloadError):
    """A document of a format this version of cors_control does not know."""


def policy_etag(version: int) -> str:
    """The ETag of the policy at *version* (a strong validator: the payload of a version
    never changes)."""
    return f'"policy-{version}"'


def etag_version(etag: str | None) -> int | None:
    """The version an ``If-None-Match`` value names, when it is one :func:`policy_etag` wrote
    (weak or strong, the first of a list); None for anything else."""
    if not etag:
        return None
    first = etag.split(",", 1)[0].strip().removeprefix("W/")
    if not (first.startswith('"policy-') and first.endswith('"')):
        return None
    digits = first[len('"policy-'):-1]
    return int(digits) if digits.isdigit() and len(digits) <= 18 else None


def encode_policy(version: int, specs: Iterable[RuleSpec],
                  tenants: Iterable[str]) -> dict[str, Any]:
    """The policy at *version* as a JSON-ready document. Shared lists appear once, at the top,
    and each rule names them by position."""
    lists: list[dict[str, Any]] = []
    list_index: dict[int, int] = {}

    def list_ref(origin_list: OriginListSpec) -> int:
        key = id(origin_list)
        if key not in list_index:
            list_index[key] = len(lists)
            lists.append({"name": origin_list.name, "tenant": origin_list.tenant,
                          "origins": [_encode_origin(o) for o in origin_list.origins]})
        return list_index[key]

    rules = []
    for spec in specs:
        rule = _encode_rule(spec)
        rule["origin_lists"] = [list_ref(origin_list) for origin_list in spec.origin_lists]
        if spec.draft is not None:
            rule["draft"] = _encode_rule(spec.draft)
        rules.append(rule)
    return {"format": POLICY_FORMAT, "version": version, "tenants": sorted(tenants),
            "origin_lists": lists, "rules": rules}


def decode_policy(document: Any) -> tuple[int, list[RuleSpec], list[str]]:
    """``(version, specs, tenants)`` from a document :func:`encode_policy` wrote.

    :raises UnknownFormat: for a format other than :data:`POLICY_FORMAT`.
    :raises PayloadError: for anything else that does not fit the format.
    """
    if not isinstance(document, Mapping):
        raise PayloadError("the policy document is not a JSON object")
    _check_format(document, POLICY_FORMAT, "policy")
    try:
        version = _int(document["version"], "version")
        tenants = [_str(t, "tenants[]") for t in _list(document.get("tenants", []), "tenants")]
        lists = [
            OriginListSpec(_str(item["name"], "origin_lists[].name"),
                           tuple(_decode_origin(o) for o in _list(item["origins"],
                                                                   "origin_lists[].origins")),
                           _optional_str(item.get("tenant"), "origin_lists[].tenant"))
            for item in _list(document.get("origin_lists", []), "origin_lists")
        ]
        specs = []
        for item in _list(document["rules"], "rules"):
            refs = _list(item.get("origin_lists", []), "rules[].origin_lists")
            used = []
            for ref in refs:
                index = _int(ref, "rules[].origin_lists[]")
                if not 0 <= index < len(lists):
                    raise PayloadError(f"a rule names origin list #{index}, which the "
                                       f"document does not hold")
                used.append(lists[index])
            draft = item.get("draft")
            specs.append(_decode_rule(item, draft=None if draft is None
                                      else _decode_rule(draft, draft=None, lists=tuple(used)),
                                      lists=tuple(used)))
    except KeyError as exc:
        raise PayloadError(f"the policy document lacks the field {exc.args[0]!r}") from None
    except (TypeError, AttributeError) as exc:
        raise PayloadError(f"the policy document does not fit format {POLICY_FORMAT}: "
                           f"{exc}") from None
    return version, specs, tenants


@dataclass(frozen=True, slots=True)
class RefusalRow:
    """One aggregated row of the request log, as a data plane reports it.

    The key is ``(bucket_start, rule_path, tenant, origin, reason, detail, mode)``; the rest
    are counts and a sample of the first request. Times are Unix timestamps.
    """

    bucket_start: float
    rule_path: str
    tenant: str
    origin: str
    reason: str
    detail: str
    mode: str
    rule_id: int | None
    count: int
    first_seen: float
    last_seen: float
    path: str
    method: str
    preflight: bool
    request_method: str
    request_headers: str
    user_agent: str
    referer: str


_REFUSAL_TEXT = ("rule_path", "tenant", "origin", "reason", "detail", "mode", "path", "method",
                 "request_method", "request_headers", "user_agent", "referer")
_REFUSAL_TIMES = ("bucket_start", "first_seen", "last_seen")


def encode_refusals(rows: Iterable[RefusalRow], *, source: str = "") -> dict[str, Any]:
    """Refusal rows as a JSON-ready document; *source* names the data plane (for logs)."""
    return {"format": REFUSALS_FORMAT, "source": source, "rows": [
        {name: getattr(row, name) for name in RefusalRow.__slots__} for row in rows]}


def decode_refusals(document: Any) -> list[RefusalRow]:
    """The rows of a document :func:`encode_refusals` wrote, each field checked for its type
    (the receiver still makes every string storable: these come from another host).

    :raises UnknownFormat: for a format other than :data:`REFUSALS_FORMAT`.
    :raises PayloadError: for anything else, naming the row and field at fault.
    """
    if not isinstance(document, Mapping):
        raise PayloadError("the refusals document is not a JSON object")
    _check_format(document, REFUSALS_FORMAT, "refusals")
    items = _list(document.get("rows"), "rows")
    if len(items) > MAX_REFUSAL_ROWS:
        raise PayloadError(f"{len(items)} rows in one document; send at most "
                           f"{MAX_REFUSAL_ROWS} at a time")
    rows = []
    for index, item in enumerate(items):
        where = f"rows[{index}]"
        if not isinstance(item, Mapping):
            raise PayloadError(f"{where} is not a JSON object")
        try:
            values: dict[str, Any] = {name: _str(item[name], f"{where}.{name}")
                                      for name in _REFUSAL_TEXT}
            values.update({name: _time(item[name], f"{where}.{name}")
                           for name in _REFUSAL_TIMES})
            count = _int(item["count"], f"{where}.count")
            if count < 1:
                raise PayloadError(f"{where}.count must be at least 1")
            values["count"] = count
            rule_id = item["rule_id"]
            values["rule_id"] = None if rule_id is None else _int(rule_id, f"{where}.rule_id")
            if not isinstance(item["preflight"], bool):
                raise PayloadError(f"{where}.preflight must be true or false")
            values["preflight"] = item["preflight"]
        except KeyError as exc:
            raise PayloadError(f"{where} lacks the field {exc.args[0]!r}") from None
        rows.append(RefusalRow(**values))
    return rows


# -- pieces ------------------------------------------------------------------------------------

def _encode_origin(entry: OriginEntry) -> str | dict[str, Any]:
    if entry.expires_at is None and entry.tenant is None:
        return entry.value
    return {"value": entry.value, "expires_at": entry.expires_at, "tenant": entry.tenant}


def _decode_origin(item: Any) -> OriginEntry:
    if isinstance(item, str):
        return OriginEntry(item)
    if not isinstance(item, Mapping):
        raise PayloadError("an origin is neither a string nor an object")
    expires = item.get("expires_at")
    return OriginEntry(_str(item["value"], "origin.value"),
                       None if expires is None else _time(expires, "origin.expires_at"),
                       _optional_str(item.get("tenant"), "origin.tenant"))


def _encode_rule(spec: RuleSpec) -> dict[str, Any]:
    return {
        "rule_id": spec.rule_id, "path": spec.path, "mode": spec.mode,
        "origins": [_encode_origin(o) for o in spec.origins],
        "methods": list(spec.methods), "allow_headers": list(spec.allow_headers),
        "expose_headers": list(spec.expose_headers),
        "supports_credentials": spec.supports_credentials, "max_age": spec.max_age,
        "allow_private_network": spec.allow_private_network,
        "tenant_source": spec.tenant_source, "tenant_key": spec.tenant_key,
        "unknown_tenant": spec.unknown_tenant,
    }


def _decode_rule(item: Any, *, draft: RuleSpec | None,
                 lists: tuple[OriginListSpec, ...]) -> RuleSpec:
    if not isinstance(item, Mapping):
        raise PayloadError("a rule is not a JSON object")
    max_age = item["max_age"]
    rule_id = item.get("rule_id")
    return RuleSpec(
        path=_str(item["path"], "rules[].path"),
        origins=tuple(_decode_origin(o) for o in _list(item["origins"], "rules[].origins")),
        methods=_strings(item["methods"], "rules[].methods"),
        allow_headers=_strings(item["allow_headers"], "rules[].allow_headers"),
        expose_headers=_strings(item["expose_headers"], "rules[].expose_headers"),
        supports_credentials=_bool(item["supports_credentials"], "rules[].supports_credentials"),
        max_age=None if max_age is None else _int(max_age, "rules[].max_age"),
        allow_private_network=_bool(item["allow_private_network"],
                                    "rules[].allow_private_network"),
        mode=_str(item["mode"], "rules[].mode"),
        rule_id=None if rule_id is None else _int(rule_id, "rules[].rule_id"),
        tenant_source=_str(item["tenant_source"], "rules[].tenant_source"),
        tenant_key=_str(item["tenant_key"], "rules[].tenant_key"),
        unknown_tenant=_str(item["unknown_tenant"], "rules[].unknown_tenant"),
        draft=draft,
        origin_lists=lists,
    )


def _check_format(document: Mapping[str, Any], known: int, kind: str) -> None:
    found = document.get("format")
    if found != known:
        raise UnknownFormat(
            f"the {kind} document is in format {found!r}; this cors_control reads format "
            f"{known} only: upgrade cors-control on this host (or the control plane, if it "
            f"is the older one)")


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadError(f"{name} must be a list")
    return value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"{name} must be a string")
    return value


def _optional_str(value: Any, name: str) -> str | None:
    return None if value is None else _str(value, name)


def _strings(value: Any, name: str) -> tuple[str, ...]:
    return tuple(_str(item, f"{name}[]") for item in _list(value, name))


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{name} must be a whole number")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise PayloadError(f"{name} must be true or false")
    return value


def _time(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PayloadError(f"{name} must be a Unix timestamp")
    return float(value)
