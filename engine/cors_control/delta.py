"""Incremental snapshots: the next policy version built from the one a process holds.

A :class:`PolicyDelta` carries what changed since that version, as the source read it at the
new one: whole rules to compile again (or drop), the allowlists of single tenants on
tenant-selecting rules, and the tenant names when they changed. :func:`apply_delta` compiles
only those and shares every other structure with the snapshot it starts from, so adding one
origin to one tenant's allowlist costs that allowlist, not the policy. The result decides
exactly as :func:`~.snapshot.compile_policy` of the same version would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .snapshot import (
    CompiledRule,
    OriginEntry,
    OriginListSpec,
    PolicySnapshot,
    RuleSpec,
    compile_rule,
    effective_origins,
)
from .vocabulary import OFF, TENANT_FROM_HEADER


@dataclass(frozen=True, slots=True)
class AllowlistSpec:
    """One tenant's allowlist on a tenant-selecting rule: the rule's origins for that tenant
    and the tenant's own shared lists the rule uses (the platform's lists are the rule's
    shared allowlist, which changes with the whole rule)."""

    rule_id: int
    tenant: str
    origins: tuple[OriginEntry, ...] = ()
    origin_lists: tuple[OriginListSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyDelta:
    """What changed between the version a process holds and *version*.

    ``rules`` maps a rule id to its spec now, or None when it is gone (deleted, or off);
    ``allowlists`` are tenant allowlists of rules not in ``rules``; ``tenants`` is the set of
    tenant names when it changed, else None.
    """

    version: int
    rules: Mapping[int, RuleSpec | None] = field(default_factory=dict)
    allowlists: tuple[AllowlistSpec, ...] = ()
    tenants: frozenset[str] | None = None


class DeltaError(ValueError):
    """The delta does not fit the snapshot; load the policy in full instead."""


def apply_delta(snapshot: PolicySnapshot, delta: PolicyDelta) -> PolicySnapshot:
    """The snapshot of ``delta.version``, built from *snapshot* and sharing what did not
    change. Raises :class:`DeltaError` when the delta names an allowlist of a rule that does
    not select tenants (the source should have sent the whole rule)."""
    if delta.version < snapshot.version:
        raise DeltaError(f"delta to version {delta.version} is older than the snapshot's "
                         f"{snapshot.version}")
    rules: dict[int | None, CompiledRule] = {}
    unnamed: list[CompiledRule] = []  # rules without an id (specs from a file) stay as they are
    for rule in snapshot.rules:
        if rule.rule_id is None:
            unnamed.append(rule)
        else:
            rules[rule.rule_id] = rule
    for rule_id, spec in delta.rules.items():
        if spec is None or spec.mode == OFF:
            rules.pop(rule_id, None)
        else:
            rules[rule_id] = compile_rule(spec)
    by_rule: dict[int, dict[str, list[OriginEntry]]] = {}
    for allowlist in delta.allowlists:
        if allowlist.rule_id in delta.rules:
            continue  # compiled whole above, this allowlist included
        by_rule.setdefault(allowlist.rule_id, {})[allowlist.tenant] = _entries(allowlist)
    for rule_id, changed in by_rule.items():
        held = rules.get(rule_id)
        if held is None:
            continue  # off in this version: nothing of it is compiled
        if not held.selects_tenant:
            raise DeltaError(f"rule {rule_id} selects no tenant; its allowlist changes "
                             "with the whole rule")
        rules[rule_id] = held.with_tenant_origins(changed)
    return PolicySnapshot(
        version=delta.version,
        rules=(*unnamed, *rules.values()),
        tenants=snapshot.tenants if delta.tenants is None else delta.tenants,
    )


def _entries(allowlist: AllowlistSpec) -> list[OriginEntry]:
    # The same merge as a full compile: the tenant's lists land on the tenant's allowlist.
    spec = RuleSpec(path="/", origins=allowlist.origins, origin_lists=allowlist.origin_lists,
                    tenant_source=TENANT_FROM_HEADER)
    return [entry if entry.tenant == allowlist.tenant
            else OriginEntry(entry.value, entry.expires_at, allowlist.tenant)
            for entry in effective_origins(spec)]
