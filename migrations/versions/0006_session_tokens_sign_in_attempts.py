"""session tokens, sign-in attempts counted before the check

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 17:30:00.000000

Every user gets a session token (the id the session cookie carries), so existing cookies,
which carry the numeric user id, stop working: everyone signs in again once.

The sign-in throttle's rows are short-lived counters; the table is rebuilt empty in its new
shape rather than converted.
"""

import secrets

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_token", sa.String(length=64), nullable=True))

    users = sa.table("users", sa.column("id", sa.Integer), sa.column("session_token", sa.String))
    connection = op.get_bind()
    for (user_id,) in connection.execute(sa.select(users.c.id)).all():
        connection.execute(sa.update(users).where(users.c.id == user_id)
                           .values(session_token=secrets.token_urlsafe(32)))

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("session_token", existing_type=sa.String(length=64),
                              nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_users_session_token"),
                                          ["session_token"])

    op.drop_table("sign_in_throttle")
    op.create_table(
        "sign_in_throttle",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_check", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sign_in_throttle")),
    )
    with op.batch_alter_table("sign_in_throttle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_in_throttle_last_attempt"), ["last_attempt"],
                              unique=False)


def downgrade():
    op.drop_table("sign_in_throttle")
    op.create_table(
        "sign_in_throttle",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sign_in_throttle")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_users_session_token"), type_="unique")
        batch_op.drop_column("session_token")
