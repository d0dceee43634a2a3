"""The request log as an analysis tool (groups, trends, a fix per reason) and "where is this
origin allowed" (the find service, the rules search, the API, the CLI, the audit filter)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.api import URL_PREFIX
from app.extensions import db
from app.models import RequestLogEntry
from app.request_log import get_request_log
from app.services.access import Actor
from app.services.audit import AuditFilter, query_audit
from app.services.errors import ValidationError
from app.services.origin_find import find_origin
from app.services.policy import add_origin
from app.services.policy_read import get_rule_by_path
from app.services.request_log import TREND_BUCKETS, group_log, validate_filter
from app.services.tokens import create_token

ORIGIN = "https://app.example.com"
EVIL = "https://evil.example.net"
OTHER = "https://other.example.org"
HTMX = {"HX-Request": "true"}
ADMIN = Actor("test", "cli")

RULE = {"path": "/api/*", "origins": [ORIGIN, "https://*.shop.example.com"],
        "methods": ["GET"], "allow_headers": ["content-type"]}
PUBLIC = {"path": "/api/public/*", "origins": ["*"]}


def refuse(app, client, origin: str, times: int = 1, path: str = "/api/orders",
           method: str = "GET", **headers: str) -> None:
    for _ in range(times):
        client.open(path, method=method, headers={"Origin": origin, **headers})
    get_request_log(app).recorder.flush()


def text_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def groups_of(app, group_by: str = "origin", **filters):
    with app.app_context():
        return group_log(validate_filter(since="24h", **filters), group_by=group_by)


# -- the service ---------------------------------------------------------------------------


def test_rows_group_by_origin_with_their_sums_routes_reasons_and_trend(app, client, policy):
    policy(RULE)
    refuse(app, client, EVIL, 3)
    refuse(app, client, OTHER, 1)
    refuse(app, client, EVIL, 2, path="/api/orders", method="OPTIONS",
           **{"Access-Control-Request-Method": "PUT"})
    page = groups_of(app)
    assert [g.key for g in page.groups] == [EVIL, OTHER]  # largest count first
    evil = page.groups[0]
    assert evil.count == 5 and evil.rows == 1 and page.total == 2
    assert evil.routes == ("/api/*",) and evil.reasons == ("origin-not-allowed",)
    assert len(evil.trend) == TREND_BUCKETS and sum(evil.trend) == 5
    assert evil.trend[-1] == 5  # refused within the last part of the period
    assert evil.first_seen <= evil.last_seen


def test_groups_sort_by_last_seen_and_group_by_rule_or_reason(app, client, policy):
    policy(RULE, {"path": "/health", "origins": [ORIGIN]})
    refuse(app, client, EVIL, 3)
    refuse(app, client, OTHER, 1, path="/health")
    with app.app_context():
        latest = group_log(validate_filter(since="24h"), sort="last_seen")
    assert latest.groups[0].key == OTHER
    by_rule = groups_of(app, "rule")
    assert {g.key: g.count for g in by_rule.groups} == {"/api/*": 3, "/health": 1}
    assert by_rule.groups[0].origins == (EVIL,)
    by_reason = groups_of(app, "reason")
    assert [(g.key, g.count) for g in by_reason.groups] == [("origin-not-allowed", 4)]
    assert set(by_reason.groups[0].origins) == {EVIL, OTHER}


def _logged(app, *rows: tuple[str, str, int]) -> None:
    """Rows (rule path, origin, count) of the current hour, as the recorder writes them."""
    at = datetime.now(UTC)
    with app.app_context():
        for number, (rule_path, origin, count) in enumerate(rows):
            db.session.add(RequestLogEntry(
                bucket_start=at.replace(minute=0, second=0, microsecond=0), rule_id=None,
                rule_path=rule_path, origin=origin, reason="origin-not-allowed",
                detail=f"d{number}", mode="enforce", count=count, first_seen=at,
                last_seen=at, path="/api/x", method="GET", preflight=False,
                request_method="", request_headers="", user_agent="", referer=""))
        db.session.commit()


def test_a_rule_group_names_its_five_most_refused_origins_and_counts_the_others(app):
    # Seven origins on /a: two of them on two rows each, and two tied on 4 (the first
    # by name is shown). Origins of /b are not /a's.
    _logged(app, ("/a", "https://o1.example", 9), ("/a", "https://o2.example", 3),
            ("/a", "https://o2.example", 5), ("/a", "https://o3.example", 4),
            ("/a", "https://o4.example", 4), ("/a", "https://o5.example", 1),
            ("/a", "https://o6.example", 1), ("/a", "https://o7.example", 2),
            ("/a", "https://o7.example", 1), ("/b", "https://o0.example", 50))
    page = groups_of(app, "rule")
    rule_a = next(group for group in page.groups if group.key == "/a")
    assert rule_a.origins == ("https://o1.example", "https://o2.example",
                              "https://o3.example", "https://o4.example",
                              "https://o7.example")
    assert rule_a.more_origins == 2 and rule_a.count == 30 and rule_a.rows == 9
    rule_b = next(group for group in page.groups if group.key == "/b")
    assert rule_b.origins == ("https://o0.example",) and rule_b.more_origins == 0


def test_every_page_of_groups_knows_how_many_groups_there_are(app):
    _logged(app, *[("/a", f"https://o{n}.example", n + 1) for n in range(3)])
    with app.app_context():
        pages = [group_log(validate_filter(since="24h"), per_page=2, page=number)
                 for number in (1, 2, 3)]
    assert [[g.key for g in page.groups] for page in pages] == [
        ["https://o2.example", "https://o1.example"], ["https://o0.example"], []]
    assert [page.total for page in pages] == [3, 3, 0]


def test_grouping_refuses_an_unknown_group_or_sort(app):
    with app.app_context(), pytest.raises(ValidationError) as error:
        group_log(validate_filter(), group_by="host", sort="size")
    assert {e.field for e in error.value.errors} == {"group", "sort"}


# -- the dashboard -------------------------------------------------------------------------


def test_the_log_page_is_grouped_by_origin_with_a_sparkline_and_a_link_to_the_rows(
        app, client, policy, sign_in):
    policy(RULE)
    refuse(app, client, EVIL, 4)
    page = text_of(sign_in("viewer").get("/admin/log"))
    assert "1 group by origin" in page
    assert '<svg class="sparkline"' in page and "<polyline" in page
    assert "4 in 24 periods of 1 hour, oldest first" in page
    assert 'href="/admin/log?origin_is=https://evil.example.net&amp;group=none"' in page
    rows = text_of(sign_in("viewer").get(
        "/admin/log", query_string={"group": "none", "origin_is": EVIL}))
    assert f'<span class="mono">{EVIL}</span>' in rows and "1 row" in rows


def test_an_alert_link_opens_one_group_with_every_filter(app, client, policy, sign_in):
    policy(RULE)
    refuse(app, client, EVIL, 2)
    refuse(app, client, OTHER, 1)
    fragment = text_of(sign_in("viewer").get("/admin/log", headers=HTMX, query_string={
        "group": "origin", "origin": EVIL, "rule": "/api/*", "reason": "origin-not-allowed",
        "since": "1h"}))
    assert EVIL in fragment and OTHER not in fragment and "1 group by origin" in fragment


def test_a_bad_group_is_named_on_the_page(sign_in):
    page = text_of(sign_in("viewer").get("/admin/log?group=host"))
    assert "Group by: group by one of origin, rule, reason" in page


def test_an_origin_group_offers_allow_which_lets_the_request_through(app, client, policy,
                                                                     sign_in):
    policy(RULE)
    refuse(app, client, EVIL, 2)
    editor = sign_in("editor")
    page = text_of(editor.get("/admin/log"))
    assert "Allow on this rule" in page and 'name="target" value="rule"' in page
    with app.app_context():
        sample = db.session.scalar(sa.select(RequestLogEntry.id))
    response = editor.post(f"/admin/log/{sample}/allow", data={
        "csrf_token": editor.csrf, "next": "/admin/log?since=7d", "target": "rule"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/log?since=7d"
    served = client.get("/api/orders", headers={"Origin": EVIL})
    assert served.headers["Access-Control-Allow-Origin"] == EVIL
    assert "allowed now" in text_of(editor.get("/admin/log"))


def test_allow_refuses_an_unknown_target(app, client, policy, sign_in):
    policy(RULE)
    refuse(app, client, EVIL)
    editor = sign_in("editor")
    with app.app_context():
        sample = db.session.scalar(sa.select(RequestLogEntry.id))
    response = editor.post(f"/admin/log/{sample}/allow", data={
        "csrf_token": editor.csrf, "target": "everywhere"}, headers=HTMX)
    assert "allow on one of: rule" in text_of(response)
    with app.app_context():
        assert EVIL not in [o.value for o in get_rule_by_path("/api/*").origins]


def test_a_method_refusal_opens_the_rule_form_with_the_method_added_and_its_consequence(
        app, client, policy, sign_in):
    policy(RULE)
    refuse(app, client, ORIGIN, 1, method="OPTIONS",
           **{"Access-Control-Request-Method": "DELETE"})
    editor = sign_in("editor")
    page = text_of(editor.get("/admin/log"))
    with app.app_context():
        rule_id = get_rule_by_path("/api/*").id
    link = f'href="/admin/rules/{rule_id}?add_method=DELETE#rule-detail"'
    assert link in page and "Edit the rule: add DELETE to the rule&#39;s methods" in page
    form = text_of(editor.get(f"/admin/rules/{rule_id}?add_method=DELETE"))
    assert "From the request log, not saved yet:" in form
    assert "add DELETE to the methods of /api/*" in form
    assert "may then send DELETE requests" in form
    assert 'value="GET, DELETE"' in form
    viewer_form = text_of(sign_in("viewer").get(f"/admin/rules/{rule_id}?add_method=DELETE"))
    assert "not saved yet" not in viewer_form


def test_a_header_refusal_proposes_the_header_and_credentials_propose_support(app, client,
                                                                             policy, sign_in):
    policy(RULE)
    refuse(app, client, ORIGIN, 1, method="OPTIONS", **{
        "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-api-key"})
    # A credentialed request, from a client without a cookie jar (a jar replaces the header)
    app.test_client(use_cookies=False).get(
        "/api/orders", headers={"Origin": ORIGIN, "Cookie": "session=1"})
    get_request_log(app).recorder.flush()
    page = text_of(sign_in("editor").get("/admin/log?group=none"))
    assert "add_header=x-api-key" in page and "allow the x-api-key header" in page
    assert "add_credentials=1" in page and "let the rule support credentials" in page
    with app.app_context():
        rule_id = get_rule_by_path("/api/*").id
    form = text_of(sign_in("editor").get(f"/admin/rules/{rule_id}?add_credentials=1"))
    assert "let /api/* support credentials" in form and "cookies" in form


# -- find an origin ------------------------------------------------------------------------


def test_find_lists_the_exact_entry_and_every_wildcard_that_matches(app, policy):
    policy(RULE, PUBLIC, {"path": "/other", "origins": ["https://else.example.com"]})
    with app.app_context():
        origin, grants = find_origin("https://a.shop.example.com")
        assert origin == "https://a.shop.example.com"
        assert [(g.rule_path, g.entry, g.exact) for g in grants] == [
            ("/api/*", "https://*.shop.example.com", False), ("/api/public/*", "*", False)]
        _origin, exact = find_origin(ORIGIN)
        assert [(g.rule_path, g.entry, g.exact) for g in exact] == [
            ("/api/*", ORIGIN, True), ("/api/public/*", "*", False)]
        assert exact[0].added_by == "test" and exact[0].since is not None


def test_find_refuses_a_pattern_or_a_non_origin(app):
    with app.app_context():
        for text in ("https://*.example.com", "not an origin"):
            with pytest.raises(ValidationError) as error:
                find_origin(text)
            assert error.value.errors[0].field == "origin"


def test_the_rules_search_answers_where_an_origin_is_allowed(app, policy, sign_in):
    policy(RULE)
    page = text_of(sign_in("viewer").get("/admin/rules", query_string={"q": ORIGIN}))
    assert "Where <span class=\"mono\">https://app.example.com</span> is allowed" in page
    assert ">exact<" in page and 'href="/admin/audit?origin=https://app.example.com"' in page
    fragment = text_of(sign_in("viewer").get("/admin/rules", headers=HTMX,
                                             query_string={"q": "https://x.shop.example.com"}))
    assert "https://*.shop.example.com" in fragment and ">wildcard<" in fragment


def test_the_audit_trail_filters_by_origin(app, policy, sign_in):
    policy(RULE)
    with app.app_context():
        add_origin(get_rule_by_path("/api/*").id, EVIL, actor=ADMIN)
        entries = query_audit(AuditFilter(origin=EVIL)).items
        assert [e.action for e in entries] == ["origin.add"]
    page = text_of(sign_in("viewer").get("/admin/audit", query_string={"origin": EVIL}))
    assert f"allowed {EVIL} on /api/*" in page


# -- the API and the CLI -------------------------------------------------------------------


def bearer(app, role: str = "viewer") -> dict[str, str]:
    with app.app_context():
        secret = create_token(f"{role}-log", role, actor=ADMIN).secret
    return {"Authorization": f"Bearer {secret}"}


def test_the_api_groups_the_log_and_finds_an_origin(app, client, policy):
    policy(RULE)
    refuse(app, client, EVIL, 3)
    headers = bearer(app)
    body = client.get(f"{URL_PREFIX}/log?group=origin&since=1h", headers=headers).get_json()
    assert body["group"] == "origin" and body["total"] == 1
    (item,) = body["items"]
    assert (item["origin"], item["count"], item["routes"]) == (EVIL, 3, ["/api/*"])
    assert len(item["trend"]) == TREND_BUCKETS
    bad = client.get(f"{URL_PREFIX}/log?group=host", headers=headers)
    assert bad.status_code == 422
    found = client.get(f"{URL_PREFIX}/rules", query_string={"origin": ORIGIN},
                       headers=headers).get_json()
    assert found["origin"] == ORIGIN
    assert [(i["rule"], i["match"]) for i in found["items"]] == [("/api/*", "exact")]
    refused = client.get(f"{URL_PREFIX}/rules?origin=*", headers=headers)
    assert refused.status_code == 422


def test_the_cli_groups_the_log_and_finds_an_origin(app, client, policy, runner):
    policy(RULE)
    refuse(app, client, EVIL, 2)
    result = runner.invoke(args=["cors", "log", "--group", "origin"])
    assert result.exit_code == 0, result.output
    assert "ORIGIN" in result.output and EVIL in result.output and "TREND" in result.output
    as_json = json.loads(runner.invoke(args=["cors", "log", "--group", "rule",
                                             "--json"]).output)
    assert as_json["groups"][0]["rule"] == "/api/*" and as_json["groups"][0]["count"] == 2
    found = runner.invoke(args=["cors", "find", "https://a.shop.example.com"])
    assert found.exit_code == 0 and "https://*.shop.example.com" in found.output
    assert "wildcard" in found.output
    missing = runner.invoke(args=["cors", "find", EVIL])
    assert missing.exit_code == 1 and "is not allowed by any rule" in missing.output


def test_an_expired_entry_is_listed_as_not_serving(app, policy):
    policy(RULE)
    with app.app_context():
        add_origin(get_rule_by_path("/api/*").id, EVIL, actor=ADMIN)
        _origin, grants = find_origin(EVIL, now=datetime.now(UTC) + timedelta(days=1))
        assert grants and not grants[0].expired  # no expiry: serves forever



# -- tenants see their part ----------------------------------------------------------------

SHARED = {"path": "/api/t/*/orders", "tenant_selector": {"source": "view-arg", "key": "tenant"},
          "origins": [{"value": "https://shop.acme.example", "tenant": "acme"},
                      {"value": "https://shop.globex.example", "tenant": "globex"}]}
ACME_RULE = {"path": "/api/orders", "tenant": "acme", "origins": [ORIGIN]}


@pytest.fixture
def tenancy(app, policy):
    from app.models import AllowedOrigin, ApiToken, Rule, Tenant
    from app.services.tenants import create_tenant

    def forget() -> None:
        with app.app_context():
            db.session.execute(sa.delete(ApiToken))
            owned = sa.select(Rule.id).where(Rule.tenant_id.is_not(None))
            db.session.execute(sa.delete(AllowedOrigin).where(
                AllowedOrigin.tenant_id.is_not(None) | AllowedOrigin.rule_id.in_(owned)))
            db.session.execute(sa.delete(Rule).where(Rule.tenant_id.is_not(None)))
            db.session.execute(sa.delete(Tenant))
            db.session.commit()

    forget()
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/orders"], actor=ADMIN)
        create_tenant("globex", "Globex", paths=["/api/echo"], actor=ADMIN)
    policy({"path": "/api/*", "origins": [ORIGIN, "https://*.acme.example"]}, SHARED,
           ACME_RULE)
    yield
    forget()


def test_a_tenant_role_finds_only_the_entries_it_may_see(app, tenancy):
    with app.app_context():
        _origin, everything = find_origin(ORIGIN)
        assert [g.rule_path for g in everything] == ["/api/*", "/api/orders"]
        assert everything[1].rule_tenant == "acme"
        from app.models import Tenant
        acme = db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == "acme"))
        globex = db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == "globex"))
        acme_viewer = Actor("v@acme", "dashboard", "tenant-viewer", acme)
        globex_viewer = Actor("v@globex", "dashboard", "tenant-viewer", globex)
        _origin, own = find_origin(ORIGIN, actor=acme_viewer)
        assert [g.rule_path for g in own] == ["/api/orders"]
        _origin, shop = find_origin("https://shop.acme.example", actor=acme_viewer)
        assert [(g.rule_path, g.allowlist_tenant) for g in shop] == [
            ("/api/t/*/orders", "acme")]
        assert find_origin("https://shop.acme.example", actor=globex_viewer)[1] == []


def test_a_tenant_role_groups_only_its_rows(app, client, tenancy):
    refuse(app, client, EVIL, 2, path="/api/orders")   # acme's rule
    refuse(app, client, OTHER, 1, path="/api/t/globex/orders")  # globex on the shared rule
    with app.app_context():
        from app.models import Tenant
        acme = db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == "acme"))
        actor = Actor("v@acme", "dashboard", "tenant-viewer", acme)
        mine = group_log(validate_filter(since="1h"), actor=actor)
        everything = group_log(validate_filter(since="1h"))
    assert [g.key for g in mine.groups] == [EVIL]
    assert {g.key for g in everything.groups} == {EVIL, OTHER}
