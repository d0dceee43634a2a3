"""Incremental snapshots: a process holding version N loads only what changed up to N+k, and
the snapshot it builds decides exactly as a full compile of the same version."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from app.extensions import db
from app.models import PolicyChange, Rule
from app.services import origin_lists as lists
from app.services.access import Actor
from app.services.change_log import prune_change_log
from app.services.drafts import save_draft
from app.services.policy import (
    add_origin,
    create_rule,
    import_policy,
    remove_origin,
    update_rule,
)
from app.services.tenants import create_tenant, delete_tenant
from cors_control.cache import PolicyCache, load_policy
from cors_control.database import DatabasePolicySource
from cors_control.decision import decide
from cors_control.snapshot import CompiledRule, OriginSet, PolicySnapshot
from tests.conftest import empty_database

ADMIN = Actor("admin@example.com", "dashboard")
TENANTS = ("acme", "globex", "initech")
ORIGINS = ("https://a.example", "https://b.example", "https://*.c.example",
           "http://localhost:*", "*")
HEADER_RULE = {"path": "/api/h/*", "tenant_selector": {"source": "header", "key": "X-Tenant"}}
VIEW_RULE = {"path": "/api/t/*/x",
             "tenant_selector": {"source": "view-arg", "key": "tenant"}}
PLAIN_RULE = {"path": "/api/plain/*"}


# -- what a snapshot holds and how it decides ----------------------------------------------

def _set(origins: OriginSet | None) -> Any:
    if origins is None:
        return None
    return (*origins.contents(), sorted(origins.invalid))


def _rule(rule: CompiledRule | None) -> Any:
    if rule is None:
        return None
    return (rule.rule_id, rule.path, rule.mode, sorted(rule.methods), rule.any_header,
            sorted(rule.allow_headers), rule.supports_credentials,
            rule.allow_private_network, rule.allow_methods_value, rule.max_age_value,
            rule.expose_headers_value, rule.tenant_source, rule.tenant_key,
            rule.unknown_tenant, _set(rule.origins),
            {tenant: _set(origins) for tenant, origins in rule.tenant_origins.items()},
            sorted(rule.tenant_allowlists), _set(rule.any_tenant_origins),
            _set(rule.preflight_allowlist.tenant_origins), _rule(rule.draft))


def structure(snapshot: PolicySnapshot) -> Any:
    return (snapshot.version, sorted(snapshot.tenants),
            sorted((_rule(rule) for rule in snapshot.rules), key=lambda r: r[0]))


REQUESTS = [
    (path, method, headers, args)
    for path, args in (("/api/h/x", None), ("/api/t/acme/x", {"tenant": "acme"}),
                       ("/api/t/globex/x", {"tenant": "globex"}),
                       ("/api/t/nobody/x", {"tenant": "nobody"}), ("/api/plain/x", None))
    for origin in ("https://a.example", "https://b.example", "https://x.c.example",
                   "http://localhost:3000", "https://e.example")
    for tenant in ("acme", "initech")
    for method, headers in (
        ("GET", {"Origin": origin, "X-Tenant": tenant}),
        ("OPTIONS", {"Origin": origin, "Access-Control-Request-Method": "PUT",
                     "X-Tenant": tenant}))
]


def decisions(snapshot: PolicySnapshot) -> list[Any]:
    found = []
    for path, method, headers, args in REQUESTS:
        decision = decide(snapshot, method, path, headers, route_args=args, now=1000.0)
        found.append((decision.allowed, decision.reason, decision.headers, decision.tenant,
                      decision.rule.rule_id if decision.rule else None,
                      [(d.reason, d.rule.rule_id if d.rule else None)
                       for d in decision.shadows],
                      decision.draft.reason if decision.draft else None))
    return found


def assert_same_as_full(cache: PolicyCache, source: DatabasePolicySource) -> None:
    full = load_policy(source)
    held = cache.snapshot
    assert held is not None
    assert held.version == full.version
    assert structure(held) == structure(full)
    assert decisions(held) == decisions(full)


# -- the fixtures --------------------------------------------------------------------------

@pytest.fixture
def source(app):
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    yield DatabasePolicySource(engine)
    engine.dispose()


def _cache(source: DatabasePolicySource) -> PolicyCache:
    cache = PolicyCache(source, interval=3600)
    cache.refresh()  # the first load is full
    assert cache.last_load == "full"
    return cache


def _seed() -> dict[str, int]:
    for slug in TENANTS[:2]:
        create_tenant(slug, actor=ADMIN)
    rules = {name: create_rule(data, actor=ADMIN).id
             for name, data in (("header", HEADER_RULE), ("view", VIEW_RULE),
                                ("plain", PLAIN_RULE))}
    lists.create_list({"name": "platform", "origins": ["https://b.example"]}, actor=ADMIN)
    lists.create_list({"name": "acme-list", "tenant": "acme",
                       "origins": ["https://x.c.example"]}, actor=ADMIN)
    return rules


# -- the property -------------------------------------------------------------------------

def _apply(step: tuple, rules: dict[str, int]) -> None:
    kind, *args = step
    if kind == "add":
        rule, tenant, origin, expires = args
        if rule == "plain":
            tenant = None
        add_origin(rules[rule], origin, actor=ADMIN, tenant=tenant,
                   expires_at="2000-01-01T00:00:00Z" if expires else None)
    elif kind == "remove":
        rule, tenant, origin = args
        remove_origin(rules[rule], origin, actor=ADMIN,
                      tenant=None if rule == "plain" else tenant)
    elif kind == "mode":
        rule, mode = args
        update_rule(rules[rule], {"mode": mode}, actor=ADMIN)
    elif kind == "list-add":
        name, origin = args
        lists.add_origin_to_list(ADMIN, name, origin)
    elif kind == "list-remove":
        name, origin = args
        lists.remove_origin_from_list(ADMIN, name, origin)
    elif kind == "attach":
        rule, name = args
        if name == "acme-list" and rule == "plain":
            return  # a tenant's list serves only tenant-selecting rules
        if name in {entry.name for entry in lists.lists_of_rule(
                db.session.get(Rule, rules[rule]))}:
            lists.detach_list(rules[rule], name, actor=ADMIN)
        else:
            lists.attach_list(rules[rule], name, actor=ADMIN)
    elif kind == "draft":
        rule, origin = args
        save_draft(rules[rule], {"origins": [origin]}, actor=ADMIN)
    elif kind == "tenant":
        create_tenant(args[0], actor=ADMIN)


_rule_names = st.sampled_from(("header", "view", "plain"))
_tenant = st.sampled_from(TENANTS[:2])
_origin = st.sampled_from(ORIGINS)
_steps = st.lists(st.one_of(
    st.tuples(st.just("add"), _rule_names, _tenant, _origin, st.booleans()),
    st.tuples(st.just("remove"), _rule_names, _tenant, _origin),
    st.tuples(st.just("mode"), _rule_names, st.sampled_from(("enforce", "report-only", "off"))),
    st.tuples(st.just("list-add"), st.sampled_from(("platform", "acme-list")), _origin),
    st.tuples(st.just("list-remove"), st.sampled_from(("platform", "acme-list")), _origin),
    st.tuples(st.just("attach"), _rule_names, st.sampled_from(("platform", "acme-list"))),
    st.tuples(st.just("draft"), _rule_names, _origin),
    st.tuples(st.just("tenant"), st.just("initech")),
), min_size=1, max_size=8)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_steps)
def test_an_incremental_snapshot_is_the_full_compile_of_the_same_version(
        app, database_url, source, steps):
    empty_database(database_url)
    with app.app_context():
        rules = _seed()
        cache = _cache(source)
        for step in steps:
            try:
                _apply(step, rules)
            except Exception as error:  # refused by validation: no change, nothing to load
                if type(error).__name__ not in {"ValidationError", "Conflict", "Forbidden",
                                                "NotFound"}:
                    raise
            if cache.refresh():  # the version moved (a change that changes nothing does not)
                assert cache.last_load == "incremental", step
            assert_same_as_full(cache, source)


# -- what the log records, and when a process loads in full --------------------------------

def _log() -> list[tuple]:
    return [tuple(row) for row in db.session.execute(
        sa.select(PolicyChange.version, PolicyChange.kind, PolicyChange.rule_id,
                  PolicyChange.tenant_id, PolicyChange.origin).order_by(PolicyChange.id))]


def test_adding_one_origin_rebuilds_only_that_tenants_allowlist(app, source):
    with app.app_context():
        rules = _seed()
        header = rules["header"]
        add_origin(header, "https://a.example", actor=ADMIN, tenant="acme")
        add_origin(header, "https://b.example", actor=ADMIN, tenant="globex")
        cache = _cache(source)
        before = cache.snapshot
        acme = create_tenant("initech", actor=ADMIN)  # noqa: F841 (a version of its own)
        origin, created = add_origin(header, "https://e.example", actor=ADMIN, tenant="acme")
        assert created
        version = origin_version = cache.source.current_version()
        assert _log()[-1] == (origin_version, "allowlist", header, origin.tenant_id,
                              "https://e.example")
        assert cache.refresh() and cache.last_load == "incremental"
        after = cache.snapshot
        assert after is not None and before is not None and after.version == version
        old = next(rule for rule in before.rules if rule.rule_id == header)
        new = next(rule for rule in after.rules if rule.rule_id == header)
        # The other tenant's allowlist and the rule's shared one are the same objects.
        assert new.tenant_origins["globex"] is old.tenant_origins["globex"]
        assert new.origins is old.origins
        assert new.tenant_origins["acme"] is not old.tenant_origins["acme"]
        assert "initech" in after.tenants
        # The rules the change did not touch are shared whole.
        assert {rule.rule_id for rule in after.rules if rule in before.rules} == \
            {rules["view"], rules["plain"]}
        assert_same_as_full(cache, source)
        # Removing it goes back to the allowlist as it was, incrementally too.
        assert remove_origin(header, "https://e.example", actor=ADMIN, tenant="acme")
        assert cache.refresh() and cache.last_load == "incremental"
        assert_same_as_full(cache, source)


def test_a_change_that_touches_nothing_the_engine_holds_records_none(app, source):
    with app.app_context():
        rules = _seed()
        cache = _cache(source)
        update_rule(rules["plain"], {"description": "who asked for it"}, actor=ADMIN)
        assert _log()[-1][1] == "none"
        held = cache.snapshot
        assert cache.refresh() and cache.last_load == "incremental"
        assert cache.snapshot is not None and held is not None
        assert cache.snapshot.rules == held.rules  # nothing compiled again
        assert_same_as_full(cache, source)


def test_a_process_behind_a_pruned_log_loads_in_full(app, source):
    with app.app_context():
        rules = _seed()
        cache = _cache(source)
        add_origin(rules["view"], "https://a.example", actor=ADMIN, tenant="acme")
        assert prune_change_log(keep_hours=0) > 0  # every version so far: a gap
        add_origin(rules["view"], "https://b.example", actor=ADMIN, tenant="acme")
        assert cache.refresh() and cache.last_load == "full"
        assert_same_as_full(cache, source)
        # From there on the log reaches back to the version held again.
        add_origin(rules["view"], "http://localhost:*", actor=ADMIN, tenant="globex")
        assert cache.refresh() and cache.last_load == "incremental"
        assert_same_as_full(cache, source)


def test_pruning_keeps_recent_versions_and_whole_versions(app):
    with app.app_context():
        _seed()
        rows = len(_log())
        assert prune_change_log(keep_hours=24) == 0 and len(_log()) == rows
        assert prune_change_log(keep_hours=0) == rows and _log() == []


def test_a_version_moved_without_a_log_entry_loads_in_full(app, source):
    with app.app_context():
        rules = _seed()
        cache = _cache(source)
        add_origin(rules["plain"], "https://a.example", actor=ADMIN)
        # As a restore of the database or a write of an older release would.
        db.session.execute(sa.text("UPDATE policy_state SET version = version + 1"))
        db.session.commit()
        assert cache.refresh() and cache.last_load == "full"
        assert_same_as_full(cache, source)


@pytest.mark.parametrize("how", ["import", "update"])
def test_origins_written_in_bulk_reach_an_incremental_reload(app, source, how):
    """An import, or an edit giving the whole origin list, writes origins through the
    driver (executemany, COPY), past the session: the rule is still compiled again."""
    with app.app_context():
        rules = _seed()
        cache = _cache(source)
        origins = ["https://plain.example", "https://new.example", "https://*.wild.example"]
        if how == "import":
            import_policy({"rules": [{**PLAIN_RULE, "origins": origins}]}, actor=ADMIN)
        else:
            update_rule(rules["plain"], {"origins": origins}, actor=ADMIN)
        assert cache.refresh() and cache.last_load == "incremental"
        assert_same_as_full(cache, source)
        assert decide(cache.snapshot, "GET", PLAIN_RULE["path"].replace("*", "x"),
                      Headers({"Origin": "https://new.example"})).allowed


def test_deleting_a_tenant_loads_in_full(app, source):
    with app.app_context():
        rules = _seed()
        add_origin(rules["header"], "https://a.example", actor=ADMIN, tenant="globex")
        cache = _cache(source)
        delete_tenant("globex", actor=ADMIN)
        assert _log()[-1][1] == "full"
        assert cache.refresh() and cache.last_load == "full"
        assert_same_as_full(cache, source)
        snapshot = cache.snapshot
        assert snapshot is not None and "globex" not in snapshot.tenants


def test_a_full_reload_on_demand(app, source):
    with app.app_context():
        rules = _seed()
        cache = _cache(source)
        add_origin(rules["plain"], "https://a.example", actor=ADMIN)
        assert cache.refresh() and cache.last_load == "incremental"
        held = cache.snapshot
        assert cache.reload() and cache.last_load == "full"
        assert cache.snapshot is not held
        assert_same_as_full(cache, source)


def test_origins_load_with_their_stored_expiry_and_tenant(app, source):
    """The loader reads the expiry column as the driver returns it and converts only what is
    there: the instant stored, to the microsecond, on SQLite as on PostgreSQL."""
    from datetime import UTC, datetime

    from cors_control.snapshot import OriginEntry

    expires = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    with app.app_context():
        rules = _seed()
        add_origin(rules["header"], "https://a.example", actor=ADMIN, tenant="acme",
                   expires_at=expires)
        add_origin(rules["header"], "https://b.example", actor=ADMIN, tenant="globex")
        add_origin(rules["plain"], "https://*.c.example", actor=ADMIN, expires_at=expires)
        add_origin(rules["plain"], "https://d.example", actor=ADMIN)
    _version, specs, _tenants = source.load_with_tenants()
    loaded = {spec.rule_id: sorted(spec.origins, key=lambda entry: entry.value)
              for spec in specs}
    assert loaded[rules["header"]] == [
        OriginEntry("https://a.example", expires.timestamp(), "acme"),
        OriginEntry("https://b.example", None, "globex")]
    assert loaded[rules["plain"]] == [
        OriginEntry("https://*.c.example", expires.timestamp()),
        OriginEntry("https://d.example")]
