"""Advice on a rule that is valid but probably not what its author wants.

Errors refuse a save (see :mod:`.validation`); warnings are shown beside the fields and in
the CLI, and the save goes ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cors.vocabulary import REPORT_ONLY
from .validation import RuleInput


@dataclass(frozen=True, slots=True)
class RuleWarning:
    field: str
    message: str


LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def rule_warnings(rule: RuleInput, *, api_is_https: bool = True) -> list[RuleWarning]:
    warnings: list[RuleWarning] = []
    for index, origin in enumerate(rule.origins):
        field = f"origins[{index}]"
        host = origin.value.split("://", 1)[-1].rsplit(":", 1)[0] if "://" in origin.value \
            else ""
        if origin.kind == "subdomain-wildcard" and rule.supports_credentials:
            warnings.append(RuleWarning(field, f"{origin.value} lets every subdomain read "
                                    "responses with your users' cookies; a takeover of any "
                                    "one of them exposes the API. List the subdomains if you "
                                    "can"))
        if origin.value.startswith("http://") and api_is_https and \
                host.split(":")[0] not in LOCAL_HOSTS and origin.kind != "any-port":
            warnings.append(RuleWarning(field, f"{origin.value} is plain http while the API is "
                                    "served over https; a network attacker can inject script "
                                    "into that origin. Use https"))
        if host in LOCAL_HOSTS or origin.kind == "any-port":
            warnings.append(RuleWarning(field, f"{origin.value} is a local development origin; "
                                    "any page served on that machine can call the API"))
    if rule.mode == REPORT_ONLY and rule.supports_credentials:
        warnings.append(RuleWarning("mode", "a report-only rule allows every origin; with "
                                "credentials that means any site can read responses with "
                                "your users' cookies until you enforce it"))
    return warnings
