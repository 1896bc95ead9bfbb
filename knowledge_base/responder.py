"""Turning retrieved passages into the reply, without ever inventing policy.

Three responders: ``extractive`` (the default; the curated answer itself, with the shopper's details
filled in), ``t5`` (a transformers seq2seq model from a local path or hub name) and ``openai`` (any
OpenAI-compatible chat-completions endpoint: Ollama, vLLM, llama.cpp server, hosted APIs). A generated
answer is used only if it passes the grounding check: every number, date, amount and policy name in it
must appear in the passages (or in the shopper's own details), most of its words must come from them,
and it must be in the shopper's language. Otherwise the extractive answer is sent, and the reason is
recorded.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from knowledge_base.faq import fill_slots, plain
from knowledge_base.index import Passage
from knowledge_base.lexical import content_words, tokens
from nlu.entities import chinese_number
from nlu.text import detect_language, normalize

log = logging.getLogger(__name__)

RESPONDERS = ("extractive", "t5", "openai")
MIN_SUPPORT = 0.6  # share of the answer's words that must occur in the passages

_NUMBER = re.compile(r"\d+(?:[.,:/\-]\d+)*")
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百千万]+(?=[天日个年月周元块件次期小分%％倍])")
# policy names every shop uses; the FAQ's own tags are added to these at run time
POLICY_TERMS = ("七天无理由", "无理由退货", "价保", "价格保护", "假一赔三", "运费险", "以旧换新", "保价", "先行赔付",
                "price protection", "price match", "no-reason return", "money-back guarantee", "lifetime warranty",
                "free returns", "return-shipping insurance", "trade-in")


class ResponderError(Exception):
    """The generator could not produce an answer (unreachable, timed out, bad reply)."""


class Responder(Protocol):
    name: str

    def generate(self, question: str, language: str, passages: list[Passage], slots: dict[str, str]) -> str: ...


def context_text(passages: list[Passage], slots: dict[str, str]) -> str:
    lines = [f"[{p.key}] {p.question}: {fill_slots(p.answer, slots)}" for p in passages]
    return "\n".join(lines)


class ExtractiveResponder:
    name = "extractive"

    def generate(self, question: str, language: str, passages: list[Passage], slots: dict[str, str]) -> str:
        return fill_slots(passages[0].answer, slots)


class T5Responder:
    """A seq2seq model (T5, Flan-T5, mT5...) prompted with the question and the retrieved passages."""

    name = "t5"

    def __init__(self, model: Any, tokenizer: Any = None, max_new_tokens: int = 96, passages: int = 2):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if isinstance(model, str | os.PathLike):
            local = os.path.isdir(model)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model, local_files_only=local)
            model = AutoModelForSeq2SeqLM.from_pretrained(model, local_files_only=local)
        if tokenizer is None:
            raise ValueError("pass the tokenizer along with a model object")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.passages = passages
        self._torch = torch

    def prompt(self, question: str, language: str, passages: list[Passage], slots: dict[str, str]) -> str:
        reply_in = "Chinese" if language == "zh" else "English"
        return (f"Answer in {reply_in} using only the context. question: {question} "
                f"context: {context_text(passages[:self.passages], slots)}")

    def generate(self, question: str, language: str, passages: list[Passage], slots: dict[str, str]) -> str:
        inputs = self.tokenizer(self.prompt(question, language, passages, slots), return_tensors="pt",
                                truncation=True, max_length=512)
        try:
            with self._torch.inference_mode():
                output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=1,
                                             do_sample=False)
        except Exception as error:  # a broken checkpoint must not take the bot down
            raise ResponderError(f"t5 generation failed: {error}") from error
        return self.tokenizer.decode(output[0], skip_special_tokens=True).strip()


class OpenAIResponder:
    """Any endpoint speaking OpenAI's ``POST {base_url}/chat/completions``."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key_env: str = "KEFU_LLM_API_KEY", timeout: float = 15.0,
                 passages: int = 3, client: httpx.Client | None = None):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.passages = passages
        self.client = client or httpx.Client(timeout=timeout)

    def messages(self, question: str, language: str, passages: list[Passage],
                 slots: dict[str, str]) -> list[dict[str, str]]:
        reply_in = "Simplified Chinese" if language == "zh" else "English"
        system = ("You are a shop's customer-service assistant. Answer the shopper's question using ONLY the "
                  "facts in the context below; never add numbers, dates, prices or policies that are not in it. "
                  f"If the context does not answer the question, say so. Reply in {reply_in}, in one or two "
                  "short sentences.\n\nContext:\n" + context_text(passages[:self.passages], slots))
        return [{"role": "system", "content": system}, {"role": "user", "content": question}]

    def generate(self, question: str, language: str, passages: list[Passage], slots: dict[str, str]) -> str:
        headers = {"Content-Type": "application/json"}
        if key := os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {key}"
        body = {"model": self.model, "messages": self.messages(question, language, passages, slots),
                "temperature": 0, "max_tokens": 200}
        try:
            response = self.client.post(self.url, json=body, headers=headers)
        except httpx.TimeoutException as error:
            raise ResponderError("the language model timed out") from error
        except httpx.HTTPError as error:
            raise ResponderError(f"the language model is unreachable: {type(error).__name__}") from error
        if response.status_code != 200:
            raise ResponderError(f"the language model answered HTTP {response.status_code}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise ResponderError("the language model's reply is not a chat completion") from error
        if not isinstance(content, str):
            raise ResponderError("the language model's reply has no text")
        return content.strip()


def _numbers(text: str) -> set[str]:
    text = normalize(text).replace("，", ",")
    found = {m.group(0).replace(",", "") for m in _NUMBER.finditer(text)}
    for match in _CN_NUMBER.finditer(text):
        value = chinese_number(match.group(0))
        if value is not None:
            found.add(str(value))
    # "1-3" also vouches for 1 and 3; "9:00" for 9
    parts = {p for n in found for p in re.split(r"[\-/:]", n) if p}
    return {n.lstrip("0") or "0" for n in found | parts}


def grounding_problems(answer: str, language: str, passages: list[Passage], slots: dict[str, str],
                       policy_terms: tuple[str, ...] | list[str] = ()) -> list[str]:
    """What is wrong with a generated answer; an empty list means it is grounded."""
    if not answer.strip():
        return ["empty answer"]
    problems = []
    source = "\n".join([p.question + " " + plain(p.answer) + " " + fill_slots(p.answer, slots) for p in passages]
                       + [str(v) for v in slots.values()])
    allowed = _numbers(source)
    invented = sorted(_numbers(answer) - allowed)
    if invented:
        problems.append(f"numbers not in the sources: {', '.join(invented)}")
    lowered_answer, lowered_source = normalize(answer), normalize(source)
    for term in {*POLICY_TERMS, *policy_terms}:
        term_l = normalize(term)
        if term_l and term_l in lowered_answer and term_l not in lowered_source:
            problems.append(f"policy not in the sources: {term}")
    words = content_words(answer)
    source_words = set(tokens(source))
    if words:
        support = sum(1 for w in words if w in source_words) / len(words)
        if support < MIN_SUPPORT:
            problems.append(f"only {support:.0%} of its words come from the sources")
    elif len(answer.strip()) > 0 and not _numbers(answer):
        problems.append("no words from the sources")
    detected = detect_language(answer)
    if detected and detected != language:
        problems.append(f"written in {detected}, not {language}")
    return problems


@dataclass
class Reply:
    text: str
    citations: list[dict[str, Any]]
    responder: str  # who wrote the text that is sent
    problems: list[str] = field(default_factory=list)  # why a generated answer was not used

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "citations": self.citations, "responder": self.responder,
                "problems": self.problems}


def citation(passage: Passage) -> dict[str, Any]:
    title = passage.question
    return {"id": passage.id, "faq_id": passage.faq_id, "key": passage.key, "title": title,
            "source": passage.source}


def respond(responder: Responder, question: str, language: str, passages: list[Passage],
            slots: dict[str, str] | None = None, policy_terms: tuple[str, ...] | list[str] = ()) -> Reply:
    """The reply to send: the generated one when it is grounded, else the curated answer."""
    slots = slots or {}
    extractive = ExtractiveResponder().generate(question, language, passages, slots)
    if responder.name == "extractive":
        return Reply(extractive, [citation(passages[0])], "extractive")
    try:
        generated = responder.generate(question, language, passages, slots)
    except ResponderError as error:
        log.warning("%s responder failed (%s); sending the curated answer", responder.name, error)
        return Reply(extractive, [citation(passages[0])], "extractive", [str(error)])
    problems = grounding_problems(generated, language, passages, slots, policy_terms)
    if problems:
        log.info("%s answer rejected by the grounding check: %s", responder.name, "; ".join(problems))
        return Reply(extractive, [citation(passages[0])], "extractive", problems)
    used = [p for p in passages if p.answer and _shares_words(generated, p)] or passages[:1]
    return Reply(generated, [citation(p) for p in used], responder.name)


def _shares_words(answer: str, passage: Passage) -> bool:
    words = set(content_words(answer))
    return len(words & set(tokens(plain(passage.answer)))) >= 2


def make_responder(kind: str, **options: Any) -> Responder:
    if kind == "extractive":
        return ExtractiveResponder()
    if kind == "t5":
        if not options.get("model"):
            raise ValueError("the t5 responder needs a model path or hub name (KEFU_KB_T5_MODEL)")
        return T5Responder(options["model"])
    if kind == "openai":
        if not options.get("base_url") or not options.get("model"):
            raise ValueError("the openai responder needs KEFU_LLM_BASE_URL and KEFU_LLM_MODEL")
        return OpenAIResponder(options["base_url"], options["model"], options.get("api_key_env", "KEFU_LLM_API_KEY"),
                               float(options.get("timeout", 15.0)))
    raise ValueError(f"responder must be one of {', '.join(RESPONDERS)}")
