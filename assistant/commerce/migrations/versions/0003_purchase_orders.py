"""purchase orders and supplier lead times

Revision ID: 0003
Revises: 0002
Inbound stock per variant (for restock dates) and each product's supplier lead time (for reorder
suggestions).

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('purchase_orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('variant_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('ordered_on', sa.Date(), nullable=False),
    sa.Column('expected_on', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('received_on', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_purchase_orders_variant_id'), 'purchase_orders', ['variant_id'], unique=False)
    with op.batch_alter_table('products') as batch:
        batch.add_column(sa.Column('lead_time_days', sa.Integer(), nullable=False, server_default='14'))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('products') as batch:
        batch.drop_column('lead_time_days')
    op.drop_index(op.f('ix_purchase_orders_variant_id'), table_name='purchase_orders')
    op.drop_table('purchase_orders')
