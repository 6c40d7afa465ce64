"""Split a document into passages that respect paragraphs and sentences, with exact offsets.

`passage.text == document.text[passage.start:passage.end]` always holds, so an answer can quote and
highlight the exact span of the source.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from assistant.config import Settings
from assistant.models import Document, Passage
from assistant.sentences import sentence_spans


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    new_paragraph: bool  # the span starts a line (a new paragraph or a line of its own)


def _units(text: str) -> list[Span]:
    """Sentences, each marked when a line break separates it from the previous one."""
    out: list[Span] = []
    previous_end = 0
    for start, end in sentence_spans(text):
        out.append(Span(start, end, not out or "\n" in text[previous_end:start]))
        previous_end = end
    return out


def _split_long(span: Span, text: str, max_chars: int) -> list[Span]:
    """Cut a sentence longer than max_chars at whitespace."""
    out, start = [], span.start
    while span.end - start > max_chars:
        cut = text.rfind(" ", start + max_chars // 2, start + max_chars)
        cut = cut if cut > start else start + max_chars
        out.append(Span(start, cut, start == span.start and span.new_paragraph))
        start = cut
        while start < span.end and text[start].isspace():
            start += 1
    if start < span.end:
        out.append(Span(start, span.end, start == span.start and span.new_paragraph))
    return out


def chunk_id(source: str, index: int, text: str) -> str:
    """Stable id: same file name, position and text give the same id on every run."""
    digest = hashlib.sha1(f"{source}\x00{index}\x00{text}".encode()).hexdigest()[:16]
    return f"{index:04d}-{digest}"


def chunk_document(
    doc: Document,
    max_chars: int = Settings.model_fields["chunk_chars"].default,
    overlap_sentences: int = Settings.model_fields["chunk_overlap_sentences"].default,
) -> list[Passage]:
    """Pack whole sentences into passages of at most ~max_chars, breaking at paragraphs when possible.

    Consecutive passages share `overlap_sentences` sentences so that a fact cut at a boundary is
    still whole in one of them.
    """
    text = doc.text
    units: list[Span] = []
    for span in _units(text):
        units.extend(_split_long(span, text, max_chars) if span.end - span.start > max_chars else [span])
    groups: list[list[Span]] = []
    current: list[Span] = []
    for unit in units:
        if current:
            size = unit.end - current[0].start
            paragraph_break = unit.new_paragraph and (current[-1].end - current[0].start) >= max_chars * 0.6
            if size > max_chars or paragraph_break:
                groups.append(current)
                keep = current[-overlap_sentences:] if overlap_sentences > 0 else []
                # only overlap when it leaves room for new text
                current = [u for u in keep if unit.end - u.start <= max_chars] if keep else []
        current.append(unit)
    if current:
        groups.append(current)

    passages = []
    for index, group in enumerate(groups):
        start, end = group[0].start, group[-1].end
        body = text[start:end]
        passages.append(
            Passage(
                chunk_id=chunk_id(doc.source, index, body),
                source=doc.source,
                title=doc.title,
                text=body,
                start=start,
                end=end,
                index=index,
                page=_page_of(doc, start),
                content_hash=doc.content_hash,
            )
        )
    return passages


def _page_of(doc: Document, offset: int) -> int | None:
    for span in doc.pages:
        if span.start <= offset < span.end:
            return span.page
    return doc.pages[-1].page if doc.pages else None
