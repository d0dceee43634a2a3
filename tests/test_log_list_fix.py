"""The request log's "allow" on a shared list: offered when the simulator's list fix is, named
with every rule it changes, only to users who may change that list (service and page)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, RequestLogEntry
from app.request_log import get_request_log
from app.services import origin_lists as lists
from app.services.access import Actor
from app.services.errors import ValidationError
from app.services.log_fixes import allow_from_log, log_list_targets
from app.services.policy import create_rule
from app.services.tenants import create_tenant
from cors_control import get_control

ADMIN = Actor("admin@example.com", "cli")
EDITOR = Actor("editor@example.com", "dashboard", role="editor")
FRONT = "https://front.example.com"
HTMX = {"HX-Request": "true"}


def refuse(app, client, path: str = "/api/orders", origin: str = FRONT) -> int:
    client.get(path, headers={"Origin": origin})
    get_request_log(app).recorder.flush()
    with app.app_context():
        return db.session.scalar(sa.select(RequestLogEntry.id).where(
            RequestLogEntry.origin == origin, RequestLogEntry.path == path))


@pytest.fixture
def shared(app):
    """/api/* and /api/orders both use the platform list frontends; /api/public/* uses none."""
    with app.app_context():
        first = create_rule({"path": "/api/*"}, actor=ADMIN).id
        second = create_rule({"path": "/api/orders"}, actor=ADMIN).id
        create_rule({"path": "/api/public/*"}, actor=ADMIN)
        list_id = lists.create_list({"name": "frontends"}, actor=ADMIN).id
        unused = lists.create_list({"name": "unused"}, actor=ADMIN).id
        lists.attach_list(first, list_id, actor=ADMIN)
        lists.attach_list(second, list_id, actor=ADMIN)
    get_control(app).cache.refresh()
    return {"list": list_id, "unused": unused, "orders": second}


def _entry(app, entry_id: int) -> RequestLogEntry:
    return db.session.get(RequestLogEntry, entry_id)


# -- service -------------------------------------------------------------------------------


def test_the_log_offers_the_lists_the_simulator_offers_and_adds_to_one(app, client, shared):
    entry_id = refuse(app, client)
    snapshot = get_control(app).cache.get()
    with app.app_context():
        entry = _entry(app, entry_id)
        (target,) = log_list_targets(entry, snapshot, actor=EDITOR)
        assert (target.list_id, target.name, target.rules) == (
            shared["list"], "frontends", ("/api/*", "/api/orders"))
        assert log_list_targets(entry, snapshot, actor=Actor("v@example.com", "dashboard",
                                                             role="viewer")) == []
        message = allow_from_log(entry, snapshot, target=f"list:{shared['list']}",
                                 actor=EDITOR, routes=get_control(app))
        assert message == (f"Done: added {FRONT} to the list frontends, which changes "
                           "/api/*, /api/orders.")
        assert [e.value for e in lists.get_list(shared["list"]).entries] == [FRONT]
        audit = db.session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "list.add")).one()
        assert "/api/*" in audit.summary and "/api/orders" in audit.summary
    get_control(app).cache.refresh()
    for path in ("/api/orders", "/api/echo"):
        assert client.get(path, headers={"Origin": FRONT}).headers.get(
            "Access-Control-Allow-Origin") == FRONT


@pytest.mark.parametrize("target, message", [
    ("list", "allow on one of: rule, list:<id> (a shared list the rule uses)"),
    ("rule:3", "allow on one of: rule, list:<id> (a shared list the rule uses)"),
    ("shelf:1", "allow on one of: rule, list:<id> (a shared list the rule uses)"),
    ("list:abc", "name the list as list:<id>, such as list:3"),
])
def test_a_malformed_target_says_how_to_name_one(app, client, shared, target, message):
    entry_id = refuse(app, client)
    with app.app_context():
        with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(
                ")", r"\)")):
            allow_from_log(_entry(app, entry_id), get_control(app).cache.get(), target=target,
                           actor=EDITOR)


def test_a_list_the_rule_does_not_use_is_refused_and_left_alone(app, client, shared):
    entry_id = refuse(app, client, path="/api/public/x")
    with app.app_context():
        entry = _entry(app, entry_id)
        snapshot = get_control(app).cache.get()
        assert log_list_targets(entry, snapshot, actor=EDITOR) == []
        for list_id in (shared["list"], shared["unused"]):
            with pytest.raises(ValidationError):
                allow_from_log(entry, snapshot, target=f"list:{list_id}", actor=EDITOR)
            assert lists.get_list(list_id).entries == []


def test_a_platform_list_on_a_tenant_selecting_rule_is_not_a_target(app, client):
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=ADMIN)
        rule = create_rule({"path": "/api/t/*/orders",
                            "tenant_selector": {"source": "view-arg", "key": "tenant"}},
                           actor=ADMIN).id
        list_id = lists.create_list({"name": "frontends"}, actor=ADMIN).id
        lists.attach_list(rule, list_id, actor=ADMIN)
    get_control(app).cache.refresh()
    entry_id = refuse(app, client, path="/api/t/acme/orders")
    with app.app_context():
        entry = _entry(app, entry_id)
        assert entry.tenant == "acme"
        snapshot = get_control(app).cache.get()
        # It would open the origin to every tenant, not only acme as the rule's fix does.
        assert log_list_targets(entry, snapshot, actor=ADMIN) == []
        with pytest.raises(ValidationError):
            allow_from_log(entry, snapshot, target=f"list:{list_id}", actor=ADMIN)
        assert lists.get_list(list_id).entries == []


# -- page and fragment ---------------------------------------------------------------------


def test_the_log_page_offers_each_list_with_the_rules_it_changes(app, client, shared, sign_in):
    entry_id = refuse(app, client)
    editor = sign_in("editor")
    page = editor.get("/admin/log?group=none").get_data(as_text=True)
    assert "Allow on this rule" in page and "Add to list frontends" in page
    assert f'value="list:{shared["list"]}"' in page
    assert (f'data-confirm="Add {FRONT} to the list frontends? This changes every rule that '
            'uses it: /api/*, /api/orders."') in page
    assert "unused" not in page
    grouped = editor.get("/admin/log").get_data(as_text=True)  # grouped by origin
    assert "Add to list frontends" in grouped
    viewer = sign_in("viewer").get("/admin/log?group=none").get_data(as_text=True)
    assert "Add to list" not in viewer
    done = editor.post(f"/admin/log/{entry_id}/allow", headers=HTMX, data={
        "csrf_token": editor.csrf, "target": f"list:{shared['list']}", "next": "/admin/log"})
    fragment = done.get_data(as_text=True)
    assert done.status_code == 200 and "<html" not in fragment
    assert f"Done: added {FRONT} to the list frontends, which changes /api/*, /api/orders." \
        in fragment
    assert "Add to list frontends" not in fragment and "Allow on this rule" not in fragment
    assert '<span class="badge allowed">allowed now</span>' in editor.get(
        "/admin/log?group=none").get_data(as_text=True)
    assert client.get("/api/orders", headers={"Origin": FRONT}).headers.get(
        "Access-Control-Allow-Origin") == FRONT


def test_without_javascript_it_returns_to_the_log_with_the_message(app, client, shared,
                                                                  sign_in):
    entry_id = refuse(app, client)
    editor = sign_in("editor")
    done = editor.post(f"/admin/log/{entry_id}/allow", data={
        "csrf_token": editor.csrf, "target": f"list:{shared['list']}",
        "next": "/admin/log?group=none"})
    assert done.status_code == 303 and done.headers["Location"] == "/admin/log?group=none"
    page = editor.get(done.headers["Location"]).get_data(as_text=True)
    assert "Done: added https://front.example.com to the list frontends" in page


def test_the_post_needs_csrf_and_a_writer(app, client, shared, sign_in):
    entry_id = refuse(app, client)
    editor = sign_in("editor")
    assert editor.post(f"/admin/log/{entry_id}/allow",
                       data={"target": f"list:{shared['list']}"}).status_code == 400
    viewer = sign_in("viewer")
    assert viewer.post(f"/admin/log/{entry_id}/allow", data={
        "csrf_token": viewer.csrf, "target": f"list:{shared['list']}"}).status_code == 403
    with app.app_context():
        assert lists.get_list(shared["list"]).entries == []


def test_a_tenant_editor_may_add_only_to_its_own_tenants_list(app, client, sign_in):
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=ADMIN)
        create_tenant("globex", "Globex", paths=["/api/t/globex/*"], actor=ADMIN)
        rule = create_rule({"path": "/api/t/acme/*", "tenant": "acme"}, actor=ADMIN).id
        platform = lists.create_list({"name": "frontends"}, actor=ADMIN).id
        own = lists.create_list({"name": "shops", "tenant": "acme"}, actor=ADMIN).id
        theirs = lists.create_list({"name": "globex-shops", "tenant": "globex"},
                                   actor=ADMIN).id
        lists.attach_list(rule, platform, actor=ADMIN)
        lists.attach_list(rule, own, actor=ADMIN)
    get_control(app).cache.refresh()
    entry_id = refuse(app, client, path="/api/t/acme/orders")
    tenant = sign_in("tenant-editor", tenant="acme")
    page = tenant.get("/admin/log?group=none").get_data(as_text=True)
    assert "Add to list shops" in page
    assert "Add to list frontends" not in page and "globex" not in page
    admin_page = sign_in("admin").get("/admin/log?group=none").get_data(as_text=True)
    assert "Add to list frontends" in admin_page and "Add to list shops" in admin_page
    for list_id in (platform, theirs):
        refused = tenant.post(f"/admin/log/{entry_id}/allow", headers=HTMX, data={
            "csrf_token": tenant.csrf, "target": f"list:{list_id}"}).get_data(as_text=True)
        assert f"{FRONT} was not allowed" in refused
    with app.app_context():
        assert lists.get_list(platform).entries == []
        assert lists.get_list(theirs).entries == []
    done = tenant.post(f"/admin/log/{entry_id}/allow", headers=HTMX, data={
        "csrf_token": tenant.csrf, "target": f"list:{own}"}).get_data(as_text=True)
    assert f"Done: added {FRONT} to the list shops, which changes /api/t/acme/*." in done
    with app.app_context():
        assert [e.value for e in lists.get_list(own).entries] == [FRONT]
