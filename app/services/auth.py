"""Signing in behind two throttles, and signing out everywhere.

- Per client address, a hard limit: after ``ADDRESS_LIMIT`` attempts that did not succeed
  within ``ADDRESS_WINDOW``, attempts from that address are refused unchecked until the window
  ends. The address is the one the trusted proxies report (``TRUSTED_PROXIES``).
- Per account, a growing delay instead of a lock: the first ``ACCOUNT_FREE_ATTEMPTS`` attempts
  are checked at once; attempt *n* after them only when ``2 ** (n - ACCOUNT_FREE_ATTEMPTS)``
  seconds (at most ``ACCOUNT_MAX_DELAY``) have passed since the account's last check. Nobody
  can lock an account for longer than that; a success, an admin's password reset or
  ``ACCOUNT_QUIET`` without attempts starts it afresh.

Each attempt is counted by one upsert that returns the new count *before* its password is
checked, so parallel attempts never check more than the limits allow; a delayed check is
claimed by a compare-and-set on the time of the last one, so one parallel attempt wins it.

The counts live in the database, shared by every worker and host. Flask-Limiter would be the
library for this, but its storage (the ``limits`` package) is memory, Redis, Memcached,
MongoDB or etcd, and this project has only its database.

The answer never says whether an account exists: unknown accounts are throttled like known
ones and the password check costs the same.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from werkzeug.security import check_password_hash, generate_password_hash

from cors_control.text import printable

from ..extensions import db
from ..models import SignInThrottle, User
from .errors import ServiceError

ADDRESS_LIMIT = 20
ADDRESS_WINDOW = timedelta(minutes=15)
ACCOUNT_FREE_ATTEMPTS = 5
ACCOUNT_MAX_DELAY = timedelta(seconds=60)
ACCOUNT_QUIET = timedelta(minutes=15)
# Counters nobody has touched for this long are deleted (unknown accounts, old addresses).
FORGET_AFTER = timedelta(days=1)
_DUMMY_HASH = generate_password_hash("not-a-real-password")
_throttle = SignInThrottle.__table__
logger = logging.getLogger("app.auth")


class SignInRefused(ServiceError):
    pass


class SignInThrottled(SignInRefused):
    """Refused without checking the password; *retry_after* is in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Attempt:
    email: str
    password: str
    client_address: str


def authenticate(attempt: Attempt) -> User:
    email = attempt.email.strip().lower()
    address_key = f"address:{attempt.client_address[:250]}"
    _admit_address(address_key, datetime.now(UTC))
    _admit_account(account_key(email), datetime.now(UTC))
    user = db.session.scalar(sa.select(User).where(User.email == email))
    valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, attempt.password)
    if user is None or not valid or not user.active:
        logger.info("sign-in failed for %s from %s", printable(email, 254),
                    printable(attempt.client_address, 100))
        raise SignInRefused("The email or password is not right, or the account is disabled.")
    _signed_in(account_key(email), address_key)
    return user


def account_key(email: str) -> str:
    return f"account:{email.strip().lower()[:250]}"


def forget_failed_sign_ins(email: str) -> None:
    """Clear the account's delay (after an admin set its password) in the caller's
    transaction."""
    db.session.execute(sa.delete(_throttle).where(_throttle.c.key == account_key(email)))


def sign_out_everywhere(user: User) -> None:
    """End every session of *user*, this one included."""
    user.end_sessions()
    db.session.commit()


# -- internals ---------------------------------------------------------------------------------


def _admit_address(key: str, now: datetime) -> None:
    row = _count_attempt(key, now, fresh=_throttle.c.window_start < now - ADDRESS_WINDOW,
                         checked_freely=0)
    if row.attempts <= ADDRESS_LIMIT:
        return
    minutes = math.ceil((row.window_start + ADDRESS_WINDOW - now).total_seconds() / 60)
    minutes = max(1, minutes)
    raise SignInThrottled(
        f"Too many failed sign-ins from your network. Try again in {minutes} minute"
        f"{'s' if minutes != 1 else ''}.", retry_after=minutes * 60)


def _admit_account(key: str, now: datetime) -> None:
    row = _count_attempt(key, now, fresh=_throttle.c.last_attempt < now - ACCOUNT_QUIET,
                         checked_freely=ACCOUNT_FREE_ATTEMPTS)
    if row.attempts <= ACCOUNT_FREE_ATTEMPTS:
        return
    last_check = row.last_check or now - ACCOUNT_MAX_DELAY
    if now >= last_check + _delay(row.attempts):
        if _claim_check(key, row.last_check, now):
            return
        last_check = now  # a parallel attempt took this check a moment ago
    seconds = max(1, math.ceil((last_check + _delay(row.attempts + 1) - now).total_seconds()))
    raise SignInThrottled(
        f"Too many failed sign-ins for this account. Try again in {seconds} second"
        f"{'s' if seconds != 1 else ''}, or ask an admin to reset your password.",
        retry_after=seconds)


def _delay(attempts: int) -> timedelta:
    """How long attempt number *attempts* waits after the account's last check."""
    exponent = min(attempts - ACCOUNT_FREE_ATTEMPTS, 30)
    return min(ACCOUNT_MAX_DELAY, timedelta(seconds=2 ** exponent))


def _count_attempt(key: str, now: datetime, *, fresh: sa.ColumnElement[bool],
                   checked_freely: int) -> sa.Row:
    """Count one attempt on *key* and return the row as it is now, in one statement.

    *fresh* says when the stored count is too old to go on from; the first *checked_freely*
    attempts record their time as the last check.
    """
    c = _throttle.c
    at = sa.bindparam("now", now, type_=c.last_attempt.type)
    insert = postgresql.insert if db.engine.dialect.name == "postgresql" else sqlite.insert
    statement = insert(_throttle).values(
        key=key, attempts=1, window_start=at, last_attempt=at,
        last_check=at if checked_freely else None)
    last_check: sa.ColumnElement = sa.null()
    if checked_freely:
        last_check = sa.case((sa.or_(fresh, c.attempts < checked_freely), at),
                             else_=c.last_check)
    upsert = statement.on_conflict_do_update(index_elements=[c.key], set_={
        "attempts": sa.case((fresh, 1), else_=c.attempts + 1),
        "window_start": sa.case((fresh, at), else_=c.window_start),
        "last_attempt": at,
        "last_check": last_check,
    }).returning(c.attempts, c.window_start, c.last_check)
    row = db.session.execute(upsert).one()
    db.session.commit()
    return row


def _claim_check(key: str, seen: datetime | None, now: datetime) -> bool:
    """Take the account's next check, unless a parallel attempt took it since *seen*."""
    c = _throttle.c
    unchanged = c.last_check.is_(None) if seen is None else c.last_check == seen
    result = db.session.execute(
        sa.update(_throttle).where(c.key == key, unchanged).values(last_check=now))
    db.session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]  # an UPDATE's CursorResult


def _signed_in(account: str, address: str) -> None:
    """Forget the account's failures; the address's count gives back this attempt."""
    c = _throttle.c
    db.session.execute(sa.delete(_throttle).where(c.key == account))
    db.session.execute(sa.update(_throttle).where(c.key == address, c.attempts > 0)
                       .values(attempts=c.attempts - 1))
    db.session.commit()
    db.session.execute(sa.delete(_throttle).where(
        c.last_attempt < datetime.now(UTC) - FORGET_AFTER))
    db.session.commit()
