"""Pages that stay true: every origin fragment updates all its action changes; error pages in
the layout; confirmation steps; navigation; tenancy on the rule form and the rules list."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AllowedOrigin, Rule
from app.services.access import Actor
from app.services.policy import add_origin, create_rule
from app.services.tenants import create_tenant
from tests.conftest import post_form

HTMX = {"HX-Request": "true"}
ADMIN = Actor("root@example.com", "cli")
SHARED = {"path": "/api/t/*/orders",
          "tenant_selector": {"source": "view-arg", "key": "tenant", "unknown": "refuse"}}


def _text(response) -> str:
    return response.get_data(as_text=True)


def _post(client, url: str, data: dict | None = None, **kwargs):
    return post_form(client, url, data, **kwargs)


def _rule(app, path: str) -> Rule:
    with app.app_context():
        rule = db.session.scalar(sa.select(Rule).where(Rule.path == path))
        assert rule is not None, path
        db.session.expunge(rule)
        return rule


def _oob(html: str, element_id: str) -> str:
    """The out-of-band element with this id in a fragment (its opening tag to its close)."""
    match = re.search(rf'<(\w+) id="{element_id}"[^>]*hx-swap-oob="true"[^>]*>.*?</\1>',
                      html, re.S)
    assert match, f"no out-of-band #{element_id} in:\n{html}"
    return match.group(0)


@pytest.fixture
def acme(app) -> None:
    with app.app_context():
        create_tenant("acme", "Acme Corp", paths=["/api/acme/*"], actor=ADMIN)
        create_tenant("globex", "Globex", paths=["/api/globex/*"], actor=ADMIN)


# -- fragments update everything their action changes -----------------------------------------


def test_adding_the_first_origin_hides_the_empty_state_and_moves_the_version_line(
        app, policy, sign_in):
    policy({"path": "/api/*"})
    client = sign_in("editor")
    rule = _rule(app, "/api/*")
    page = _text(client.get(f"/admin/rules/{rule.id}"))
    assert "No origins yet" in page and f"Version {rule.version} ·" in page

    html = _text(_post(client, f"/admin/rules/{rule.id}/origins",
                       {"value": "https://shop.example.com", "version": str(rule.version)},
                       headers=HTMX))
    empty = _oob(html, "origin-empty")
    assert "hidden" in empty and "No origins yet" not in empty
    assert f"Version {rule.version + 1} ·" in _oob(html, "rule-version-line")
    assert ">1</span>" in _oob(html, "origin-count")
    assert 'hx-swap-oob="beforeend:#origin-rows"' in html and "https://shop.example.com" in html
    assert "Allowed https://shop.example.com on /api/*." in html


def test_removing_the_last_origin_shows_the_empty_state_and_replaces_the_allowed_message(
        app, policy, sign_in):
    policy({"path": "/api/*", "origins": ["https://shop.example.com"]})
    client = sign_in("editor")
    rule = _rule(app, "/api/*")

    html = _text(_post(client, f"/admin/rules/{rule.id}/origins/remove",
                       {"value": "https://shop.example.com", "version": str(rule.version)},
                       headers=HTMX))
    empty = _oob(html, "origin-empty")
    assert "No origins yet" in empty and "hidden" not in empty
    assert f"Version {rule.version + 1} ·" in _oob(html, "rule-version-line")
    assert ">0</span>" in _oob(html, "origin-count")
    check = _oob(html, "origin-value-check")
    assert "Removed https://shop.example.com from /api/*." in check
    assert "Allowed" not in check


def test_removing_one_of_several_origins_keeps_the_empty_state_hidden(app, policy, sign_in):
    policy({"path": "/api/*", "origins": ["https://a.example.com", "https://b.example.com"]})
    client = sign_in("editor")
    rule = _rule(app, "/api/*")
    html = _text(_post(client, f"/admin/rules/{rule.id}/origins/remove",
                       {"value": "https://a.example.com"}, headers=HTMX))
    assert "hidden" in _oob(html, "origin-empty")
    assert ">1</span>" in _oob(html, "origin-count")


def test_removing_an_origin_that_is_not_there_says_so_in_the_fragment(app, policy, sign_in):
    policy({"path": "/api/*"})
    client = sign_in("editor")
    rule = _rule(app, "/api/*")
    html = _text(_post(client, f"/admin/rules/{rule.id}/origins/remove",
                       {"value": "https://gone.example.com"}, headers=HTMX))
    assert "https://gone.example.com was not on /api/*; nothing changed." in \
        _oob(html, "origin-value-check")
    assert f"Version {rule.version} ·" in _oob(html, "rule-version-line")


def test_saving_options_through_htmx_returns_the_new_version_line_and_message(
        app, policy, sign_in):
    policy({"path": "/api/*"})
    client = sign_in("editor")
    rule = _rule(app, "/api/*")
    html = _text(_post(client, f"/admin/rules/{rule.id}", {
        "path": "/api/*", "methods": "GET", "allow_headers": "*", "expose_headers": "",
        "max_age": "", "mode": "enforce", "description": "changed",
        "version": str(rule.version)}, headers=HTMX))
    assert f"Version {rule.version + 1} ·" in html and "Saved rule /api/*." in html
    disabled = _text(_post(client, f"/admin/rules/{rule.id}/disable", headers=HTMX))
    assert f"Version {rule.version + 2} ·" in disabled
    assert '<span class="badge off">off</span>' in disabled


# -- confirmation without JavaScript ----------------------------------------------------------


def test_remove_and_delete_confirmation_pages_need_the_editor_role(app, policy, sign_in):
    policy({"path": "/api/*", "origins": ["https://a.example.com"]})
    rule = _rule(app, "/api/*")
    viewer = sign_in("viewer")
    assert viewer.get(f"/admin/rules/{rule.id}/delete").status_code == 403
    assert viewer.get(f"/admin/rules/{rule.id}/origins/remove?value=x").status_code == 403
    editor = sign_in("editor")
    assert editor.get(f"/admin/rules/{rule.id + 1000}/delete").status_code == 404
    page = _text(editor.get(f"/admin/rules/{rule.id}/origins/remove",
                            query_string={"value": '"><script>x</script>'}))
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page


def test_tenant_editor_gets_no_delete_confirmation_for_a_platform_rule(app, acme, sign_in):
    with app.app_context():
        shared = create_rule(SHARED, actor=ADMIN).id
    client = sign_in("tenant-editor", tenant="acme")
    assert client.get(f"/admin/rules/{shared}/delete").status_code == 403
    assert "Delete rule" not in _text(client.get(f"/admin/rules/{shared}"))


def test_deleting_a_tenant_asks_first_on_a_page_without_javascript(app, acme, sign_in):
    admin = sign_in("admin")
    page = _text(admin.get("/admin/tenants"))
    assert 'method="get" action="/admin/tenants/acme/delete"' in page
    assert 'hx-confirm="Delete tenant acme with its 0 origins' in page
    confirm = admin.get("/admin/tenants/acme/delete")
    assert confirm.status_code == 200 and "Delete tenant <code>acme</code>?" in _text(confirm)
    assert 'method="post" action="/admin/tenants/acme/delete"' in _text(confirm)
    assert admin.get("/admin/tenants/nobody/delete").status_code == 404
    assert sign_in("editor").get("/admin/tenants/acme/delete").status_code == 403
    deleted = _post(admin, "/admin/tenants/acme/delete")
    assert deleted.status_code == 302
    assert admin.get("/admin/tenants/acme/delete").status_code == 404


# -- error pages --------------------------------------------------------------------------------


def test_not_found_is_a_page_with_the_navigation(sign_in):
    client = sign_in("viewer")
    for url in ("/admin/no-such-page", "/admin/rules/999999"):
        response = client.get(url)
        html = _text(response)
        assert response.status_code == 404, url
        assert 'aria-label="Main"' in html and "<h1>404 Not Found</h1>" in html
        assert 'class="skip-link"' in html


def test_forbidden_is_a_page_with_the_navigation_and_a_notice_for_htmx(sign_in):
    client = sign_in("viewer")
    page = client.get("/admin/users")
    assert page.status_code == 403
    assert 'aria-label="Main"' in _text(page) and "403 Forbidden" in _text(page)
    fragment = client.get("/admin/users", headers=HTMX)
    assert fragment.status_code == 403 and "<html" not in _text(fragment)
    assert 'id="request-error"' in _text(fragment)
    assert fragment.headers["HX-Retarget"] == "#main"
    assert fragment.headers["HX-Reswap"] == "afterbegin"


def test_not_found_signed_out_offers_to_sign_in(client):
    response = client.get("/admin/no-such-page")
    assert response.status_code == 404
    assert 'href="/admin/login">Sign in' in _text(response)
    assert 'aria-label="Main"' not in _text(response)


def test_the_json_api_keeps_its_problem_documents(sign_in):
    client = sign_in("viewer")
    response = client.get("/admin/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    wrong_method = client.delete("/admin/api/v1/rules")
    assert wrong_method.status_code == 405 and "Allow" in wrong_method.headers
    assert wrong_method.mimetype == "application/problem+json"


def test_server_error_is_a_page_with_the_navigation(make_app, sign_in):
    app = make_app(PROPAGATE_EXCEPTIONS=False)

    def broken():
        raise RuntimeError("a bug")

    app.add_url_rule("/admin/broken", "broken", broken)
    from app.services.users import create_user
    from tests.conftest import PASSWORD, csrf_token_of

    with app.app_context():
        create_user("ops@example.com", PASSWORD, role="viewer")
    client = app.test_client()
    client.post("/admin/login", data={"email": "ops@example.com", "password": PASSWORD,
                                      "csrf_token": csrf_token_of(client)})
    response = client.get("/admin/broken")
    html = _text(response)
    assert response.status_code == 500
    assert "<h1>500 Internal Server Error</h1>" in html and 'aria-label="Main"' in html
    assert "a bug" not in html  # the exception stays in the log


# -- navigation ---------------------------------------------------------------------------------


def test_route_coverage_is_in_the_navigation_for_platform_users_only(app, acme, sign_in):
    nav = re.compile(r'<nav aria-label="Main">.*?</nav>', re.S)
    platform = nav.search(_text(sign_in("viewer").get("/admin/rules"))).group(0)
    assert 'href="/admin/coverage"' in platform
    tenant = nav.search(_text(sign_in("tenant-viewer", tenant="acme").get("/admin/rules")))
    assert 'href="/admin/coverage"' not in tenant.group(0)


def test_a_rule_page_links_to_its_log_rows_and_its_history(app, policy, sign_in):
    policy({"path": "/api/orders/*"})
    client = sign_in("viewer")
    rule = _rule(app, "/api/orders/*")
    html = _text(client.get(f"/admin/rules/{rule.id}"))
    log = re.search(r'href="(/admin/log\?[^"]*)">Request log of this rule', html)
    history = re.search(r'href="(/admin/audit\?[^"]*)">History of this rule', html)
    assert log and history, html
    assert "/api/orders/*" in _text(client.get(log.group(1).replace("&amp;", "&")))
    audit = _text(client.get(history.group(1).replace("&amp;", "&")))
    assert "policy.import" in audit or "/api/orders/*" in audit


# -- accessible origin field ------------------------------------------------------------------


def test_live_validation_is_described_by_and_outside_the_origin_label(app, policy, sign_in):
    policy({"path": "/api/*"})
    client = sign_in("editor")
    html = _text(client.get(f"/admin/rules/{_rule(app, '/api/*').id}"))
    label = re.search(r'<label for="origin-value">(.*?)</label>', html, re.S).group(1)
    assert 'aria-describedby="origin-value-check"' in label
    assert 'id="origin-value-check"' not in label
    assert html.index('id="origin-value-check"') > html.index('<label for="origin-value">')


# -- tenancy on the rule form and the rules list ----------------------------------------------


def test_admin_creates_a_tenant_owned_rule_and_one_that_selects_tenants(app, acme, sign_in):
    client = sign_in("admin")
    form = _text(client.get("/admin/rules"))
    assert 'name="tenant"' in form and 'name="tenant_source"' in form
    assert '<option value="acme"' in form and '<option value="header"' in form

    base = {"methods": "GET", "allow_headers": "*", "expose_headers": "", "max_age": "",
            "mode": "enforce", "description": ""}
    owned = _post(client, "/admin/rules", {**base, "path": "/api/acme/orders",
                                           "tenant": "acme", "tenant_source": "none"})
    assert owned.status_code == 302
    selecting = _post(client, "/admin/rules", {
        **base, "path": "/api/t/*/x", "tenant": "", "tenant_source": "header",
        "tenant_key": "X-Tenant", "tenant_unknown": "shared"})
    assert selecting.status_code == 302
    with app.app_context():
        acme_rule = db.session.scalar(sa.select(Rule).where(Rule.path == "/api/acme/orders"))
        assert acme_rule.tenant.slug == "acme"
        shared = db.session.scalar(sa.select(Rule).where(Rule.path == "/api/t/*/x"))
        assert (shared.tenant_id, shared.tenant_source, shared.tenant_key,
                shared.unknown_tenant) == (None, "header", "X-Tenant", "shared")


def test_a_tenant_owned_rule_outside_its_namespaces_is_refused_beside_the_field(
        app, acme, sign_in):
    client = sign_in("editor")
    response = _post(client, "/admin/rules", {
        "path": "/api/globex/orders", "methods": "GET", "allow_headers": "*",
        "expose_headers": "", "max_age": "", "mode": "enforce", "description": "",
        "tenant": "acme", "tenant_source": "none"})
    assert response.status_code == 422
    html = _text(response)
    assert 'class="field-error" id="error-path"' in html or 'id="error-tenant"' in html
    assert "/api/acme/*" in html  # the message names acme's namespace
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Rule)) == 0


def test_an_invalid_selector_key_shows_the_service_message_beside_it(app, acme, sign_in):
    client = sign_in("editor")
    response = _post(client, "/admin/rules", {
        "path": "/api/t/*/y", "methods": "GET", "allow_headers": "*", "expose_headers": "",
        "max_age": "", "mode": "enforce", "description": "", "tenant": "",
        "tenant_source": "view-arg", "tenant_key": "not a name"})
    assert response.status_code == 422
    html = _text(response)
    assert 'aria-describedby="error-tenant_key"' in html
    assert re.search(r'id="error-tenant_key">a URL variable name is letters', html)


def test_editing_the_selector_keeps_the_owner_and_can_clear_it(app, acme, sign_in):
    with app.app_context():
        rule = create_rule(SHARED, actor=ADMIN)
        rule_id, version = rule.id, rule.version
    client = sign_in("editor")
    page = _text(client.get(f"/admin/rules/{rule_id}"))
    assert '<option value="view-arg" selected>' in page
    response = _post(client, f"/admin/rules/{rule_id}", {
        "path": SHARED["path"], "methods": "GET, HEAD, POST", "allow_headers": "*",
        "expose_headers": "", "max_age": "", "mode": "enforce", "description": "",
        "tenant": "", "tenant_source": "none", "version": str(version)})
    assert response.status_code == 302
    assert _rule(app, SHARED["path"]).tenant_source == "none"


def test_tenant_roles_see_no_tenancy_fields_and_cannot_name_another_tenant(
        app, acme, sign_in):
    client = sign_in("tenant-editor", tenant="acme")
    form = _text(client.get("/admin/rules"))
    assert 'name="tenant_source"' not in form and '<option value="globex"' not in form
    base = {"methods": "GET", "allow_headers": "*", "expose_headers": "", "max_age": "",
            "mode": "enforce", "description": ""}
    other = _post(client, "/admin/rules", {**base, "path": "/api/globex/a", "tenant": "globex"})
    assert other.status_code == 404
    own = _post(client, "/admin/rules", {**base, "path": "/api/acme/a"})
    assert own.status_code == 302
    assert _rule(app, "/api/acme/a").tenant_id is not None
    selector = _post(client, "/admin/rules", {**base, "path": "/api/acme/b",
                                              "tenant_source": "header", "tenant_key": "X-T"})
    assert selector.status_code == 422
    assert "only admins and editors create rules that select tenants" in _text(selector)


def test_rules_list_has_a_tenant_column_and_filter(app, acme, sign_in):
    with app.app_context():
        create_rule({"path": "/api/acme/orders", "tenant": "acme"}, actor=ADMIN)
        create_rule({"path": "/api/globex/orders", "tenant": "globex"}, actor=ADMIN)
        create_rule(SHARED, actor=ADMIN)
    client = sign_in("viewer")
    html = _text(client.get("/admin/rules", headers=HTMX))
    rows = re.findall(r'href="/admin/rules/\d+">([^<]+)</a></td>\s*<td>(.*?)</td>', html, re.S)
    cells = {path: re.sub(r"<[^>]+>", "", cell).strip() for path, cell in rows}
    assert cells == {"/api/acme/orders": "acme", "/api/globex/orders": "globex",
                     "/api/t/*/orders": "platform per tenant"}
    only_acme = _text(client.get("/admin/rules?tenant=acme", headers=HTMX))
    assert re.findall(r'href="/admin/rules/\d+">([^<]+)</a>', only_acme) == ["/api/acme/orders"]
    assert '<option value="acme" selected>' in _text(client.get("/admin/rules?tenant=acme"))


def test_tenant_users_see_the_shared_origins_of_a_platform_rule_read_only(app, acme, sign_in):
    with app.app_context():
        rule = create_rule(SHARED, actor=ADMIN)
        add_origin(rule.id, "https://shared.example.com", actor=ADMIN)
        add_origin(rule.id, "https://acme.example.com", actor=ADMIN, tenant="acme")
        add_origin(rule.id, "https://globex.example.com", actor=ADMIN, tenant="globex")
        rule_id = rule.id
    viewer = _text(sign_in("tenant-viewer", tenant="acme").get(f"/admin/rules/{rule_id}"))
    shared = viewer[viewer.index('id="shared-origins"'):]
    assert "https://shared.example.com" in shared and "https://acme.example.com" not in shared
    assert "globex.example.com" not in viewer
    assert "Remove" not in shared and "<form" not in shared
    editor = _text(sign_in("tenant-editor", tenant="acme").get(f"/admin/rules/{rule_id}"))
    assert 'id="shared-origins"' in editor
    platform = _text(sign_in("viewer").get(f"/admin/rules/{rule_id}"))
    assert 'id="shared-origins"' not in platform  # platform users see them in the list
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AllowedOrigin)) == 3


def test_tenant_users_see_the_platform_lists_of_a_rule_read_only(app, acme, sign_in):
    from app.services import origin_lists as lists

    with app.app_context():
        shared = create_rule(SHARED, actor=ADMIN).id
        own = create_rule({"path": "/api/acme/orders", "tenant": "acme"}, actor=ADMIN).id
        frontends = lists.create_list({"name": "frontends", "origins": [
            "https://front.example.com"]}, actor=ADMIN).id
        shops = lists.create_list({"name": "shops", "tenant": "acme", "origins": [
            "https://shop.acme.example"]}, actor=ADMIN).id
        theirs = lists.create_list({"name": "globex-shops", "tenant": "globex", "origins": [
            "https://shop.globex.example"]}, actor=ADMIN).id
        lists.attach_list(shared, frontends, actor=ADMIN)
        lists.attach_list(own, frontends, actor=ADMIN)
        lists.attach_list(own, shops, actor=ADMIN)
    for role in ("tenant-viewer", "tenant-editor"):
        client = sign_in(role, tenant="acme")
        page = _text(client.get(f"/admin/rules/{shared}"))
        section = page[page.index('id="rule-lists"'):]
        # The platform's list: its name and origins, said to be read-only, nothing to press.
        assert "frontends" in section and "https://front.example.com" in section
        assert '<span class="badge">read-only</span>' in section
        assert "The platform manages this list; its origins apply for every tenant on this " \
               "rule, yours included." in section
        assert "<form" not in section.split("</section>")[0]
        assert "globex" not in page and f"list-{theirs}" not in page
        own_page = _text(client.get(f"/admin/rules/{own}"))
        own_section = own_page[own_page.index('id="rule-lists"'):].split("</section>")[0]
        assert "https://front.example.com" in own_section
        assert "https://shop.acme.example" in own_section
        assert own_section.count('<span class="badge">read-only</span>') == (
            2 if role == "tenant-viewer" else 1)
        assert "globex" not in own_page
    # The origins of a platform list are changed on the lists page, never by a tenant role.
    editor = sign_in("tenant-editor", tenant="acme")
    assert editor.post(f"/admin/lists/{frontends}/origins", data={
        "origin": "https://x.example.com", "csrf_token": editor.csrf}).status_code == 403
    platform = _text(sign_in("editor").get(f"/admin/rules/{shared}"))
    assert '<span class="badge">read-only</span>' not in platform
