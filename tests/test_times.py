"""Stored times are aware UTC by construction, and templates write them through one filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from flask import render_template_string

from app.extensions import db
from app.models import Tenant
from app.services.policy import Actor
from app.services.tenants import create_tenant

ADMIN = Actor("admin@example.com", "dashboard")
KOLKATA = timezone(timedelta(hours=5, minutes=30))


def _read_created_at(slug: str) -> datetime:
    """A tenant's creation time as a fresh query returns it, in a session whose zone is not
    UTC on PostgreSQL (SQLite has no session zone)."""
    db.session.expire_all()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(sa.text("SET LOCAL TIME ZONE 'Asia/Kolkata'"))
    return db.session.scalar(sa.select(Tenant.created_at).where(Tenant.slug == slug))


def test_a_stored_time_reads_back_as_aware_utc_whatever_the_database(app):
    with app.app_context():
        before = datetime.now(UTC)
        create_tenant("acme", actor=ADMIN)
        created_at = _read_created_at("acme")
    assert created_at.tzinfo is UTC
    assert before - timedelta(seconds=1) <= created_at <= datetime.now(UTC)


def test_a_time_given_in_another_zone_is_stored_as_the_same_moment(app):
    with app.app_context():
        moment = datetime(2030, 1, 31, 18, 0, tzinfo=KOLKATA)
        db.session.add(Tenant(slug="acme", created_at=moment))
        db.session.commit()
        created_at = _read_created_at("acme")
    assert created_at == moment
    assert created_at.tzinfo is UTC
    assert (created_at.hour, created_at.minute) == (12, 30)


def test_a_time_without_zone_is_refused_before_it_reaches_the_database(app):
    with app.app_context():
        db.session.add(Tenant(slug="acme", created_at=datetime(2030, 1, 31, 18, 0)))
        with pytest.raises(sa.exc.StatementError, match="has no time zone"):
            db.session.flush()
        db.session.rollback()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Tenant)) == 0


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ moment|utc }}", "2030-01-31 12:30:05 UTC"),
        ("{{ moment|utc('minutes') }}", "2030-01-31 12:30 UTC"),
        ("{{ moment|utc('iso') }}", "2030-01-31T12:30:05Z"),
        ("{{ missing|utc }}", "—"),
    ],
)
def test_templates_write_times_in_utc_through_the_utc_filter(app, template, expected):
    moment = datetime(2030, 1, 31, 18, 0, 5, 123456, tzinfo=KOLKATA)
    with app.test_request_context():
        assert render_template_string(template, moment=moment, missing=None) == expected
