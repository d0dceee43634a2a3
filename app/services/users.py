"""Users: creation with validated input, the first admin of a new installation, and the
changes admins make to accounts (disable, enable, role, password).

Every change made on behalf of someone (an :class:`~app.services.access.Actor`) is recorded in
the audit trail. User changes do not move the policy version: the engine does not depend on
users. The audit entry carries the current version so it sorts among the policy changes.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from ..extensions import db
from ..models import ROLES, TENANT_ROLES, Tenant, User
from .access import Actor
from .auth import forget_failed_sign_ins
from .changes import Change, Unchanged, policy_change
from .errors import Conflict, FieldError, NotFound, ValidationError

MIN_PASSWORD = 10
# Roles of the people who run the platform: admin (everything), editor (rules and origins),
# viewer (read-only). The tenant roles (TENANT_ROLES) belong to accounts of one tenant.
PLATFORM_ROLES = ("admin", "editor", "viewer")
# What a uniqueness rule broken at the last moment most likely means for an account.
_CONFLICT = ("the change conflicts with a change made meanwhile (for example, a user created "
             "with the same email); reload the page and try again")
MAX_EMAIL = 254


def normalized_email(text: str) -> tuple[str, str | None]:
    """The address as stored (lowercase, international domains normalised), and what is
    wrong with it, if anything. Syntax only: whether mail is delivered there is not asked
    (no DNS lookup while an admin waits)."""
    text = (text or "").strip()
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        return text.lower(), (f"{str(error).rstrip('.')}; enter an email address such as "
                              "ops@example.com")
    email = checked.normalized.lower()
    if len(email) > MAX_EMAIL:
        return email, f"an email address has at most {MAX_EMAIL} characters"
    return email, None


def list_users() -> list[User]:
    return list(db.session.scalars(sa.select(User).order_by(User.email)))


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"there is no user with id {user_id}")
    return user


def get_user_by_email(email: str) -> User:
    user = db.session.scalar(sa.select(User).where(User.email == (email or "").strip().lower()))
    if user is None:
        raise NotFound(f"there is no user {email}; `flask users list` shows them")
    return user


def create_user(email: str, password: str, *, role: str = "viewer",
                tenant: str | None = None, actor: Actor | None = None) -> User:
    """Create an active user; with *actor*, the creation is recorded in the audit trail.

    A tenant role (``tenant-editor``, ``tenant-viewer``) needs *tenant*, the slug of the one
    tenant the account may see and change; the platform roles take none.
    """
    errors: list[FieldError] = []
    email, email_error = normalized_email(email)
    if email_error:
        errors.append(FieldError("email", email_error))
    errors.extend(_password_errors(password))
    errors.extend(_role_errors(role, ROLES))
    tenant_id, tenant_errors = _tenant_of(role, (tenant or "").strip() or None)
    errors.extend(tenant_errors)
    if errors:
        raise ValidationError(errors)
    with _account_change(actor) as change:
        if db.session.scalar(sa.select(User.id).where(User.email == email)) is not None:
            raise Conflict(f"a user {email} already exists")
        user = User(email=email, role=role, active=True, tenant_id=tenant_id)
        user.set_password(password)
        db.session.add(user)
        if actor is not None:
            db.session.flush()
            change.audit("user.create",
                         f"created {role} {email}" + (f" of tenant {tenant}" if tenant_id else ""),
                         after=_state(user), tenant_id=user.tenant_id)
    return user


def set_user_active(user_id: int, active: bool, *, actor: Actor) -> User:
    """Disable or re-enable an account. A disabled user cannot sign in and is signed out;
    re-enabled, they sign in again (their old sessions stay ended).

    Refused when it would leave no active admin.
    """
    try:
        with _account_change(actor) as change:
            user = get_user(user_id)
            if user.active == active:
                raise Unchanged(user)
            before = _state(user)
            _lock_active_admins()
            user.active = active
            user.end_sessions()
            _refuse_without_admin(user, actor, "", "disabling")
            verb = "enabled" if active else "disabled"
            change.audit("user.enable" if active else "user.disable", f"{verb} {user.email}",
                         before=before, after=_state(user), tenant_id=user.tenant_id)
    except Unchanged as unchanged:
        return unchanged.result
    return user


def set_user_role(user_id: int, role: str, *, actor: Actor) -> User:
    """Change a user's role within its kind: a platform account among the platform roles, a
    tenant's account among the tenant roles. Refused when it would leave no active admin."""
    errors = _role_errors(role, ROLES)
    if errors:
        raise ValidationError(errors)
    try:
        with _account_change(actor) as change:
            user = get_user(user_id)
            if user.role == role:
                raise Unchanged(user)
            if user.tenant_id is not None and role not in TENANT_ROLES:
                raise ValidationError([FieldError("role", (
                    f"{user.email} belongs to a tenant and keeps a tenant role; create a "
                    "separate account for work on the whole platform"))])
            if user.tenant_id is None and role in TENANT_ROLES:
                raise ValidationError([FieldError("role", (
                    f"{user.email} is a platform account; create a separate account for the "
                    "tenant, with its tenant"))])
            before = _state(user)
            _lock_active_admins()
            user.role = role
            user.end_sessions()  # sessions signed in under the old role end
            _refuse_without_admin(user, actor, "role", "demoting")
            change.audit("user.role",
                         f"changed the role of {user.email} from {before['role']} to {role}",
                         before=before, after=_state(user), tenant_id=user.tenant_id)
    except Unchanged as unchanged:
        return unchanged.result
    return user


def reset_password(user_id: int, password: str, *, actor: Actor) -> User:
    """Set a new password, end the user's sessions and clear their sign-in delay; the audit
    entry records that it changed, never the password."""
    errors = _password_errors(password)
    if errors:
        raise ValidationError(errors)
    with _account_change(actor) as change:
        user = get_user(user_id)
        user.set_password(password)
        user.end_sessions()
        forget_failed_sign_ins(user.email)
        change.audit("user.password", f"reset the password of {user.email}",
                     tenant_id=user.tenant_id)
    return user


def ensure_first_admin(email: str, password: str | None) -> tuple[User | None, str | None]:
    """Create an admin when there is no user at all.

    Returns (the new user, the generated password) — the password only when it was generated
    here, so the caller can print it once. Returns (None, None) when users already exist.
    """
    if db.session.scalar(sa.select(sa.func.count(User.id))):
        return None, None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(15)
    return create_user(email, password, role="admin"), generated


# -- internals ---------------------------------------------------------------------------------


def _password_errors(password: str) -> list[FieldError]:
    if len(password or "") < MIN_PASSWORD:
        return [FieldError("password", f"use at least {MIN_PASSWORD} characters")]
    return []


def _role_errors(role: str, roles: tuple[str, ...] = PLATFORM_ROLES) -> list[FieldError]:
    if role not in roles:
        return [FieldError("role", f"role must be one of {', '.join(roles)}")]
    return []


def _tenant_of(role: str, slug: str | None) -> tuple[int | None, list[FieldError]]:
    """The tenant id a new account of *role* belongs to, or the errors that explain why not."""
    if role not in TENANT_ROLES:
        if slug:
            return None, [FieldError("tenant", (
                f"the {role} role works on the whole platform, without a tenant; choose "
                "tenant-editor or tenant-viewer for an account of one tenant"))]
        return None, []
    if not slug:
        return None, [FieldError("tenant", f"a {role} belongs to one tenant; choose it")]
    tenant_id = db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == slug))
    if tenant_id is None:
        return None, [FieldError("tenant", f"there is no tenant {slug}; create it on the "
                                           "Tenants page first")]
    return tenant_id, []


def _state(user: User) -> dict[str, Any]:
    state: dict[str, Any] = {"email": user.email, "role": user.role, "active": user.active}
    if user.tenant_id is not None:
        tenant = db.session.get(Tenant, user.tenant_id)
        state["tenant"] = tenant.slug if tenant is not None else None
    return state


def _lock_active_admins() -> None:
    """Lock the active admins' rows (PostgreSQL) so two admins demoting or disabling each
    other at the same moment cannot both succeed; SQLite serialises writers by itself."""
    db.session.execute(
        sa.select(User.id).where(User.role == "admin", User.active.is_(True))
        .order_by(User.id).with_for_update()
    ).all()


def _refuse_without_admin(user: User, actor: Actor, field: str, doing: str) -> None:
    """Refuse a change that leaves no active admin. Counted after the change is flushed, so
    the count includes concurrent writers that committed first (their locks were waited for).
    The refusal rolls the change back.
    """
    db.session.flush()
    admins = db.session.scalar(sa.select(sa.func.count(User.id)).where(
        User.role == "admin", User.active.is_(True)))
    if admins:
        return
    email = user.email
    who, whom = ("you are", "yourself") if actor.name == email else (f"{email} is", "them")
    raise ValidationError([FieldError(field, (
        f"{who} the last active admin; {doing} {whom} would leave nobody able to manage "
        "users. Make another user an admin first."))])


def _account_change(actor: Actor | None) -> AbstractContextManager[Change]:
    """A change to accounts: one transaction that leaves the policy version alone. Its audit
    entries carry the account's tenant: a tenant's accounts show in its own audit trail."""
    return policy_change(actor, bump_version=False, conflict=_CONFLICT)
