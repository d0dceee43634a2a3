"""One unit of work for every write to the policy or its principals (tenants, users, tokens).

Each change is one transaction that (1) starts clean, (2) bumps the policy version first,
which also serialises concurrent writers on the version row (and on PostgreSQL announces the
new version with ``pg_notify``, delivered only if the change commits), (3) runs the caller's work,
(4) records the audit entries the caller asks for and what the version changed
(:mod:`.change_log`), and commits. On any error the transaction
is rolled back and nothing is written; a write that another one made stale, or that breaks a
uniqueness rule at the last moment, is answered with :class:`~.errors.Conflict`.

    with policy_change(actor) as change:
        ...  # validate, change rows
        change.audit("rule.update", f"updated rule {rule.path}", rule=rule, ...)

A change that finds nothing to do raises :class:`Unchanged` inside the block: the rollback
takes the version bump back, so nothing is bumped or audited, and the caller catches it to
answer with what is already there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm.exc import StaleDataError

from ..extensions import db
from ..models import AuditEntry, PolicyState, Rule, utcnow
from . import change_log, origin_count  # noqa: F401  (origin_count: its listeners)
from .access import Actor
from .errors import Conflict

STALE = ("the rule was changed by someone else meanwhile; reload it and apply your change "
         "again")


class Unchanged(Exception):
    """Raised inside a change to roll it back when there is nothing to write; *result* is
    what the caller answers with instead."""

    def __init__(self, result: object) -> None:
        super().__init__("nothing to change")
        self.result: Any = result  # each caller knows what it put there


class Change:
    """The change in progress: its policy version and the audit entries it records."""

    def __init__(self, actor: Actor | None, version: int | None) -> None:
        self.actor = actor
        self._version = version

    @property
    def version(self) -> int:
        """The version this change bumped the policy to; for a change that does not move the
        policy (users, tokens), the current one, so its audit entry sorts among the rest."""
        return self._version if self._version is not None else policy_version()

    def audit(self, action: str, summary: str, *, rule: Rule | None = None,
              before: dict | None = None, after: dict | None = None,
              delta: dict | None = None, tenant_id: int | None = None) -> None:
        """Record one audit entry. An entry about a *rule* belongs to the rule's tenant, or
        to *tenant_id*, the tenant whose allowlist on a shared rule changed (or whose
        account, token or self changed), so tenant roles see exactly their own entries.

        A change of a rule's origins records its *delta* (:func:`~.audit.origin_delta`)
        instead of the rule *before* and *after*: its size is the change's, not the rule's."""
        if self.actor is None:
            raise TypeError("a change made on nobody's behalf cannot be audited; pass the "
                            "actor to policy_change")
        db.session.add(AuditEntry(
            actor=self.actor.name, channel=self.actor.channel, action=action,
            rule_id=rule.id if rule is not None else None,
            rule_path=rule.path if rule is not None else "",
            summary=summary, before=before, after=after, delta=delta,
            policy_version=self.version,
            tenant_id=(rule.tenant_id if rule is not None else None) or tenant_id,
        ))


class Rehearsal(Protocol):
    """Watches a change made only to see its effect (:func:`rehearsing`): told when the
    change starts (nothing of it done yet) and when its work is done, just before the whole
    change is rolled back instead of committed."""

    def started(self) -> None: ...

    def finished(self) -> None: ...


_rehearsal: ContextVar[Rehearsal | None] = ContextVar("rehearsal", default=None)


@contextmanager
def rehearsing(watcher: Rehearsal) -> Iterator[None]:
    """Every change made in this block is carried out in full (validated, applied, flushed,
    audited), shown to *watcher*, then rolled back: a dry run of the real write path."""
    token = _rehearsal.set(watcher)
    try:
        yield
    finally:
        _rehearsal.reset(token)


@contextmanager
def policy_change(actor: Actor | None, *, bump_version: bool = True,
                  conflict: str | None = None) -> Iterator[Change]:
    """A write on behalf of *actor*: everything in the block commits together or not at all.

    With *bump_version* false the change does not move the policy version (user accounts
    and API tokens: the engine does not depend on them). *conflict* replaces the database's
    own words when the change breaks a uniqueness rule set meanwhile by someone else.
    """
    db.session.rollback()  # start clean: no half-finished work rides along
    try:
        with change_log.watching():
            change = Change(actor, _bump_version() if bump_version else None)
            watcher = _rehearsal.get()
            if watcher is not None:
                watcher.started()
            yield change
            if watcher is not None:
                db.session.flush()
                watcher.finished()
                db.session.rollback()  # a rehearsal: nothing is written, the version stays
                return
            if bump_version:  # what this version changed, for processes holding an older one
                change_log.record(change.version)
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        raise Conflict(STALE) from None
    except sa.exc.IntegrityError as error:
        db.session.rollback()
        raise Conflict(conflict or f"the change conflicts with a change made meanwhile: "
                                   f"{error.orig}") from None
    except BaseException:
        db.session.rollback()
        raise


def policy_version() -> int:
    return db.session.scalar(sa.select(PolicyState.version).where(PolicyState.id == 1)) or 0


def _bump_version() -> int:
    statement = (
        sa.update(PolicyState)
        .where(PolicyState.id == 1)
        .values(version=PolicyState.version + 1, changed_at=utcnow())
        .returning(PolicyState.version)
    )
    version = db.session.execute(statement).scalar()
    if version is None:  # a database created without the migration's seed row
        db.session.add(PolicyState(id=1, version=1, changed_at=utcnow()))
        db.session.flush()
        version = 1
    _announce(version)
    return version


def _announce(version: int) -> None:
    """On PostgreSQL, tell every listening process the new version
    (:mod:`cors_control.database.listener`). ``pg_notify`` is transactional: delivered when
    this change commits, never if it rolls back. The payload is the version number only."""
    if db.session.get_bind().dialect.name != "postgresql":
        return
    channel = current_app.config.get("CORS_NOTIFY_CHANNEL") or "cors_policy"
    db.session.execute(sa.select(sa.func.pg_notify(channel, str(version))))
