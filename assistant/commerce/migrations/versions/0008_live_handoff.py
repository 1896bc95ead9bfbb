"""live handoff: who answers a conversation, since when and why

Revision ID: 0008
Revises: 0007
A conversation is answered by the bot, waits for an agent, or is answered by an agent (Rasa's
conversation is paused meanwhile). The streak of fallbacks in a row hands it over after two. Outside
support hours the shopper's phone or email is kept for a call back.

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('handoff_status', sa.String(length=16), nullable=False, server_default='bot'))
        batch.add_column(sa.Column('handoff_reason', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('handoff_requested_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('agent_user_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('agent_name', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('fallback_streak', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('callback_contact', sa.String(length=128), nullable=True))
    op.create_index('ix_conversations_handoff_status', 'conversations', ['handoff_status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_conversations_handoff_status', table_name='conversations')
    with op.batch_alter_table('conversations') as batch:
        for column in ('callback_contact', 'fallback_streak', 'agent_name', 'agent_user_id', 'handoff_requested_at', 'handoff_reason',
                       'handoff_status'):
            batch.drop_column(column)
