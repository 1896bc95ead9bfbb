"""Value types of the NLU: what a parse returns, in Rasa's parse format."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FALLBACK_INTENT = "nlu_fallback"


@dataclass(frozen=True)
class Entity:
    entity: str
    value: Any
    start: int
    end: int
    extractor: str = "KefuEntityExtractor"
    confidence_entity: float = 1.0


@dataclass(frozen=True)
class IntentScore:
    name: str
    confidence: float


@dataclass(frozen=True)
class ParseResult:
    text: str
    intent: IntentScore
    entities: list[Entity] = field(default_factory=list)
    intent_ranking: list[IntentScore] = field(default_factory=list)

    def to_rasa(self) -> dict[str, Any]:
        """The JSON Rasa's ``RasaNLUHttpInterpreter`` expects from ``/model/parse``."""
        return {
            "text": self.text,
            "intent": asdict(self.intent),
            "entities": [asdict(e) for e in self.entities],
            "intent_ranking": [asdict(s) for s in self.intent_ranking],
        }


@dataclass(frozen=True)
class TrainingExample:
    text: str
    intent: str
    entities: tuple[tuple[str, str, int, int], ...] = ()  # (entity, value, start, end)
