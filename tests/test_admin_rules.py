"""The Rules pages: list, search, create, edit, origins, coverage, through the test client.

Every route is exercised as a full page and as an htmx fragment, on the real database; writes
are checked in the database and in the audit trail.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from markupsafe import escape

from app.extensions import db
from app.models import AllowedOrigin, AuditEntry, Rule
from app.services.errors import ValidationError
from app.services.validation import validate_origin, validate_rule
from tests.conftest import post_form

HTMX = {"HX-Request": "true"}
XSS = "<script>alert(1)</script>"


# -- helpers -------------------------------------------------------------------------------


def _rule_id(app, path: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Rule.id).where(Rule.path == path))


def _rule(app, path: str) -> Rule:
    with app.app_context():
        rule = db.session.scalar(sa.select(Rule).where(Rule.path == path))
        db.session.expunge(rule)
        return rule


def _actions(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        return [(e.action, e.actor, e.channel) for e in db.session.scalars(
            sa.select(AuditEntry).order_by(AuditEntry.id))]


def _origins(app, path: str) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(
            sa.select(AllowedOrigin.value).join(Rule).where(Rule.path == path)
            .order_by(AllowedOrigin.value)))


def _text(response) -> str:
    return response.get_data(as_text=True)


def _is_page(response) -> bool:
    return "<html" in _text(response)


def _service_message(call) -> str:
    """The message the service gives, to check the page shows it word for word."""
    with pytest.raises(ValidationError) as caught:
        call()
    return caught.value.errors[0].message


def _beside(html: str, field: str) -> str:
    """The markup from one form field to the next: its input and the messages under it."""
    start = html.index(f'name="{field}"')
    ends = [html.find(mark, start) for mark in ("<label", "</form>")]
    return html[start:min(end for end in ends if end != -1)]


def _rule_form(**changes) -> dict:
    form = {"path": "/api/*", "methods": "GET, POST", "allow_headers": "content-type",
            "expose_headers": "", "max_age": "", "mode": "enforce", "description": ""}
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


def _post(client, url: str, data: dict | None = None, **kwargs):
    return post_form(client, url, data, **kwargs)


def _edit_form(app, path: str, **changes) -> dict:
    rule = _rule(app, path)
    form = {
        "path": rule.path, "methods": ", ".join(rule.methods),
        "allow_headers": ", ".join(rule.allow_headers),
        "expose_headers": ", ".join(rule.expose_headers),
        "max_age": "" if rule.max_age is None else str(rule.max_age), "mode": rule.mode,
        "description": rule.description, "version": str(rule.version),
    }
    if rule.supports_credentials:
        form["supports_credentials"] = "on"
    if rule.allow_private_network:
        form["allow_private_network"] = "on"
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


# -- the list ------------------------------------------------------------------------------


def test_rules_list_is_a_page_and_an_htmx_fragment_with_origin_counts(policy, sign_in):
    policy({"path": "/api/*", "origins": ["https://a.example.com", "https://b.example.com"]},
           {"path": "/api/public/*", "origins": []})
    client = sign_in("viewer")

    page = client.get("/admin/rules")
    assert page.status_code == 200 and _is_page(page)
    assert "HX-Request" in page.headers["Vary"]
    fragment = client.get("/admin/rules", headers=HTMX)
    assert fragment.status_code == 200 and not _is_page(fragment)
    rows = re.findall(r'<a class="mono" href="/admin/rules/\d+">([^<]+)</a>.*?'
                      r'<td class="num">(\d+)</td>', _text(fragment), re.S)
    assert rows == [("/api/*", "2"), ("/api/public/*", "0")]


def test_search_matches_path_or_description_and_filters_by_mode_and_credentials(
        policy, sign_in):
    policy({"path": "/api/orders/*", "description": "shop front"},
           {"path": "/api/billing/*", "supports_credentials": True, "mode": "report-only"},
           {"path": "/api/status", "description": "public status", "mode": "off"})
    client = sign_in("viewer")

    def paths(**args) -> list[str]:
        html = _text(client.get("/admin/rules", query_string=args, headers=HTMX))
        return re.findall(r'href="/admin/rules/\d+">([^<]+)</a>', html)

    assert paths(q="ORDERS") == ["/api/orders/*"]
    assert paths(q="status") == ["/api/status"]
    assert paths(q="shop") == ["/api/orders/*"]
    assert paths(q="%") == []  # LIKE wildcards in the search are literal text
    assert paths(mode="off") == ["/api/status"]
    assert paths(credentials="yes") == ["/api/billing/*"]
    assert paths(credentials="no", mode="enforce") == ["/api/orders/*"]
    assert paths(mode="not-a-mode") == ["/api/billing/*", "/api/orders/*", "/api/status"]


def test_rules_list_is_paginated_and_the_page_size_is_capped(policy, sign_in):
    policy(*({"path": f"/api/r{index:03d}"} for index in range(105)))
    client = sign_in("viewer")

    second = _text(client.get("/admin/rules?per_page=2&page=2&q=/api/r00", headers=HTMX))
    assert re.findall(r'href="/admin/rules/\d+">([^<]+)</a>', second) == [
        "/api/r002", "/api/r003"]
    assert "Page 2 of 5" in second
    assert 'href="/admin/rules?page=3&amp;per_page=2&amp;q=/api/r00"' in second

    huge = _text(client.get("/admin/rules?per_page=100000", headers=HTMX))
    assert len(re.findall(r'href="/admin/rules/\d+">', huge)) == 100
    assert "Page 1 of 2" in huge
    beyond = client.get("/admin/rules?page=99")
    assert beyond.status_code == 200 and "No rules" not in _text(beyond)


# -- creating ------------------------------------------------------------------------------


def test_editor_creates_a_rule_from_comma_separated_fields(app, sign_in):
    client = sign_in("editor")
    response = _post(client, "/admin/rules", _rule_form(
        methods="get, put ,", allow_headers="Content-Type, X-Trace", expose_headers="X-Request-Id",
        max_age="", supports_credentials="on", description="orders API"))

    rule = _rule(app, "/api/*")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/rules/{rule.id}"
    assert (rule.methods, rule.allow_headers, rule.expose_headers) == (
        ["GET", "PUT"], ["content-type", "x-trace"], ["X-Request-Id"])
    assert rule.max_age is None and rule.supports_credentials and not rule.allow_private_network
    assert _actions(app) == [("rule.create", client.user_email, "dashboard")]
    assert "Created rule /api/*" in _text(client.get(response.headers["Location"]))


def test_creating_through_htmx_redirects_the_whole_page_to_the_new_rule(app, sign_in):
    client = sign_in("editor")
    response = _post(client, "/admin/rules", _rule_form(max_age="600"), headers=HTMX)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == f"/admin/rules/{_rule_id(app, '/api/*')}"
    assert _rule(app, "/api/*").max_age == 600


@pytest.mark.parametrize(("field", "typed", "service_input"), [
    ("path", "api/*", {"path": "api/*"}),
    ("path", "/admin/x", {"path": "/admin/x"}),
    ("methods", "", {"methods": []}),
    ("methods", "G T", {"methods": ["G T"]}),
    ("allow_headers", "bad header", {"allow_headers": ["bad header"]}),
    ("expose_headers", "Set-Cookie", {"expose_headers": ["Set-Cookie"]}),
    ("max_age", "ten", {"max_age": "ten"}),
    ("max_age", "100000", {"max_age": 100000}),
    ("mode", "sometimes", {"mode": "sometimes"}),
])
def test_invalid_rule_shows_the_service_message_beside_the_field(
        app, sign_in, field, typed, service_input):
    with app.app_context():
        message = _service_message(lambda: validate_rule(
            {"path": "/api/*", **service_input},
            reserved_prefixes=tuple(app.config["CORS_EXCLUDED_PREFIXES"])))
    client = sign_in("editor")

    page = _post(client, "/admin/rules", _rule_form(**{field: typed}))
    assert page.status_code == 422 and _is_page(page)
    html = _text(page)
    assert str(escape(message)) in _beside(html, field)
    assert f'value="{escape(typed)}"' in html or field == "mode"  # what was typed stays
    fragment = _post(client, "/admin/rules", _rule_form(**{field: typed}), headers=HTMX)
    assert fragment.status_code == 200 and not _is_page(fragment)
    assert str(escape(message)) in _beside(_text(fragment), field)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Rule.id))) == 0
    assert _actions(app) == []


# -- one rule ------------------------------------------------------------------------------


def test_rule_page_shows_options_and_origins_and_its_fragment_is_the_origin_list(
        app, policy, sign_in):
    policy({"path": "/api/*", "max_age": 600, "description": "main API", "origins": [
        "https://app.example.com",
        {"value": "https://old.example.com", "note": "retired",
         "expires_at": "2001-01-01T00:00:00Z"},
        {"value": "https://next.example.com", "expires_at": "2999-01-01T00:00:00Z"},
    ]})
    rule_id = _rule_id(app, "/api/*")
    client = sign_in("viewer")

    page = client.get(f"/admin/rules/{rule_id}")
    html = _text(page)
    assert page.status_code == 200 and _is_page(page)
    assert "main API" in html and "600" in html
    assert 'method="post"' not in html.split("<main", 1)[1]  # read-only for a viewer
    old_row = html[html.index("https://old.example.com"):]
    old_row = old_row[:old_row.index("</tr>")]
    assert "retired" in old_row and "2001-01-01 00:00 UTC" in old_row
    assert 'badge expired' in old_row
    next_row = html[html.index("https://next.example.com"):]
    assert 'badge expired' not in next_row[:next_row.index("</tr>")]

    fragment = client.get(f"/admin/rules/{rule_id}?oq=OLD", headers=HTMX)
    assert fragment.status_code == 200 and not _is_page(fragment)
    assert "https://old.example.com" in _text(fragment)
    assert "https://app.example.com" not in _text(fragment)
    assert client.get("/admin/rules/999999").status_code == 404


def test_rule_page_lists_at_most_500_origins_sorted_and_searches_the_rest(
        app, policy, sign_in):
    policy({"path": "/api/*",
            "origins": [f"https://o{index:04d}.example.com" for index in range(620)]})
    rule_id = _rule_id(app, "/api/*")
    client = sign_in("viewer")

    html = _text(client.get(f"/admin/rules/{rule_id}"))
    shown = re.findall(r'<span class="mono">(https://o\d+\.example\.com)</span>', html)
    assert len(shown) == 500 and shown == sorted(shown)
    assert shown[0] == "https://o0000.example.com"
    assert '<span id="origin-count" class="badge">620</span>' in html
    assert "Page 1 of 2" in html
    found = _text(client.get(f"/admin/rules/{rule_id}?oq=o0612", headers=HTMX))
    assert re.findall(r'<span class="mono">(https://[^<]+)</span>', found) == [
        "https://o0612.example.com"]


def test_editor_saves_options_and_sees_the_warnings_of_the_result(app, policy, sign_in):
    policy({"path": "/api/*", "origins": ["http://localhost:3000", "https://*.example.com"]})
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")

    response = _post(client, f"/admin/rules/{rule_id}", _edit_form(
        app, "/api/*", methods="GET", max_age="0", supports_credentials="on"))
    assert response.status_code == 302
    rule = _rule(app, "/api/*")
    assert (rule.methods, rule.max_age, rule.supports_credentials) == (["GET"], 0, True)
    assert _actions(app)[-1] == ("rule.update", client.user_email, "dashboard")
    html = _text(client.get(response.headers["Location"]))
    assert "Saved rule /api/*" in html
    assert "https://*.example.com lets every subdomain read responses" in html
    assert "http://localhost:3000 is a local development origin" in html


def test_plain_http_origin_is_flagged_on_a_rule_for_an_https_api(app, policy, sign_in):
    policy({"path": "/api/*", "origins": ["http://partner.example.com"]})
    app.config["CORS_API_IS_HTTPS"] = True
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")
    response = _post(client, f"/admin/rules/{rule_id}",
                     _edit_form(app, "/api/*", description="partner"), headers=HTMX)
    assert not _is_page(response)
    assert "http://partner.example.com is plain http while the API is served over https" \
        in _text(response)


def test_saving_through_htmx_returns_the_rule_detail_with_the_new_version(app, policy, sign_in):
    policy({"path": "/api/*"})
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")
    version = _rule(app, "/api/*").version

    response = _post(client, f"/admin/rules/{rule_id}",
                     _edit_form(app, "/api/*", description="changed"), headers=HTMX)
    html = _text(response)
    assert response.status_code == 200 and not _is_page(response)
    assert html.lstrip().startswith('<section id="rule-detail"')
    assert f'id="rule-version" value="{version + 1}"' in html
    assert "Saved rule /api/*" in html


def test_credentials_on_a_rule_that_allows_any_origin_are_refused_with_the_reason(
        app, policy, sign_in):
    policy({"path": "/api/*", "origins": ["*"]})
    message = _service_message(lambda: validate_origin("*", credentials=True))
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")

    response = _post(client, f"/admin/rules/{rule_id}",
                     _edit_form(app, "/api/*", supports_credentials="on"))
    assert response.status_code == 422
    assert str(escape(message)) in _beside(_text(response), "supports_credentials")
    assert not _rule(app, "/api/*").supports_credentials
    assert _actions(app) == [("policy.import", "test", "cli")]


def test_second_edit_from_the_same_version_gets_a_conflict_and_keeps_what_was_typed(
        app, policy, sign_in):
    policy({"path": "/api/*", "description": "original"})
    alice, bob = sign_in("editor"), sign_in("editor")
    rule_id = _rule_id(app, "/api/*")
    form = _edit_form(app, "/api/*")  # both loaded the same version

    first = _post(alice, f"/admin/rules/{rule_id}", {**form, "description": "alice's"})
    assert first.status_code == 302
    second = _post(bob, f"/admin/rules/{rule_id}",
                   {**form, "description": "bob's", "max_age": "120"})
    html = _text(second)
    assert second.status_code == 409 and _is_page(second)
    assert f"was changed by {alice.user_email} since you loaded it" in html
    assert "Nothing you typed is lost" in html
    assert ">bob&#39;s</textarea>" in html and 'value="120"' in html  # Bob's input kept
    saved = html[html.index("Saved now"):]
    assert "alice&#39;s" in saved and "differs from yours" in saved
    current = _rule(app, "/api/*")
    assert (current.description, current.max_age) == ("alice's", None)
    assert f'id="rule-version" value="{current.version}"' in html
    assert [a[0] for a in _actions(app)] == ["policy.import", "rule.update"]

    fragment = _post(bob, f"/admin/rules/{rule_id}",
                     {**form, "description": "bob's"}, headers=HTMX)
    assert fragment.status_code == 200 and not _is_page(fragment)
    assert "Not saved:" in _text(fragment)
    # Having seen the saved values, Bob saves again from the version the form now carries.
    again = _post(bob, f"/admin/rules/{rule_id}",
                  {**form, "description": "bob's", "version": str(current.version)})
    assert again.status_code == 302 and _rule(app, "/api/*").description == "bob's"


def test_validation_error_on_edit_keeps_the_version_the_user_loaded(app, policy, sign_in):
    policy({"path": "/api/*"})
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")
    form = _edit_form(app, "/api/*", max_age="-1")
    response = _post(client, f"/admin/rules/{rule_id}", form)
    assert response.status_code == 422
    assert f'id="rule-version" value="{form["version"]}"' in _text(response)


def test_disable_and_enable_change_the_mode_and_are_audited(app, policy, sign_in):
    policy({"path": "/api/*"})
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")

    disabled = _post(client, f"/admin/rules/{rule_id}/disable")
    assert disabled.status_code == 302 and _rule(app, "/api/*").mode == "off"
    enabled = _post(client, f"/admin/rules/{rule_id}/enable", {"mode": "report-only"},
                    headers=HTMX)
    assert enabled.status_code == 200 and not _is_page(enabled)
    assert '<span class="badge report-only">report-only</span>' in _text(enabled)
    assert _rule(app, "/api/*").mode == "report-only"
    _post(client, f"/admin/rules/{rule_id}/disable")
    _post(client, f"/admin/rules/{rule_id}/enable")
    assert _rule(app, "/api/*").mode == "enforce"
    assert [a[0] for a in _actions(app)][1:] == ["rule.update"] * 4


def test_switching_a_rule_to_report_only_says_which_rule_answers_its_routes(
        app, policy, sign_in):
    policy({"path": "/api/*"}, {"path": "/api/orders", "mode": "off"})
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/orders")
    enabled = _post(client, f"/admin/rules/{rule_id}/enable", {"mode": "report-only"},
                    headers=HTMX)
    assert "while report-only, /api/orders is answered by /api/*" in _text(enabled)
    assert "allows every origin" not in _text(enabled)
    # Without JavaScript the same words come as a flashed message on the rule's page.
    form = _edit_form(app, "/api/orders", mode="enforce")
    _post(client, f"/admin/rules/{rule_id}", form)
    form = _edit_form(app, "/api/orders", mode="report-only")
    saved = _post(client, f"/admin/rules/{rule_id}", form)
    assert saved.status_code == 302
    page = _text(client.get(saved.headers["Location"]))
    assert "while report-only, /api/orders is answered by /api/*" in page
    enforced = _post(client, f"/admin/rules/{rule_id}/disable", headers=HTMX)
    assert "while report-only" not in _text(enforced)


def test_a_report_only_rule_alone_on_its_routes_is_answered_by_no_rule(app, policy, sign_in):
    policy({"path": "/api/orders", "mode": "off"})
    client = sign_in("editor")
    enabled = _post(client, f"/admin/rules/{_rule_id(app, '/api/orders')}/enable",
                    {"mode": "report-only"}, headers=HTMX)
    assert "while report-only, /api/orders is answered by no rule" in _text(enabled)


def test_delete_removes_the_rule_and_its_origins_after_confirmation(app, policy, sign_in):
    policy({"path": "/api/*", "origins": ["https://a.example.com"]},
           {"path": "/api/orders"})
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")
    page = _text(client.get(f"/admin/rules/{rule_id}"))
    # Delete is a link to a confirmation page (no JavaScript needed), which holds the form.
    assert f'href="/admin/rules/{rule_id}/delete">Delete rule</a>' in page
    confirm = client.get(f"/admin/rules/{rule_id}/delete")
    assert confirm.status_code == 200 and _is_page(confirm)
    assert "Delete the rule <span class=\"mono\">/api/*</span>?" in _text(confirm)
    assert "its 1 origin are deleted" in _text(confirm)
    assert f'method="post" action="/admin/rules/{rule_id}/delete"' in _text(confirm)
    assert _rule_id(app, "/api/*") == rule_id  # asking deletes nothing

    response = _post(client, f"/admin/rules/{rule_id}/delete")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/rules"
    assert _rule_id(app, "/api/*") is None and _origins(app, "/api/*") == []
    assert _actions(app)[-1] == ("rule.delete", client.user_email, "dashboard")
    assert "Deleted rule /api/*" in _text(client.get("/admin/rules"))

    other = _post(client, f"/admin/rules/{_rule_id(app, '/api/orders')}/delete", headers=HTMX)
    assert other.status_code == 204 and other.headers["HX-Redirect"] == "/admin/rules"
    assert _post(client, f"/admin/rules/{rule_id}/delete").status_code == 404


# -- origins -------------------------------------------------------------------------------


def test_adding_an_origin_stores_it_canonically_and_audits_it(app, policy, sign_in):
    policy({"path": "/api/*"})
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")

    response = _post(client, f"/admin/rules/{rule_id}/origins", {
        "value": "HTTPS://App.Example.com:443", "note": "web app",
        "expires_at": "2999-12-31T18:00"})
    assert response.status_code == 302
    with app.app_context():
        origin = db.session.scalars(sa.select(AllowedOrigin)).one()
        assert (origin.value, origin.note, origin.added_by) == (
            "https://app.example.com", "web app", client.user_email)
        expires = origin.expires_at.replace(tzinfo=origin.expires_at.tzinfo or UTC)
        assert expires == datetime(2999, 12, 31, 18, 0, tzinfo=UTC)
    assert _actions(app)[-1] == ("origin.add", client.user_email, "dashboard")
    page = _text(client.get(f"/admin/rules/{rule_id}"))
    assert "Allowed https://app.example.com on /api/*" in page


def test_adding_an_origin_through_htmx_returns_the_row_and_moves_the_form_version(
        app, policy, sign_in):
    policy({"path": "/api/*"})
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")
    version = _rule(app, "/api/*").version

    response = _post(client, f"/admin/rules/{rule_id}/origins",
                     {"value": "http://localhost:3000", "version": str(version)}, headers=HTMX)
    html = _text(response)
    assert response.status_code == 200 and not _is_page(response)
    assert html.lstrip().startswith('<form id="origin-add"')
    assert 'name="value" value=""' in html  # the form is cleared for the next one
    assert '<tbody hx-swap-oob="beforeend:#origin-rows">' in html
    assert '<span class="mono">http://localhost:3000</span>' in html
    assert "is a local development origin" in html
    assert f'id="rule-version" value="{version + 1}" hx-swap-oob="true"' in html
    assert 'id="origin-count" class="badge" hx-swap-oob="true">1<' in html

    # A change by someone else in between: the form keeps its version, to catch the conflict.
    _post(sign_in("editor"), f"/admin/rules/{rule_id}", _edit_form(app, "/api/*", max_age="5"))
    stale = _post(client, f"/admin/rules/{rule_id}/origins",
                  {"value": "https://b.example.com", "version": str(version + 1)}, headers=HTMX)
    assert 'id="rule-version"' not in _text(stale)


def test_adding_an_origin_already_listed_says_so_and_changes_nothing(app, policy, sign_in):
    policy({"path": "/api/*", "origins": ["https://app.example.com"]})
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")

    response = _post(client, f"/admin/rules/{rule_id}/origins",
                     {"value": "https://APP.example.com"}, headers=HTMX)
    html = _text(response)
    assert "https://app.example.com is already allowed on /api/*; nothing changed." in html
    assert "hx-swap-oob" not in html
    page = _post(client, f"/admin/rules/{rule_id}/origins", {"value": "https://app.example.com"})
    assert page.status_code == 302
    assert "is already allowed" in _text(client.get(page.headers["Location"]))
    assert _origins(app, "/api/*") == ["https://app.example.com"]
    assert [a[0] for a in _actions(app)] == ["policy.import"]


@pytest.mark.parametrize(("typed", "field"), [
    ("null", "value"),
    ("https://app.example.com/path", "value"),
    ("ftp://files.example.com", "value"),
    ("", "value"),
])
def test_invalid_origin_shows_the_service_message_under_the_field(
        app, policy, sign_in, typed, field):
    policy({"path": "/api/*"})
    message = _service_message(lambda: validate_origin(typed, credentials=False))
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")

    page = _post(client, f"/admin/rules/{rule_id}/origins", {"value": typed})
    assert page.status_code == 422 and _is_page(page)
    assert str(escape(message)) in _beside(_text(page), field)
    fragment = _post(client, f"/admin/rules/{rule_id}/origins", {"value": typed}, headers=HTMX)
    assert fragment.status_code == 200 and not _is_page(fragment)
    assert str(escape(message)) in _beside(_text(fragment), field)
    assert _origins(app, "/api/*") == []


def test_invalid_expiry_shows_the_service_message_under_the_expiry(app, policy, sign_in):
    policy({"path": "/api/*"})
    message = _service_message(lambda: validate_origin(
        {"value": "https://a.example.com", "expires_at": "someday"}, credentials=False))
    client = sign_in("editor")
    response = _post(client, f"/admin/rules/{_rule_id(app, '/api/*')}/origins",
                     {"value": "https://a.example.com", "expires_at": "someday"})
    assert str(escape(message)) in _beside(_text(response), "expires_at")
    assert 'value="https://a.example.com"' in _text(response)


def test_origin_is_checked_as_typed_with_the_service_messages(app, policy, sign_in):
    policy({"path": "/api/*", "supports_credentials": True,
            "origins": ["https://app.example.com"]})
    client = sign_in("editor")
    check = f"/admin/rules/{_rule_id(app, '/api/*')}/origins/check"

    def said(value: str) -> str:
        response = client.get(check, query_string={"value": value}, headers=HTMX)
        assert response.status_code == 200 and not _is_page(response)
        return _text(response)

    assert str(escape(_service_message(lambda: validate_origin("null", credentials=True)))) \
        in said("null")
    assert str(escape(_service_message(lambda: validate_origin("*", credentials=True)))) \
        in said("*")
    assert "stored as <span class=\"mono\">https://new.example.com</span>" \
        in said("HTTPS://NEW.example.com")
    assert "already allowed on this rule" in said("https://app.example.com")
    assert "lets every subdomain read responses" in said("https://*.example.org")
    assert "field-error" not in said("")

    page = client.get(check, query_string={"value": "null"})
    assert page.status_code == 200 and _is_page(page)
    assert "null is sent by sandboxed frames" in _text(page)


def test_removing_an_origin_asks_first_and_is_audited(app, policy, sign_in):
    policy({"path": "/api/*", "origins": ["https://a.example.com", "https://b.example.com"]})
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")
    version = _rule(app, "/api/*").version
    page = _text(client.get(f"/admin/rules/{rule_id}"))
    # With htmx the button asks in a dialog; without JavaScript its form opens a
    # confirmation page whose form posts the removal.
    assert 'hx-confirm="Remove https://a.example.com from /api/*?"' in page
    assert f'method="get" action="/admin/rules/{rule_id}/origins/remove"' in page
    confirm = client.get(f"/admin/rules/{rule_id}/origins/remove",
                         query_string={"value": "https://a.example.com"})
    assert confirm.status_code == 200 and _is_page(confirm)
    assert 'name="value" value="https://a.example.com"' in _text(confirm)
    assert f'method="post" action="/admin/rules/{rule_id}/origins/remove"' in _text(confirm)
    assert _origins(app, "/api/*") == ["https://a.example.com", "https://b.example.com"]

    page = _post(client, f"/admin/rules/{rule_id}/origins/remove",
                 {"value": "https://a.example.com"})
    assert page.status_code == 302
    fragment = _post(client, f"/admin/rules/{rule_id}/origins/remove",
                     {"value": "https://b.example.com", "version": str(version + 1)},
                     headers=HTMX)
    html = _text(fragment)
    assert fragment.status_code == 200 and not _is_page(fragment)
    assert "<tr" not in html  # the row is swapped for nothing
    assert 'id="origin-count" class="badge" hx-swap-oob="true">0<' in html
    assert f'id="rule-version" value="{version + 2}" hx-swap-oob="true"' in html
    assert _origins(app, "/api/*") == []
    assert [a[0] for a in _actions(app)] == ["policy.import", "origin.remove", "origin.remove"]
    gone = _post(client, f"/admin/rules/{rule_id}/origins/remove",
                 {"value": "https://a.example.com"})
    assert "was not on /api/*" in _text(client.get(gone.headers["Location"]))


# -- roles and CSRF ------------------------------------------------------------------------

STATE_CHANGING = [
    ("/admin/rules", lambda ids: _rule_form(path="/api/new/*")),
    ("/admin/rules/{id}", lambda ids: {**ids["edit"], "description": "changed"}),
    ("/admin/rules/{id}/disable", lambda ids: {}),
    ("/admin/rules/{id}/enable", lambda ids: {"mode": "report-only"}),
    ("/admin/rules/{id}/origins", lambda ids: {"value": "https://new.example.com"}),
    ("/admin/rules/{id}/origins/remove", lambda ids: {"value": "https://a.example.com"}),
    ("/admin/rules/{id}/delete", lambda ids: {}),
]


@pytest.fixture
def one_rule(app, policy):
    policy({"path": "/api/*", "origins": ["https://a.example.com"]})
    return {"id": _rule_id(app, "/api/*"), "edit": _edit_form(app, "/api/*")}


@pytest.mark.parametrize(("url", "data"), STATE_CHANGING)
def test_viewers_cannot_change_rules_and_editors_can(app, sign_in, one_rule, url, data):
    target = url.format(id=one_rule["id"])
    viewer = sign_in("viewer")
    assert _post(viewer, target, data(one_rule)).status_code == 403
    assert _post(viewer, target, data(one_rule), headers=HTMX).status_code == 403
    assert [a[0] for a in _actions(app)] == ["policy.import"]

    editor = sign_in("editor")
    response = _post(editor, target, data(one_rule))
    assert response.status_code == 302
    assert len(_actions(app)) == 2
    assert _actions(app)[-1][1:] == (editor.user_email, "dashboard")
    assert _post(sign_in("admin"), "/admin/rules",
                 _rule_form(path="/api/admin-made")).status_code == 302


@pytest.mark.parametrize(("url", "data"), STATE_CHANGING)
def test_posts_without_the_csrf_token_are_refused(app, sign_in, one_rule, url, data):
    editor = sign_in("editor")
    response = editor.post(url.format(id=one_rule["id"]), data=data(one_rule))
    assert response.status_code == 400
    assert [a[0] for a in _actions(app)] == ["policy.import"]
    with_header = editor.post(url.format(id=one_rule["id"]), data=data(one_rule),
                              headers={**HTMX, "X-CSRFToken": editor.csrf})
    assert with_header.status_code in (200, 204)


def test_viewers_see_no_edit_controls_and_cannot_use_the_origin_check(app, sign_in, one_rule):
    viewer = sign_in("viewer")
    html = _text(viewer.get(f"/admin/rules/{one_rule['id']}"))
    assert "Remove" not in html and "Allow origin" not in html and "Delete rule" not in html
    assert "New rule" not in _text(viewer.get("/admin/rules"))
    check = f"/admin/rules/{one_rule['id']}/origins/check?value=https://x.example.com"
    assert viewer.get(check).status_code == 403


# -- escaping ------------------------------------------------------------------------------


def test_attacker_controlled_text_is_escaped_on_every_rules_page(app, policy, sign_in):
    policy({"path": "/api/*", "description": XSS,
            "origins": [{"value": "https://a.example.com", "note": XSS}]})
    client = sign_in("editor")
    rule_id = _rule_id(app, "/api/*")
    responses = [
        client.get("/admin/rules"),
        client.get("/admin/rules", headers=HTMX),
        client.get(f"/admin/rules/{rule_id}"),
        client.get(f"/admin/rules/{rule_id}", headers=HTMX),
        client.get(f"/admin/rules/{rule_id}/origins/check", query_string={"value": XSS},
                   headers=HTMX),
        _post(client, f"/admin/rules/{rule_id}/origins", {"value": XSS, "note": XSS}),
        _post(client, "/admin/rules", _rule_form(path=XSS, description=XSS)),
    ]
    for response in responses:
        html = _text(response)
        assert XSS not in html, response.request.path
        assert "&lt;script&gt;alert(1)" in html, response.request.path


# -- coverage ------------------------------------------------------------------------------


def _coverage_rows(html: str) -> dict[str, str]:
    rows = re.findall(r'<tr>\s*<td><span class="mono">([^<]+)</span>(.*?)</tr>', html, re.S)
    return {route: rest for route, rest in rows}


def test_coverage_lists_every_governable_route_with_the_rule_the_engine_applies(
        app, policy, sign_in):
    app.add_url_rule("/api/items/<int:item_id>/parts", "item_parts",
                     lambda item_id: "", methods=["GET", "PUT"])
    policy({"path": "/api/echo"}, {"path": "/api/items/*/parts", "mode": "report-only"},
           {"path": "/api/public/*", "mode": "off"})
    client = sign_in("viewer")

    page = client.get("/admin/coverage")
    assert page.status_code == 200 and _is_page(page)
    rows = _coverage_rows(_text(page))
    assert "/api/echo</a>" in rows["/api/echo"] and "badge enforce" in rows["/api/echo"]
    assert "no rule" in rows["/api/orders"] and "no rule" in rows["/api/fail"]
    parts = rows["/api/items/&lt;int:item_id&gt;/parts"]
    assert "/api/items/1/parts" in parts and "/api/items/*/parts</a>" in parts
    assert "GET, PUT" in parts
    # A report-only rule answers nothing: the route has no rule, and the rule watches it.
    assert "no rule" in parts and "watches it" in parts
    status = rows["/api/public/status"]
    assert "no rule" in status and "/api/public/*</a> (off)" in status
    assert not [route for route in rows if route.startswith(("/admin", "/static", "/healthz"))]

    fragment = client.get("/admin/coverage?show=uncovered", headers=HTMX)
    assert fragment.status_code == 200 and not _is_page(fragment)
    uncovered = _coverage_rows(_text(fragment))
    assert "/api/orders" in uncovered and "/api/echo" not in uncovered
    assert "/api/items/&lt;int:item_id&gt;/parts" in uncovered


def test_coverage_shows_the_rule_behind_a_report_only_one_as_the_engine_answers(
        app, policy, sign_in):
    policy({"path": "/api/*"}, {"path": "/api/public/*", "mode": "report-only"})
    rows = _coverage_rows(_text(sign_in("viewer").get("/admin/coverage")))
    status = rows["/api/public/status"]
    assert status.index("/api/*</a>") < status.index("/api/public/*</a>")
    assert "badge enforce" in status and "watches it" in status


def test_coverage_follows_the_most_specific_rule_as_the_engine_does(app, policy, sign_in):
    from cors_control import get_control

    policy({"path": "/api/*"}, {"path": "/api/public/*"})
    rows = _coverage_rows(_text(sign_in("viewer").get("/admin/coverage")))
    assert "/api/public/*</a>" in rows["/api/public/status"]
    assert "/api/*</a>" in rows["/api/orders"]
    snapshot = get_control(app).cache.get()
    assert snapshot.rule_for("/api/public/status").path == "/api/public/*"


def test_expired_origin_badge_uses_the_current_time(app, policy, sign_in):
    soon = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    policy({"path": "/api/*", "origins": [{"value": "https://a.example.com",
                                            "expires_at": soon}]})
    html = _text(sign_in("viewer").get(f"/admin/rules/{_rule_id(app, '/api/*')}"))
    assert "badge expired" not in html
