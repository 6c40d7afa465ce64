"""The offline default generator: the answer is made of the retrieved sentences that answer the question.

Each sentence of the retrieved passages is scored by embedding similarity to the question, weighted
overlap of content words (accent-folded, stemmed, English glossed to French) and the rank of its
passage; what the question asks for (a number, a date, an amount, a name) must be in the sentence.
One to three sentences are quoted and cited; when the evidence is too weak the answer declines.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np

from assistant.citations import neutralise_markers
from assistant.config import Settings
from assistant.conflicts import SentenceRef, find_conflicts, relevant
from assistant.embeddings import get_embedder
from assistant.generation import DECLINE, Generation, GenerationRequest
from assistant.generation.questions import counted_noun, fits, has_person, looks_like_instruction, question_kind
from assistant.sentences import clean, sentence_spans
from assistant.generation.sentence_store import SentenceStore
from assistant.generation.vectors import SentenceVectors
from assistant.language import (
    GENERIC, TermSet, content_words, detect_language, fold, question_terms, variants, words,
)

LEAD = {"fr": "D'après les sources :", "en": "According to the sources:"}
LEAD_TRANSLATED = "According to the sources (quoted in the original {language}):"
LANGUAGE_NAMES = {"fr": "French", "en": "English"}
QUOTES = {"fr": ("« ", " »"), "en": ("“", "”")}

# Calibrated on questions written for the default corpus (see tests/test_generation_extractive.py).
# e5 cosine of question and sentence: ~0.75 unrelated, ~0.88 the answer; a question in another language
# than the text scores ~0.03 lower throughout.
DENSE_FLOOR, DENSE_SPAN, CROSS_LINGUAL_SHIFT = 0.77, 0.11, 0.03
DENSE_WEIGHT, LEXICAL_WEIGHT = 0.55, 0.4
ENTITY_WEIGHT = 0.6  # names the question repeats say little about which sentence answers it
ANSWER_THRESHOLD = 0.42
KEEP_MARGIN = 0.12
MAX_SENTENCES = 3
PERSON_BONUS = 0.08
IDF_POWER = 2.0  # a word few sentences share (the question's verb, say) tells most about the answer
MIN_COVERAGE = 0.5
MIN_COVERAGE_CROSS_LINGUAL = 0.34  # the glossary cannot know every English word
DENSE_CONFIDENT = 0.85  # share of the question's topic words that must occur somewhere in the passages


@dataclass
class Candidate:
    passage: int  # index into request.passages
    start: int  # offsets in the passage text
    end: int
    text: str
    source: str
    doc_start: int
    rank: int
    dense: float = 0.0
    lexical: float = 0.0
    fits: bool = True
    score: float = 0.0


_VECTORS: dict[str, SentenceVectors] = {}


def _vectors(settings: Settings, kb: str, embedder) -> SentenceVectors:
    """This process's sentence vectors for one knowledge base: memory, then the knowledge base's store."""
    key = f"{embedder.name}|{settings.data_dir}|{kb}"
    if key not in _VECTORS:
        _VECTORS[key] = SentenceVectors(embedder, SentenceStore.of(settings, kb, embedder))
    return _VECTORS[key]


@lru_cache(maxsize=256)
def _document_sentences(text: str) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...] | None]:
    """The document's sentence spans, and their ends when the spans are in order and do not overlap
    (then the spans a passage touches are found by bisection instead of a scan of the whole document)."""
    spans = tuple(sentence_spans(text))
    ordered = all(a[1] <= b[0] and a[0] <= a[1] for a, b in zip(spans, spans[1:]))
    return spans, (tuple(e for _, e in spans) if ordered else None)


# Bump when `passage_sentences` (or the sentence splitter) changes the sentences it gives: the
# sentence vectors stored at ingest are then filled again by the next ingest (misses cost speed only).
SENTENCE_RULES = "1"


def passage_sentences(text: str, start: int, end: int, document: str | None) -> list[tuple[int, int]]:
    """The candidate sentences of one passage (`text`, at `start:end` of its document), as offsets in
    the passage: split on the whole document when its text is known and holds the passage, else on the
    passage alone; headings, fragments (fewer than three content words) and instruction-like lines left
    out. The one definition of what the generator scores: ingest embeds exactly these sentences."""
    if document is not None and document[start:end] == text:
        spans = []
        every, ends = _document_sentences(document)
        # the spans ending after `start`, up to the first one starting at or after `end`
        touched = every if ends is None else every[bisect_right(ends, start):]
        for s, e in touched:
            if ends is not None and s >= end:
                break
            cs, ce = max(s, start), min(e, end)
            if ce - cs >= 25 and (ce - cs) >= 0.6 * (e - s):
                spans.append((cs - start, ce - start))
    else:
        spans = sentence_spans(text)
    out = []
    for s, e in spans:
        sentence = text[s:e]
        if sentence.lstrip().startswith("#") or not _content_words_at_least(sentence, 3) or \
                looks_like_instruction(sentence):
            continue
        out.append((s, e))
    return out


@lru_cache(maxsize=65536)
def _content_count(word: str) -> int:
    return len(content_words(word))


def _content_words_at_least(text: str, n: int) -> bool:
    """`len(content_words(text)) >= n`, word by word (content_words treats each word on its own), each
    word's count cached: ingest checks every sentence of the knowledge base."""
    count = 0
    for word in words(text):
        count += _content_count(word)
        if count >= n:
            return True
    return False


def document_sentence_texts(document: str, passages: Sequence) -> list[str]:
    """Every sentence the generator may score for these passages of `document` (objects with `text`,
    `start`, `end`), seen as the chain hands them to it: the document's own markers neutralised."""
    neutral = neutralise_markers(document)
    out: dict[str, None] = {}
    for p in passages:
        text = neutralise_markers(p.text)
        for s, e in passage_sentences(text, p.start, p.end, neutral):
            out[text[s:e]] = None
    return list(out)


def candidates(request: GenerationRequest) -> list[Candidate]:
    """Sentences of the retrieved passages (split on the whole document when its text is known), each once."""
    found: dict[tuple[str, int, int], Candidate] = {}
    for i, p in enumerate(request.passages):
        for s, e in passage_sentences(p.text, p.start, p.end, request.documents.get(p.source)):
            key = (p.source, p.start + s, p.start + e)
            if key not in found:
                found[key] = Candidate(i, s, e, p.text[s:e], p.source, p.start + s, p.rank or i + 1)
    # a sentence clipped by one passage and whole in another: keep the whole one
    out = []
    for key, c in found.items():
        if any(k != key and k[0] == key[0] and k[1] <= key[1] and k[2] >= key[2] for k in found):
            continue
        out.append(c)
    return out


def _weights(terms: list[frozenset[str]], sets: Sequence[TermSet], entities: set[frozenset[str]]) -> list[float]:
    n = len(sets)
    return [
        (1.0 + math.log((n + 1) / (1 + sum(s.has(t) for s in sets)))) ** IDF_POWER
        * (ENTITY_WEIGHT if t in entities else 1.0)
        for t in terms
    ]


def entity_terms(question: str) -> list[frozenset[str]]:
    """Variants of the names and figures in a question (capitalised words after the first, numbers)."""
    out = []
    words = question.replace("?", " ").split()
    for i, raw in enumerate(words):
        word = raw.strip(",;:!.()\"'«»“”")
        if word[:1].isdigit() or (i > 0 and word[:1].isupper() and len(word) > 1):
            out.extend(variants(w) for w in content_words(word, accents=True))
    return out


class ExtractiveGenerator:
    name = "extractive"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.embedder = get_embedder(settings)
        self.model = f"extractive/{self.embedder.name}"

    # --- scoring
    def score(self, request: GenerationRequest, cands: list[Candidate]) -> str:
        kind = question_kind(request.question)
        if kind == "other":
            kind = question_kind(request.standalone)
        noun = counted_noun(request.question) or counted_noun(request.standalone)
        terms = question_terms(request.standalone, skip_generic=True)
        sets = [TermSet(c.text) for c in cands]
        weights = _weights(terms, sets, set(entity_terms(request.standalone)))
        cross = detect_language(" ".join(c.text for c in cands[:6])) != request.lang
        floor = DENSE_FLOOR - (CROSS_LINGUAL_SHIFT if cross else 0.0)
        total = sum(weights) or 1.0
        qv = request.query_vector
        if qv is None:
            qv = self.embedder.embed_query(request.standalone)
        vectors = _vectors(self.settings, request.kb or self.settings.kb, self.embedder).get(
            [c.text for c in cands], [c.source for c in cands])
        dense = vectors @ np.asarray(qv, dtype=np.float32)
        for c, ts, d in zip(cands, sets, dense):
            c.dense = float(d)
            c.lexical = sum(w for t, w in zip(terms, weights) if ts.has(t)) / total
            c.fits = fits(kind, c.text, noun)
            dn = min(1.0, max(0.0, (c.dense - floor) / DENSE_SPAN))
            c.score = DENSE_WEIGHT * dn + LEXICAL_WEIGHT * c.lexical + 0.05 / c.rank
            if not c.fits:
                c.score -= 0.25
            elif kind == "person" and has_person(c.text):
                c.score += PERSON_BONUS
        return kind

    def _missing_entity(self, request: GenerationRequest) -> bool:
        """A name or a number of the question that no retrieved passage mentions."""
        everything = TermSet(" ".join(p.text for p in request.passages))
        return any(not everything.has(t) for t in entity_terms(request.question))

    def coverage(self, request: GenerationRequest) -> float:
        """Share of the question's topic words (names, figures and asking words aside) the passages contain."""
        everything = TermSet(" ".join(p.text for p in request.passages))
        entities = set(entity_terms(request.standalone))
        terms = [
            variants(w) for w in content_words(request.standalone, accents=True)
            if fold(w) not in GENERIC and variants(w) not in entities
        ]
        return sum(everything.has(t) for t in terms) / len(terms) if terms else 1.0

    def select(self, request: GenerationRequest) -> tuple[list[Candidate], str]:
        cands = candidates(request)
        if not cands or self._missing_entity(request):
            return [], "other"
        kind = self.score(request, cands)
        ranked = sorted(cands, key=lambda c: -c.score)
        best = ranked[0]
        if best.score < ANSWER_THRESHOLD or not best.fits:
            return [], kind
        # topic words the passages never use: decline, unless a sentence is very close in meaning
        # (synonyms, "fled" for "flee")
        cross = detect_language(" ".join(c.text for c in cands[:6])) != request.lang
        if self.coverage(request) < (MIN_COVERAGE_CROSS_LINGUAL if cross else MIN_COVERAGE) and \
                max(c.dense for c in cands) < DENSE_CONFIDENT:
            return [], kind
        chosen = [best]
        for c in ranked[1:]:
            if len(chosen) >= MAX_SENTENCES or c.score < max(ANSWER_THRESHOLD, best.score - KEEP_MARGIN):
                break
            if c.fits and not any(_overlap(c.text, o.text) > 0.8 for o in chosen):
                chosen.append(c)
        # a figure stated differently elsewhere: quote the other source too
        pool = [c for c in ranked if c.score >= ANSWER_THRESHOLD * 0.6]
        refs = [SentenceRef(c.text, c.source, 1 if c in chosen else None) for c in pool]
        for conflict in find_conflicts(refs):
            if not relevant(conflict, request.standalone):
                continue
            for value in conflict.values:
                other = next((c for c in pool if c.text == value.quote), None)
                if other is not None and other not in chosen:
                    chosen.append(other)
        return chosen, kind

    # --- composing
    def generate(self, request: GenerationRequest) -> Generation:
        chosen, _ = self.select(request)
        lang = request.lang
        if not chosen:
            return Generation(text=DECLINE[lang], declined=True)
        source_lang = detect_language(" ".join(c.text for c in chosen))
        lead = LEAD[lang] if source_lang == lang else LEAD_TRANSLATED.format(language=LANGUAGE_NAMES[source_lang])
        if lang == "fr" and source_lang != lang:
            lead = "D'après les sources (citées en anglais) :"
        left, right = QUOTES[lang]
        lines = [lead] + [f"- {left}{clean(c.text)}{right} [{c.passage + 1}]" for c in chosen]
        return Generation(text="\n".join(lines), declined=False)

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        generation = self.generate(request)
        lines = generation.text.split("\n")
        for i, line in enumerate(lines):
            yield line + ("\n" if i < len(lines) - 1 else "")
        yield generation


def _overlap(a: str, b: str) -> float:
    wa, wb = set(content_words(a)), set(content_words(b))
    return len(wa & wb) / max(1, min(len(wa), len(wb)))
