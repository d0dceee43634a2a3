"""The overview: counts, processes and their policy versions, refusals over the last day."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, EngineProcess, RequestLogEntry
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
            db.session.add(RequestLogEntry(
                bucket_start=bucket, rule_id=None, rule_path=row.get("rule", "/api/*"),
                origin=row.get("origin", "https://app.example.com"),
                reason=row.get("reason", "origin-not-allowed"), detail="",
                mode=row.get("mode", "enforce"), count=row["count"], first_seen=row["at"],
                last_seen=row["at"], path="/api/x", method="GET", preflight=False,
                request_method="", request_headers="", user_agent="", referer="",
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


def test_overview_marks_stale_processes_and_hides_ones_gone_for_a_day(app, sign_in, policy,
                                                                     now):
    policy({"path": "/api/*"}, {"path": "/api/other"})
    with app.app_context():
        version = policy_version()
    _processes(
        app,
        ("worker-current:101", version, now),
        ("worker-behind:102", version - 1, now),
        ("worker-silent:103", version, now - timedelta(minutes=5)),
        ("worker-unloaded:104", None, now),
        ("worker-gone:105", version - 1, now - timedelta(days=2)),
    )
    body = sign_in("viewer").get("/admin/", headers=HTMX).get_data(as_text=True)
    rows = {match.group(1): match.group(0) for match in
            re.finditer(r'<tr>\s*<td class="mono">([^<]+)</td>.*?</tr>', body, re.S)}
    assert "worker-gone:105" not in body
    assert '<span class="badge allowed">current</span>' in rows["worker-current:101"]
    assert "stale" not in rows["worker-current:101"]
    behind = rows["worker-behind:102"]
    assert f'<td class="num">{version - 1}</td>' in behind
    assert '<span class="badge stale">stale</span>' in behind
    assert f"serves version {version - 1}, the policy is at {version}" in behind
    silent = rows["worker-silent:103"]
    assert '<span class="badge stale">stale</span>' in silent
    assert "last checked 5 min ago" in silent
    assert "no policy loaded" in rows["worker-unloaded:104"]
    assert '<span class="badge stale">3 stale processes</span>' in body


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
