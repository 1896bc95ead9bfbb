"""kefu's input channel for Rasa: the REST channel's request and reply, made safe to retry.

Loaded by Rasa from credentials.yml (``addons.kefu_channel.KefuInput``, Rasa adds its working
directory to ``sys.path``); runs in the Rasa environment (Python 3.10), so it imports only Rasa.

What the plain REST channel cannot promise and this one does:

- **Idempotent turns.** Every request carries the gateway's ``message_id`` (the widget's
  client id). A request marked ``resend`` whose message is already in the tracker gets the
  replies that turn produced, read back from the tracker, instead of being processed again: a
  gateway that died after Rasa answered, or a shopper's retry, never puts a message into the
  tracker twice.
- **A failed turn leaves no trace.** Rasa answers with an empty intent when the NLU server cannot
  be reached and carries on without the events when the action server cannot; either way the
  shopper would get a wrong or an empty answer and the tracker a turn that never really
  happened. Here the turn is abandoned before the tracker is saved and the reply is ``503`` with
  ``{"error": "nlu_unavailable" | "action_server_unavailable"}``: the gateway shows the shopper
  an explicit retry, and the retry is processed as if for the first time.
- The turn holds the conversation's lock from the resend check to the saved tracker (Rasa's lock
  store: in memory, or Redis when several Rasa replicas share the conversations), polled every
  50 ms instead of Rasa's default second.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from rasa.core.lock_store import LockError
from rasa.shared.core.events import BotUttered, UserUttered
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

log = logging.getLogger(__name__)
LOCK_POLL_S = 0.05
# how long a turn waits for the turns before it: Rasa's lock lifetime (a ticket of its in-memory
# store expires this long after it was issued, waiting included; 60 s by default, which a queue
# of slow turns can outlast and so let a turn in beside another)
LOCK_PATIENCE_S = 600
_ACTION_FAILED = "Encountered an exception while running action"  # rasa.core.processor._run_action


class TurnFailed(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Turn:
    action_failed: bool = False


_turn: ContextVar[Optional[_Turn]] = ContextVar("kefu_turn", default=None)


class _ActionFailures(logging.Handler):
    """Marks the running turn failed when Rasa reports that a custom action raised (the action
    server was unreachable or answered with an error); Rasa itself only logs it and goes on."""

    def emit(self, record: logging.LogRecord) -> None:
        turn = _turn.get()
        if turn is not None and record.levelno >= logging.ERROR and str(record.msg).startswith(_ACTION_FAILED):
            turn.action_failed = True


class _StrictInterpreter:
    """Rasa's HTTP interpreter, except that an unreachable NLU server fails the turn instead of
    yielding an empty intent (what Rasa's own interpreter returns on any error)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def parse(self, message: UserMessage) -> Dict[Text, Any]:
        parsed = await self.inner.parse(message)
        if _turn.get() is not None and message.text and not parsed.get("intent", {}).get("name"):
            raise TurnFailed("nlu_unavailable")
        return parsed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _instrument(processor: Any) -> None:
    """Once per processor (a new model gets a new one): strict parsing, and no saving of a failed turn."""
    if getattr(processor, "_kefu_instrumented", False):
        return
    if processor.http_interpreter is not None:
        processor.http_interpreter = _StrictInterpreter(processor.http_interpreter)
    save = processor.save_tracker

    async def save_unless_failed(tracker: Any) -> None:
        turn = _turn.get()
        if turn is not None and turn.action_failed:
            raise TurnFailed("action_server_unavailable")
        await save(tracker)

    processor.save_tracker = save_unless_failed
    processor._kefu_instrumented = True


def replies_to(tracker: Any, message_id: Text) -> Optional[List[Dict[Text, Any]]]:
    """The bot messages that answered the user message ``message_id`` (None: not in the tracker),
    in the REST channel's format."""
    events = tracker.applied_events()
    for index, event in enumerate(events):
        if isinstance(event, UserUttered) and event.message_id == message_id:
            replies = []
            for later in events[index + 1:]:
                if isinstance(later, UserUttered):
                    break
                if isinstance(later, BotUttered):
                    data = {k: v for k, v in later.data.items() if v is not None}
                    if data.get("attachment") == data.get("image"):
                        data.pop("attachment", None)
                    replies.append({"recipient_id": tracker.sender_id, **({"text": later.text} if later.text else {}),
                                    **data})
            return replies
    return None


class KefuInput(InputChannel):
    """``POST /webhooks/kefu/webhook`` with ``{"sender", "message", "message_id", "metadata",
    "resend"}``; replies like the REST channel, or ``503 {"error": ...}`` when the turn failed."""

    def __init__(self) -> None:
        handler = _ActionFailures()
        logging.getLogger("rasa.core.processor").addHandler(handler)

    @classmethod
    def name(cls) -> Text:
        return "kefu"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "KefuInput":
        return cls()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("kefu_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            body = request.json if isinstance(request.json, dict) else {}
            sender, text, message_id = body.get("sender"), body.get("message"), body.get("message_id")
            if not all(isinstance(v, str) and v for v in (sender, text, message_id)):
                return response.json({"error": "invalid_request",
                                      "detail": "sender, message and message_id must be non-empty strings"}, 400)
            agent = request.app.ctx.agent
            if agent is None or not agent.is_ready():
                return response.json({"error": "not_ready"}, 503)
            metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else None
            try:
                return await self._take_turn(agent, sender, text, message_id, metadata, bool(body.get("resend")))
            except LockError:  # other turns of this conversation held it for longer than LOCK_PATIENCE_S
                log.warning("turn %s of %s not taken: the conversation stayed busy", message_id, sender)
                return response.json({"error": "conversation_busy"}, 503)

        return webhook

    async def _take_turn(self, agent: Any, sender: str, text: str, message_id: str, metadata: Optional[dict],
                         resend: bool) -> HTTPResponse:
        async with agent.lock_store.lock(sender, lock_lifetime=LOCK_PATIENCE_S,
                                         wait_time_in_seconds=LOCK_POLL_S):
            if resend:
                tracker = await agent.tracker_store.retrieve(sender)
                replies = replies_to(tracker, message_id) if tracker is not None else None
                if replies is not None:
                    log.info("resent message %s of %s answered from the tracker", message_id, sender)
                    return response.json(replies)
            _instrument(agent.processor)
            collector = CollectingOutputChannel()
            token = _turn.set(_Turn())
            try:
                await agent.processor.handle_message(UserMessage(
                    text, collector, sender, input_channel=self.name(), metadata=metadata, message_id=message_id))
            except TurnFailed as failure:
                log.warning("turn %s of %s abandoned: %s", message_id, sender, failure.code)
                return response.json({"error": failure.code}, 503)
            finally:
                _turn.reset(token)
        return response.json(collector.messages)
