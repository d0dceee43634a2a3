"""Signing in: password check with throttling per account and per client address.

Failures are counted in the database so every worker and host shares the count. The answer
never says whether an account exists: unknown accounts are throttled like known ones and the
password check costs the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import SignInThrottle, User
from .errors import ServiceError

ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 20
WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
_DUMMY_HASH = generate_password_hash("not-a-real-password")


class SignInRefused(ServiceError):
    pass


@dataclass(frozen=True, slots=True)
class Attempt:
    email: str
    password: str
    client_address: str


def authenticate(attempt: Attempt) -> User:
    email = attempt.email.strip().lower()
    keys = [f"account:{email[:250]}", f"address:{attempt.client_address[:250]}"]
    now = datetime.now(UTC)
    locked = _locked_until(keys, now)
    if locked is not None:
        minutes = max(1, int((locked - now).total_seconds() // 60) + 1)
        raise SignInRefused(
            f"Too many failed sign-ins. Try again in {minutes} minute"
            f"{'s' if minutes != 1 else ''}, or ask an admin to reset your password.")
    user = db.session.scalar(sa.select(User).where(User.email == email))
    valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, attempt.password)
    if user is None or not valid or not user.active:
        _record_failure(keys, now)
        raise SignInRefused("The email or password is not right, or the account is disabled.")
    _clear(keys[:1])
    return user


def _locked_until(keys: list[str], now: datetime) -> datetime | None:
    rows = db.session.scalars(sa.select(SignInThrottle).where(SignInThrottle.key.in_(keys)))
    latest = None
    for row in rows:
        until = row.locked_until
        if until is not None and until > now and (latest is None or until > latest):
            latest = until
    return latest


def _record_failure(keys: list[str], now: datetime) -> None:
    for key in keys:
        limit = ACCOUNT_LIMIT if key.startswith("account:") else ADDRESS_LIMIT
        row = db.session.get(SignInThrottle, key)
        if row is None:
            row = SignInThrottle(key=key, failures=0, window_start=now)
            db.session.add(row)
        if now - row.window_start > WINDOW:
            row.failures, row.window_start, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= limit:
            row.locked_until = now + LOCKOUT
    db.session.commit()


def _clear(keys: list[str]) -> None:
    db.session.execute(sa.delete(SignInThrottle).where(SignInThrottle.key.in_(keys)))
    db.session.commit()
