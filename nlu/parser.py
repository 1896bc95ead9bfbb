"""Turns a message into Rasa's parse format: postbacks, classifier, threshold, entities."""

from __future__ import annotations

import json
import re

from nlu.classifier import IntentModel
from nlu.curated import FAQ_INTENT, CuratedQuestions
from nlu.entities import EntityExtractor
from nlu.tagger import merge
from nlu.types import FALLBACK_INTENT, Entity, IntentScore, ParseResult

# the pattern of Rasa's RegexMessageHandler (YAMLStoryReader._regex_message_pattern)
_POSTBACK = re.compile(r"^/(?P<intent>[^{@]+)(?P<confidence>@[0-9.]+)?(?P<entities>{.+})?(?P<rest>.*)", re.S)
RANKING_LENGTH = 10


def parse_postback(text: str, known_intents: set[str] | None = None) -> ParseResult | None:
    """``/intent{"entity": "value"}`` (buttons, quick replies) parsed as Rasa does; else None."""
    stripped = text.strip()
    match = _POSTBACK.match(stripped) if stripped.startswith("/") else None
    if not match:
        return None
    intent = match.group("intent").strip()
    if known_intents is not None and intent not in known_intents:
        return None
    confidence = 1.0
    if match.group("confidence"):
        try:
            confidence = float(match.group("confidence")[1:])
        except ValueError:
            confidence = 0.0
    entities: list[Entity] = []
    if match.group("entities"):
        try:
            values = json.loads(match.group("entities"))
        except json.JSONDecodeError:
            values = {}
        if isinstance(values, dict):
            start, end = match.start("entities"), match.end("entities")
            for name, value in values.items():
                for item in value if isinstance(value, list) else [value]:
                    entities.append(Entity(entity=name, value=item, start=start, end=end,
                                           extractor="RegexMessageHandler"))
    score = IntentScore(intent, confidence)
    return ParseResult(text=stripped, intent=score, entities=entities, intent_ranking=[score])


class MessageParser:
    """``curated``: the merchant's published FAQ questions (``nlu.curated``); a message that repeats
    one is ``faq`` with confidence 1, the model's ranking after it, unless the model is sure of an
    intent that starts a flow (models without ``faq`` ignore them)."""

    def __init__(self, model: IntentModel, threshold: float | None = None,
                 curated: CuratedQuestions | None = None) -> None:
        self.model = model
        self.threshold = model.threshold if threshold is None else threshold
        self.entities = EntityExtractor(model.meta.get("lookups", {}))
        self.intents = set(model.labels) | {FALLBACK_INTENT}
        self.curated = curated if FAQ_INTENT in self.intents else None

    def parse(self, text: str) -> ParseResult:
        postback = parse_postback(text, self.intents)
        if postback is not None:
            return postback
        return self.parse_batch([text])[0]

    def parse_batch(self, texts: list[str]) -> list[ParseResult]:
        probabilities = self.model.predict_proba(texts)
        results = []
        for text, row in zip(texts, probabilities):
            order = row.argsort()[::-1][:RANKING_LENGTH]
            ranking = [IntentScore(self.model.labels[i], round(float(row[i]), 6)) for i in order]
            top = model_top = ranking[0]
            if top.confidence < self.threshold:
                # Rasa's FallbackClassifier convention: nlu_fallback first, the rest still ranked
                top = IntentScore(FALLBACK_INTENT, top.confidence)
                ranking = [top] + ranking
            if (self.curated is not None and self.curated.overrides(model_top.name, model_top.confidence)
                    and self.curated.match(text) is not None):
                top = IntentScore(FAQ_INTENT, 1.0)
                ranking = [top] + [score for score in ranking if score.name not in (FAQ_INTENT, FALLBACK_INTENT)]
            results.append(ParseResult(text=text, intent=top, entities=self.extract_entities(text),
                                       intent_ranking=ranking))
        return results

    def extract_entities(self, text: str) -> list[Entity]:
        """Rules and lookups, plus the learned tagger's spans where they found nothing."""
        found = self.entities.extract(text)
        tagger = self.model.tagger
        if tagger is not None and tagger.enabled:
            found = merge(found, tagger.tag(text))
        return found


def fallback_parse(text: str) -> ParseResult:
    """What the server answers when it cannot parse: never an empty intent (Rasa would go silent)."""
    score = IntentScore(FALLBACK_INTENT, 1.0)
    return ParseResult(text=text, intent=score, entities=[], intent_ranking=[score])
