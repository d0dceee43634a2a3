"""The dashboard's origin lists page and a rule page's shared lists (page and fragment)."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models import OriginList
from app.services import origin_lists as lists
from app.services.access import Actor
from app.services.policy import create_rule
from app.services.tenants import create_tenant
from cors_control import get_control

ADMIN = Actor("admin@example.com", "cli")
FRONT = "https://front.example.com"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def rule_id(app) -> int:
    with app.app_context():
        return create_rule({"path": "/api/*"}, actor=ADMIN).id


def test_an_editor_creates_a_list_adds_an_origin_and_a_rule_using_it_allows_it(
        app, client, sign_in, rule_id):
    editor = sign_in("editor")
    page = editor.get("/admin/lists")
    assert page.status_code == 200 and b"No origin lists yet" in page.data
    created = editor.post("/admin/lists", data={"name": "frontends", "csrf_token": editor.csrf},
                          headers=HTMX)
    assert created.status_code == 200 and b"Created origin list frontends" in created.data
    assert b"<html" not in created.data  # the fragment, not the page
    with app.app_context():
        list_id = db.session.scalar(db.select(OriginList.id))
    attached = editor.post(f"/admin/rules/{rule_id}/lists",
                           data={"list_id": list_id, "csrf_token": editor.csrf}, headers=HTMX)
    assert b"/api/* now allows the origins of frontends" in attached.data
    added = editor.post(f"/admin/lists/{list_id}/origins",
                        data={"origin": FRONT, "csrf_token": editor.csrf}, headers=HTMX)
    assert f"Added {FRONT} to frontends (used by /api/*)".encode() in added.data
    get_control(app).cache.refresh()
    response = client.get("/api/echo", headers={"Origin": FRONT})
    assert response.headers["Access-Control-Allow-Origin"] == FRONT
    rule_page = editor.get(f"/admin/rules/{rule_id}")
    text = rule_page.get_data(as_text=True)
    assert "Shared origin lists" in text and FRONT in text and "contributes 1 origin" in text


def test_a_refused_origin_keeps_what_was_typed_with_the_message(app, sign_in):
    with app.app_context():
        list_id = lists.create_list({"name": "frontends"}, actor=ADMIN).id
    editor = sign_in("editor")
    refused = editor.post(f"/admin/lists/{list_id}/origins",
                          data={"origin": "https://app.example.com/", "csrf_token": editor.csrf})
    assert refused.status_code == 422
    text = refused.get_data(as_text=True)
    assert 'value="https://app.example.com/"' in text and 'aria-invalid="true"' in text


def test_writes_need_csrf_and_a_writer(app, sign_in):
    with app.app_context():
        list_id = lists.create_list({"name": "frontends"}, actor=ADMIN).id
    editor = sign_in("editor")
    assert editor.post(f"/admin/lists/{list_id}/origins", data={"origin": FRONT}).status_code == 400
    viewer = sign_in("viewer")
    assert viewer.get("/admin/lists").status_code == 200
    assert viewer.post(f"/admin/lists/{list_id}/origins",
                       data={"origin": FRONT, "csrf_token": viewer.csrf}).status_code == 403
    with app.app_context():
        assert lists.get_list(list_id).entries == []


def test_deleting_a_list_in_use_is_refused_until_detach_is_confirmed(app, sign_in, rule_id):
    with app.app_context():
        list_id = lists.create_list({"name": "frontends", "origins": [FRONT]}, actor=ADMIN).id
        lists.attach_list(rule_id, list_id, actor=ADMIN)
    admin = sign_in("admin")
    refused = admin.post(f"/admin/lists/{list_id}/delete", data={"csrf_token": admin.csrf},
                         headers=HTMX)
    assert b"is used by /api/*" in refused.data
    deleted = admin.post(f"/admin/lists/{list_id}/delete",
                         data={"csrf_token": admin.csrf, "detach": "yes"}, headers=HTMX)
    assert b"Deleted origin list frontends; /api/* no longer allow its origins" in deleted.data


def test_a_tenant_editor_sees_platform_lists_read_only_and_never_another_tenants(app, sign_in):
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=ADMIN)
        create_tenant("globex", "Globex", paths=["/api/t/globex/*"], actor=ADMIN)
        platform = lists.create_list({"name": "frontends", "origins": [FRONT]}, actor=ADMIN).id
        theirs = lists.create_list({"name": "globex-shops", "tenant": "globex",
                                    "origins": ["https://globex.example"]}, actor=ADMIN).id
    tenant = sign_in("tenant-editor", tenant="acme")
    text = tenant.get("/admin/lists").get_data(as_text=True)
    assert "frontends" in text and "read-only" in text
    assert "globex-shops" not in text and "https://globex.example" not in text
    assert f'action="/admin/lists/{platform}/origins"' not in text
    assert tenant.post(f"/admin/lists/{platform}/origins",
                       data={"origin": "https://x.example", "csrf_token": tenant.csrf}
                       ).status_code == 403
    assert tenant.post(f"/admin/lists/{theirs}/origins",
                       data={"origin": "https://x.example", "csrf_token": tenant.csrf}
                       ).status_code == 404
    own = tenant.post("/admin/lists", data={"name": "shops", "csrf_token": tenant.csrf,
                                             "tenant": "globex"})
    assert own.status_code == 404


# -- the simulator's fix through a list ----------------------------------------------------


def _simulate(client, path: str = "/api/echo", origin: str = FRONT) -> str:
    return client.get("/admin/simulator", query_string={
        "origin": origin, "method": "GET", "path": path}, headers=HTMX).get_data(as_text=True)


def test_the_simulator_offers_a_list_the_rule_uses_naming_every_rule_it_changes(
        app, client, sign_in):
    with app.app_context():
        first = create_rule({"path": "/api/*"}, actor=ADMIN).id
        second = create_rule({"path": "/api/orders"}, actor=ADMIN).id
        list_id = lists.create_list({"name": "frontends"}, actor=ADMIN).id
        lists.attach_list(first, list_id, actor=ADMIN)
        lists.attach_list(second, list_id, actor=ADMIN)
    get_control(app).cache.refresh()
    editor = sign_in("editor")
    answer = _simulate(editor)
    assert 'hx-post="/admin/simulator/fix-list"' in answer
    assert (f'data-confirm="Add {FRONT} to the list frontends? This changes every rule that '
            'uses it: /api/*, /api/orders."') in answer
    assert "fix-list" not in _simulate(sign_in("viewer"))
    done = editor.post("/admin/simulator/fix-list", headers=HTMX, data={
        "origin": FRONT, "method": "GET", "path": "/api/echo", "list_id": list_id,
        "csrf_token": editor.csrf}).get_data(as_text=True)
    assert f"Done: added {FRONT} to the list frontends, which changes /api/*, /api/orders" \
        in done
    get_control(app).cache.refresh()
    for path in ("/api/echo", "/api/orders"):
        assert client.get(path, headers={"Origin": FRONT}).headers[
            "Access-Control-Allow-Origin"] == FRONT


def test_a_list_the_rule_does_not_use_is_refused_by_the_simulators_fix(app, sign_in):
    with app.app_context():
        create_rule({"path": "/api/*"}, actor=ADMIN)
        other = lists.create_list({"name": "unused"}, actor=ADMIN).id
    get_control(app).cache.refresh()
    editor = sign_in("editor")
    refused = editor.post("/admin/simulator/fix-list", headers=HTMX, data={
        "origin": FRONT, "method": "GET", "path": "/api/echo", "list_id": other,
        "csrf_token": editor.csrf}).get_data(as_text=True)
    assert "Nothing was changed" in refused
    with app.app_context():
        assert lists.get_list(other).entries == []


def test_on_a_tenant_selecting_rule_only_that_tenants_list_is_offered(app, sign_in):
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=ADMIN)
        rule = create_rule({"path": "/api/t/*/orders",
                            "tenant_selector": {"source": "view-arg", "key": "tenant"}},
                           actor=ADMIN).id
        lists.create_list({"name": "frontends"}, actor=ADMIN)
        lists.attach_list(rule, "frontends", actor=ADMIN)
    get_control(app).cache.refresh()
    answer = _simulate(sign_in("editor"), path="/api/t/acme/orders")
    assert "fix-list" not in answer  # a platform list would open it to every tenant


def test_attaching_moves_the_edit_forms_version_and_a_list_edit_leaves_it(app, sign_in,
                                                                          rule_id):
    with app.app_context():
        list_id = lists.create_list({"name": "frontends"}, actor=ADMIN).id
        version = lists.get_rule(rule_id).version
    editor = sign_in("editor")
    attached = editor.post(f"/admin/rules/{rule_id}/lists",
                           data={"list_id": list_id, "csrf_token": editor.csrf},
                           headers=HTMX).get_data(as_text=True)
    with app.app_context():
        moved = lists.get_rule(rule_id).version
    assert moved != version
    assert f'id="rule-version" value="{moved}" hx-swap-oob="true"' in attached
    with app.app_context():
        lists.add_origin_to_list(ADMIN, list_id, FRONT)
        assert lists.get_rule(rule_id).version == moved
