"""shoppers' voice messages; a phone call's conversation knows the caller's number

Revision ID: 0006
Revises: 0005
A voice message a shopper sent (the bytes as sent, under var/audio), its length, the language
Whisper heard and how long transcription took.

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('voice_clips',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('conversation_id', sa.String(length=64), nullable=True),
    sa.Column('media_type', sa.String(length=32), nullable=False),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('bytes', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=True),
    sa.Column('model', sa.String(length=64), nullable=True),
    sa.Column('transcribe_ms', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_voice_clips_conversation', 'voice_clips', ['conversation_id'], unique=False)
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('caller_phone', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('caller_phone')
    op.drop_index('ix_voice_clips_conversation', table_name='voice_clips')
    op.drop_table('voice_clips')
