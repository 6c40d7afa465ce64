"""The typed objects that cross module seams: documents, passages, citations, answers."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PageSpan(BaseModel):
    """A page of a paginated source (PDF) as a character range of the document text."""

    page: int
    start: int
    end: int


class Document(BaseModel):
    """A loaded source file: its full text plus metadata."""

    source: str  # file name relative to the knowledge-base folder, e.g. "article.txt"
    title: str
    text: str
    content_hash: str  # sha256 of the file's bytes
    metadata: dict[str, Any] = Field(default_factory=dict)  # publisher, date, language, url…
    pages: list[PageSpan] = Field(default_factory=list)
    size: int = 0  # bytes on disk


class Passage(BaseModel):
    """A chunk of a document, with its exact character offsets into `Document.text`."""

    chunk_id: str
    source: str
    title: str
    text: str
    start: int
    end: int
    index: int = 0  # position of the chunk in its document
    page: int | None = None
    content_hash: str = ""  # hash of the document the passage came from


class ScoredPassage(Passage):
    """A retrieved passage with its ranks and scores."""

    score: float = 0.0  # fused score (reciprocal rank fusion)
    dense_score: float | None = None  # cosine similarity
    lexical_score: float | None = None  # BM25
    dense_rank: int | None = None
    lexical_rank: int | None = None
    rank: int = 0  # 1-based final rank


class Citation(BaseModel):
    """A marker [n] in an answer that resolves to a retrieved passage."""

    number: int
    source: str
    title: str
    chunk_id: str
    quote: str  # the cited span, verbatim from the source text when found
    start: int  # offsets of `quote` in the source document text
    end: int
    passage_start: int = 0  # offsets of the whole passage, to show it in context
    passage_end: int = 0
    passage_text: str = ""
    supported: bool = True
    support: float = 1.0  # 1.0 = verbatim quote, else a lexical/embedding support score


class ConflictValue(BaseModel):
    value: str
    source: str
    citation: int | None = None
    quote: str = ""


class Conflict(BaseModel):
    """The same fact stated differently by different sources (e.g. 61 vs 58 countries)."""

    about: str
    values: list[ConflictValue]


class Turn(BaseModel):
    """One earlier exchange of a chat, given to the chain as history."""

    question: str
    answer: str = ""


class Answer(BaseModel):
    """The one result object shared by the CLI, the UI and the eval suite."""

    question: str
    standalone_question: str
    text: str = ""  # Markdown with inline markers [1], [2]…
    citations: list[Citation] = Field(default_factory=list)
    declined: bool = False
    conflicts: list[Conflict] = Field(default_factory=list)
    passages: list[ScoredPassage] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)  # stage -> milliseconds
    unsupported_sentences: list[str] = Field(default_factory=list)
    removed_markers: int = 0
    generator: str = ""
    model: str = ""
    kb: str = ""
    error: str | None = None  # readable error message; never a stack trace or a secret
    # what kind of problem `error` is, for callers that map it (the HTTP API's status codes): "invalid",
    # "too_long", "not_found" (no such knowledge base), "unavailable" (store or LLM down), "internal"
    error_kind: str | None = None
