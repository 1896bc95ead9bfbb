"""Runs last (by its name): the logs of every process of the whole test run hold no phone number,
email or street address. Shoppers typed such details in many tests (and do here once more, in every
path that logs: chat, fallback to the knowledge base, a handoff, a call-back contact)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from assistant.commerce.db import session_factory
from assistant.commerce.models import Customer
from tests.chat_client import ChatClient

pytestmark = pytest.mark.e2e

MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
SAID = {"phone": "13912347788", "email": "li.na.shopper@example.com", "address": "南京西路1266号"}


def test_no_personal_data_in_any_process_log(stack):
    chat = ChatClient(stack.ws_url, "zh")
    chat.say(f"我的电话是{SAID['phone']}，邮箱{SAID['email']}，地址上海市{SAID['address']}，帮我查订单")
    chat.say(f"可以寄到{SAID['address']}吗，联系{SAID['email']}")
    chat.say("转人工")
    chat.say(f"回电话给我 {SAID['phone']}")
    chat.close()

    log = stack.log_path.read_text(errors="replace")
    assert log.count("\n") > 50 and chat.conversation_id in log  # the processes did log this run
    # and every other stack of the run: the no-loss stack, the scaled-out ones
    others = sorted(path for path in stack.log_path.parent.glob("*.log") if path != stack.log_path)
    log += "".join(path.read_text(errors="replace") for path in others)
    with session_factory(stack.settings.db_url)() as session:
        customers = session.execute(select(Customer.phone, Customer.email, Customer.address)).all()
    known = {value for row in customers for value in row if value} | set(SAID.values())
    leaked = sorted(value for value in known if value in log)
    assert not leaked, f"personal data in the process logs ({stack.log_path}, {others}): {leaked[:5]}"
    assert not MOBILE.findall(log), MOBILE.findall(log)[:5]
    assert not EMAIL.findall(log), EMAIL.findall(log)[:5]
