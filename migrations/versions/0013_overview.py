"""the overview's refusals by hour, mode and reason from one covering index

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-29 20:40:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    # The overview charts the last 24 hours by hour, mode and reason in one query; with the
    # reason in the index it is answered from the index alone (no temporary B-tree).
    op.create_index("ix_request_log_overview", "request_log",
                    ["bucket_start", "mode", "reason", "last_seen", "count"], unique=False)


def downgrade():
    op.drop_index("ix_request_log_overview", table_name="request_log")
