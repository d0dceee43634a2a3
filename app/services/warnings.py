"""Advice on a rule that is valid but probably not what its author wants.

Errors refuse a save (see :mod:`.validation`); warnings are shown beside the fields and in
the CLI, and the save goes ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cors_control.snapshot import CompiledRule, PolicySnapshot
from cors_control.vocabulary import REPORT_ONLY

from .access import Actor
from .errors import NotFound
from .policy_read import get_rule
from .validation import RuleInput

if TYPE_CHECKING:
    from ..models import Rule


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
    return warnings


def report_only_warnings(rule: Rule, snapshot: PolicySnapshot | None, *,
                         actor: Actor | None = None) -> list[RuleWarning]:
    """While *rule* is report-only it answers no request: say what answers its routes
    instead, as the engine's *snapshot* decides. The rule itself is set aside, so a snapshot
    that has not yet seen the switch (or a new rule) gives the same answer."""
    if rule.mode != REPORT_ONLY:
        return []
    recorded = "and this rule only records what it would refuse"
    if snapshot is None:
        return [RuleWarning("mode", f"while report-only, {rule.path} is answered by the next "
                                    f"rule that matches it, or by none, {recorded}")]
    answering = snapshot.answering_rule(rule.path, aside=rule.id)
    if answering is None:
        message = (f"while report-only, {rule.path} is answered by no rule: the engine leaves "
                   "its responses alone (a CORS library of the app may answer them), "
                   f"{recorded}")
    elif not _sees(actor, answering):
        message = f"while report-only, {rule.path} is answered by a rule you cannot see, " \
            f"{recorded}"
    else:
        granted = "origins and credentials" if answering.supports_credentials else "origins"
        message = (f"while report-only, {rule.path} is answered by {answering.path}: its "
                   f"{granted} decide these requests, {recorded}")
    return [RuleWarning("mode", message)]


def _sees(actor: Actor | None, rule: CompiledRule) -> bool:
    if rule.rule_id is None:
        return actor is None or not actor.scoped
    try:
        get_rule(rule.rule_id, actor)
    except NotFound:
        return False
    return True
