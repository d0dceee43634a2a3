"""The dashboard's Import page: a policy file (uploaded or pasted) is previewed first (the
import's dry run and what the routes lose, nothing written), then applied exactly as
previewed in one confirmed POST, or refused with the new preview when the policy changed
meanwhile. Every bad input gets a message and writes nothing; roles as in the JSON API."""

from __future__ import annotations

import html
import io
import json
import re

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Rule, Tenant
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.errors import Conflict
from app.services.policy import add_origin, import_policy
from app.services.policy_read import export_policy
from app.services.tenants import create_tenant
from app.services.users import create_user
from tests.conftest import PASSWORD, csrf_token_of, csrf_token_of_signed_in

ADMIN = Actor("root@example.com", "cli")
BROAD = {"path": "/api/*", "origins": ["https://a.example.com", "https://b.example.com"]}
NARROW = {"path": "/api/orders", "origins": ["https://shop.example.com"]}
PREVIEW = "/admin/import/preview"
APPLY = "/admin/import/apply"


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _words(page: str) -> str:
    """The page's text as read: tags dropped, runs of white space made one space."""
    return " ".join(re.sub(r"<[^>]+>", " ", page).split()).replace(" : ", ": ")


def _state(app) -> tuple[int, int, int]:
    """The policy version, the number of audit entries and of rules."""
    with app.app_context():
        return (policy_version(), db.session.scalar(sa.select(sa.func.count(AuditEntry.id))),
                db.session.scalar(sa.select(sa.func.count(Rule.id))))


def _paths(app) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(sa.select(Rule.path)))


def upload(client, document, *, mode: str = "merge", name: str = "policy.json",
           pasted: str = "", csrf: bool = True, **extra):
    """Preview *document* (a dict, or bytes sent as they are) as an uploaded file."""
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    form = {"mode": mode, "document": pasted, "file": (io.BytesIO(data), name), **extra}
    if csrf:
        form["csrf_token"] = client.csrf
    return client.post(PREVIEW, data=form, content_type="multipart/form-data")


def paste(client, text: str, *, mode: str = "merge"):
    return client.post(PREVIEW, data={"csrf_token": client.csrf, "mode": mode,
                                      "document": text},
                       content_type="multipart/form-data")


def apply_form(response) -> dict[str, str]:
    """The hidden fields of the preview's apply form, as a browser would send them."""
    page = response.get_data(as_text=True)
    form = re.search(r'<form method="post" enctype="multipart/form-data" '
                     r'action="/admin/import/apply">(.*?)</form>', page, re.S)
    assert form, "the preview offers to apply it"
    return {name: html.unescape(value) for name, value in re.findall(
        r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', form.group(1))}


def apply(client, fields: dict[str, str], **extra):
    return client.post(APPLY, data={**fields, **extra}, content_type="multipart/form-data")


# -- preview and apply ----------------------------------------------------------------------


def test_the_preview_lists_the_changes_and_what_the_routes_lose_and_writes_nothing(
        app, policy, sign_in):
    policy(BROAD, {"path": "/api/public/*", "origins": ["*"]})
    editor = sign_in("editor")
    before = _state(app)
    response = upload(editor, {"rules": [BROAD, NARROW]}, mode="replace")
    page = _text(response)
    assert response.status_code == 200 and "<html" in page
    words = _words(page)
    assert "1 added, 0 changed, 1 removed, 1 unchanged" in words
    assert "Rules added /api/orders" in words and "Rules removed /api/public/*" in words
    # Route by route: /api/orders moves from /api/* to the new rule and loses its origins.
    assert "/api/orders: origin https://a.example.com, origin https://b.example.com stop " \
           "applying (answered by /api/orders instead of /api/*)" in page
    assert "/api/public/status" in page and "origin *" in page
    assert 'name="confirm_impact"' in page
    assert _state(app) == before and _paths(app) == ["/api/*", "/api/public/*"]


def test_applying_the_preview_writes_it_once_with_one_audit_entry(app, policy, sign_in):
    policy(BROAD)
    editor = sign_in("editor")
    version, entries, _rules = _state(app)
    fields = apply_form(upload(editor, {"rules": [BROAD, NARROW]}))
    assert fields["mode"] == "merge" and json.loads(fields["document"]) == \
        {"rules": [BROAD, NARROW]}

    response = apply(editor, fields, confirm_impact="yes")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/admin/import")
    assert _state(app) == (version + 1, entries + 1, 2)
    assert _paths(app) == ["/api/*", "/api/orders"]
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert (entry.action, entry.actor, entry.channel) == \
            ("policy.import", editor.user_email, "dashboard")
    notice = _words(_text(editor.get("/admin/import")))
    assert f"Imported (merge): 1 added, 0 changed, 0 removed, 1 unchanged; the policy is at " \
           f"version {version + 1}." in notice

    # The same form again: the preview was made on the old version, so it is shown anew.
    again = apply(editor, fields, confirm_impact="yes")
    assert again.status_code == 409 and _state(app)[:2] == (version + 1, entries + 1)


def test_a_pasted_document_previews_and_applies_like_a_file(app, policy, sign_in):
    editor = sign_in("editor")
    text = json.dumps({"rules": [BROAD]}, indent=2)
    shown = paste(editor, text)
    page = _text(shown)
    assert "1 added, 0 changed, 0 removed, 0 unchanged" in _words(page)
    assert text in page  # the text box keeps what was pasted
    assert 'name="confirm_impact"' not in page  # nothing is taken away: no box to tick
    assert apply(editor, apply_form(shown)).status_code == 303
    assert _paths(app) == ["/api/*"]


def test_an_import_that_takes_something_away_needs_the_box_ticked(app, policy, sign_in):
    policy(BROAD)
    editor = sign_in("editor")
    before = _state(app)
    fields = apply_form(upload(editor, {"rules": [NARROW]}))
    response = apply(editor, fields)
    page = _text(response)
    assert response.status_code == 200
    assert "Not applied yet: this import takes something away" in page
    assert _state(app) == before
    assert apply(editor, apply_form(response), confirm_impact="yes").status_code == 303
    assert _paths(app) == ["/api/*", "/api/orders"]


def test_a_preview_made_stale_by_another_change_is_refused_with_the_new_preview(
        app, policy, sign_in):
    policy(BROAD)
    editor = sign_in("editor")
    seen = _state(app)[0]
    described = {**BROAD, "description": "the main API"}
    fields = apply_form(upload(editor, {"rules": [described]}, mode="replace"))
    # Meanwhile someone adds an origin the file does not have and a rule it would delete.
    with app.app_context():
        rule_id = db.session.scalar(sa.select(Rule.id).where(Rule.path == "/api/*"))
        add_origin(rule_id, "https://c.example.com", actor=ADMIN)
        import_policy({"rules": [NARROW]}, actor=ADMIN)
    before = _state(app)

    response = apply(editor, fields)
    page = _text(response)
    assert response.status_code == 409
    assert f"the policy changed since the preview (version {seen}, now " \
           f"{before[0]})" in page
    assert _state(app) == before  # nothing written
    # The new preview shows what applying now takes: the origin and the rule added since.
    assert "0 added, 1 changed, 1 removed, 0 unchanged" in _words(page)
    assert "origin https://c.example.com" in page
    assert apply(editor, apply_form(response), confirm_impact="yes").status_code == 303
    assert _paths(app) == ["/api/*"]


def test_the_policy_version_is_checked_under_the_write_lock(app, policy):
    policy(BROAD)
    with app.app_context():
        seen = policy_version()
        import_policy({"rules": [NARROW]}, actor=ADMIN)
        with pytest.raises(Conflict, match=f"changed since version {seen}"):
            import_policy({"rules": [BROAD]}, actor=ADMIN, replace=True,
                          expected_version=seen)
        assert sorted(db.session.scalars(sa.select(Rule.path))) == ["/api/*", "/api/orders"]
        result = import_policy({"rules": [BROAD]}, actor=ADMIN, replace=True,
                               expected_version=policy_version())
        assert result.removed == ["/api/orders"]


@pytest.mark.parametrize("tamper", ["document", "mode", "token"])
def test_a_document_or_mode_other_than_the_previewed_one_is_not_applied(
        app, policy, sign_in, tamper):
    policy(BROAD)
    editor = sign_in("editor")
    fields = apply_form(upload(editor, {"rules": [BROAD, NARROW]}))
    changed = {"document": json.dumps({"rules": [BROAD, {**NARROW, "origins": ["*"]}]}),
               "mode": "replace", "token": fields["token"][:-4] + "AAAA"}
    before = _state(app)
    response = apply(editor, {**fields, tamper: changed[tamper]}, confirm_impact="yes")
    assert response.status_code == 409
    assert "Nothing was written" in _text(response)
    assert _state(app) == before and _paths(app) == ["/api/*"]


def test_an_unchanged_policy_offers_nothing_to_apply(app, policy, sign_in):
    policy(BROAD)
    editor = sign_in("editor")
    shown = upload(editor, {"rules": [BROAD]})
    page = _text(shown)
    assert "0 added, 0 changed, 0 removed, 1 unchanged" in _words(page)
    assert "there is nothing to apply" in page and "/admin/import/apply" not in page


# -- bad input ------------------------------------------------------------------------------


BAD_FILES = {
    "not JSON": (b'{"rules": [', "is not valid JSON: Expecting value at line 1"),
    "not UTF-8": (b'{"rules": [], "x": "\xff"}', "policy.json is not UTF-8 text"),
    "empty": (b"  ", "policy.json is empty"),
    "a list": (b"[]", 'a policy is a JSON object: {"rules": [...]}'),
    "rules not a list": (b'{"rules": {}}', "rules: rules must be a list of rule objects"),
    "unknown field": (b'{"rules": [], "rulez": []}', "rulez: unknown field"),
    "bad origin": (json.dumps({"rules": [{"path": "/api/*", "origins": [
        "https://ok.example.com", "ftp://x.example.com"]}]}).encode(), "rules[0].origins[1]"),
    "bad path": (json.dumps({"rules": [BROAD, {"path": "api"}]}).encode(), "rules[1].path"),
    "too deep": (b"[" * 40 + b"]" * 40, "nests arrays or objects more than 32 deep"),
    "half a character": (b'{"rules": [{"path": "/api/*", "description": "\\ud800"}]}',
                         "escape of half a character"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_a_bad_file_is_explained_and_nothing_is_written(app, policy, sign_in, case):
    policy(BROAD)
    editor = sign_in("editor")
    data, message = BAD_FILES[case]
    before = _state(app)
    response = upload(editor, data)
    page = _text(response)
    assert response.status_code == 422, page[:300]
    assert message in _words(page), _words(page)[:600]
    assert "/admin/import/apply" not in page
    assert _state(app) == before


def test_every_invalid_entry_is_named_by_its_position(app, sign_in):
    editor = sign_in("editor")
    page = _text(upload(editor, {"rules": [
        {"path": "/api/*", "origins": ["https://ok.example.com", "https://x.example.com/p"]},
        {"path": "api/x"}, {"path": "/v1/*", "max_age": -1}]}))
    words = _words(page)
    assert "The file is not a valid policy; nothing was written" in words
    for where in ("rules[0].origins[1]:", "rules[1].path:", "rules[2].max_age:"):
        assert where in words


@pytest.mark.parametrize("form, message", [
    ({}, "Choose a policy file or paste its JSON"),
    ({"mode": "overwrite"}, "Choose how to import: merge"),
])
def test_a_form_without_a_document_or_with_an_unknown_mode_is_explained(
        app, sign_in, form, message):
    editor = sign_in("editor")
    response = editor.post(PREVIEW, data={"csrf_token": editor.csrf, "document": "",
                                          **form}, content_type="multipart/form-data")
    assert response.status_code == 422 and message in _text(response)


def test_a_file_and_pasted_text_together_are_refused(app, sign_in):
    editor = sign_in("editor")
    response = upload(editor, {"rules": [BROAD]}, pasted='{"rules": []}')
    assert response.status_code == 422
    assert "Choose a file or paste the JSON, not both" in _text(response)
    assert _paths(app) == []


def test_the_import_limit_is_the_apis_not_the_dashboards_form_limit(make_app):
    app = make_app(MAX_CONTENT_LENGTH=4096, IMPORT_MAX_BYTES=40_000)
    with app.app_context():
        create_user("big@example.com", PASSWORD, role="editor")
    editor = app.test_client()
    editor.post("/admin/login", data={"email": "big@example.com", "password": PASSWORD,
                                      "csrf_token": csrf_token_of(editor)})
    editor.csrf = csrf_token_of_signed_in(editor)
    rules = [{"path": f"/api/n{i}/*", "origins": ["https://a.example.com"],
              "description": "x" * 100} for i in range(60)]
    document = {"rules": rules}
    assert 4096 < len(json.dumps(document)) < 40_000
    shown = upload(editor, document)
    page = _text(shown)
    assert "60 added" in _words(page)
    assert apply(editor, apply_form(shown)).status_code == 303  # the re-posted copy too
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Rule.id))) == 60

    for big in (upload(editor, {"rules": rules * 5}), paste(editor, json.dumps(rules * 5))):
        page = _text(big)
        assert big.status_code == 413, page[:300]
        assert "larger than 39.0625 KB (40,000 bytes)" in page and "IMPORT_MAX_BYTES" in page
        assert "Nothing was written" in page


def test_hostile_text_in_a_file_is_shown_escaped(app, sign_in):
    editor = sign_in("editor")
    page = upload(editor, {"rules": [{"path": "/api/*", "origins": [
        "https://<script>alert(1)</script>.example.com"]}]}).get_data(as_text=True)
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page


# -- roles and CSRF -------------------------------------------------------------------------


def test_creating_tenants_or_changing_namespaces_in_an_import_needs_an_admin(
        app, policy, sign_in):
    with app.app_context():
        create_tenant("acme", actor=ADMIN, paths=["/api/t/acme/*"])
    editor, admin = sign_in("editor"), sign_in("admin")
    before = _state(app)
    new_tenant = {"tenants": [{"slug": "globex", "name": "Globex",
                               "paths": ["/api/t/globex/*"]}],
                  "rules": [{"path": "/api/t/globex/*", "tenant": "globex"}]}
    refused = upload(editor, new_tenant)
    assert refused.status_code == 403
    assert "Nothing was written: only admins create tenants: an admin must create tenant " \
           "globex first" in _text(refused)
    moved = upload(editor, {"tenants": [{"slug": "acme", "paths": ["/api/acme/*"]}],
                            "rules": []})
    assert moved.status_code == 403 and "change a tenant's namespaces" in _text(moved)
    assert _state(app) == before

    shown = upload(admin, new_tenant)
    page = _text(shown)
    assert "Tenants created globex" in _words(page)
    # An admin's preview applied by an editor is refused by the service as well.
    fields = apply_form(shown)
    assert apply(editor, {**fields, "csrf_token": editor.csrf}).status_code == 403
    assert _state(app) == before
    assert apply(admin, fields).status_code == 303
    with app.app_context():
        assert db.session.scalar(sa.select(Tenant.paths).where(Tenant.slug == "globex")) == \
            ["/api/t/globex/*"]


@pytest.mark.parametrize("role", ["viewer", "tenant-editor", "tenant-viewer"])
def test_only_platform_writers_reach_the_import(app, policy, sign_in, role):
    with app.app_context():
        create_tenant("acme", actor=ADMIN, paths=["/api/t/acme/*"])
    policy(BROAD)
    client = sign_in(role, tenant="acme" if role.startswith("tenant") else None)
    before = _state(app)
    assert client.get("/admin/import").status_code == 403
    assert upload(client, {"rules": [NARROW]}).status_code == 403
    editor = sign_in("editor")
    fields = apply_form(upload(editor, {"rules": [NARROW]}))
    assert apply(client, {**fields, "csrf_token": client.csrf},
                 confirm_impact="yes").status_code == 403
    assert _state(app) == before
    assert ">Import</a>" not in client.get("/admin/").get_data(as_text=True)


def test_writers_find_the_page_in_the_navigation_with_an_export_link(app, policy, sign_in):
    policy(BROAD)
    editor = sign_in("editor")
    assert ">Import</a>" in editor.get("/admin/").get_data(as_text=True)
    page = editor.get("/admin/import").get_data(as_text=True)
    assert 'aria-current="page">Import</a>' in page
    assert 'href="/admin/export"' in page and 'enctype="multipart/form-data"' in page


@pytest.mark.parametrize("url", [PREVIEW, APPLY])
def test_the_import_forms_need_the_csrf_token(app, policy, sign_in, url):
    policy(BROAD)
    editor = sign_in("editor")
    fields = apply_form(upload(editor, {"rules": [BROAD, NARROW]}))
    before = _state(app)
    form = {**fields, "confirm_impact": "yes", "file": (io.BytesIO(b'{"rules": []}'), "p.json")}
    form.pop("csrf_token")
    response = editor.post(url, data=form, content_type="multipart/form-data")
    assert response.status_code == 400 and "CSRF token is missing" in _text(response)
    assert _state(app) == before and _paths(app) == ["/api/*"]


# -- export ---------------------------------------------------------------------------------


def test_the_export_downloads_the_policy_file_and_imports_back_unchanged(app, policy,
                                                                         sign_in):
    policy(BROAD, NARROW)
    viewer = sign_in("viewer")
    response = viewer.get("/admin/export")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert re.fullmatch(r'attachment; filename="cors-policy-\d{8}-\d{6}\.json"',
                        response.headers["Content-Disposition"])
    with app.app_context():
        assert response.get_json() == export_policy()
    shown = upload(sign_in("editor"), response.get_data(), mode="replace")
    page = _text(shown)
    assert "0 added, 0 changed, 0 removed, 2 unchanged" in _words(page)


def test_an_htmx_request_gets_the_result_alone_from_the_same_partial(app, policy, sign_in):
    policy(BROAD)
    editor = sign_in("editor")
    form = {"csrf_token": editor.csrf, "mode": "merge",
            "file": (io.BytesIO(json.dumps({"rules": [NARROW]}).encode()), "p.json")}
    response = editor.post(PREVIEW, data=form, content_type="multipart/form-data",
                           headers={"HX-Request": "true"})
    page = _text(response)
    assert response.status_code == 200 and "<html" not in page
    assert page.lstrip().startswith('<div id="import-result">')
    assert "1 added, 0 changed, 0 removed, 0 unchanged" in _words(page)
    assert "HX-Request" in response.headers["Vary"]
    refused = editor.post(PREVIEW, data={"csrf_token": editor.csrf, "document": "nope"},
                          content_type="multipart/form-data", headers={"HX-Request": "true"})
    assert refused.status_code == 422 and "is not valid JSON" in _text(refused)
