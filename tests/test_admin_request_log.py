"""The request log page: filters, pages, CSV export, one click to allow, escaping."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.admin.request_log import COUNT_LIMIT
from app.extensions import db
from app.models import AllowedOrigin, AuditEntry, RequestLogEntry
from app.request_log import get_request_log
from app.services.policy_read import get_rule_by_path

ORIGIN = "https://app.example.com"
EVIL = "https://evil.example.net"
HTMX = {"HX-Request": "true"}

RULE = {"path": "/api/*", "origins": [ORIGIN], "methods": ["GET", "PUT"],
        "allow_headers": ["content-type"]}
PUBLIC = {"path": "/api/public/*", "origins": [ORIGIN], "mode": "report-only"}


def refuse(app, client, *origins: str, path: str = "/api/orders", **headers: str) -> None:
    """Send one cross-origin GET per origin and write what the recorder holds."""
    for origin in origins:
        client.get(path, headers={"Origin": origin, **headers})
    get_request_log(app).recorder.flush()


def text_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def entry_id(app, origin: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(RequestLogEntry.id).where(
            RequestLogEntry.origin == origin))


def origins_on(app, path: str = "/api/*") -> list[str]:
    with app.app_context():
        return [o.value for o in get_rule_by_path(path).origins]


def rule_id(app, path: str = "/api/*") -> int:
    with app.app_context():
        return get_rule_by_path(path).id


def add_rows(app, count: int, *, last_seen: datetime | None = None, **fields) -> None:
    """Rows as the recorder writes them, for periods and volumes a test cannot wait for."""
    seen = last_seen or datetime.now(UTC)
    rows = [{
        "bucket_start": seen.replace(minute=0, second=0, microsecond=0), "rule_id": None,
        "rule_path": "", "origin": f"https://h{i}.example.org", "reason": "no-rule",
        "detail": "", "mode": "enforce", "count": 1, "first_seen": seen, "last_seen": seen,
        "path": "/api/x", "method": "GET", "preflight": False, "request_method": "",
        "request_headers": "", "user_agent": "", "referer": "", **fields,
    } for i in range(count)]
    with app.app_context():
        db.session.execute(sa.insert(RequestLogEntry), rows)
        db.session.commit()


def csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


# -- page and fragment ---------------------------------------------------------------------


def test_log_page_shows_aggregated_rows_with_counts_times_and_the_sample(app, client, policy,
                                                                         sign_in):
    policy(RULE)
    refuse(app, client, EVIL, EVIL, EVIL, **{"User-Agent": "Probe/1.0",
                                              "Referer": "https://evil.example.net/page"})
    page = text_of(sign_in("viewer").get("/admin/log?group=none"))
    assert "<html" in page and '<form class="card" method="get" action="/admin/log"' in page
    assert f'<span class="mono">{EVIL}</span>' in page
    assert '<td class="num">3</td>' in page
    assert "<code>origin-not-allowed</code>" in page
    assert "the origin is not on the rule&#39;s allowlist" in page
    assert page.count(" UTC</time>") == 2
    assert "<details>" in page and "<code>GET /api/orders</code>" in page
    assert "Probe/1.0" in page and "https://evil.example.net/page" in page
    assert "1 row" in page


def test_an_htmx_filter_request_gets_only_the_results_fragment(app, client, policy, sign_in):
    policy(RULE)
    refuse(app, client, EVIL)
    response = sign_in("viewer").get("/admin/log?group=none&origin=evil", headers=HTMX)
    fragment = text_of(response)
    assert fragment.lstrip().startswith('<section id="log-results"')
    assert "<html" not in fragment and EVIL in fragment
    assert "HX-Request" in response.headers["Vary"]


def test_the_filter_form_is_a_get_form_enhanced_by_htmx(sign_in):
    page = text_of(sign_in("viewer").get("/admin/log?group=none"))
    assert 'hx-get="/admin/log" hx-target="#log-results"' in page
    assert 'hx-push-url="true"' in page
    assert '<option value="24h" selected>' in page  # the default period


def test_preflight_rows_show_the_requested_method_and_headers(app, client, policy, sign_in):
    policy(RULE)
    client.options("/api/orders", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type,x-token"})
    get_request_log(app).recorder.flush()
    page = text_of(sign_in("viewer").get("/admin/log?group=none"))
    assert "<code>header-not-allowed</code> <code>x-token</code>" in page
    assert "<dt>Preflight for</dt><dd><code>PUT</code></dd>" in page
    assert "<code>content-type,x-token</code>" in page


# -- filters -------------------------------------------------------------------------------


@pytest.fixture
def mixed_log(app, client, policy):
    """Refusals under an enforced rule, a report-only rule and no rule at all. /api/* allows
    the reporting origin, so on /api/public/* only the report-only rule would refuse it."""
    policy({**RULE, "origins": [ORIGIN, "https://reporting.example.com"]}, PUBLIC)
    refuse(app, client, EVIL, "https://other.example.org")
    refuse(app, client, "https://reporting.example.com", path="/api/public/status")
    client.put("/api/orders", headers={"Origin": ORIGIN})  # PUT is allowed: not recorded
    client.delete("/api/orders", headers={"Origin": ORIGIN})
    get_request_log(app).recorder.flush()
    policy(PUBLIC)  # /api/orders is governed by no rule now
    refuse(app, client, "https://norule.example.com")
    return app


@pytest.mark.parametrize(("query", "expected"), [
    ({}, {EVIL, "https://other.example.org", "https://reporting.example.com",
          ORIGIN, "https://norule.example.com"}),
    ({"origin": "EVIL.example"}, {EVIL}),
    ({"reason": "method-not-allowed"}, {ORIGIN}),
    ({"mode": "report-only"}, {"https://reporting.example.com"}),
    ({"rule": "none"}, {"https://norule.example.com"}),
    ({"rule": "/api/*"}, {EVIL, "https://other.example.org", ORIGIN}),
    ({"since": "custom", "since_custom": "90m"}, {
        EVIL, "https://other.example.org", "https://reporting.example.com", ORIGIN,
        "https://norule.example.com"}),
])
def test_filters_narrow_the_rows(mixed_log, sign_in, query, expected):
    client = sign_in("viewer")
    fragment = text_of(client.get("/admin/log", query_string={**query, "group": "none"},
                                  headers=HTMX))
    shown = {origin for origin in expected | {EVIL, ORIGIN, "https://other.example.org",
                                               "https://reporting.example.com",
                                               "https://norule.example.com"}
             if f'<span class="mono">{origin}</span>' in fragment}
    assert shown == expected


def test_the_rule_filter_lists_rules_by_path_and_filters_by_id(mixed_log, sign_in):
    client = sign_in("viewer")
    public_id = rule_id(mixed_log, "/api/public/*")
    page = text_of(client.get("/admin/log?group=none"))
    assert f'<option value="{public_id}" >/api/public/*</option>' in page
    assert '<option value="none" >(no rule)</option>' in page
    fragment = text_of(client.get(f"/admin/log?group=none&rule={public_id}", headers=HTMX))
    assert "https://reporting.example.com" in fragment and EVIL not in fragment
    assert f'<option value="{public_id}" selected>' in text_of(
        client.get(f"/admin/log?group=none&rule={public_id}"))


def test_the_period_leaves_out_rows_last_seen_before_it(app, sign_in):
    add_rows(app, 1, origin="https://old.example.org",
             last_seen=datetime.now(UTC) - timedelta(days=3))
    add_rows(app, 1, origin="https://recent.example.org")
    client = sign_in("viewer")
    day = text_of(client.get("/admin/log?group=none&since=24h", headers=HTMX))
    assert "https://recent.example.org" in day and "https://old.example.org" not in day
    week = text_of(client.get("/admin/log?group=none&since=7d", headers=HTMX))
    assert "https://old.example.org" in week
    linked = text_of(client.get("/admin/log?group=none&since=4d"))  # any duration, as a link
    assert '<option value="custom" selected>' in linked
    assert 'name="since_custom" value="4d"' in linked and "https://old.example.org" in linked


@pytest.mark.parametrize(("query", "message"), [
    ({"since": "custom", "since_custom": "yesterday"},
     "Period: use a duration such as 30m, 1h, 7d or 2w"),
    ({"reason": "bored"}, "Reason: reason must be one of origin-not-allowed"),
    ({"mode": "off"}, "Mode: mode must be enforce, report-only or draft"),
    ({"rule": "api"}, "Rule: choose a rule from the list"),
])
def test_invalid_filters_say_which_field_to_fix(sign_in, query, message):
    fragment = text_of(sign_in("viewer").get(
        "/admin/log", query_string={**query, "group": "none"}, headers=HTMX))
    assert message in fragment
    assert "Export CSV" not in fragment


# -- pages and counting --------------------------------------------------------------------


def test_rows_are_paged_newest_first(app, sign_in):
    now = datetime.now(UTC)
    for minutes in range(5):
        add_rows(app, 1, origin=f"https://m{minutes}.example.org",
                 last_seen=now - timedelta(minutes=minutes))
    client = sign_in("viewer")
    first = text_of(client.get("/admin/log?group=none&per_page=2"))
    assert first.index("https://m0.example.org") < first.index("https://m1.example.org")
    assert "https://m2.example.org" not in first
    assert 'href="/admin/log?page=2&amp;per_page=2&amp;group=none"' in first
    assert "Newer" not in first
    assert "5 rows" in first
    last = text_of(client.get("/admin/log?group=none&per_page=2&page=3", headers=HTMX))
    assert "https://m4.example.org" in last
    assert "Older" not in last and 'href="/admin/log?page=2&amp;per_page=2&amp;group=none"' in last


def test_the_page_size_is_capped(app, sign_in):
    page = text_of(sign_in("viewer").get("/admin/log?group=none&per_page=100000"))
    assert '<input type="hidden" name="per_page" value="500">' in page


def test_the_count_stops_at_its_cap_and_paging_goes_on(app, sign_in):
    add_rows(app, COUNT_LIMIT + 2)
    client = sign_in("viewer")
    fragment = text_of(client.get("/admin/log?group=none", headers=HTMX))
    assert "10,000+ rows" in fragment
    deep = text_of(client.get(f"/admin/log?group=none&page={COUNT_LIMIT // 500 + 1}&per_page=500",
                              headers=HTMX))
    assert deep.count('<tr id="log-entry-') == 2


# -- CSV -----------------------------------------------------------------------------------


def test_csv_export_streams_the_filtered_rows_as_an_attachment(mixed_log, sign_in):
    response = sign_in("viewer").get("/admin/log.csv?reason=origin-not-allowed&rule=/api/*")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="cors-request-log-')
    assert disposition.endswith('.csv"')
    rows = csv_rows(response)
    assert {row["origin"] for row in rows} == {EVIL, "https://other.example.org"}
    row = next(r for r in rows if r["origin"] == EVIL)
    assert row["rule"] == "/api/*" and row["reason"] == "origin-not-allowed"
    assert row["count"] == "1" and row["sample.method"] == "GET"
    assert row["sample.path"] == "/api/orders" and row["sample.preflight"] == "false"
    assert row["last_seen"].endswith("Z")


def test_the_page_links_to_the_csv_of_the_same_filters(mixed_log, sign_in):
    fragment = text_of(sign_in("viewer").get("/admin/log?group=none&origin=evil&since=7d&page=2",
                                             headers=HTMX))
    assert 'href="/admin/log.csv?since=7d&amp;origin=evil&amp;group=none"' in fragment


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(app, client, policy, sign_in):
    policy(RULE)
    formula = "=HYPERLINK(\"https://evil.example\",\"x\")"
    refuse(app, client, formula, **{"User-Agent": "+cmd|' /C calc'!A0",
                                    "Referer": "@SUM(1+1)"})
    # The recorder escapes control characters now; rows written before still hold them raw.
    add_rows(app, 1, origin="-2+3", user_agent="\tTab", referer="safe")
    rows = {row["origin"]: row for row in csv_rows(sign_in("viewer").get("/admin/log.csv"))}
    assert set(rows) == {"'" + formula, "'-2+3"}
    first = rows["'" + formula]
    assert first["sample.user_agent"] == "'+cmd|' /C calc'!A0"
    assert first["sample.referer"] == "'@SUM(1+1)"
    assert rows["'-2+3"]["sample.user_agent"] == "\\x09Tab"  # no raw control character
    assert rows["'-2+3"]["sample.referer"] == "safe"


def test_a_large_export_has_every_row_once_newest_first(app, sign_in):
    now = datetime.now(UTC)
    add_rows(app, 1500, last_seen=now - timedelta(minutes=5))  # ties across batches
    add_rows(app, 1100, last_seen=now, rule_path="/newest/*")
    rows = csv_rows(sign_in("viewer").get("/admin/log.csv"))
    assert len(rows) == 2600
    assert {row["rule"] for row in rows[:1100]} == {"/newest/*"}
    assert len({row["origin"] for row in rows[:1100]}) == 1100
    older = [row["origin"] for row in rows[1100:] if row["rule"] == ""]
    assert len(set(older)) == 1500  # every older row, none twice


def test_csv_export_with_an_invalid_filter_answers_400(sign_in):
    response = sign_in("viewer").get("/admin/log.csv?since=custom&since_custom=soon")
    assert response.status_code == 400
    assert "since: use a duration" in response.get_data(as_text=True)


# -- one click allow -----------------------------------------------------------------------


def test_editors_get_a_confirmed_allow_button_on_origin_refusals_only(app, client, policy,
                                                                      sign_in):
    policy(RULE)
    refuse(app, client, EVIL)
    client.delete("/api/orders", headers={"Origin": ORIGIN})
    get_request_log(app).recorder.flush()
    page = text_of(sign_in("editor").get("/admin/log?group=none"))
    assert page.count("Allow on this rule") == 1
    evil_id = entry_id(app, EVIL)
    assert f'hx-post="/admin/log/{evil_id}/allow"' in page
    assert f'data-confirm="Allow {EVIL} on /api/*?"' in page
    viewer_page = text_of(sign_in("viewer").get("/admin/log?group=none"))
    assert "Allow on this rule" not in viewer_page and "an editor can allow it" in viewer_page


def test_one_click_allow_from_the_log_audits_and_serves_the_origin_at_once(app, client,
                                                                          policy, sign_in):
    policy(RULE)
    refuse(app, client, EVIL)
    editor = sign_in("editor")
    response = editor.post(f"/admin/log/{entry_id(app, EVIL)}/allow",
                           data={"csrf_token": editor.csrf, "next": "/admin/log"},
                           headers=HTMX)
    fragment = text_of(response)
    assert fragment.lstrip().startswith(f'<tr id="log-entry-{entry_id(app, EVIL)}">')
    assert f"Allowed {EVIL} on /api/*." in fragment
    assert "Allow on this rule" not in fragment
    assert EVIL in origins_on(app)
    with app.app_context():
        # The simulator's whole fix of the recorded request, as one audited change.
        entry = db.session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "rule.update")).one()
        assert (entry.actor, entry.channel) == (editor.user_email, "dashboard")
        assert EVIL in entry.summary
    served = client.get("/api/orders", headers={"Origin": EVIL})
    assert served.headers["Access-Control-Allow-Origin"] == EVIL
    assert '<span class="badge allowed">allowed now</span>' in text_of(
        editor.get("/admin/log?group=none"))


def test_one_click_allow_without_javascript_returns_to_the_filtered_log(app, client, policy,
                                                                       sign_in):
    policy(RULE)
    refuse(app, client, EVIL)
    editor = sign_in("editor")
    response = editor.post(f"/admin/log/{entry_id(app, EVIL)}/allow", data={
        "csrf_token": editor.csrf, "next": "/admin/log?origin=evil&since=7d"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/log?origin=evil&since=7d"
    page = text_of(editor.get(response.headers["Location"]))
    assert f"Allowed {EVIL} on /api/*." in page


@pytest.mark.parametrize("next_url", ["https://evil.example/admin/log", "//evil.example/x",
                                      "/admin/rules", ""])
def test_one_click_allow_never_redirects_off_the_log(app, client, policy, sign_in, next_url):
    policy(RULE)
    refuse(app, client, EVIL)
    editor = sign_in("editor")
    response = editor.post(f"/admin/log/{entry_id(app, EVIL)}/allow",
                           data={"csrf_token": editor.csrf, "next": next_url})
    assert response.headers["Location"] == "/admin/log"


def test_an_unparseable_origin_is_not_offered_and_the_page_says_why(app, client, policy,
                                                                    sign_in):
    policy(RULE)
    refuse(app, client, "null", "https://evil.example.net/")
    editor = sign_in("editor")
    page = text_of(editor.get("/admin/log?group=none"))
    assert "Allow on this rule" not in page
    assert "not offered: this origin cannot be put on an allowlist: null is sent by" in page
    assert "an origin has no path; use https://evil.example.net" in page
    response = editor.post(f"/admin/log/{entry_id(app, 'null')}/allow",
                           data={"csrf_token": editor.csrf}, headers=HTMX)
    assert "null was not allowed: this origin cannot be put on an allowlist" in text_of(response)
    assert origins_on(app) == [ORIGIN]


def test_rows_of_other_reasons_cannot_be_allowed_from_the_log(app, client, policy, sign_in):
    policy(RULE)
    client.delete("/api/orders", headers={"Origin": ORIGIN})
    get_request_log(app).recorder.flush()
    editor = sign_in("editor")
    response = editor.post(f"/admin/log/{entry_id(app, ORIGIN)}/allow",
                           data={"csrf_token": editor.csrf}, headers=HTMX)
    assert "Only an origin that a rule&#39;s allowlist refused" in text_of(response)


def test_viewers_cannot_allow_from_the_log(app, client, policy, sign_in):
    policy(RULE)
    refuse(app, client, EVIL)
    viewer = sign_in("viewer")
    response = viewer.post(f"/admin/log/{entry_id(app, EVIL)}/allow",
                           data={"csrf_token": viewer.csrf})
    assert response.status_code == 403
    assert origins_on(app) == [ORIGIN]


def test_allowing_from_the_log_without_the_csrf_token_is_refused(app, client, policy, sign_in):
    policy(RULE)
    refuse(app, client, EVIL)
    response = sign_in("editor").post(f"/admin/log/{entry_id(app, EVIL)}/allow", data={})
    assert response.status_code == 400
    assert origins_on(app) == [ORIGIN]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(AllowedOrigin.id))) == 1


def test_allowing_a_row_that_is_gone_answers_404(sign_in):
    editor = sign_in("editor")
    response = editor.post("/admin/log/999999/allow", data={"csrf_token": editor.csrf})
    assert response.status_code == 404


# -- escaping ------------------------------------------------------------------------------


def test_a_hostile_origin_sent_to_the_api_appears_as_text_in_the_log(app, client, policy,
                                                                     sign_in):
    policy(RULE)
    hostile = 'https://x.example"><script>alert(1)</script>'
    client.get("/api/orders", headers={
        "Origin": hostile, "User-Agent": "<img src=x onerror=alert(2)>",
        "Referer": "javascript:alert(3)//<b>"})
    get_request_log(app).recorder.flush()
    viewer = sign_in("viewer")
    for response in (viewer.get("/admin/log?group=none"),
                     viewer.get("/admin/log?group=none", headers=HTMX)):
        page = text_of(response)
        assert "https://x.example&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<script>alert(1)</script>" not in page
        assert "&lt;img src=x onerror=alert(2)&gt;" in page and "<img" not in page
        assert 'href="javascript:' not in page


# -- tenants -------------------------------------------------------------------------------

TENANT_RULE = {"path": "/api/t/*/orders", "origins": [ORIGIN],
               "tenant_selector": {"source": "view-arg", "key": "tenant", "unknown": "shared"}}
ACME_APP = "https://app.acme.example"


@pytest.fixture
def tenant_log(app, client, policy):
    """Refusals on a rule that keeps an allowlist per tenant, for a known tenant."""
    from app.services.access import Actor
    from app.services.tenants import create_tenant

    with app.app_context():
        create_tenant("acme", "Acme", actor=Actor("test", "cli"))
    policy(TENANT_RULE)
    refuse(app, client, ACME_APP, path="/api/t/acme/orders")
    return app


def test_a_refusal_for_a_tenant_is_allowed_on_that_tenant_s_list_only(tenant_log, client,
                                                                      sign_in):
    app = tenant_log
    editor = sign_in("editor")
    page = text_of(editor.get("/admin/log?group=none"))
    assert "tenant <code>acme</code>" in page
    assert f'data-confirm="Allow {ACME_APP} on /api/t/*/orders for tenant acme?"' in page
    fragment = text_of(editor.post(f"/admin/log/{entry_id(app, ACME_APP)}/allow",
                                   data={"csrf_token": editor.csrf}, headers=HTMX))
    assert f"Allowed {ACME_APP} on /api/t/*/orders for tenant acme." in fragment
    with app.app_context():
        (added,) = db.session.scalars(sa.select(AllowedOrigin).where(
            AllowedOrigin.value == ACME_APP)).all()
        assert added.tenant is not None and added.tenant.slug == "acme"
    assert client.get("/api/t/acme/orders", headers={"Origin": ACME_APP}).headers.get(
        "Access-Control-Allow-Origin") == ACME_APP
    assert "Access-Control-Allow-Origin" not in client.get(
        "/api/t/globex/orders", headers={"Origin": ACME_APP}).headers
    rows = csv_rows(editor.get("/admin/log.csv"))
    assert [(row["origin"], row["tenant"]) for row in rows] == [(ACME_APP, "acme")]


def test_a_refusal_that_named_no_tenant_is_not_offered_on_a_per_tenant_rule(app, client,
                                                                          policy, sign_in):
    policy({**TENANT_RULE, "path": "/api/*", "tenant_selector": {
        "source": "header", "key": "X-Tenant", "unknown": "shared"}})
    refuse(app, client, EVIL)
    editor = sign_in("editor")
    page = text_of(editor.get("/admin/log?group=none"))
    assert "Allow on this rule" not in page
    assert "the rule keeps an allowlist per tenant and this request named no tenant" in page
    response = editor.post(f"/admin/log/{entry_id(app, EVIL)}/allow",
                           data={"csrf_token": editor.csrf}, headers=HTMX)
    assert "this request named no tenant" in text_of(response)
    assert origins_on(app) == [ORIGIN]
