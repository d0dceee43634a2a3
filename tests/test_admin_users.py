"""The Users page: admins create, disable, enable, re-role and reset accounts; all audited."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, User
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.errors import ValidationError
from app.services.users import set_user_role
from tests.conftest import PASSWORD, csrf_token_of

HTMX = {"HX-Request": "true"}
NEW_PASSWORD = "another-long-password"


def _user(app, email: str) -> User:
    with app.app_context():
        user = db.session.scalars(sa.select(User).where(User.email == email)).one()
        db.session.expunge(user)
        return user


def _entries(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        entries = db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        ).all()
        db.session.expunge_all()
        return list(entries)


def _state_changing_requests(user_id: int) -> list[tuple[str, dict]]:
    return [
        ("/admin/users", {"email": "new@example.com", "password": NEW_PASSWORD,
                          "role": "viewer"}),
        (f"/admin/users/{user_id}/disable", {}),
        (f"/admin/users/{user_id}/enable", {}),
        (f"/admin/users/{user_id}/role", {"role": "admin"}),
        (f"/admin/users/{user_id}/password", {"password": NEW_PASSWORD}),
    ]


def test_users_page_lists_accounts_as_a_page_and_as_an_htmx_fragment(sign_in):
    admin = sign_in("admin")
    page = admin.get("/admin/users")
    fragment = admin.get("/admin/users", headers=HTMX)
    assert page.status_code == fragment.status_code == 200
    assert "<html" in page.get_data(as_text=True)
    assert "<html" not in fragment.get_data(as_text=True)
    for response in (page, fragment):
        assert admin.user_email in response.get_data(as_text=True)
        assert 'action="/admin/users"' in response.get_data(as_text=True)
        assert "HX-Request" in response.headers["Vary"]


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_admins_may_see_or_change_users(app, sign_in, role):
    client = sign_in(role)
    target = _user(app, client.user_email)
    assert client.get("/admin/users").status_code == 403
    assert client.get("/admin/users", headers=HTMX).status_code == 403
    for url, data in _state_changing_requests(target.id):
        response = client.post(url, data={**data, "csrf_token": client.csrf})
        assert response.status_code == 403, url
    after = _user(app, client.user_email)
    assert (after.role, after.active) == (role, True)
    assert after.password_hash == target.password_hash
    assert _user_count(app) == 1
    assert _entries(app, "user.create") == []


def test_posts_without_a_csrf_token_are_refused(app, sign_in):
    admin = sign_in("admin")
    target = _user(app, admin.user_email)
    for url, data in _state_changing_requests(target.id):
        assert admin.post(url, data=data).status_code == 400, url
    assert _user_count(app) == 1
    assert _user(app, admin.user_email).active


def test_admin_creates_a_user_with_a_hashed_password_and_an_audit_entry(app, sign_in):
    admin = sign_in("admin")
    with app.app_context():
        version = policy_version()
    response = admin.post("/admin/users", data={
        "email": " Ops@Example.com ", "password": NEW_PASSWORD, "role": "editor",
        "csrf_token": admin.csrf})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/users"
    assert "Created editor ops@example.com." in admin.get("/admin/users").get_data(as_text=True)
    user = _user(app, "ops@example.com")
    assert user.role == "editor" and user.active
    assert user.password_hash.startswith("scrypt:")
    assert user.check_password(NEW_PASSWORD)
    [entry] = _entries(app, "user.create")
    assert (entry.actor, entry.channel, entry.rule_id) == (admin.user_email, "dashboard", None)
    assert entry.after == {"email": "ops@example.com", "role": "editor", "active": True}
    assert entry.summary == "created editor ops@example.com"
    assert NEW_PASSWORD not in str(entry.after) and entry.policy_version == version
    with app.app_context():
        assert policy_version() == version  # user changes do not move the policy version


def test_a_created_user_can_sign_in_with_their_role(app, sign_in):
    admin = sign_in("admin")
    admin.post("/admin/users", data={"email": "reader@example.com", "password": NEW_PASSWORD,
                                     "role": "viewer", "csrf_token": admin.csrf})
    reader = app.test_client()
    reader.post("/admin/login", data={"email": "reader@example.com", "password": NEW_PASSWORD,
                                      "csrf_token": csrf_token_of(reader)})
    assert reader.get("/admin/").status_code == 200
    assert reader.get("/admin/users").status_code == 403


@pytest.mark.parametrize(("form", "message"), [
    ({"email": "not-an-email", "password": NEW_PASSWORD, "role": "viewer"},
     "enter an email address such as ops@example.com"),
    ({"email": "ops@example.com", "password": "short", "role": "viewer"},
     "use at least 10 characters"),
    ({"email": "ops@example.com", "password": NEW_PASSWORD, "role": "owner"},
     "role must be one of admin, editor, viewer"),
])
def test_creating_a_user_with_bad_input_shows_the_field_message(app, sign_in, form, message):
    admin = sign_in("admin")
    page = admin.post("/admin/users", data={**form, "csrf_token": admin.csrf})
    fragment = admin.post("/admin/users", data={**form, "csrf_token": admin.csrf},
                          headers=HTMX)
    assert page.status_code == 422 and "<html" in page.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in fragment.get_data(as_text=True)
    for response in (page, fragment):
        body = response.get_data(as_text=True)
        assert 'class="field-error"' in body and message in body
        assert NEW_PASSWORD not in body  # the password is never echoed back
    assert _user_count(app) == 1
    assert _entries(app, "user.create") == []


def test_creating_a_user_whose_email_exists_says_so(app, sign_in):
    admin = sign_in("admin")
    response = admin.post("/admin/users", data={
        "email": admin.user_email.upper(), "password": NEW_PASSWORD, "role": "viewer",
        "csrf_token": admin.csrf})
    assert response.status_code == 422
    assert f"a user {admin.user_email} already exists" in response.get_data(as_text=True)
    assert _user_count(app) == 1


def test_htmx_create_answers_with_the_users_fragment_and_a_notice(app, sign_in):
    admin = sign_in("admin")
    response = admin.post("/admin/users", headers=HTMX, data={
        "email": "new@example.com", "password": NEW_PASSWORD, "role": "viewer",
        "csrf_token": admin.csrf})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<div id="users">')
    assert "Created viewer new@example.com." in body
    assert _user(app, "new@example.com").role == "viewer"


def test_disabling_a_user_signs_them_out_and_enabling_lets_them_back_in(app, sign_in):
    admin = sign_in("admin")
    editor = sign_in("editor")
    target = _user(app, editor.user_email)
    response = admin.post(f"/admin/users/{target.id}/disable", data={"csrf_token": admin.csrf})
    assert response.status_code == 302
    assert f"Disabled {editor.user_email}" in admin.get("/admin/users").get_data(as_text=True)
    assert not _user(app, editor.user_email).active
    assert editor.get("/admin/").status_code == 302  # their session no longer counts

    admin.post(f"/admin/users/{target.id}/enable", data={"csrf_token": admin.csrf})
    assert _user(app, editor.user_email).active
    [disabled] = _entries(app, "user.disable")
    [enabled] = _entries(app, "user.enable")
    assert disabled.before["active"] is True and disabled.after["active"] is False
    assert enabled.before["active"] is False and enabled.after["active"] is True
    assert {disabled.actor, enabled.actor} == {admin.user_email}
    assert disabled.channel == enabled.channel == "dashboard"
    assert disabled.rule_id is None and enabled.rule_id is None


def test_changing_a_role_is_applied_and_audited(app, sign_in):
    admin = sign_in("admin")
    viewer = sign_in("viewer")
    target = _user(app, viewer.user_email)
    admin.post(f"/admin/users/{target.id}/role", data={"role": "editor",
                                                       "csrf_token": admin.csrf})
    assert _user(app, viewer.user_email).role == "editor"
    assert viewer.get("/admin/users").status_code == 302  # the role change ended the session
    editor = app.test_client()
    editor.post("/admin/login", data={"email": viewer.user_email, "password": PASSWORD,
                                      "csrf_token": csrf_token_of(editor)})
    assert editor.get("/admin/rules").status_code == 200
    assert editor.get("/admin/users").status_code == 403
    [entry] = _entries(app, "user.role")
    assert (entry.before["role"], entry.after["role"]) == ("viewer", "editor")
    assert entry.summary == f"changed the role of {viewer.user_email} from viewer to editor"


def test_changing_to_an_unknown_role_shows_the_message_and_changes_nothing(app, sign_in):
    admin = sign_in("admin")
    viewer = sign_in("viewer")
    target = _user(app, viewer.user_email)
    response = admin.post(f"/admin/users/{target.id}/role", follow_redirects=True,
                          data={"role": "superuser", "csrf_token": admin.csrf})
    assert "role must be one of admin, editor, viewer" in response.get_data(as_text=True)
    assert _user(app, viewer.user_email).role == "viewer"
    assert _entries(app, "user.role") == []


def test_row_actions_over_htmx_answer_with_the_row_fragment(app, sign_in):
    admin = sign_in("admin")
    viewer = sign_in("viewer")
    target = _user(app, viewer.user_email)
    response = admin.post(f"/admin/users/{target.id}/role", headers=HTMX,
                          data={"role": "editor", "csrf_token": admin.csrf})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert f'<tbody id="user-{target.id}">' in body
    assert f"{viewer.user_email} is now editor." in body
    assert '<option value="editor" selected>' in body


@pytest.mark.parametrize(("action", "data"), [
    ("disable", {}),
    ("role", {"role": "editor"}),
])
def test_the_last_active_admin_cannot_disable_or_demote_themselves(app, sign_in, action,
                                                                    data):
    admin = sign_in("admin")
    disabled_admin = sign_in("admin")  # a disabled admin does not count
    with app.app_context():
        db.session.execute(sa.update(User).where(User.email == disabled_admin.user_email)
                           .values(active=False))
        db.session.commit()
    me = _user(app, admin.user_email)
    for headers in ({}, HTMX):
        response = admin.post(f"/admin/users/{me.id}/{action}", headers=headers,
                              follow_redirects=True, data={**data, "csrf_token": admin.csrf})
        body = response.get_data(as_text=True)
        assert response.status_code == 200
        assert "you are the last active admin" in body
        assert "Make another user an admin first." in body
    after = _user(app, admin.user_email)
    assert (after.role, after.active) == ("admin", True)
    assert _entries(app, "user.disable") == _entries(app, "user.role") == []


def test_two_admins_demoting_each_other_at_the_same_moment_leave_one_admin(app, sign_in):
    first, second = _user(app, sign_in("admin").user_email), \
        _user(app, sign_in("admin").user_email)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(actor: User, target: User) -> None:
        with app.app_context():
            start.wait()
            try:
                set_user_role(target.id, "viewer", actor=Actor(actor.email, "dashboard"))
                outcomes.append("demoted")
            except ValidationError as error:
                outcomes.append(str(error))

    threads = [threading.Thread(target=demote, args=pair)
               for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    with app.app_context():
        [remaining] = db.session.scalars(sa.select(User.email).where(
            User.role == "admin", User.active.is_(True))).all()
    assert sorted(outcomes) == ["demoted", f"role: {remaining} is the last active admin; "
                                           "demoting them would leave nobody able to manage "
                                           "users. Make another user an admin first."]


def test_an_admin_may_step_down_while_another_admin_remains(app, sign_in):
    admin = sign_in("admin")
    sign_in("admin")
    me = _user(app, admin.user_email)
    admin.post(f"/admin/users/{me.id}/role", data={"role": "viewer", "csrf_token": admin.csrf})
    assert _user(app, admin.user_email).role == "viewer"
    assert admin.get("/admin/users").status_code == 403


def test_resetting_a_password_replaces_it_and_audits_without_the_secret(app, sign_in):
    admin = sign_in("admin")
    editor = sign_in("editor")
    target = _user(app, editor.user_email)
    short = admin.post(f"/admin/users/{target.id}/password", follow_redirects=True,
                       data={"password": "short", "csrf_token": admin.csrf})
    assert "password: use at least 10 characters" in short.get_data(as_text=True)
    assert _user(app, editor.user_email).check_password(PASSWORD)

    admin.post(f"/admin/users/{target.id}/password",
               data={"password": NEW_PASSWORD, "csrf_token": admin.csrf})
    user = _user(app, editor.user_email)
    assert user.check_password(NEW_PASSWORD) and not user.check_password(PASSWORD)
    [entry] = _entries(app, "user.password")
    assert entry.summary == f"reset the password of {editor.user_email}"
    assert entry.before is None and entry.after is None


def test_changing_an_unknown_user_is_not_found(sign_in):
    admin = sign_in("admin")
    for action in ("disable", "enable", "role", "password"):
        response = admin.post(f"/admin/users/999999/{action}",
                              data={"role": "viewer", "password": NEW_PASSWORD,
                                    "csrf_token": admin.csrf})
        assert response.status_code == 404, action


def test_emails_are_escaped_on_the_users_page_and_in_the_audit_trail(app, sign_in):
    """Such an address is refused today (email-validator); one stored before that, and the
    refusal that quotes it, are still shown as text."""
    admin = sign_in("admin")
    hostile = "<script>alert(1)</script>@example.com"
    refused = admin.post("/admin/users", data={"email": hostile, "password": NEW_PASSWORD,
                                               "role": "viewer", "csrf_token": admin.csrf})
    assert refused.status_code == 422
    assert "<script>alert(1)</script>" not in refused.get_data(as_text=True)
    with app.app_context():
        user = User(email=hostile, role="viewer", active=True)
        user.set_password(NEW_PASSWORD)
        db.session.add(user)
        db.session.commit()
        set_user_role(user.id, "editor", actor=Actor("root", "cli"))
    for url in ("/admin/users", "/admin/audit"):
        body = admin.get(url).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;@example.com" in body


def _user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(User.id)))


# -- accounts of a tenant --------------------------------------------------------------------


@pytest.fixture
def acme(app) -> int:
    from app.services.tenants import create_tenant

    with app.app_context():
        return create_tenant("acme", "Acme Corp", actor=Actor("root", "cli")).id


def test_admin_creates_an_account_of_a_tenant_with_a_tenant_role(app, sign_in, acme):
    admin = sign_in("admin")
    page = admin.get("/admin/users").get_data(as_text=True)
    assert '<option value="tenant-editor"' in page and '<option value="acme"' in page
    response = admin.post("/admin/users", follow_redirects=True, data={
        "email": "ed@acme.example", "password": NEW_PASSWORD, "role": "tenant-editor",
        "tenant": "acme", "csrf_token": admin.csrf})
    assert "Created tenant-editor ed@acme.example of tenant acme." in \
        response.get_data(as_text=True)
    user = _user(app, "ed@acme.example")
    assert (user.role, user.tenant_id) == ("tenant-editor", acme)
    entry = _entries(app, "user.create")[-1]
    assert entry.tenant_id == acme and entry.after["tenant"] == "acme"
    row = admin.get("/admin/users").get_data(as_text=True).split(f'id="user-{user.id}"')[1]
    row = row.split("</tbody>")[0]
    assert "<code>acme</code>" in row
    # A tenant's account moves between the tenant roles only.
    assert '<option value="tenant-viewer"' in row and '<option value="admin"' not in row


@pytest.mark.parametrize(("form", "message"), [
    ({"role": "tenant-viewer", "tenant": ""}, "a tenant-viewer belongs to one tenant"),
    ({"role": "tenant-editor", "tenant": "globex"}, "there is no tenant globex"),
    ({"role": "editor", "tenant": "acme"}, "the editor role works on the whole platform"),
])
def test_tenant_roles_need_a_tenant_and_platform_roles_refuse_one(app, sign_in, acme, form,
                                                                  message):
    admin = sign_in("admin")
    response = admin.post("/admin/users", data={
        "email": "someone@example.com", "password": NEW_PASSWORD, **form,
        "csrf_token": admin.csrf})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert _user_count(app) == 1


def test_an_account_keeps_its_kind_when_its_role_changes(app, sign_in, acme):
    admin = sign_in("admin")
    tenant_user = sign_in("tenant-viewer", tenant="acme")
    platform_user = sign_in("viewer")
    target = _user(app, tenant_user.user_email)
    admin.post(f"/admin/users/{target.id}/role",
               data={"role": "tenant-editor", "csrf_token": admin.csrf})
    assert _user(app, tenant_user.user_email).role == "tenant-editor"
    refused = admin.post(f"/admin/users/{target.id}/role", follow_redirects=True,
                         data={"role": "editor", "csrf_token": admin.csrf})
    assert "belongs to a tenant and keeps a tenant role" in refused.get_data(as_text=True)
    other = _user(app, platform_user.user_email)
    refused = admin.post(f"/admin/users/{other.id}/role", follow_redirects=True,
                         data={"role": "tenant-editor", "csrf_token": admin.csrf})
    assert "is a platform account" in refused.get_data(as_text=True)
    assert _user(app, tenant_user.user_email).role == "tenant-editor"
    assert _user(app, platform_user.user_email).role == "viewer"
