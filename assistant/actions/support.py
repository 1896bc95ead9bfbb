"""Knowledge-base answers and the handoff to a human agent."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from assistant.actions.context import language, shop_session, t
from knowledge_base.models import FaqEntry
from nlu.text import normalize

MIN_SCORE = 0.34  # below this overlap the bot says it does not know


def _grams(text: str) -> set[str]:
    """Character bigrams of Chinese and words of English: a language-agnostic lexical key."""
    text = normalize(text)
    words = {w for w in "".join(c if c.isalnum() else " " for c in text).split() if w.isascii() and len(w) > 2}
    chars = [c for c in text if not c.isascii() and c.isalnum()]
    return words | {a + b for a, b in zip(chars, chars[1:])}


def best_faq(entries: list[FaqEntry], question: str) -> tuple[FaqEntry | None, float]:
    asked = _grams(question)
    best, best_score = None, 0.0
    for entry in entries:
        for variant in entry.questions_zh + entry.questions_en:
            grams = _grams(variant)
            if not grams or not asked:
                continue
            score = len(asked & grams) / len(grams | asked) ** 0.5 / len(grams) ** 0.5
            if score > best_score:
                best, best_score = entry, score
    return best, best_score


class ActionAnswerFromKb(Action):
    def name(self) -> str:
        return "action_answer_from_kb"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        question = tracker.latest_message.get("text") or ""
        with shop_session() as session:
            entries = list(session.scalars(select(FaqEntry).where(FaqEntry.status == "published")))
        entry, score = best_faq(entries, question)
        if entry is None or score < MIN_SCORE:
            dispatcher.utter_message(
                text=t(lang, "这个问题我暂时不确定，不想给您错误的答案。要不要转人工客服？",
                       "I'm not sure about that one and don't want to guess. Shall I get a human agent?"),
                buttons=[{"title": t(lang, "转人工", "Talk to an agent"), "payload": "/human_agent"},
                         {"title": t(lang, "不用了", "No thanks"), "payload": "/deny"}])
            dispatcher.utter_message(json_message={"type": "unanswered"})
            return []
        dispatcher.utter_message(text=entry.answer_zh if lang == "zh" else entry.answer_en)
        dispatcher.utter_message(json_message={"type": "citations", "faq_ids": [entry.key], "score": round(score, 3)})
        return []


class ActionHandoff(Action):
    def name(self) -> str:
        return "action_handoff"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict]:
        lang = language(tracker)
        dispatcher.utter_message(text=t(
            lang, "正在为您转接人工客服（服务时间9:00-22:00），请稍候，您的聊天记录会同步给客服。",
            "Connecting you to a human agent (available 9:00-22:00). Please hold on; they'll see this conversation."))
        dispatcher.utter_message(json_message={"type": "handoff", "reason": tracker.latest_message.get("intent", {}).get("name")})
        return []
