"""The OpenAPI 3.1 description of the API, as Python data, served at ``openapi.json``.

It is checked against the implementation by ``tests/test_api_schema.py`` (schemathesis): every
documented status and body shape is what the views send.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify

from cors_control.snapshot import DEFAULT_METHODS
from cors_control.vocabulary import (
    LOG_MODES,
    MODES,
    TENANT_SOURCES,
    UNKNOWN_TENANT_OPTIONS,
)
from cors_control.wire import (
    MAX_REFUSAL_ROWS,
    POLICY_FORMAT,
    POLICY_MEDIA_TYPE,
    REFUSALS_FORMAT,
    REFUSALS_MEDIA_TYPE,
)

from ..models import ORIGIN_KINDS, TOKEN_ROLES, WEBHOOK_FORMATS
from ..services.alerts import MAX_QUIET_DAYS, MAX_THRESHOLD, MAX_WINDOW_MINUTES
from ..services.audit import MAX_PAGE_SIZE as AUDIT_PAGE_SIZE
from ..services.drafts import EFFECT_PERIODS
from ..services.request_log import REASONS
from ..services.validation import DRAFT_FIELDS, MAX_AGE_LIMIT, MAX_DESCRIPTION, MAX_NOTE
from . import URL_PREFIX, bp
from .data_plane import DEFAULT_WAIT, MAX_WAIT
from .inputs import MAX_PER_PAGE
from .problems import PROBLEM_MEDIA_TYPE

JSON = "application/json"
REFUSAL_TEXT_FIELDS = ("rule_path", "tenant", "origin", "reason", "detail", "mode", "path",
                       "method", "request_method", "request_headers", "user_agent", "referer")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _strings(**extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", **extra}}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "page", "per_page", "total"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
            "total": {"type": "integer", "minimum": 0},
        },
    }


TIME = {"type": "string", "format": "date-time"}
WEBHOOK_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "url": {"type": "string", "description": "http or https; receives a POST",
                "examples": ["https://hooks.example.com/cors"]},
        "secret": {"type": ["string", "null"], "description": "16 to 200 characters; signs "
                   "each message (X-CORS-Control-Signature). Leave out to keep it, null to "
                   "remove it. Never returned."},
        "enabled": {"type": "boolean"},
        "rules": {**_strings(), "description": "rule paths covered; empty: every rule"},
        "reasons": {"type": "array", "items": {"enum": list(REASONS)},
                    "description": "refusal reasons covered; empty: every reason"},
        "threshold_count": {"type": "integer", "minimum": 1, "maximum": MAX_THRESHOLD},
        "window_minutes": {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW_MINUTES},
        "quiet_days": {"type": "integer", "minimum": 0, "maximum": MAX_QUIET_DAYS},
        "format": {"enum": list(WEBHOOK_FORMATS)},
    },
    "additionalProperties": False,
}
NAMESPACES = {"type": "array", "items": {"type": "string"},
              "description": "the path patterns the tenant's rules may govern, such as "
                             "/api/t/acme/*"}

TENANT_SELECTOR = {
    "type": "object",
    "description": "Where a rule finds the request's tenant, to use that tenant's allowlist.",
    "properties": {
        "source": {"enum": list(TENANT_SOURCES)},
        "key": {"type": "string", "description": "the URL variable, the parent domain or "
                                                 "the header name"},
        "unknown": {"enum": list(UNKNOWN_TENANT_OPTIONS)},
    },
    "additionalProperties": False,
}

ORIGIN_ENTRY = {
    "description": "An allowed origin: its text, or an object with a note, an expiry and, on "
                   "a tenant-selecting rule, the tenant whose allowlist it is on.",
    "anyOf": [
        {"type": "string", "examples": ["https://app.example.com"]},
        {
            "type": "object",
            "required": ["value"],
            "properties": {
                "value": {"type": "string"},
                "note": {"type": "string", "maxLength": MAX_NOTE},
                "expires_at": _nullable(TIME),
                "tenant": _nullable({"type": "string"}),
            },
            "additionalProperties": False,
        },
    ],
}

# The fields a client sends, in the policy file's vocabulary (flask-cors's option names).
RULE_FIELDS: dict[str, Any] = {
    "path": {"type": "string", "pattern": "^/", "maxLength": 500,
             "examples": ["/api/*", "/api/t/*/orders"]},
    "origins": {"type": "array", "items": ORIGIN_ENTRY},
    "methods": _strings() | {"minItems": 1, "examples": [list(DEFAULT_METHODS)]},
    "allow_headers": _strings(),
    "expose_headers": _strings(),
    "supports_credentials": {"type": "boolean"},
    "max_age": _nullable({"type": "integer", "minimum": 0, "maximum": MAX_AGE_LIMIT}),
    "allow_private_network": {"type": "boolean"},
    "mode": {"enum": list(MODES)},
    "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
    "tenant": _nullable({"type": "string", "description": "the owning tenant's slug"}),
    "tenant_selector": _nullable(_ref("TenantSelector")),
}
RULE_META: dict[str, Any] = {
    "id": {"type": "integer", "readOnly": True},
    "version": {"type": "integer", "readOnly": True,
                "description": "changes with every write; sent as the ETag"},
    "created_at": TIME | {"readOnly": True},
    "updated_at": TIME | {"readOnly": True},
    "updated_by": {"type": "string", "readOnly": True},
    "origin_lists": _strings() | {"readOnly": True,
                                  "description": "the shared origin lists the rule uses "
                                                 "(attach with PUT /origin-lists/{list_id}/"
                                                 "rules/{rule_id})"},
}
RULE_OUTPUT_FIELDS = {**RULE_FIELDS, "tenant": {"type": "string"},
                      "tenant_selector": _ref("TenantSelector"),
                      "path": {"type": "string"}}
RULE_REQUIRED = ["id", "version", "path", "methods", "allow_headers", "expose_headers",
                 "supports_credentials", "max_age", "allow_private_network", "mode",
                 "description", "created_at", "updated_at", "updated_by", "origin_lists"]

# A draft holds these fields of its rule (the rule's options and allowlist).
DRAFT_SCHEMA_FIELDS = {name: RULE_FIELDS[name] for name in DRAFT_FIELDS}
DRAFT_CHANGES = {
    "type": "object",
    "description": "What publishing the draft takes away and adds, against the live rule now.",
    "required": ["origins_removed", "origins_added", "options"],
    "properties": {
        "origins_removed": _strings(),
        "origins_added": _strings(),
        "options": {"type": "array", "items": {
            "type": "object", "required": ["name", "live", "draft"],
            "properties": {"name": {"type": "string"}, "live": {}, "draft": {}},
            "additionalProperties": False}},
    },
    "additionalProperties": False,
}

SCHEMAS: dict[str, Any] = {
    "TenantSelector": TENANT_SELECTOR,
    "DraftInput": {
        "type": "object",
        "description": "A rule's draft: the fields left out take the live rule's values. "
                       "Read-only fields of a Draft are ignored, so a draft read with GET can "
                       "be sent back.",
        "properties": DRAFT_SCHEMA_FIELDS,
        "additionalProperties": False,
    },
    "Draft": {
        "type": "object",
        "description": "The draft of a rule's options and allowlist, evaluated beside the live "
                       "rule; the request log records what it would refuse with mode draft.",
        "required": ["rule_id", "rule_path", "version", "created_at", "created_by",
                     "updated_at", "updated_by", *DRAFT_FIELDS, "changes"],
        "properties": {
            "rule_id": {"type": "integer", "readOnly": True},
            "rule_path": {"type": "string", "readOnly": True},
            "version": {"type": "integer", "readOnly": True},
            "created_at": TIME | {"readOnly": True},
            "created_by": {"type": "string", "readOnly": True},
            "updated_at": TIME | {"readOnly": True},
            "updated_by": {"type": "string", "readOnly": True},
            **DRAFT_SCHEMA_FIELDS,
            "changes": DRAFT_CHANGES | {"readOnly": True},
        },
        "additionalProperties": False,
    },
    "PublishedDraft": {
        "type": "object",
        "required": ["rule", "changes"],
        "properties": {"rule": _ref("Rule"), "changes": DRAFT_CHANGES},
        "additionalProperties": False,
    },
    "DraftEffect": {
        "type": "object",
        "description": "Requests the live rule allowed and the draft would refuse, by origin "
                       "and reason, most first (at most 100 groups).",
        "required": ["period", "since", "total", "rows"],
        "properties": {
            "period": {"enum": list(EFFECT_PERIODS)},
            "since": TIME,
            "total": {"type": "integer", "minimum": 0},
            "rows": {"type": "array", "items": {
                "type": "object",
                "required": ["origin", "reason", "tenant", "count", "last_seen"],
                "properties": {"origin": {"type": "string"}, "reason": {"type": "string"},
                               "tenant": {"type": "string"},
                               "count": {"type": "integer", "minimum": 0},
                               "last_seen": TIME},
                "additionalProperties": False}},
        },
        "additionalProperties": False,
    },
    "PolicyRule": {
        "type": "object",
        "description": "A rule of the policy file: a RuleInput, with its draft if it has one.",
        "required": ["path"],
        "properties": {**RULE_FIELDS, "draft": _ref("DraftInput")},
        "additionalProperties": False,
    },
    "OriginEntry": ORIGIN_ENTRY,
    "RuleInput": {
        "type": "object",
        "description": "A rule to create or to replace (PUT): fields left out take their "
                       "defaults. Read-only fields of a Rule are ignored, so a rule read with "
                       "GET can be sent back.",
        "required": ["path"],
        "properties": RULE_FIELDS,
        "additionalProperties": False,
    },
    "RulePatch": {
        "type": "object",
        "description": "The fields to change (PATCH); the others keep their values.",
        "properties": RULE_FIELDS,
        "additionalProperties": False,
    },
    "Rule": {
        "type": "object",
        "description": "A rule in the policy file's form, with read-only fields. `tenant` "
                       "and `tenant_selector` appear only when used. `origins` holds the "
                       "first 200 origins (of `origin_count`); when there are more, "
                       "`origins_next` is the URL of the next page of GET "
                       "/rules/{rule_id}/origins, and such a rule cannot be sent back whole "
                       "(PUT or PATCH with its `origins` is refused: send every origin, or "
                       "leave `origins` out).",
        "required": [*RULE_REQUIRED, "origins", "origin_count", "origins_next"],
        "properties": {**RULE_META, **RULE_OUTPUT_FIELDS,
                       "origin_count": {"type": "integer", "minimum": 0},
                       "origins_next": _nullable({"type": "string", "format": "uri-reference",
                                                  "examples": [
                                                      "/admin/api/v1/rules/7/origins"
                                                      "?page=2&per_page=200"]})},
        "additionalProperties": False,
    },
    "RuleSummary": {
        "type": "object",
        "description": "A rule in a list: without its origins, with their count.",
        "required": [*RULE_REQUIRED, "origin_count"],
        "properties": {**RULE_META,
                       **{k: v for k, v in RULE_OUTPUT_FIELDS.items() if k != "origins"},
                       "origin_count": {"type": "integer", "minimum": 0}},
        "additionalProperties": False,
    },
    "Origin": {
        "type": "object",
        "required": ["value", "kind", "note", "expires_at", "expired", "tenant", "added_by",
                     "added_at"],
        "properties": {
            "value": {"type": "string", "description": "as browsers serialise it"},
            "kind": {"enum": list(ORIGIN_KINDS)},
            "note": {"type": "string"},
            "expires_at": _nullable(TIME),
            "expired": {"type": "boolean"},
            "tenant": _nullable({"type": "string"}),
            "added_by": {"type": "string"},
            "added_at": _nullable(TIME),
        },
        "additionalProperties": False,
    },
    "OriginInput": {
        "type": "object",
        "description": "Optional body of PUT .../origins/{origin}.",
        "properties": {
            "note": {"type": "string", "maxLength": MAX_NOTE},
            "expires_at": _nullable(TIME),
            "tenant": _nullable({"type": "string", "description": "on a tenant-selecting "
                                 "rule: whose allowlist (a tenant role always adds to its own)"}),
        },
        "additionalProperties": False,
    },
    "CheckRequest": {
        "type": "object",
        "required": ["origin", "path"],
        "properties": {
            "origin": {"type": "string", "minLength": 1,
                       "examples": ["https://app.example.com"]},
            "method": {"type": "string", "default": "GET"},
            "path": {"type": "string", "pattern": "^/", "examples": ["/api/orders"]},
            "headers": _strings() | {"description": "request header names the script sets"},
            "request_headers": {
                "type": "object", "additionalProperties": {"type": "string"},
                "description": "headers the script sets, with values (a tenant header): "
                               "the request carries them, its preflight only their names",
                "examples": [{"X-Tenant": "acme"}]},
            "host": {"type": "string", "description": "the Host header (a tenant named by "
                                                      "the subdomain)",
                     "examples": ["acme.api.example.com"]},
            "credentials": {"type": "boolean", "default": False},
            "private_network": {"type": "boolean", "default": False,
                                "description": "the preflight asks for private network "
                                               "access (a public page calling this API)"},
            "preflight": _nullable({"type": "boolean"})
            | {"description": "default: when the method or a header needs one"},
        },
        "additionalProperties": False,
    },
    "Header": {
        "type": "object",
        "required": ["name", "value"],
        "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
        "additionalProperties": False,
    },
    "RuleRef": {
        "type": "object",
        "required": ["id", "path"],
        "properties": {"id": _nullable({"type": "integer"}), "path": {"type": "string"}},
        "additionalProperties": False,
    },
    "Decision": {
        "type": "object",
        "required": ["decision", "allowed", "reason", "detail", "explanation", "rule",
                     "tenant", "preflight", "status", "headers", "request_headers",
                     "failures", "fix", "fix_refusal", "policy_version", "report_only"],
        "properties": {
            "decision": {"enum": ["allowed", "refused"],
                         "description": "what the engine answers; a report-only rule never "
                                        "changes it (see report_only)"},
            "allowed": {"type": "boolean"},
            "reason": {"type": "string", "description": "allowed, or a refusal reason code"},
            "detail": {"type": "string"},
            "explanation": {"type": "string"},
            "rule": _nullable(_ref("RuleRef")),
            "tenant": _nullable({"type": "string"}),
            "preflight": {"type": "boolean"},
            "status": _nullable({"enum": [204, 403]}),
            "headers": {"type": "array", "items": _ref("Header"),
                        "description": "the CORS headers the engine sends"},
            "request_headers": {"type": "array", "items": _ref("Header"),
                                "description": "the request the simulation built"},
            "failures": {
                "type": "array",
                "description": "every check the refused step (the preflight, or the request "
                               "after it) fails, not only the first",
                "items": {
                    "type": "object",
                    "required": ["check", "detail", "explanation"],
                    "properties": {"check": {"type": "string"}, "detail": {"type": "string"},
                                   "explanation": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
            "fix": _nullable({
                "type": "object",
                "description": "the one change that makes this request pass, when there is "
                               "one (the dashboard applies it in one click)",
                "required": ["rule", "origin", "tenant", "credentials", "routes", "summary"],
                "properties": {
                    "rule": {"type": "object", "required": ["id", "path"],
                             "properties": {"id": {"type": "integer"},
                                            "path": {"type": "string"}}},
                    "origin": _nullable({"type": "string"}),
                    "tenant": _nullable({"type": "string"}),
                    "credentials": {"type": "boolean"},
                    "routes": _strings() | {"description": "the app's routes the rule "
                                                           "governs, which the change affects"},
                    "summary": {"type": "string"},
                },
            }),
            "fix_refusal": _nullable({"type": "string"}),
            "policy_version": _nullable({"type": "integer"}),
            "report_only": {
                "type": "array",
                "description": "what report-only rules watching the path would refuse; "
                               "recorded in the request log, never sent",
                "items": {
                    "type": "object",
                    "required": ["rule", "reason", "detail", "explanation"],
                    "properties": {
                        "rule": _nullable(_ref("RuleRef")),
                        "reason": {"type": "string"},
                        "detail": {"type": "string"},
                        "explanation": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
    "LogEntry": {
        "type": "object",
        "required": ["id", "bucket_start", "rule", "rule_id", "origin", "reason", "detail",
                     "mode", "count", "first_seen", "last_seen", "sample"],
        "properties": {
            "id": {"type": "integer"},
            "bucket_start": TIME,
            "rule": _nullable({"type": "string"}),
            "rule_id": _nullable({"type": "integer"}),
            "origin": {"type": "string"},
            "reason": {"type": "string"},
            "detail": {"type": "string"},
            "mode": {"type": "string"},
            "count": {"type": "integer"},
            "first_seen": TIME,
            "last_seen": TIME,
            "sample": {
                "type": "object",
                "required": ["path", "method", "preflight", "request_method",
                             "request_headers", "user_agent", "referer"],
                "properties": {
                    "path": {"type": "string"},
                    "method": {"type": "string"},
                    "preflight": {"type": "boolean"},
                    "request_method": {"type": "string"},
                    "request_headers": {"type": "string"},
                    "user_agent": {"type": "string"},
                    "referer": {"type": "string"},
                },
            },
        },
    },
    "AuditEntry": {
        "type": "object",
        "required": ["id", "at", "actor", "channel", "action", "rule_id", "rule_path",
                     "summary", "before", "after", "delta", "policy_version"],
        "properties": {
            "id": {"type": "integer"},
            "at": TIME,
            "actor": {"type": "string", "description": "token:<name> for API tokens"},
            "channel": {"type": "string", "examples": ["api", "dashboard", "cli"]},
            "action": {"type": "string", "examples": ["rule.update", "origin.add"]},
            "rule_id": _nullable({"type": "integer"}),
            "rule_path": {"type": "string"},
            "summary": {"type": "string"},
            "before": _nullable({"type": "object", "description": (
                "The rule (or, for an import, every rule it touched, under `rules`) before "
                "the change; null for a creation and for an entry with a `delta`")}),
            "after": _nullable({"type": "object", "description": (
                "The rule after the change; null for a deletion and for an entry with a "
                "`delta`")}),
            "delta": _nullable({
                "type": "object",
                "description": "What a change of a rule's origins changed, recorded instead "
                               "of the rule before and after: the rule's `path` (and "
                               "`tenant`), `origins.added` and `origins.removed` (origin "
                               "entries), and `options` it changed ({name: {before, after}})",
                "required": ["path", "origins"],
                "properties": {
                    "path": {"type": "string"},
                    "tenant": {"type": "string"},
                    "origins": {"type": "object", "properties": {
                        "added": {"type": "array", "items": ORIGIN_ENTRY},
                        "removed": {"type": "array", "items": ORIGIN_ENTRY}}},
                    "options": {"type": "object"},
                }}),
            "policy_version": {"type": "integer"},
        },
    },
    "TenantRef": {
        "type": "object",
        "required": ["slug"],
        "properties": {"slug": {"type": "string"}, "name": {"type": "string"},
                       "paths": NAMESPACES},
        "additionalProperties": False,
    },
    "TenantInput": {
        "type": "object",
        "required": ["slug"],
        "properties": {"slug": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
                       "name": {"type": "string", "maxLength": 200}, "paths": NAMESPACES},
        "additionalProperties": False,
    },
    "TenantPatch": {
        "type": "object",
        "required": ["paths"],
        "properties": {"paths": NAMESPACES},
        "additionalProperties": False,
    },
    "Policy": {
        "type": "object",
        "description": "The policy file: the format of flask cors export and import.",
        "required": ["rules"],
        "properties": {
            "rules": {"type": "array", "items": _ref("PolicyRule")},
            "tenants": {"type": "array", "items": _ref("TenantRef")},
        },
        "additionalProperties": False,
    },
    "Grants": {
        "type": "object",
        "description": "What applies on a route: origins (with their tenant on a rule that "
                       "keeps one allowlist per tenant), methods, request headers (* for any), "
                       "credentials; origins the token may not see are only counted.",
        "required": ["origins", "hidden_origins", "methods", "headers", "credentials",
                     "private_network"],
        "properties": {"origins": _strings(), "hidden_origins": {"type": "integer"},
                       "methods": _strings(), "headers": _strings(),
                       "credentials": {"type": "boolean"},
                       "private_network": {"type": "boolean"}},
        "additionalProperties": False,
    },
    "RuleLabel": {
        "type": "object",
        "description": "A rule as the token may see it; a hidden one is only labelled "
                       "(a platform rule).",
        "required": ["id", "path", "hidden", "label"],
        "properties": {"id": _nullable({"type": "integer"}),
                       "path": _nullable({"type": "string"}),
                       "hidden": {"type": "boolean"}, "label": {"type": "string"}},
        "additionalProperties": False,
    },
    "RouteImpact": {
        "type": "object",
        "required": ["route", "sample_path", "app_route", "before", "after", "moves", "lost",
                     "gained"],
        "properties": {
            "route": {"type": "string",
                      "description": "an app route, or a rule's pattern no app route matches"},
            "sample_path": {"type": "string"}, "app_route": {"type": "boolean"},
            "before": _nullable(_ref("RuleLabel")), "after": _nullable(_ref("RuleLabel")),
            "moves": {"type": "boolean",
                      "description": "another rule answers the route after the change"},
            "lost": _ref("Grants"), "gained": _ref("Grants"),
        },
        "additionalProperties": False,
    },
    "Impact": {
        "type": "object",
        "description": "What a change would take away and give, route by route.",
        "required": ["takes_away", "losses", "confirmation", "routes", "copy_offers"],
        "properties": {
            "takes_away": {"type": "boolean"},
            "losses": _strings(),
            "confirmation": _nullable({"type": "string"}),
            "routes": {"type": "array", "items": _ref("RouteImpact")},
            "copy_offers": {"type": "array", "items": {
                "type": "object", "required": ["rule", "origins"],
                "properties": {"rule": _ref("RuleLabel"),
                               "origins": {"type": "array", "items": {}}},
                "additionalProperties": False}},
        },
        "additionalProperties": False,
    },
    "DryRun": {
        "type": "object",
        "description": "The preview of a write made with dry_run=true: nothing was written. "
                       "A restore's also lists the fields it changes and the later entries "
                       "it takes back (undoes).",
        "required": ["dry_run", "policy_version", "takes_away", "losses", "confirmation",
                     "routes", "copy_offers"],
        "properties": {"dry_run": {"const": True}, "policy_version": {"type": "integer"},
                       "takes_away": {"type": "boolean"}, "losses": _strings(),
                       "confirmation": _nullable({"type": "string"}),
                       "routes": {"type": "array", "items": _ref("RouteImpact")},
                       "copy_offers": {"type": "array", "items": {}},
                       "changes": {"type": "array", "items": {"type": "object"}},
                       "undoes": {"type": "array", "items": {
                           "type": "object",
                           "required": ["id", "actor", "action", "summary", "fields"],
                           "properties": {"id": {"type": "integer"},
                                          "actor": {"type": "string"},
                                          "action": {"type": "string"},
                                          "summary": {"type": "string"},
                                          "fields": _strings()}}}},
        "additionalProperties": False,
    },
    "Undone": {
        "type": "object",
        "required": ["policy_version", "rule"],
        "properties": {"undone": {"type": "integer"}, "restored": {"type": "integer"},
                       "policy_version": {"type": "integer"},
                       "rule": _nullable(_ref("Rule"))},
        "additionalProperties": False,
    },
    "ImportResult": {
        "type": "object",
        "required": ["dry_run", "added", "changed", "removed", "unchanged", "tenants_added",
                     "policy_version"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "added": _strings(),
            "changed": {"type": "object", "additionalProperties": _strings(),
                        "description": "rule path: the fields that differ"},
            "removed": _strings(),
            "unchanged": _strings(),
            "tenants_added": _strings(),
            "tenants_changed": _strings(),
            "policy_version": _nullable({"type": "integer"}),
            "origin_lists_added": _strings(),
            "origin_lists_changed": _strings(),
            "impact": _ref("Impact"),
        },
        "additionalProperties": False,
    },
    "Tenant": {
        "type": "object",
        "required": ["slug", "name", "paths", "created_at"],
        "properties": {"slug": {"type": "string"}, "name": {"type": "string"},
                       "paths": NAMESPACES, "created_at": _nullable(TIME)},
        "additionalProperties": False,
    },
    "Token": {
        "type": "object",
        "required": ["name", "role", "tenant", "expires_at", "created_at", "last_used_at"],
        "properties": {
            "name": {"type": "string"},
            "role": {"enum": list(TOKEN_ROLES)},
            "tenant": _nullable({"type": "string"}),
            "expires_at": _nullable(TIME),
            "created_at": _nullable(TIME),
            "last_used_at": _nullable(TIME),
        },
        "additionalProperties": False,
    },
    "FieldError": {
        "type": "object",
        "required": ["field", "message"],
        "properties": {
            "field": {"type": "string", "description": "path, origins[0], rules[2].path..."},
            "message": {"type": "string", "description": "the problem and how to fix it"},
        },
        "additionalProperties": False,
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail", "errors"],
        "properties": {
            "type": {"type": "string", "format": "uri",
                     "examples": ["urn:cors-control:problem:validation-error"]},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {"type": "array", "items": _ref("FieldError")},
            "current_version": {"type": "integer",
                                "description": "on 409 and 412: the rule's version now"},
            "policy_version": {"type": ["integer", "null"],
                               "description": "on 503: the version the engine keeps serving"},
        },
    },
    "RulePage": _page("RuleSummary"),
    "OriginPage": _page("Origin"),
    "LogPage": _page("LogEntry"),
    "LogGroup": {
        "type": "object",
        "description": "Rows of one origin, rule or reason summed; the key is named by the "
                       "group (origin, rule or reason)",
        "required": ["count", "rows", "first_seen", "last_seen", "routes", "reasons",
                     "trend", "sample_id"],
        "properties": {
            "count": {"type": "integer"},
            "rows": {"type": "integer"},
            "first_seen": TIME,
            "last_seen": TIME,
            "routes": {"type": "array", "items": _nullable({"type": "string"})},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "origins": {"type": "array", "items": {"type": "string"}},
            "trend": {"type": "array", "items": {"type": "integer"},
                      "description": "counts in equal parts of the period, oldest first"},
            "sample_id": {"type": "integer"},
        },
    },
    "LogGroupPage": {
        **_page("LogGroup"),
        "required": ["items", "page", "per_page", "total", "group", "sort", "period"],
    },
    "OriginGrant": {
        "type": "object",
        "required": ["rule_id", "rule", "entry", "match", "since", "expired", "serving"],
        "properties": {
            "rule_id": {"type": "integer"},
            "rule": {"type": "string"},
            "rule_mode": {"type": "string"},
            "rule_tenant": _nullable({"type": "string"}),
            "entry": {"type": "string"},
            "match": {"type": "string", "enum": ["exact", "wildcard"]},
            "kind": {"type": "string"},
            "allowlist_tenant": _nullable({"type": "string"}),
            "since": TIME,
            "added_by": _nullable({"type": "string"}),
            "expires_at": _nullable(TIME),
            "expired": {"type": "boolean"},
            "serving": {"type": "boolean"},
            "note": {"type": "string"},
            "list": _nullable({
                "type": "object",
                "description": "The shared origin list the entry belongs to; null for an "
                               "entry of the rule's own allowlist.",
                "required": ["id", "name", "tenant"],
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                               "tenant": _nullable({"type": "string"})}}),
        },
    },
    "OriginFound": {
        "type": "object",
        "required": ["origin", "items", "total"],
        "properties": {"origin": {"type": "string"}, "total": {"type": "integer"},
                       "items": {"type": "array", "items": _ref("OriginGrant")}},
    },
    "AuditPage": _page("AuditEntry"),
    "TenantPage": _page("Tenant"),
    "Webhook": {
        "type": "object",
        "description": "Where alerts about new refusals go (README, \"Alerts\"). The secret "
                       "is never returned: only whether one is set.",
        "required": ["id", "name", "url", "secret_set", "enabled", "rules", "reasons",
                     "threshold_count", "window_minutes", "quiet_days", "format",
                     "created_by", "created_at", "updated_at", "deliveries"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "url": {"type": "string"},
            "secret_set": {"type": "boolean"},
            "enabled": {"type": "boolean"},
            "rules": _strings(),
            "reasons": {"type": "array", "items": {"enum": list(REASONS)}},
            "threshold_count": {"type": "integer"},
            "window_minutes": {"type": "integer"},
            "quiet_days": {"type": "integer"},
            "format": {"enum": list(WEBHOOK_FORMATS)},
            "created_by": {"type": "string"},
            "created_at": TIME,
            "updated_at": TIME,
            "deliveries": {
                "type": "object",
                "required": ["pending", "delivered", "failed"],
                "properties": {state: {"type": "integer", "minimum": 0}
                               for state in ("pending", "delivered", "failed")},
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
    "WebhookInput": WEBHOOK_INPUT | {"required": ["name", "url"]},
    "WebhookPatch": WEBHOOK_INPUT,
    "WebhookPage": _page("Webhook"),
    "OriginList": {
        "type": "object",
        "description": "A shared origin list: every rule that uses it allows its origins.",
        "required": ["id", "name", "tenant", "description", "origins", "rules", "writable"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "tenant": _nullable({"type": "string", "description": "the owner; null: the "
                                                                  "platform"}),
            "description": {"type": "string"},
            "origins": {"type": "array", "items": ORIGIN_ENTRY},
            "rules": {"type": "array", "items": {
                "type": "object", "required": ["id", "path"],
                "properties": {"id": {"type": "integer"}, "path": {"type": "string"}},
                "additionalProperties": False}},
            "writable": {"type": "boolean", "description": "whether the caller may change it"},
        },
        "additionalProperties": False,
    },
    "OriginListInput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9_-]{0,98}[a-z0-9])?$",
                     "examples": ["frontends"]},
            "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
            "tenant": _nullable({"type": "string", "description": "the owner's slug (a "
                                 "tenant role's lists are always its tenant's)"}),
            "origins": {"type": "array", "items": ORIGIN_ENTRY},
        },
        "additionalProperties": False,
    },
    "OriginListPatch": {
        "type": "object",
        "properties": {"description": {"type": "string", "maxLength": MAX_DESCRIPTION}},
        "additionalProperties": False,
    },
    "OriginListEntryInput": {
        "type": "object",
        "required": ["value"],
        "properties": {
            "value": {"type": "string", "examples": ["https://app.example.com"]},
            "note": {"type": "string", "maxLength": MAX_NOTE},
            "expires_at": _nullable(TIME),
        },
        "additionalProperties": False,
    },
    "OriginListPage": _page("OriginList"),
    "DataPlanePolicy": {
        "type": "object",
        "description": "The compiled policy as data planes receive it (cors_control.wire."
                       "encode_policy): every enabled rule with its origins and draft, the "
                       "shared origin lists once (rules name them by position), the tenants. "
                       "A reader refuses a format it does not know.",
        "required": ["format", "version", "tenants", "origin_lists", "rules"],
        "properties": {
            "format": {"const": POLICY_FORMAT},
            "version": {"type": "integer", "minimum": 0},
            "tenants": _strings(),
            "origin_lists": {"type": "array", "items": {"type": "object"}},
            "rules": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Refusals": {
        "type": "object",
        "description": "Aggregated refusals of a data plane (cors_control.wire."
                       "encode_refusals), at most MAX_REFUSAL_ROWS rows; times are Unix "
                       "timestamps. Strings are stored escaped and cut to their column.",
        "required": ["format", "rows"],
        "properties": {
            "format": {"const": REFUSALS_FORMAT},
            "source": {"type": "string", "description": "the data plane's name, for logs"},
            "rows": {"type": "array", "maxItems": MAX_REFUSAL_ROWS, "items": {
                "type": "object",
                "required": [*REFUSAL_TEXT_FIELDS, "bucket_start", "first_seen",
                             "last_seen", "count", "rule_id", "preflight"],
                "properties": {
                    **{name: {"type": "string"} for name in REFUSAL_TEXT_FIELDS},
                    "mode": {"enum": list(LOG_MODES)},
                    "bucket_start": {"type": "number"},
                    "first_seen": {"type": "number"},
                    "last_seen": {"type": "number"},
                    "count": {"type": "integer", "minimum": 1},
                    "rule_id": _nullable({"type": "integer"}),
                    "preflight": {"type": "boolean"},
                },
            }},
        },
    },
    "RefusalsStored": {
        "type": "object",
        "required": ["stored"],
        "properties": {"stored": {"type": "integer", "minimum": 0}},
        "additionalProperties": False,
    },
}

PROBLEMS = {
    400: "Malformed JSON, JSON nested more than 32 deep, or no body where one is needed.",
    401: "No token, or an unknown, expired or revoked one (see WWW-Authenticate).",
    403: "The token's role does not allow this.",
    404: "No such object, or one the token's tenant cannot see.",
    409: "The change conflicts with the stored policy or with a change made meanwhile.",
    412: "If-Match names a version that is no longer current; nothing was changed.",
    413: "The body is larger than 1 MB (MAX_CONTENT_LENGTH), 20 MB for an import "
         "(IMPORT_MAX_BYTES), 4 MB for refusals (DATA_PLANE_REFUSALS_MAX_BYTES).",
    415: "The body is not application/json.",
    422: "Invalid fields; `errors` names each one with the fix.",
    428: "PUT needs If-Match.",
    503: "The database is unreachable; retry after Retry-After seconds.",
}


def _problem(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": PROBLEMS[status],
                                "content": {PROBLEM_MEDIA_TYPE: {"schema": _ref("Problem")}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if status == 503:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return response


def _ok(schema: str, description: str = "OK", **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {JSON: {"schema": _ref(schema)}}}
    if headers:
        response["headers"] = {name.replace("_", "-"): {"description": text,
                                                         "schema": {"type": "string"}}
                               for name, text in headers.items()}
    return response


def _ok_either(schema: str, other: str, **headers: str) -> dict[str, Any]:
    """A 200 answered with *schema*, or with *other* (a dry run's preview)."""
    response = _ok(schema, **headers)
    response["content"][JSON]["schema"] = {"oneOf": [_ref(schema), _ref(other)]}
    return response


def _responses(success: dict[int, Any], *problems: int) -> dict[str, Any]:
    responses = {str(status): response for status, response in success.items()}
    for status in sorted({401, 503, *problems}):
        responses[str(status)] = _problem(status)
    return responses


def _body(schema: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": _ref(schema)}}}


def _either(*schemas: str) -> dict[str, Any]:
    return {"description": "OK",
            "content": {JSON: {"schema": {"anyOf": [_ref(name) for name in schemas]}}}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


PAGING = [{"$ref": "#/components/parameters/page"}, {"$ref": "#/components/parameters/per_page"}]
RULE_ID = {"$ref": "#/components/parameters/rule_id"}
LIST_ID = {"name": "list_id", "in": "path", "required": True,
           "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}
ENTRY_ID = {"name": "entry_id", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}
IF_MATCH = {"$ref": "#/components/parameters/if_match"}
ORIGIN = {"name": "origin", "in": "path", "required": True,
          "description": "The origin, URL-encoded: https%3A%2F%2Fapp.example.com",
          "schema": {"type": "string", "minLength": 1}}
DELETED = {"description": "Done (also when there was nothing to remove)."}
DRY_RUN = _query("dry_run", "only return what the change would take away and give, route by "
                 "route (Impact); write nothing", {"type": "boolean"})
RULE_ETAG = {"ETag": 'the rule\'s version, "<version>"'}
DRAFT_ETAG = {"ETag": 'the draft\'s id and version, "<id>.<version>"'}
DRAFT_IF_MATCH = {"name": "If-Match", "in": "header", "required": False,
                  "description": 'the ETag of the draft as read, "<id>.<version>"',
                  "schema": {"type": "string"}}

PATHS: dict[str, Any] = {
    "/rules": {
        "get": {
            "operationId": "listRules",
            "summary": "Rules, sorted by path",
            "parameters": [
                _query("q", "text in the path or the description"),
                _query("mode", "only rules in this mode", {"enum": list(MODES)}),
                _query("tenant", "only rules owned by this tenant (slug)"),
                _query("origin", "instead of rules: every entry that allows this origin "
                                 "(exact or a wildcard matching it)"),
                *PAGING,
            ],
            "responses": _responses({200: _either("RulePage", "OriginFound")}, 422),
        },
        "post": {
            "operationId": "createRule",
            "summary": "Create a rule",
            "parameters": [DRY_RUN],
            "requestBody": _body("RuleInput"),
            "responses": _responses(
                {201: _ok("Rule", "Created", ETag=RULE_ETAG["ETag"],
                          Location="the new rule"),
                 200: _ok("DryRun", "With dry_run: the preview; nothing was written")},
                400, 403, 409, 413, 415, 422),
        },
    },
    "/rules/{rule_id}": {
        "parameters": [RULE_ID],
        "get": {
            "operationId": "getRule",
            "summary": "A rule with its first 200 origins and a link to the rest; the ETag "
                       "is its version",
            "responses": _responses({200: _ok("Rule", **RULE_ETAG)}, 404),
        },
        "put": {
            "operationId": "replaceRule",
            "summary": "Replace a rule (If-Match required)",
            "parameters": [{"$ref": "#/components/parameters/if_match_required"}, DRY_RUN],
            "requestBody": _body("RuleInput"),
            "responses": _responses({200: _ok_either("Rule", "DryRun", **RULE_ETAG)},
                                    400, 403, 404, 409, 412, 413, 415, 422, 428),
        },
        "patch": {
            "operationId": "updateRule",
            "summary": "Change some fields of a rule",
            "description": "With If-Match, a stale version is refused with 412; without it "
                           "the change applies to the stored rule (last writer wins).",
            "parameters": [IF_MATCH, DRY_RUN],
            "requestBody": _body("RulePatch"),
            "responses": _responses({200: _ok_either("Rule", "DryRun", **RULE_ETAG)},
                                    400, 403, 404, 409, 412, 413, 415, 422),
        },
        "delete": {
            "operationId": "deleteRule",
            "summary": "Delete a rule",
            "parameters": [IF_MATCH, DRY_RUN],
            "responses": _responses({204: {"description": "Deleted."},
                                     200: _ok("DryRun", "With dry_run: the preview; nothing "
                                                        "was deleted")},
                                    403, 404, 409, 412, 422),
        },
    },
    "/rules/{rule_id}/origins": {
        "parameters": [RULE_ID],
        "get": {
            "operationId": "listOrigins",
            "summary": "A rule's origins the token may see, by tenant then value",
            "parameters": PAGING,
            "responses": _responses({200: _ok("OriginPage")}, 404, 422),
        },
    },
    "/rules/{rule_id}/origins/{origin}": {
        "parameters": [RULE_ID, ORIGIN],
        "put": {
            "operationId": "addOrigin",
            "summary": "Allow one origin (idempotent)",
            "description": "201 when added, 200 when already allowed (left as it is).",
            "requestBody": _body("OriginInput", required=False),
            "responses": _responses(
                {201: _ok("Origin", "Added", Location="the rule's origins"),
                 200: _ok("Origin", "Already allowed")},
                400, 403, 404, 409, 413, 415, 422),
        },
        "delete": {
            "operationId": "removeOrigin",
            "summary": "Remove one origin (idempotent)",
            "parameters": [_query("tenant", "on a tenant-selecting rule: whose allowlist")],
            "responses": _responses({204: DELETED}, 403, 404, 409, 422),
        },
    },
    "/rules/{rule_id}/draft": {
        "parameters": [RULE_ID],
        "get": {
            "operationId": "getDraft",
            "summary": "The rule's draft and what publishing it changes",
            "responses": _responses({200: _ok("Draft", **DRAFT_ETAG)}, 404),
        },
        "put": {
            "operationId": "replaceDraft",
            "summary": "Start or replace the rule's draft (fields left out: the live rule's)",
            "description": "Validated as an edit of the rule is. With If-Match, a stale "
                           "draft is refused with 412. Only the rule's owner keeps a draft.",
            "parameters": [DRAFT_IF_MATCH],
            "requestBody": _body("DraftInput"),
            "responses": _responses(
                {201: _ok("Draft", "Created", ETag=DRAFT_ETAG["ETag"],
                          Location="the draft"),
                 200: _ok("Draft", **DRAFT_ETAG)},
                400, 403, 404, 409, 412, 413, 415, 422),
        },
        "delete": {
            "operationId": "discardDraft",
            "summary": "Discard the rule's draft (idempotent)",
            "parameters": [DRAFT_IF_MATCH],
            "responses": _responses({204: DELETED}, 403, 404, 409, 412),
        },
    },
    "/rules/{rule_id}/draft/publish": {
        "parameters": [RULE_ID],
        "post": {
            "operationId": "publishDraft",
            "summary": "Put the draft in place of the rule's options and allowlist",
            "description": "One change: one policy version, one audit entry with the rule "
                           "before and after. The draft is validated again against the rule "
                           "as it is now.",
            "parameters": [DRAFT_IF_MATCH],
            "responses": _responses({200: _ok("PublishedDraft", **RULE_ETAG)},
                                    403, 404, 409, 412, 422),
        },
    },
    "/rules/{rule_id}/draft/effect": {
        "parameters": [RULE_ID],
        "get": {
            "operationId": "draftEffect",
            "summary": "What the draft would have refused that the live rule allowed",
            "parameters": [_query("period", "how far back", {"enum": list(EFFECT_PERIODS)})],
            "responses": _responses({200: _ok("DraftEffect")}, 404, 422),
        },
    },
    "/origin-lists": {
        "get": {
            "operationId": "listOriginLists",
            "summary": "Shared origin lists: all, or a tenant role's and the platform's",
            "parameters": PAGING,
            "responses": _responses({200: _ok("OriginListPage")}, 422),
        },
        "post": {
            "operationId": "createOriginList",
            "summary": "Create a shared origin list",
            "requestBody": _body("OriginListInput"),
            "responses": _responses({201: _ok("OriginList", "Created")},
                                    400, 403, 404, 409, 413, 415, 422),
        },
    },
    "/origin-lists/{list_id}": {
        "parameters": [LIST_ID],
        "get": {
            "operationId": "getOriginList",
            "summary": "A list, its origins and the rules that use it",
            "responses": _responses({200: _ok("OriginList")}, 404),
        },
        "patch": {
            "operationId": "updateOriginList",
            "summary": "Change a list's description",
            "requestBody": _body("OriginListPatch"),
            "responses": _responses({200: _ok("OriginList")}, 400, 403, 404, 409, 413, 415,
                                    422),
        },
        "delete": {
            "operationId": "deleteOriginList",
            "summary": "Delete a list; refused (409, naming them) while rules use it, "
                       "unless detach=true",
            "parameters": [_query("detach", "also detach it from the rules that use it",
                                  {"enum": ["true", "false"]})],
            "responses": _responses({204: {"description": "Deleted."}}, 403, 404, 409, 422),
        },
    },
    "/origin-lists/{list_id}/origins": {
        "parameters": [LIST_ID],
        "post": {
            "operationId": "addOriginToList",
            "summary": "Add an origin to a list: every rule using it allows it, in one change",
            "requestBody": _body("OriginListEntryInput"),
            "responses": _responses({201: _ok("OriginList", "Added"),
                                     200: _ok("OriginList", "Already on the list")},
                                    400, 403, 404, 409, 413, 415, 422),
        },
    },
    "/origin-lists/{list_id}/origins/{origin}": {
        "parameters": [LIST_ID, ORIGIN],
        "delete": {
            "operationId": "removeOriginFromList",
            "summary": "Remove an origin from a list (idempotent)",
            "responses": _responses({204: DELETED}, 403, 404, 409),
        },
    },
    "/origin-lists/{list_id}/rules/{rule_id}": {
        "parameters": [LIST_ID, RULE_ID],
        "put": {
            "operationId": "attachOriginList",
            "summary": "Let the rule use the list (its origins join the rule's)",
            "responses": _responses({200: _ok("Rule")}, 403, 404, 409, 422),
        },
        "delete": {
            "operationId": "detachOriginList",
            "summary": "Stop the rule using the list",
            "responses": _responses({200: _ok("Rule")}, 403, 404, 409, 422),
        },
    },
    "/check": {
        "post": {
            "operationId": "check",
            "summary": "What the engine decides for a request (the simulator)",
            "requestBody": _body("CheckRequest"),
            "responses": _responses({200: _ok("Decision")}, 400, 404, 413, 415, 422),
        },
    },
    "/log": {
        "get": {
            "operationId": "requestLog",
            "summary": "Refused requests, newest first",
            "parameters": [
                _query("since", "how far back: 30m, 1h, 7d, 2w"),
                _query("rule", "a rule path; empty for requests no rule governed"),
                _query("reason", "a reason code", {"enum": list(REASONS)}),
                _query("mode", "enforce, report-only or draft (requests the live rule "
                       "allowed and its draft would refuse)", {"enum": list(LOG_MODES)}),
                _query("origin", "text in the origin"),
                _query("group", "one item per origin, rule or reason",
                       {"enum": ["origin", "rule", "reason"]}),
                _query("sort", "with group: by count or by last seen",
                       {"enum": ["count", "last_seen"]}),
                *PAGING,
            ],
            "responses": _responses({200: _either("LogPage", "LogGroupPage")}, 422),
        },
    },
    "/audit": {
        "get": {
            "operationId": "auditTrail",
            "summary": "Changes, newest first",
            "parameters": [_query("rule", "text in the rule path"),
                           _query("actor", "text in the actor's name"),
                           _query("origin", "an origin named by the change"), *PAGING],
            "responses": _responses({200: _ok("AuditPage")}, 422),
        },
    },
    "/audit/{entry_id}/undo": {
        "parameters": [ENTRY_ID],
        "post": {
            "operationId": "undoChange",
            "summary": "Undo only this change (editors)",
            "description": "Reverts one entry's delta on its rule (an origin it added is "
                           "removed, an option it changed set back); 409 naming the later "
                           "entries when they touched the same fields.",
            "parameters": [DRY_RUN],
            "responses": _responses({200: _ok_either("Undone", "DryRun")},
                                    403, 404, 409, 422),
        },
    },
    "/audit/{entry_id}/restore": {
        "parameters": [ENTRY_ID],
        "post": {
            "operationId": "restoreState",
            "summary": "Restore a rule to a state an entry recorded (editors)",
            "description": "With dry_run: the difference it applies, the later entries it "
                           "takes back, and what the routes lose.",
            "parameters": [_query("state", "before or after", {"enum": ["before", "after"]}),
                           DRY_RUN],
            "responses": _responses({200: _ok_either("Undone", "DryRun")},
                                    403, 404, 409, 422),
        },
    },
    "/export": {
        "get": {
            "operationId": "exportPolicy",
            "summary": "The policy the token may see, as a policy file",
            "responses": _responses({200: _ok("Policy")}),
        },
    },
    "/import": {
        "post": {
            "operationId": "importPolicy",
            "summary": "Import a policy file, all or nothing (admins and editors)",
            "parameters": [
                _query("replace", "delete rules not in the document", {"type": "boolean"}),
                _query("dry_run", "only return what would change", {"type": "boolean"}),
            ],
            "requestBody": _body("Policy"),
            "responses": _responses({200: _ok("ImportResult")}, 400, 403, 409, 413, 415, 422),
        },
    },
    "/tenants": {
        "get": {
            "operationId": "listTenants",
            "summary": "Tenants: all of them, or a tenant role's own",
            "parameters": PAGING,
            "responses": _responses({200: _ok("TenantPage")}, 422),
        },
        "post": {
            "operationId": "createTenant",
            "summary": "Create a tenant with its namespaces (admins)",
            "description": "Namespaces of two tenants never overlap; a tenant without one "
                           "owns no rule.",
            "requestBody": _body("TenantInput"),
            "responses": _responses({201: _ok("Tenant", "Created")},
                                    400, 403, 409, 413, 415, 422),
        },
    },
    "/tenants/{slug}": {
        "parameters": [{"name": "slug", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "get": {
            "operationId": "getTenant",
            "summary": "A tenant with its namespaces",
            "responses": _responses({200: _ok("Tenant")}, 404),
        },
        "patch": {
            "operationId": "setTenantPaths",
            "summary": "Replace a tenant's namespaces (admins)",
            "description": "Refused when they overlap another tenant's, or when a rule of the "
                           "tenant that lay inside the old ones would lie outside.",
            "requestBody": _body("TenantPatch"),
            "responses": _responses({200: _ok("Tenant")}, 400, 403, 404, 413, 415, 422),
        },
    },
    "/webhooks": {
        "get": {
            "operationId": "listWebhooks",
            "summary": "Webhooks for alerts (admins)",
            "parameters": PAGING,
            "responses": _responses({200: _ok("WebhookPage")}, 403, 422),
        },
        "post": {
            "operationId": "createWebhook",
            "summary": "Create a webhook (admins)",
            "requestBody": _body("WebhookInput"),
            "responses": _responses({201: _ok("Webhook", "Created")},
                                    400, 403, 409, 413, 415, 422),
        },
    },
    "/webhooks/{webhook_id}": {
        "parameters": [{"name": "webhook_id", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}],
        "get": {
            "operationId": "getWebhook",
            "summary": "A webhook and its delivery counts (admins)",
            "responses": _responses({200: _ok("Webhook")}, 403, 404),
        },
        "patch": {
            "operationId": "updateWebhook",
            "summary": "Change a webhook's fields (admins); the others keep their values",
            "requestBody": _body("WebhookPatch"),
            "responses": _responses({200: _ok("Webhook")}, 400, 403, 404, 409, 413, 415,
                                    422),
        },
        "delete": {
            "operationId": "deleteWebhook",
            "summary": "Delete a webhook with its alerts and deliveries (admins)",
            "responses": _responses({204: {"description": "Deleted."}}, 403, 404),
        },
    },
    "/data-plane/policy": {
        "get": {
            "operationId": "dataPlanePolicy",
            "summary": "The compiled policy, for data planes (data-plane tokens and admins)",
            "description": "Send the ETag you hold in If-None-Match: the answer waits until "
                           "the policy changes (200 with the new one) or `wait` seconds pass "
                           "(304). Past DATA_PLANE_MAX_WAITERS waiting polls a poll is "
                           "answered 304 at once, with Retry-After. A data plane never "
                           "receives a version older than the one it names.",
            "parameters": [
                _query("wait", f"how long to wait for a change, in seconds (default "
                       f"{DEFAULT_WAIT})", {"type": "integer", "minimum": 0,
                                            "maximum": MAX_WAIT}),
                {"name": "If-None-Match", "in": "header", "required": False,
                 "description": 'the ETag of the policy held, "policy-<version>"',
                 "schema": {"type": "string"}},
            ],
            "responses": _responses({
                200: {"description": "The policy; its ETag is \"policy-<version>\"",
                      "headers": {"ETag": {"schema": {"type": "string"}}},
                      "content": {POLICY_MEDIA_TYPE: {"schema": _ref("DataPlanePolicy")}}},
                304: {"description": "Not changed within the wait (or too many polls waiting: "
                                     "see Retry-After)."},
            }, 403, 422),
        },
    },
    "/data-plane/refusals": {
        "post": {
            "operationId": "dataPlaneRefusals",
            "summary": "Merge a data plane's refusals into the request log (data-plane "
                       "tokens and admins)",
            "description": "Counts are added to rows of the same key. A rule_id that names no "
                           "rule is dropped (the row keeps its rule_path). 400 names a "
                           "document format this version does not read.",
            "requestBody": {"required": True, "content": {
                JSON: {"schema": _ref("Refusals")},
                REFUSALS_MEDIA_TYPE: {"schema": _ref("Refusals")}}},
            "responses": _responses({202: _ok("RefusalsStored", "Stored")},
                                    400, 403, 413, 415, 422),
        },
    },
    "/tokens/self": {
        "get": {
            "operationId": "currentToken",
            "summary": "The calling token: name, role, tenant, expiry",
            "responses": _responses({200: _ok("Token")}),
        },
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OK",
                                  "content": {JSON: {"schema": {"type": "object"}}}}},
        },
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "CORS Control admin API",
        "version": "1.0.0",
        "description": "Per-route CORS allowlists, changed at runtime. Authenticate with an "
                       "API token (flask tokens create). Errors are RFC 9457 problem "
                       "documents.",
    },
    "servers": [{"url": URL_PREFIX}],
    "security": [{"bearer": []}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "an API token"}},
        "parameters": {
            "rule_id": {"name": "rule_id", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}},
            "page": _query("page", "page number, from 1",
                           {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}),
            "per_page": _query("per_page", f"items per page, capped at {MAX_PER_PAGE} (at "
                               f"{AUDIT_PAGE_SIZE} for the audit trail); the answer says "
                               "which size was used", {"type": "integer", "minimum": 1}),
            "if_match": {"name": "If-Match", "in": "header", "required": False,
                         "description": 'the ETag of the rule as read, "<version>"',
                         "schema": {"type": "string"}},
            "if_match_required": {"name": "If-Match", "in": "header", "required": True,
                                  "description": 'the ETag of the rule as read, "<version>"',
                                  "schema": {"type": "string"}},
        },
    },
}


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(DOCUMENT)
