"""keep every installed version of root and targets

Revision ID: 0002_offline_roles
Revises: 0001_initial
Create Date: 2026-12-01

Storage may be lost; clients walk the root chain from 1.root.json, so every
root version's bytes are kept in the database from now on. The root and
targets installed today are copied in; older roots of an existing repository
are only in storage (and in the signed ceremony payloads).
"""

import datetime

import sqlalchemy as sa
from alembic import op

revision = '0002_offline_roles'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade() -> None:
    history = op.create_table('tuf_offline_roles',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('signed_bytes', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', 'version', name=op.f('pk_tuf_offline_roles'))
    )
    roles = sa.table('tuf_roles', sa.column('name', sa.String), sa.column('version', sa.Integer),
                     sa.column('signed_bytes', sa.LargeBinary))
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(roles.c.name, roles.c.version, roles.c.signed_bytes)
        .where(roles.c.name.in_(('root', 'targets')), roles.c.signed_bytes.is_not(None))
    ).all()
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0, tzinfo=None)
    if rows:
        op.bulk_insert(history, [
            {'name': name, 'version': version, 'signed_bytes': data, 'created_at': now}
            for name, version, data in rows
        ])


def downgrade() -> None:
    op.drop_table('tuf_offline_roles')
