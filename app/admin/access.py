"""Who may do what. Every admin view declares the role it needs; the server checks it.

The role decides which kinds of action a user may take; which objects it may take them on is
the service layer's decision (:mod:`app.services.access`), given :func:`current_actor`. A
tenant role ranks with its platform counterpart (a tenant-editor may change rules, a
tenant-viewer may read), and the services narrow it to its tenant's rules and origins. Pages
about the whole platform (route coverage, users, tenants, API tokens) are closed to tenant
roles altogether: :func:`requires_platform`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import abort
from flask_login import current_user

from ..models import TENANT_ROLES
from ..services.access import Actor, has_rank

# What a view may require: the platform roles (a tenant role counts as its counterpart).
REQUIRABLE = ("viewer", "editor", "admin")


def current_actor() -> Actor:
    """The signed-in user as the services' actor: its role, and its tenant for tenant roles."""
    return Actor(current_user.email, "dashboard", current_user.role, current_user.tenant_id)


def has_role(role: str) -> bool:
    user = current_user
    return bool(user.is_authenticated) and has_rank(user.role, role)


def is_platform_user() -> bool:
    """Whether the signed-in user works on the whole platform (not one tenant's account)."""
    return bool(current_user.is_authenticated) and current_user.role not in TENANT_ROLES


def requires(role: str, *, platform: bool = False) -> Callable:
    """Refuse with 403 unless the signed-in user has at least *role*; with *platform*, tenant
    roles are refused whatever their rank."""
    if role not in REQUIRABLE:
        raise ValueError(f"unknown role {role!r}; require one of {', '.join(REQUIRABLE)}")

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            if not has_role(role) or (platform and not is_platform_user()):
                abort(403)
            return view(*args, **kwargs)

        # Read by the test that checks every admin view declares its role.
        wrapper.required_role = role  # type: ignore[attr-defined]  # a marker on the function
        wrapper.platform_only = platform  # type: ignore[attr-defined]  # a marker on the function
        return wrapper

    return decorate


def requires_platform(role: str) -> Callable:
    """Like :func:`requires`, for pages about the whole platform that a tenant role must never
    see: every route and rule, users, tenants, API tokens."""
    return requires(role, platform=True)
