"""Questions the merchant wrote word for word: a message that repeats a published FAQ question
goes to the knowledge base, unless the intent model is sure it starts a flow.

The intent model learns only from its training data, so a topic a merchant adds to the FAQ (gift
cards, engraving, installation) reaches the knowledge base only if the model already reads such
questions as ``faq``; "你们有礼品卡吗" had been read as a promotion question and answered with a
coupon, an installation question as a complaint. The merchant's own wording is the one case where
nothing needs guessing: after the unanswered question becomes an FAQ entry, the next shopper who asks
it the same way gets the answer. Matching is on the words alone: case, width (全角), spaces and
punctuation do not count.

The FAQ also holds questions that start a flow: the demo FAQ answers "杯子碎了" and "where is my
refund" in general, while the dialog opens a claim for the broken cup and looks up this shopper's
refund. So the merchant's wording decides only where the model's reading merely answers a question
(``ANSWERING_INTENTS``) or where the model is unsure (below ``sure``); a confident ``report_defect``
keeps its flow.

The knowledge-base process serves its published questions at ``GET /questions``;
:class:`QuestionFeed` polls it (cheaply: ``since`` the last change it saw) and keeps
:class:`CuratedQuestions` current without a restart or a retraining.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata

import httpx

log = logging.getLogger("kefu.nlu")

FAQ_INTENT = "faq"
# intents whose replies only answer a question (nothing is ordered, claimed or handed over): a published
# FAQ question outranks them at any confidence
ANSWERING_INTENTS = frozenset({"nlu_fallback", "out_of_scope", FAQ_INTENT, "ask_promotion", "product_search",
                               "product_question"})
SURE = 0.9  # a model this confident of any other intent keeps it
MIN_CHARS = 2  # a question of one letter or digit (or only punctuation) is never matched


def normalise(text: str) -> str:
    """Letters and digits only, case-folded, full-width forms as half-width (NFKC)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


class CuratedQuestions:
    """Normalised published questions -> the FAQ entry they belong to."""

    def __init__(self, sure: float = SURE) -> None:
        self._keys: dict[str, str] = {}
        self.version: int | None = None  # the knowledge base's last change these reflect
        self.sure = sure

    def __len__(self) -> int:
        return len(self._keys)

    def replace(self, questions: list[tuple[str, str]], version: int | None) -> None:
        """``questions``: (question text, FAQ key) pairs; the new set replaces the old one at once."""
        keys = {}
        for text, key in questions:
            normalised = normalise(text)
            if len(normalised) >= MIN_CHARS:
                keys.setdefault(normalised, key)
        self._keys = keys
        self.version = version

    def match(self, text: str) -> str | None:
        """The FAQ key of the published question this message repeats, else None."""
        return self._keys.get(normalise(text))

    def overrides(self, intent: str, confidence: float) -> bool:
        """Whether a published question outranks the model's reading (``intent`` at ``confidence``)."""
        return intent in ANSWERING_INTENTS or confidence < self.sure


class QuestionFeed:
    """Keeps ``questions`` equal to what the knowledge base at ``url`` has published.

    A knowledge base that cannot be reached leaves the last set in place (an empty one at start:
    the intent model alone decides) and is asked again every ``interval`` seconds; the log says so
    once per outage, not once per attempt.
    """

    def __init__(self, url: str, questions: CuratedQuestions, interval: float = 0.5, timeout: float = 5.0):
        self.url = url
        self.questions = questions
        self.interval = interval
        self.timeout = timeout
        self.failing = False

    async def refresh(self, client: httpx.AsyncClient) -> bool:
        """One poll; True when the set changed. Raises httpx.HTTPError or ValueError on a bad answer."""
        params = {} if self.questions.version is None else {"since": self.questions.version}
        response = await client.get(self.url, params=params)
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("last_change"), int):
            raise ValueError("expected {last_change: int, changed: bool, questions: [...]}")
        if not body.get("changed", True):
            return False
        questions = [(str(q["text"]), str(q["key"])) for q in body.get("questions", [])]
        self.questions.replace(questions, body["last_change"])
        log.info("curated FAQ questions: %d (knowledge-base change %d)", len(self.questions), body["last_change"])
        return True

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while True:
                try:
                    await self.refresh(client)
                    if self.failing:
                        log.info("curated FAQ questions: %s reachable again", self.url)
                    self.failing = False
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
                    if not self.failing:
                        log.warning("curated FAQ questions unavailable from %s (%s); the intent model alone "
                                    "decides until it answers", self.url, type(error).__name__)
                    self.failing = True
                await asyncio.sleep(self.interval)
