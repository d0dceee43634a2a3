"""The engine's half of incremental snapshots, without a database: any sequence of deltas
applied to a snapshot gives the snapshot a full compile of the same rules gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cors_control import snapshot as snapshot_module
from cors_control.delta import AllowlistSpec, DeltaError, PolicyDelta, apply_delta
from cors_control.snapshot import OriginEntry, OriginListSpec, RuleSpec, compile_policy
from tests.test_incremental import decisions, structure

TENANTS = ("acme", "globex", "initech", "umbrella")
VALUES = ("https://a.example", "https://b.example", "https://*.c.example",
          "http://localhost:*", "*", "not an origin")
EXPIRIES = (None, 10.0, 2000.0)  # decisions are made at 1000.0: 10.0 has expired
RULES = {
    1: RuleSpec("/api/h/*", rule_id=1, tenant_source="header", tenant_key="X-Tenant"),
    2: RuleSpec("/api/t/*/x", rule_id=2, tenant_source="view-arg", tenant_key="tenant"),
    3: RuleSpec("/api/plain/*", rule_id=3),
}

_entries = st.lists(st.tuples(st.sampled_from(VALUES), st.sampled_from(EXPIRIES)),
                    max_size=4)
_step = st.one_of(
    # one tenant's allowlist on a tenant-selecting rule, with a list of the tenant's or not
    st.tuples(st.just("allowlist"), st.sampled_from((1, 2)), st.sampled_from(TENANTS),
              _entries, st.booleans()),
    # a rule's shared origins (the whole rule is sent again)
    st.tuples(st.just("rule"), st.sampled_from((1, 2, 3)), _entries, st.booleans()),
)


def _spec(rule_id: int, shared: dict[int, list], own: dict[tuple[int, str], list],
          lists: dict[tuple[int, str], list], off: set[int]) -> RuleSpec:
    base = RULES[rule_id]
    origins = [OriginEntry(v, e) for v, e in shared.get(rule_id, [])]
    origin_lists = []
    for tenant in TENANTS:
        origins += [OriginEntry(v, e, tenant) for v, e in own.get((rule_id, tenant), [])]
        if (rule_id, tenant) in lists:
            origin_lists.append(OriginListSpec(
                f"{tenant}-list", tuple(OriginEntry(v, e) for v, e in lists[(rule_id, tenant)]),
                tenant))
    return RuleSpec(base.path, rule_id=rule_id, origins=tuple(origins),
                    tenant_source=base.tenant_source, tenant_key=base.tenant_key,
                    origin_lists=tuple(origin_lists) if base.tenant_source != "none" else (),
                    mode="off" if rule_id in off else "enforce")


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=25), fold=st.booleans())
def test_applied_deltas_give_the_full_compile(steps, fold):
    with pytest.MonkeyPatch.context() as patch:
        if fold:  # fold the union's overlay into a flat table at almost every change
            patch.setattr(snapshot_module, "OVERLAY_MIN", 1)
            patch.setattr(snapshot_module, "OVERLAY_SHARE", 1)
        _check(steps)


def _check(steps: list[tuple]) -> None:
    shared: dict[int, list] = {}
    own: dict[tuple[int, str], list] = {}
    lists: dict[tuple[int, str], list] = {}
    off: set[int] = set()

    def specs() -> list[RuleSpec]:
        return [_spec(rule_id, shared, own, lists, off) for rule_id in RULES]

    held = compile_policy(1, specs(), TENANTS)
    for version, step in enumerate(steps, start=2):
        if step[0] == "allowlist":
            _kind, rule_id, tenant, entries, with_list = step
            own[(rule_id, tenant)] = entries[: len(entries) // 2]
            if with_list:
                lists[(rule_id, tenant)] = entries[len(entries) // 2:]
            else:
                lists.pop((rule_id, tenant), None)
            spec = _spec(rule_id, shared, own, lists, off)
            delta = PolicyDelta(version, allowlists=(AllowlistSpec(
                rule_id, tenant,
                tuple(e for e in spec.origins if e.tenant == tenant),
                tuple(o for o in spec.origin_lists if o.tenant == tenant)),))
            if rule_id in off:
                delta = PolicyDelta(version)  # a rule that is off is not compiled
        else:
            _kind, rule_id, entries, switch = step
            shared[rule_id] = entries
            if switch:
                off.symmetric_difference_update({rule_id})
            delta = PolicyDelta(version, rules={rule_id: _spec(rule_id, shared, own, lists,
                                                               off)})
        held = apply_delta(held, delta)
        full = compile_policy(version, specs(), TENANTS)
        assert structure(held) == structure(full)
        assert decisions(held) == decisions(full)


def test_an_allowlist_of_a_rule_that_selects_no_tenant_is_refused():
    held = compile_policy(1, [RULES[3]])
    with pytest.raises(DeltaError, match="selects no tenant"):
        apply_delta(held, PolicyDelta(2, allowlists=(AllowlistSpec(3, "acme"),)))


def test_a_delta_older_than_the_snapshot_is_refused():
    held = compile_policy(5, [RULES[1]])
    with pytest.raises(DeltaError, match="older"):
        apply_delta(held, PolicyDelta(4))


@given(members=st.lists(_entries, max_size=5))
def test_a_union_of_sets_is_the_set_of_all_their_entries(members):
    from cors_control.snapshot import OriginSet

    entries = [[OriginEntry(value, expiry) for value, expiry in member] for member in members]
    union = OriginSet.union(OriginSet(member) for member in entries)
    whole = OriginSet(entry for member in entries for entry in member)
    assert union.contents() == whole.contents()
    assert union.invalid == whole.invalid


_labels = st.one_of(st.from_regex(r"[a-zA-Z0-9-]{0,64}", fullmatch=True),
                    st.sampled_from(("xn--bcher-kva", "xn--a", "0x7f", "127", "0", "a-", "-a",
                                     "bücher", "A", "localhost")))


@settings(max_examples=400)
@given(scheme=st.sampled_from(("http", "https", "HTTPS", "ftp", "")),
       labels=st.lists(_labels, min_size=1, max_size=5),
       tail=st.sampled_from(("", ":443", ":80", ":8080", ":", ".", "/", "/x", ":*")))
def test_an_origin_taken_as_canonical_parses_to_itself(scheme, labels, tail):
    """The load's shortcut (is_canonical_exact) takes only what parse_origin leaves as is."""
    from cors_control.origins import OriginKind, is_canonical_exact, parse_origin

    text = f"{scheme}://{'.'.join(labels)}{tail}"
    if is_canonical_exact(text):
        spec = parse_origin(text)
        assert (spec.value, spec.kind) == (text, OriginKind.EXACT)


@pytest.mark.parametrize("text", ["https://app.example.com", "http://a-b.c0.example",
                                  "https://localhost", "https://app.example.com:8443"])
def test_common_stored_origins_take_the_shortcut(text):
    from cors_control.origins import is_canonical_exact

    assert is_canonical_exact(text)


@pytest.mark.parametrize("text", ["https://App.example.com", "https://app.example.com:443",
                                  "https://xn--bcher-kva.example", "http://127.0.0.1",
                                  "https://*.example.com"])
def test_origins_parse_might_change_do_not(text):
    from cors_control.origins import is_canonical_exact

    assert not is_canonical_exact(text)
