"""a log of the publishes and refreshes that signed something

Revision ID: 0003_publish_log
Revises: 0002_offline_roles
Create Date: 2026-12-02

One row per run, written in its final commit: when, how long, how many
changes and bins. The admin page (/admin/tuf/) charts the newest 50; ``tuf gc``
keeps the newest 1,000.
"""

import sqlalchemy as sa
from alembic import op

revision = '0003_publish_log'
down_revision = '0002_offline_roles'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tuf_publish_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('duration', sa.Float(), nullable=False),
    sa.Column('changes', sa.Integer(), nullable=False),
    sa.Column('bins_signed', sa.Integer(), nullable=False),
    sa.Column('snapshot_version', sa.Integer(), nullable=False),
    sa.Column('timestamp_version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tuf_publish_log'))
    )


def downgrade() -> None:
    op.drop_table('tuf_publish_log')
