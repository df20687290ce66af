"""stamp each bin reservation with its snapshot version

Revision ID: 0004_changed_for_snapshot
Revises: 0003_publish_log
Create Date: 2026-12-02

A publish reads only the roles changed since the snapshot it extends
(``changed_for_snapshot`` above that snapshot's version) instead of every
bin. Existing rows stay NULL: a process rebuilds its map from every row
until it has built a snapshot itself, so nothing needs filling in.

Two indexes spare every publish a scan of all roles: the unfinished ones
(a partial index) and the earliest expiry (a health gauge).

tuf_publish_request (one row) coalesces the publish messages: a process
sends one only when no publisher is requested or running.
"""

import sqlalchemy as sa
from alembic import op

revision = '0004_changed_for_snapshot'
down_revision = '0003_publish_log'
branch_labels = None
depends_on = None


def upgrade() -> None:
    request = op.create_table('tuf_publish_request',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('requested_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tuf_publish_request'))
    )
    op.bulk_insert(request, [{'id': 1, 'requested_at': None}])
    with op.batch_alter_table('tuf_roles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changed_for_snapshot', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_tuf_roles_changed_for_snapshot'), ['changed_for_snapshot'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_tuf_roles_expires'), ['expires'], unique=False)
        batch_op.create_index('ix_tuf_roles_unfinished', ['bin_index'], unique=False,
                              sqlite_where=sa.text('reserved_version > version'),
                              postgresql_where=sa.text('reserved_version > version'))


def downgrade() -> None:
    op.drop_table('tuf_publish_request')
    with op.batch_alter_table('tuf_roles', schema=None) as batch_op:
        batch_op.drop_index('ix_tuf_roles_unfinished')
        batch_op.drop_index(batch_op.f('ix_tuf_roles_expires'))
        batch_op.drop_index(batch_op.f('ix_tuf_roles_changed_for_snapshot'))
        batch_op.drop_column('changed_for_snapshot')
