"""create the warehouse-tuf tables

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = '0001_initial'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tuf_pending_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=True),
    sa.Column('length', sa.BigInteger(), nullable=True),
    sa.Column('hashes', sa.JSON(), nullable=True),
    sa.Column('project', sa.String(length=255), nullable=True),
    sa.Column('release', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tuf_pending_changes'))
    )
    with op.batch_alter_table('tuf_pending_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tuf_pending_changes_created_at'), ['created_at'], unique=False)

    op.create_table('tuf_roles',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('reserved_version', sa.Integer(), nullable=False),
    sa.Column('expires', sa.DateTime(), nullable=False),
    sa.Column('bin_index', sa.Integer(), nullable=True),
    sa.Column('length', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('signed_bytes', sa.LargeBinary(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_tuf_roles'))
    )
    with op.batch_alter_table('tuf_roles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tuf_roles_bin_index'), ['bin_index'], unique=False)

    op.create_table('tuf_targets',
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('bin_index', sa.Integer(), nullable=False),
    sa.Column('length', sa.BigInteger(), nullable=False),
    sa.Column('hashes', sa.JSON(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('project', sa.String(length=255), nullable=True),
    sa.Column('release', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('path', name=op.f('pk_tuf_targets'))
    )
    with op.batch_alter_table('tuf_targets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tuf_targets_bin_index'), ['bin_index'], unique=False)
        batch_op.create_index('ix_tuf_targets_project_release', ['project', 'release'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tuf_targets', schema=None) as batch_op:
        batch_op.drop_index('ix_tuf_targets_project_release')
        batch_op.drop_index(batch_op.f('ix_tuf_targets_bin_index'))

    op.drop_table('tuf_targets')
    with op.batch_alter_table('tuf_roles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tuf_roles_bin_index'))

    op.drop_table('tuf_roles')
    with op.batch_alter_table('tuf_pending_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tuf_pending_changes_created_at'))

    op.drop_table('tuf_pending_changes')
