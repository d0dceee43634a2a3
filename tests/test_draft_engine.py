"""The engine with drafts: the live rule answers; the draft is evaluated only to report what
it would refuse that the live rule allows (pure: compile_policy and decide, no app)."""

from __future__ import annotations

import pytest

from cors_control.decision import (
    ALLOWED,
    CREDENTIALS_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    ORIGIN_NOT_ALLOWED,
    UNKNOWN_TENANT,
    decide,
)
from cors_control.snapshot import OriginEntry, RuleSpec, compile_policy
from cors_control.vocabulary import ENFORCE, REPORT_ONLY, TENANT_FROM_VIEW_ARG

APP = "https://app.example.com"
OLD = "https://old.example.com"
STRANGER = "https://stranger.example.net"


def live(**draft_fields) -> RuleSpec:
    draft = RuleSpec(path="", origins=(OriginEntry(APP),), **draft_fields)
    return RuleSpec(path="/api/*", rule_id=1, origins=(OriginEntry(APP), OriginEntry(OLD)),
                    supports_credentials=True, draft=draft)


def test_a_draft_refusing_what_the_live_rule_allows_is_carried_and_changes_nothing_sent():
    with_draft = compile_policy(1, [live()])
    without = compile_policy(1, [RuleSpec(path="/api/*", rule_id=1, supports_credentials=True,
                                          origins=(OriginEntry(APP), OriginEntry(OLD)))])
    decision = decide(with_draft, "GET", "/api/orders", {"Origin": OLD})
    plain = decide(without, "GET", "/api/orders", {"Origin": OLD})
    assert (decision.allowed, decision.reason, decision.headers) == (
        plain.allowed, plain.reason, plain.headers)
    assert decision.allowed and decision.rule is not None and decision.rule.rule_id == 1
    assert decision.draft is not None
    assert (decision.draft.allowed, decision.draft.reason) == (False, ORIGIN_NOT_ALLOWED)
    assert decision.draft.rule is decision.rule.draft
    assert decision.draft.rule is not None and decision.draft.rule.path == "/api/*"


def test_a_request_both_allow_carries_no_draft_finding():
    decision = decide(compile_policy(1, [live()]), "GET", "/api/orders", {"Origin": APP})
    assert decision.allowed and decision.draft is None


def test_a_request_the_live_rule_refuses_is_the_live_rule_s_refusal_only():
    decision = decide(compile_policy(1, [live()]), "GET", "/api/orders",
                      {"Origin": STRANGER})
    assert (decision.allowed, decision.reason, decision.draft) == (
        False, ORIGIN_NOT_ALLOWED, None)


@pytest.mark.parametrize(
    ("draft", "method", "headers", "reason"),
    [
        ({"methods": ("GET",)}, "DELETE", {"Origin": APP}, METHOD_NOT_ALLOWED),
        ({"supports_credentials": False}, "GET", {"Origin": APP, "Cookie": "s=1"},
         CREDENTIALS_NOT_ALLOWED),
        ({"methods": ("GET",)}, "OPTIONS",
         {"Origin": APP, "Access-Control-Request-Method": "PUT"}, METHOD_NOT_ALLOWED),
    ],
    ids=["method", "credentials", "preflight-method"],
)
def test_a_draft_s_tighter_options_are_reported_with_their_reason(draft, method, headers,
                                                                   reason):
    decision = decide(compile_policy(1, [live(**draft)]), method, "/api/orders", headers)
    assert decision.allowed
    assert decision.draft is not None and decision.draft.reason == reason


def test_a_draft_uses_the_rule_s_tenant_selection():
    draft = RuleSpec(path="", origins=(OriginEntry(APP, tenant="acme"),))
    spec = RuleSpec(path="/api/t/*", rule_id=3, tenant_source=TENANT_FROM_VIEW_ARG,
                    tenant_key="tenant",
                    origins=(OriginEntry(APP, tenant="acme"), OriginEntry(OLD, tenant="acme")),
                    draft=draft)
    snapshot = compile_policy(1, [spec], tenants=["acme"])
    old = decide(snapshot, "GET", "/api/t/acme/orders", {"Origin": OLD},
                 route_args={"tenant": "acme"})
    assert old.allowed and old.tenant == "acme"
    assert old.draft is not None and old.draft.reason == ORIGIN_NOT_ALLOWED
    assert old.draft.tenant == "acme"
    unknown = decide(snapshot, "GET", "/api/t/other/orders", {"Origin": APP},
                     route_args={"tenant": "other"})
    assert unknown.reason == UNKNOWN_TENANT and unknown.draft is None


def test_a_draft_of_a_rule_that_is_not_enforced_is_not_compiled():
    spec = RuleSpec(path="/api/*", rule_id=1, mode=REPORT_ONLY, origins=(OriginEntry(APP),),
                    draft=RuleSpec(path=""))
    (rule,) = compile_policy(1, [spec]).rules
    assert rule.draft is None


def test_a_draft_and_a_report_only_rule_are_both_reported():
    tight = RuleSpec(path="/api/orders", rule_id=2, mode=REPORT_ONLY,
                     origins=(OriginEntry(APP),))
    snapshot = compile_policy(1, [live(), tight])
    decision = decide(snapshot, "GET", "/api/orders", {"Origin": OLD})
    assert decision.allowed and decision.reason == ALLOWED
    assert [f.rule.path for f in decision.shadows if f.rule] == ["/api/orders"]
    assert decision.draft is not None and decision.draft.reason == ORIGIN_NOT_ALLOWED


def test_a_route_without_drafts_or_watchers_has_nothing_more_to_do():
    plain = compile_policy(1, [RuleSpec(path="/api/*", rule_id=1, mode=ENFORCE)])
    assert not plain.route_for("/api/orders").watched
    assert compile_policy(1, [live()]).route_for("/api/orders").watched
