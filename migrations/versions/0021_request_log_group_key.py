"""the request log's rows carry a number for their refused origin, rule, reason and mode

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 04:00:00.000000

``group_key`` is ``refusal_group_key(origin, rule_path, reason, mode)`` (the engine's
``cors_control.database.tables``): the overview sums the last day's refusals on it, a number,
before it reads the strings of the few groups it shows. The rows already stored get theirs
here, in batches by id (NULL for the rows never listed: overflow, no origin, draft).
``ix_request_log_sums`` gives a period's sums per key from the index alone;
``ix_request_log_group`` finds the rows of the groups found.

Rows written afterwards by an engine that predates this revision have no key (NULL): the
overview then sums on the strings, as before, until those rows leave its window.
"""

import sqlalchemy as sa
from alembic import op

from cors_control.database.tables import refusal_group_key

# revision identifiers, used by Alembic.
revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

BATCH = 20_000


def upgrade():
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("group_key", sa.BigInteger(), nullable=True))
    _fill_group_keys(op.get_bind())
    op.create_index("ix_request_log_sums", "request_log", ["last_seen", "group_key", "count"],
                    unique=False)
    op.create_index("ix_request_log_group", "request_log", ["group_key", "last_seen"],
                    unique=False)


def downgrade():
    op.drop_index("ix_request_log_group", table_name="request_log")
    op.drop_index("ix_request_log_sums", table_name="request_log")
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("group_key")


def _fill_group_keys(conn: sa.Connection) -> None:
    log = sa.table("request_log", sa.column("id"), sa.column("origin"), sa.column("rule_path"),
                   sa.column("reason"), sa.column("mode"), sa.column("group_key"))
    update = sa.update(log).where(log.c.id == sa.bindparam("row_id")) \
        .values(group_key=sa.bindparam("key"))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(log.c.id, log.c.origin, log.c.rule_path, log.c.reason, log.c.mode)
            .where(log.c.id > last).order_by(log.c.id).limit(BATCH)).all()
        if not rows:
            return
        conn.execute(update, [{"row_id": row.id,
                               "key": refusal_group_key(row.origin, row.rule_path, row.reason,
                                                        row.mode)} for row in rows])
        last = rows[-1].id
