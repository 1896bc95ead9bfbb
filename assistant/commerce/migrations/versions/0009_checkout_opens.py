"""checkout links shoppers opened

Revision ID: 0009
Revises: 0008
One row per checkout link opened (by the SHA-256 of its token): first and last opening and how
often, for the dialog-to-action conversion in the console's analytics.

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('checkout_opens',
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('first_opened_at', sa.DateTime(), nullable=False),
    sa.Column('last_opened_at', sa.DateTime(), nullable=False),
    sa.Column('opens', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('token_sha256')
    )
    op.create_index('ix_checkout_opens_first_opened_at', 'checkout_opens', ['first_opened_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_checkout_opens_first_opened_at', table_name='checkout_opens')
    op.drop_table('checkout_opens')
