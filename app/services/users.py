"""Users: creation with validated input, and the first admin of a new installation."""

from __future__ import annotations

import re
import secrets

import sqlalchemy as sa

from ..extensions import db
from ..models import ROLES, User
from .errors import Conflict, FieldError, ValidationError

MIN_PASSWORD = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def create_user(email: str, password: str, *, role: str = "viewer") -> User:
    errors: list[FieldError] = []
    email = (email or "").strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        errors.append(FieldError("email", "enter an email address such as ops@example.com"))
    if len(password or "") < MIN_PASSWORD:
        errors.append(FieldError("password", f"use at least {MIN_PASSWORD} characters"))
    if role not in ROLES:
        errors.append(FieldError("role", f"role must be one of {', '.join(ROLES)}"))
    if errors:
        raise ValidationError(errors)
    if db.session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user {email} already exists")
    user = User(email=email, role=role, active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
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
