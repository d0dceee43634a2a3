"""The simulator's fix through a shared list: when allowing the refused origin on the rule
makes the request pass, adding it to a list that rule uses does too, and changes every rule
that uses the list. The offer names every one of them.

A list is offered only when it puts the origin exactly where the rule's own fix would: on a
rule without tenants, any list it uses; on a rule that selects tenants, a list of the tenant
the request named (a platform list there is every tenant's, so it would open the origin to
all of them). Only lists the actor may change are offered.
"""

from __future__ import annotations

from dataclasses import dataclass

from cors_control.extension import CorsControl
from cors_control.snapshot import PolicySnapshot
from cors_control.text import printable

from .access import Actor
from .errors import FieldError, NotFound, ValidationError
from .origin_lists import add_origin_to_list, lists_of_rule, may_change_list, rules_using
from .policy_read import get_rule
from .simulator import Fix, SimulatedRequest, answer_request
from .tenants import tenant_slug


@dataclass(frozen=True, slots=True)
class ListTarget:
    """A list the refused origin can be added to, and the rules that change with it."""

    list_id: int
    name: str
    rules: tuple[str, ...]


def list_targets(fix: Fix | None, actor: Actor | None) -> list[ListTarget]:
    """The lists the simulator offers as a target for *fix* (none when the fix also needs
    the rule's options changed, such as credentials)."""
    if fix is None or fix.origin is None or fix.credentials or actor is None:
        return []
    try:
        rule = get_rule(fix.rule_id, actor)
    except NotFound:
        return []
    targets = []
    for origin_list in lists_of_rule(rule, actor):
        if not may_change_list(actor, origin_list):
            continue
        if fix.tenant is not None and (origin_list.tenant_id is None
                                       or tenant_slug(origin_list.tenant_id) != fix.tenant):
            continue
        targets.append(ListTarget(origin_list.id, origin_list.name,
                                  tuple(r.path for r in rules_using(origin_list))))
    return targets


def fix_request_with_list(request: SimulatedRequest, snapshot: PolicySnapshot | None,
                          list_id: int, *, actor: Actor,
                          routes: CorsControl | None = None) -> str:
    """Add the refused origin of *request* to the list *list_id*, when the simulator offers
    that list now (worked out again here). Returns what was done, in words."""
    answer = answer_request(request, snapshot, actor=actor, routes=routes)
    if answer.hidden:
        raise NotFound(f"no rule you can see governs {printable(request.path, 200)}")
    target = next((t for t in list_targets(answer.fix, actor) if t.list_id == list_id), None)
    if answer.fix is None or answer.fix.origin is None or target is None:
        raise ValidationError([FieldError("", answer.fix_refusal or (
            "adding the origin to that list would not make this request pass; use the fix "
            "the simulator offers"))])
    entry, created = add_origin_to_list(actor, list_id, answer.fix.origin)
    if not created:
        return f"{entry.value} was already on the list {target.name}; nothing changed."
    return f"Done: added {entry.value} to the list {target.name}, which changes " \
           f"{', '.join(target.rules)}."
