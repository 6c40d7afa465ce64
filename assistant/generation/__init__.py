"""Answer generators behind one interface, chosen by configuration.

`extractive` (default, offline) composes the answer from retrieved sentences; `openai` asks any
OpenAI-compatible chat model. Both return text whose markers [n] refer to the passages 1..k they were
given; the chain then verifies, renumbers and completes the citations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from assistant.config import Settings
from assistant.models import ScoredPassage, Turn

DECLINE = {
    "fr": "Les sources ne le disent pas : la réponse à cette question ne figure pas dans les documents.",
    "en": "The sources do not say: the answer to this question is not in the documents.",
}
OFF_TASK = {
    "fr": "Je réponds seulement aux questions sur les documents, à partir de leur contenu : "
    "je ne peux pas donner suite à cette demande.",
    "en": "I only answer questions about the documents, from their content: I cannot follow this request.",
}


class GenerationError(RuntimeError):
    """A generator failed in a way the user should read about (endpoint down, bad response…)."""


@dataclass
class GenerationRequest:
    question: str  # as asked (its language decides the answer's)
    standalone: str  # after follow-up rewriting; what retrieval used
    passages: Sequence[ScoredPassage]
    lang: str = "fr"
    history: Sequence[Turn] = ()
    query_vector: np.ndarray | None = None
    documents: dict[str, str] = field(default_factory=dict)  # source -> full text
    deadline: float | None = None  # time.monotonic() by which the question must be answered (LLM budget)
    kb: str | None = None  # the knowledge base the passages come from (None: settings.kb)


@dataclass
class Generation:
    text: str  # markers [n] refer to request.passages[n-1]
    declined: bool = False
    used: int | None = None  # passages actually shown to the model (the first `used`); None = all
    dropped: list[str] = field(default_factory=list)  # sentences the generator itself found unsupported


@runtime_checkable
class Generator(Protocol):
    name: str
    model: str

    def generate(self, request: GenerationRequest) -> Generation: ...

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        """Text chunks as they come, then the complete Generation."""
        ...


def get_generator(settings: Settings) -> Generator:
    name = settings.resolved_generator
    if name == "openai":
        from assistant.generation.openai import OpenAIGenerator

        return OpenAIGenerator(settings)
    from assistant.generation.extractive import ExtractiveGenerator

    return ExtractiveGenerator(settings)
