"""shoppers' photos and their classification; returns know their remedy and photo

Revision ID: 0005
Revises: 0004
A photo a shopper sent (stored without metadata under var/photos), what the defect classifier
saw on it, and on a return: replacement, refund or plain return, the photo and the prediction.

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('photos',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('conversation_id', sa.String(length=64), nullable=True),
    sa.Column('media_type', sa.String(length=32), nullable=False),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('bytes', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=32), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('probabilities', sa.JSON(), nullable=True),
    sa.Column('model', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_photos_conversation', 'photos', ['conversation_id'], unique=False)
    with op.batch_alter_table('return_requests') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='return'))
        batch.add_column(sa.Column('photo_id', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('defect_type', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('defect_confidence', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('return_requests') as batch:
        batch.drop_column('defect_confidence')
        batch.drop_column('defect_type')
        batch.drop_column('photo_id')
        batch.drop_column('kind')
    op.drop_index('ix_photos_conversation', table_name='photos')
    op.drop_table('photos')
