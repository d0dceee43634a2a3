"""The overview: counts, processes and their policy versions, refusals over the last day."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, EngineProcess, PolicyState, RequestLogEntry
from app.services.changes import policy_version

HTMX = {"HX-Request": "true"}
XSS_ORIGIN = 'https://x.example"><script>alert(1)</script>'


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _refusals(app, *rows: dict) -> None:
    """Insert request log rows as the recorder writes them (one per bucket and key)."""
    with app.app_context():
        for row in rows:
            bucket = _hour(row["at"])
            # group_key: as the recorder computes it, unless the row says otherwise (None:
            # a row an engine older than migration 0021 wrote).
            given = {"group_key": sa.null() if row["group_key"] is None
                     else row["group_key"]} if "group_key" in row else {}
            db.session.add(RequestLogEntry(
                bucket_start=bucket, rule_id=row.get("rule_id"),
                rule_path=row.get("rule", "/api/*"),
                origin=row.get("origin", "https://app.example.com"),
                reason=row.get("reason", "origin-not-allowed"), detail=row.get("detail", ""),
                mode=row.get("mode", "enforce"), count=row["count"], first_seen=row["at"],
                last_seen=row["at"], path="/api/x", method="GET", preflight=False,
                request_method="", request_headers="", user_agent="", referer="", **given,
            ))
        db.session.commit()


def _processes(app, *rows: tuple[str, int | None, datetime]) -> None:
    with app.app_context():
        for process_id, version, last_check in rows:
            host, pid = process_id.split(":")
            db.session.add(EngineProcess(
                id=process_id, host=host, pid=int(pid), policy_version=version,
                last_check=last_check, started_at=last_check - timedelta(hours=1),
                last_error=""))
        db.session.commit()


def test_overview_is_a_page_and_an_htmx_fragment(sign_in):
    viewer = sign_in("viewer")
    page = viewer.get("/admin/")
    fragment = viewer.get("/admin/", headers=HTMX)
    assert page.status_code == fragment.status_code == 200
    assert "<html" in page.get_data(as_text=True)
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and '<div id="overview"' in body
    assert 'hx-target="#overview"' in body  # its refresh link swaps the fragment in place
    assert "HX-Request" in fragment.headers["Vary"]
    for response in (page, fragment):
        text = response.get_data(as_text=True)
        assert "tenants: not configured" in text
        assert "No refused requests in the last 24 hours." in text


def test_overview_counts_rules_by_mode_and_origins_with_the_expired_ones(app, sign_in,
                                                                         policy):
    policy(
        {"path": "/api/a", "origins": ["https://a.example.com", {
            "value": "https://old.example.com", "expires_at": "2020-01-01T00:00:00Z"}]},
        {"path": "/api/b", "origins": ["https://b.example.com"]},
        {"path": "/api/c", "mode": "report-only"},
        {"path": "/api/d", "mode": "off"},
    )
    body = sign_in("viewer").get("/admin/").get_data(as_text=True)
    rules = body[body.index("<h2>Rules</h2>"):body.index("<h2>Origins</h2>")]
    assert '<p class="stat">4</p>' in rules
    assert '<span class="badge enforce">enforce: 2</span>' in rules
    assert '<span class="badge report-only">report-only: 1</span>' in rules
    assert '<span class="badge off">off: 1</span>' in rules
    origins = body[body.index("<h2>Origins</h2>"):body.index("<h2>Policy version</h2>")]
    assert '<p class="stat">3</p>' in origins
    assert '<span class="badge expired">expired: 1</span>' in origins
    with app.app_context():
        version = policy_version()
    assert f'<h2>Policy version</h2>\n      <p class="stat">{version}</p>' in body


def _policy_changed(app, at: datetime) -> None:
    with app.app_context():
        db.session.execute(sa.update(PolicyState).values(changed_at=at))
        db.session.commit()


def _process_rows(body: str) -> dict[str, str]:
    return {match.group(1): match.group(0) for match in
            re.finditer(r'<tr>\s*<td class="mono">([^<]+)</td>.*?</tr>', body, re.S)}


def test_overview_marks_stale_only_processes_behind_a_newer_version(app, sign_in, policy,
                                                                    now):
    policy({"path": "/api/*"}, {"path": "/api/other"})
    with app.app_context():
        version = policy_version()
    _policy_changed(app, now - timedelta(minutes=1))
    _processes(
        app,
        ("worker-current:101", version, now),
        ("worker-behind:102", version - 1, now),
        ("worker-silent:103", version, now - timedelta(minutes=2)),
        ("worker-unloaded:104", None, now),
        ("worker-stopped:105", version - 1, now - timedelta(minutes=4)),
        ("worker-gone:106", version - 1, now - timedelta(days=2)),
    )
    body = sign_in("viewer").get("/admin/", headers=HTMX).get_data(as_text=True)
    rows = _process_rows(body)
    # Processes not heard from for a few minutes have stopped: not listed.
    assert "worker-stopped:105" not in body and "worker-gone:106" not in body
    assert '<span class="badge allowed">current</span>' in rows["worker-current:101"]
    assert "stale" not in rows["worker-current:101"]
    behind = rows["worker-behind:102"]
    assert f'<td class="num">{version - 1}</td>' in behind
    assert '<span class="badge stale">stale</span>' in behind
    assert f"serves version {version - 1}, the policy is at {version}" in behind
    # Silent is not stale: it serves the current version; the row says when it was last heard.
    silent = rows["worker-silent:103"]
    assert "stale" not in silent and '<span class="badge allowed">current</span>' in silent
    assert "not heard from for 2 min" in silent and "leaves this list 3 min" in silent
    assert "no policy loaded" in rows["worker-unloaded:104"]
    assert '<span class="badge stale">2 stale processes</span>' in body
    # Stale ones first, then silent ones.
    assert list(rows) == ["worker-behind:102", "worker-unloaded:104", "worker-silent:103",
                          "worker-current:101"]


def test_a_process_that_has_not_had_time_to_load_a_new_version_is_not_stale(
        app, sign_in, policy, now):
    policy({"path": "/api/*"})
    with app.app_context():
        version = policy_version()
    _policy_changed(app, now - timedelta(seconds=2))
    _processes(app, ("worker-loading:201", version - 1, now))
    body = sign_in("viewer").get("/admin/", headers=HTMX).get_data(as_text=True)
    loading = _process_rows(body)["worker-loading:201"]
    assert "stale" not in loading
    assert '<span class="badge">loading</span>' in loading
    assert f"version {version} was published moments ago" in loading
    assert "1 serving process, none stale" in body

    # Once the grace has passed, a process still on the old version is stale.
    _policy_changed(app, now - timedelta(seconds=30))
    body = sign_in("viewer").get("/admin/", headers=HTMX).get_data(as_text=True)
    assert '<span class="badge stale">stale</span>' in _process_rows(body)["worker-loading:201"]
    assert '<span class="badge stale">1 stale process</span>' in body


def test_no_serving_process_says_how_processes_report(sign_in):
    body = sign_in("viewer").get("/admin/").get_data(as_text=True)
    assert "No serving process has reported in the last 3 min." in body
    assert "CLI commands and scripts never do" in body


def test_housekeeping_forgets_processes_that_stopped_without_withdrawing(app, now):
    from app.runtime.housekeeping import Housekeeping

    _processes(app, ("worker-live:1", 1, now - timedelta(seconds=20)),
               ("worker-dead:2", 1, now - timedelta(minutes=10)))
    Housekeeping(app).run()
    with app.app_context():
        assert db.session.scalars(sa.select(EngineProcess.id)).all() == ["worker-live:1"]


def test_chart_shows_refusals_per_hour_by_mode_over_the_last_day(app, sign_in, now):
    two_hours_ago, five_hours_ago = now - timedelta(hours=2), now - timedelta(hours=5)
    _refusals(
        app,
        {"at": two_hours_ago, "count": 4},
        {"at": two_hours_ago, "count": 3, "origin": "https://other.example.com"},
        {"at": two_hours_ago, "count": 2, "mode": "report-only"},
        {"at": five_hours_ago, "count": 11},
        {"at": now - timedelta(hours=30), "count": 500},  # older than the chart
    )
    body = sign_in("viewer").get("/admin/").get_data(as_text=True)
    chart = body[body.index('<svg class="chart"'):body.index("</svg>")]
    assert chart.count("<g class=\"hour\">") == 24
    hour = _hour(two_hours_ago)
    assert (f"<title>{hour:%Y-%m-%d %H:%M}–{hour + timedelta(hours=1):%H:%M} UTC: 7 refused, "
            "2 would be refused (report-only)</title>") in chart
    assert chart.count('<rect class="bar enforce"') == 2
    assert chart.count('<rect class="bar report-only"') == 1
    assert 'role="img"' in chart and "20 refused requests in total" in chart
    assert f"the busiest hour, {_hour(five_hours_ago):%H:%M} UTC, had 11." in chart
    assert "hour starting (UTC)" in chart and "refused requests</text>" in chart
    assert '>20</text>' in chart  # the y axis is scaled to a round number above the peak
    table = body[body.index("Refusals per hour as a table"):]
    assert re.search(rf"<td>{hour:%Y-%m-%d %H}:00:00 UTC</td>\s*"
                     r'<td class="num">7</td>\s*<td class="num">2</td>', table)
    assert re.search(rf"<td>{_hour(five_hours_ago):%Y-%m-%d %H}:00:00 UTC</td>\s*"
                     r'<td class="num">11</td>\s*<td class="num">0</td>', table)
    assert "500" not in table


def test_refusals_of_the_last_day_are_charted_by_reason(app, sign_in, now):
    recent = now - timedelta(hours=1)
    _refusals(
        app,
        {"at": recent, "count": 5, "reason": "method-not-allowed"},
        {"at": now - timedelta(hours=6), "count": 7, "reason": "method-not-allowed",
         "origin": "https://b.example.com"},
        {"at": recent, "count": 30},
        {"at": recent, "count": 4, "reason": "header-not-allowed", "mode": "report-only"},
        {"at": now - timedelta(hours=30), "count": 900, "reason": "no-rule"},  # too old
    )
    body = sign_in("viewer").get("/admin/").get_data(as_text=True)
    section = body[body.index('<section class="card" aria-labelledby="reasons-heading">'):]
    section = section[:section.index("</section>")]
    chart = section[section.index('<svg class="chart reasons"'):section.index("</svg>")]
    assert 'role="img"' in chart
    assert ("Refused requests by reason: origin-not-allowed 30; method-not-allowed 12; "
            "header-not-allowed 4.") in chart
    # One bar per reason, the most frequent first, each linking to its rows in the log.
    labels = re.findall(r'<text class="label"[^>]*text-anchor="end">([^<]+)</text>', chart)
    assert labels == ["origin-not-allowed", "method-not-allowed", "header-not-allowed"]
    assert "/admin/log?since=24h&amp;reason=method-not-allowed" in chart
    assert ("<title>method-not-allowed: 12 refused, 0 would be refused (report-only), "
            "last 24 hours</title>") in chart
    widths = dict(re.findall(r'<text class="label"[^>]*>([a-z-]+)</text>\s*'
                             r'<rect class="bar (?:enforce|report-only)"[^>]*width="([\d.]+)"',
                             chart))
    assert float(widths["origin-not-allowed"]) > float(widths["method-not-allowed"]) \
        > float(widths["header-not-allowed"]) > 0
    assert chart.count('<rect class="bar report-only"') == 1  # header-not-allowed's
    assert "no-rule" not in section and "900" not in section
    table = section[section.index("Refusals by reason as a table"):]
    assert re.search(r'>method-not-allowed</a></td>\s*<td class="num">12</td>\s*'
                     r'<td class="num">0</td>', table)
    assert re.search(r'>header-not-allowed</a></td>\s*<td class="num">0</td>\s*'
                     r'<td class="num">4</td>', table)


def test_refusals_by_reason_are_only_those_a_tenant_user_may_see(app, sign_in, now):
    from app.services.access import Actor
    from app.services.policy import create_rule
    from app.services.tenants import create_tenant

    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/acme/*"], actor=Actor("test", "cli"))
        rule_id = create_rule({"path": "/api/acme/*", "tenant": "acme"},
                              actor=Actor("test", "cli")).id
    recent = now - timedelta(hours=1)
    _refusals(app, {"at": recent, "count": 3, "reason": "method-not-allowed",
                    "rule": "/api/acme/*", "rule_id": rule_id},
              {"at": recent, "count": 40, "reason": "no-rule", "rule": ""})
    admin = sign_in("viewer").get("/admin/").get_data(as_text=True)
    assert "Refused requests by reason: no-rule 40; method-not-allowed 3." in admin
    tenant = sign_in("tenant-viewer", tenant="acme").get("/admin/").get_data(as_text=True)
    assert "Refused requests by reason: method-not-allowed 3." in tenant
    assert "no-rule" not in tenant


def test_without_refusals_the_reason_chart_says_so(sign_in):
    body = sign_in("viewer").get("/admin/").get_data(as_text=True)
    assert "Refusals by reason, last 24 hours" in body
    assert "Nothing was refused in the last 24 hours." in body
    assert '<svg class="chart reasons"' not in body


def test_top_refused_origins_are_summed_ranked_capped_and_escaped(app, sign_in, now):
    recent = now - timedelta(hours=1)
    _refusals(
        app,
        {"at": recent, "count": 60, "origin": XSS_ORIGIN, "rule": "/api/<b>x</b>"},
        {"at": now - timedelta(hours=3), "count": 40, "origin": XSS_ORIGIN,
         "rule": "/api/<b>x</b>"},
        *[{"at": recent, "count": n, "origin": f"https://o{n}.example.com"}
          for n in range(1, 13)],
        {"at": recent, "count": 50, "origin": "https://pre.example.com",
         "reason": "header-not-allowed", "rule": ""},
        {"at": now - timedelta(hours=30), "count": 1000, "origin": "https://old.example.com"},
    )
    body = sign_in("viewer").get("/admin/").get_data(as_text=True)
    section = body[body.index("Most refused origins"):body.index("The whole request log")]
    assert "<script>alert(1)</script>" not in body and "<b>x</b>" not in body
    escaped = "https://x.example&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    rows = re.findall(r'<tr>\s*<td class="mono"><a href="[^"]*">(.*?)</a></td>.*?'
                      r'<td class="num">(\d+)</td>', section, re.S)
    assert rows[0] == (escaped, "100")  # one origin's rows are summed across hours
    assert rows[1] == ("https://pre.example.com", "50")
    assert [count for _, count in rows[2:]] == ["12", "11", "10", "9", "8", "7", "6", "5"]
    assert "https://old.example.com" not in section
    assert "/api/&lt;b&gt;x&lt;/b&gt;" in section
    assert '<span class="badge refused">header-not-allowed</span>' in section
    assert '<span class="muted">no rule</span>' in section


def test_overview_and_audit_use_the_same_number_of_queries_for_few_or_many_rows(
        app, sign_in, now):
    viewer = sign_in("viewer")
    few = _statements(app, viewer, "/admin/")
    _processes(app, *[(f"worker:{pid}", 1, now) for pid in range(40)])
    _refusals(app, *[{"at": now - timedelta(hours=h % 24), "count": 1,
                      "origin": f"https://o{h}.example.com"} for h in range(60)])
    assert _statements(app, viewer, "/admin/") == few

    with app.app_context():
        db.session.add(AuditEntry(actor="a", channel="cli", action="rule.update",
                                  rule_id=1, rule_path="/api/a", summary="one",
                                  policy_version=1))
        db.session.commit()
    one = _statements(app, viewer, "/admin/audit")
    with app.app_context():
        db.session.add_all([AuditEntry(actor="a", channel="cli", action="rule.update",
                                       rule_id=i, rule_path=f"/api/{i}", summary="many",
                                       before={"path": f"/api/{i}"}, after={"path": "/b"},
                                       policy_version=1) for i in range(60)])
        db.session.commit()
    assert _statements(app, viewer, "/admin/audit") == one


def _statements(app, client, url: str) -> int:
    """How many SQL statements the app's engine runs to answer *url*."""
    with app.app_context():
        engine = db.engine
    seen: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(url).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def test_what_only_a_draft_would_refuse_is_not_counted_as_a_refusal(app, sign_in, now):
    """Draft rows are requests the live rule allowed: not in the chart, the reasons or the
    most refused origins."""
    _refusals(app, {"at": now - timedelta(minutes=5), "count": 40, "mode": "draft",
                    "origin": "https://drafted.example", "reason": "method-not-allowed"},
              {"at": now - timedelta(minutes=5), "count": 3,
               "origin": "https://refused.example"})
    text = sign_in("viewer").get("/admin/").get_data(as_text=True)
    assert "https://refused.example" in text
    assert "https://drafted.example" not in text
    assert "method-not-allowed" not in text


def test_most_refused_origins_break_ties_by_origin_and_leave_out_what_is_not_a_refusal(
        app, now):
    """Equal totals come in origin order; overflow rows, rows without an origin and draft
    rows are never listed, whatever their counts; one origin's rows for another rule, reason
    or mode are a line of their own."""
    from app.services.overview import top_refused_origins

    recent = now - timedelta(minutes=10)
    _refusals(
        app,
        *[{"at": recent, "count": 5, "origin": f"https://{name}.example"}
          for name in ("c", "a", "b")],
        {"at": recent, "count": 5, "origin": "https://a.example", "mode": "report-only"},
        {"at": recent, "count": 2, "origin": "https://a.example", "reason": "no-rule",
         "rule": ""},
        {"at": recent, "count": 900, "origin": "https://flood.example", "reason": "overflow"},
        {"at": recent, "count": 800, "origin": ""},
        {"at": recent, "count": 700, "origin": "https://drafted.example", "mode": "draft"},
    )
    with app.app_context():
        top = top_refused_origins(now=now, limit=4)
    assert [(o.origin, o.mode, o.reason, o.count) for o in top] == [
        ("https://a.example", "enforce", "origin-not-allowed", 5),
        ("https://a.example", "report-only", "origin-not-allowed", 5),
        ("https://b.example", "enforce", "origin-not-allowed", 5),
        ("https://c.example", "enforce", "origin-not-allowed", 5),
    ]


def _spread_refusals(now: datetime, seed: int) -> tuple[list[dict], dict[str, int]]:
    """Refusals of 50 origins (one rule, reason and mode each) over the last 30 hours, several
    rows an hour for some (two details), and each origin's total over the last 24 hours."""
    rng = random.Random(seed)
    rows: list[dict] = []
    totals: dict[str, int] = {}
    for n in range(50):
        origin = f"https://o{n:03d}.example"
        group = {"origin": origin, "rule": f"/api/r{n % 3}/*",
                 "reason": ("origin-not-allowed", "header-not-allowed")[n % 2],
                 "mode": ("enforce", "report-only")[n // 2 % 2]}
        for hours_ago in rng.sample(range(30), rng.randint(1, 6)):
            at = min(now, _hour(now) - timedelta(hours=hours_ago)
                     + timedelta(minutes=rng.randint(0, 59)))
            for detail in ("", "x-a")[:rng.randint(1, 2)]:
                count = rng.randint(1, 9)
                rows.append({**group, "at": at, "count": count, "detail": detail})
                if at >= now - timedelta(hours=24):
                    totals[origin] = totals.get(origin, 0) + count
    return rows, totals


@pytest.mark.parametrize("limit", [1, 3, 10, 60])
def test_most_refused_origins_are_the_sums_of_every_row_of_the_last_day(app, now, limit):
    """Equal sums (frequent here) in origin order; every group when fewer than *limit*."""
    from app.services.overview import top_refused_origins

    rows, totals = _spread_refusals(now, seed=limit)
    _refusals(app, *rows)
    expected = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]
    with app.app_context():
        top = top_refused_origins(now=now, limit=limit)
    assert [(o.origin, o.count) for o in top] == expected


def test_the_overview_page_lists_the_ten_largest_sums_of_the_last_day(app, sign_in, now):
    rows, totals = _spread_refusals(now, seed=7)
    _refusals(app, *rows)
    body = sign_in("viewer").get("/admin/").get_data(as_text=True)
    section = body[body.index("Most refused origins"):body.index("The whole request log")]
    listed = re.findall(r'<tr>\s*<td class="mono"><a href="[^"]*">(.*?)</a></td>.*?'
                        r'<td class="num">(\d+)</td>', section, re.S)
    expected = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:10]
    assert [(origin, int(count)) for origin, count in listed] == expected


def test_more_equal_sums_than_candidates_are_still_listed_in_origin_order(app, now):
    """Only the largest sums per key are summed again on their strings: when more groups tie
    with the tenth than those hold, the first ten in origin order are still listed."""
    from app.services.overview import CANDIDATES, top_refused_origins

    recent = now - timedelta(minutes=5)
    origins = [f"https://t{n:03d}.example" for n in range(CANDIDATES + 20)]
    _refusals(app, *[{"at": recent, "count": 1, "origin": origin}
                     for origin in reversed(origins)])
    with app.app_context():
        top = top_refused_origins(now=now, limit=10)
    assert [(o.origin, o.count) for o in top] == [(origin, 1) for origin in origins[:10]]


def test_groups_sharing_a_group_key_are_still_summed_apart(app, now):
    """Two groups given one key (a hash collision) sum to 10 on it, more than the true second
    largest group (7), and take one of the candidates: the list is still the true one."""
    from app.services.overview import CANDIDATES, top_refused_origins

    recent = now - timedelta(minutes=5)
    _refusals(app,
              {"at": recent, "count": 5, "origin": "https://a.example", "group_key": 42},
              {"at": recent, "count": 5, "origin": "https://b.example", "group_key": 42},
              {"at": recent, "count": 8, "origin": "https://c.example"},
              {"at": recent, "count": 7, "origin": "https://d.example"},
              *[{"at": recent, "count": 1, "origin": f"https://f{n:03d}.example"}
                for n in range(CANDIDATES)])
    with app.app_context():
        top = top_refused_origins(now=now, limit=2)
    assert [(o.origin, o.count) for o in top] == [("https://c.example", 8),
                                                 ("https://d.example", 7)]


def test_rows_without_a_group_key_count_in_their_groups_sum(app, now):
    """An engine older than migration 0021 writes rows without a key: the origin with a keyed
    row (3, fewer than the candidates' 5) and a row without (4) is still the most refused
    (7), ahead of 6."""
    from app.services.overview import CANDIDATES, top_refused_origins

    recent = now - timedelta(minutes=5)
    _refusals(app,
              {"at": now - timedelta(hours=2), "count": 3, "origin": "https://a.example"},
              {"at": recent, "count": 4, "origin": "https://a.example", "group_key": None},
              {"at": recent, "count": 6, "origin": "https://b.example"},
              *[{"at": recent, "count": 5, "origin": f"https://f{n:03d}.example"}
                for n in range(CANDIDATES)])
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RequestLogEntry)
                                 .where(RequestLogEntry.group_key.is_(None))) == 1
        top = top_refused_origins(now=now, limit=1)
    assert [(o.origin, o.count) for o in top] == [("https://a.example", 7)]


def test_a_tenant_user_sees_only_its_own_most_refused_origins(app, sign_in, now):
    from app.services.access import Actor
    from app.services.policy import create_rule
    from app.services.tenants import create_tenant

    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/acme/*"], actor=Actor("test", "cli"))
        rule_id = create_rule({"path": "/api/acme/*", "tenant": "acme"},
                              actor=Actor("test", "cli")).id
    recent = now - timedelta(hours=1)
    _refusals(app, {"at": recent, "count": 3, "origin": "https://mine.example",
                    "rule": "/api/acme/*", "rule_id": rule_id},
              {"at": recent, "count": 40, "origin": "https://other.example", "rule": ""})
    admin = sign_in("viewer").get("/admin/").get_data(as_text=True)
    assert "https://mine.example" in admin and "https://other.example" in admin
    tenant = sign_in("tenant-viewer", tenant="acme").get("/admin/").get_data(as_text=True)
    section = tenant[tenant.index("Most refused origins"):]
    assert "https://mine.example" in section
    assert "https://other.example" not in tenant


def test_a_tenant_user_gets_its_own_ten_most_refused_whatever_the_platform_refuses_more(
        app, sign_in, now):
    """The platform's larger sums (refusals no tenant rule governed, and the tenant's own
    origin refused elsewhere) neither crowd out the tenant's groups nor add to them."""
    from app.services.access import Actor
    from app.services.policy import create_rule
    from app.services.tenants import create_tenant

    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/acme/*"], actor=Actor("test", "cli"))
        rule_id = create_rule({"path": "/api/acme/*", "tenant": "acme"},
                              actor=Actor("test", "cli")).id
    recent = now - timedelta(hours=1)
    _refusals(app,
              *[{"at": recent, "count": 50 + n, "origin": f"https://p{n:02d}.example",
                 "rule": ""} for n in range(12)],
              {"at": recent, "count": 90, "origin": "https://mine.example", "rule": ""},
              {"at": recent, "count": 3, "origin": "https://mine.example",
               "rule": "/api/acme/*", "rule_id": rule_id},
              {"at": recent, "count": 2, "origin": "https://also-mine.example",
               "rule": "/api/acme/*", "rule_id": rule_id})
    tenant = sign_in("tenant-viewer", tenant="acme").get("/admin/").get_data(as_text=True)
    section = tenant[tenant.index("Most refused origins"):tenant.index("The whole request log")]
    listed = re.findall(r'<tr>\s*<td class="mono"><a href="[^"]*">(.*?)</a></td>.*?'
                        r'<td class="num">(\d+)</td>', section, re.S)
    assert listed == [("https://mine.example", "3"), ("https://also-mine.example", "2")]
