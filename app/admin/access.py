"""Who may do what. Every admin view declares the role it needs; the server checks it."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import abort
from flask_login import current_user

ROLE_RANK = {"viewer": 1, "editor": 2, "admin": 3}


def has_role(role: str) -> bool:
    user = current_user
    return bool(user.is_authenticated) and ROLE_RANK.get(user.role, 0) >= ROLE_RANK[role]


def requires(role: str) -> Callable:
    """Refuse with 403 unless the signed-in user has at least *role*."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            if not has_role(role):
                abort(403)
            return view(*args, **kwargs)

        wrapper.required_role = role  # type: ignore[attr-defined]
        return wrapper

    return decorate
