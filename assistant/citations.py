"""Citation verification: pure functions on an answer text and the retrieved passages.

Every marker must resolve to a retrieved passage (others are removed and counted); every cited sentence
is checked against its passages — verbatim (whitespace, case and quote marks ignored) gives support 1.0
and the exact offsets of the quote in the source document; otherwise a lexical support score (accent
folded, stemmed content words, numbers written in words count as digits) is compared to a threshold.
Citations are renumbered 1..n in order of appearance, one number per quoted span.

Bracketed numbers that are part of a document ("[1]" of a press review or a Wikipedia copy) are document
text, never citations: `neutralise_markers` turns their brackets into fullwidth ones ("［1］") before any
generator sees a passage. The change keeps every length, so offsets stay exact; citations are then given
the document's own characters back (`restore_quotes`). The convention, for whoever displays an `Answer`:
in `Answer.text` an ASCII "[n]" is always one of the assistant's citation markers and a document's
bracketed number appears as "［n］"; `Citation.quote` and `Citation.passage_text` are the document's exact
characters (`document[start:end] == quote`), where any "[n]" is plain text, never a marker.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from assistant.sentences import clean, sentence_spans
from assistant.language import FRAMING, TermSet, fold, question_terms
from assistant.models import Citation, ScoredPassage

MARKER = re.compile(r"\[(\s*\d+\s*(?:[,;–-]\s*\d+\s*)*)\]")
DOCUMENT_BRACKETS = ("\uff3b", "\uff3d")  # "［", "］": how a document's own "[n]" reaches a generator
_ANSWER_BOUNDARY = re.compile(
    r"""(?:[.!?…]+\s?["'»”’)]*(?:\s*\[[\d,;\s–-]+\])*|\[[\d,;\s–-]+\])\s+(?=["'“«(]?\s*[A-ZÀ-ÖØ-Þ0-9])"""
)
_BULLET = re.compile(r"^\s*(?:[-*•>]|\d+[.)])\s+")
_QUOTES = "\"'«»“”„‘’`"
_ABBREVIATION = re.compile(r"(?:\b[A-Z]|\b(?:M|Mme|Dr|Mr|Mrs|St|etc))\.$")


@dataclass
class Verified:
    text: str
    citations: list[Citation] = field(default_factory=list)
    unsupported_sentences: list[str] = field(default_factory=list)
    removed_markers: int = 0


# --- markers ------------------------------------------------------------------------------------------
def marker_numbers(body: str) -> list[int]:
    """'1, 3' -> [1, 3]; '2-4' -> [2, 3, 4]."""
    out: list[int] = []
    for part in re.split(r"[,;]", body):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*[–-]\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            out.extend(range(lo, hi + 1) if 0 < hi - lo < 20 else [lo, hi])
        elif part.isdigit():
            out.append(int(part))
    return out


def parse_markers(text: str) -> list[tuple[int, int, list[int]]]:
    """(start, end, numbers) of every marker group in the text."""
    return [(m.start(), m.end(), marker_numbers(m.group(1))) for m in MARKER.finditer(text)]


def strip_markers(text: str) -> str:
    return re.sub(r"[ \t]+([,.])(?=\s|$)", r"\1", MARKER.sub("", text)).strip()


def neutralise_markers(text: str) -> str:
    """A document's marker-like "[1]", "[2, 3]" with fullwidth brackets ("［1］"): the same length, so every
    offset into the text stays exact, but no longer a citation marker for a generator or the verifier."""
    opening, closing = DOCUMENT_BRACKETS
    return MARKER.sub(lambda m: opening + m.group(1) + closing, text)


def document_brackets(text: str) -> str:
    """For display as plain text only: a neutralised document marker ("［1］") back to the document's own
    characters ("[1]"). Never for text that is parsed for citation markers afterwards."""
    opening, closing = DOCUMENT_BRACKETS
    return re.sub(re.escape(opening) + r"(\s*\d+\s*(?:[,;–-]\s*\d+\s*)*)" + re.escape(closing), r"[\1]", text)


def neutral_passages(passages: Sequence[ScoredPassage]) -> list[ScoredPassage]:
    """The passages as a generator may see them: document markers neutralised (copies only where needed)."""
    return [p.model_copy(update={"text": neutralise_markers(p.text)}) if MARKER.search(p.text) else p
            for p in passages]


def restore_quotes(citations: Sequence[Citation], passages: Sequence[ScoredPassage]) -> list[Citation]:
    """Citations made on neutralised passages, given the document's own characters back (same offsets)."""
    by_chunk = {p.chunk_id: p for p in passages}
    out = []
    for c in citations:
        p = by_chunk.get(c.chunk_id)
        if p is None or c.passage_text == p.text:
            out.append(c)
            continue
        ls, le = c.start - p.start, c.end - p.start
        quote = p.text[ls:le] if 0 <= ls <= le <= len(p.text) else c.quote
        out.append(c.model_copy(update={"quote": quote, "passage_text": p.text}))
    return out


# --- sentences of an answer -----------------------------------------------------------------------------
def answer_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans of an answer: lines, then sentence ends (markers after a period stay with it)."""
    spans = []
    pos = 0
    for line in text.split("\n"):
        cuts = [0]
        for m in _ANSWER_BOUNDARY.finditer(line):
            head = line[max(0, m.start() - 6) : m.start() + 1]
            if line[m.start()] == "." and _ABBREVIATION.search(head):
                continue
            cuts.append(m.end())
        cuts.append(len(line))
        for s, e in zip(cuts, cuts[1:]):
            piece = line[s:e]
            if piece.strip():
                lead = len(piece) - len(piece.lstrip())
                spans.append((pos + s + lead, pos + s + len(piece.rstrip())))
        pos += len(line) + 1
    return spans


def claim_text(sentence: str) -> str:
    """The statement a sentence makes: markers, list bullets and surrounding quote marks removed."""
    out = _BULLET.sub("", strip_markers(sentence)).strip()
    out = out.strip(_QUOTES + " ").strip()
    return out


# --- matching ----------------------------------------------------------------------------------------
def _normalised(text: str) -> tuple[str, list[int]]:
    """Case-folded text without whitespace or quote marks, with the original index of every character."""
    chars, index = [], []
    for i, ch in enumerate(text):
        if ch.isspace() or ch in _QUOTES:
            continue
        chars.append(ch.lower())
        index.append(i)
    return "".join(chars), index


def find_verbatim(claim: str, passage_text: str) -> tuple[int, int] | None:
    """Offsets of `claim` in `passage_text`, ignoring whitespace, case and quote marks."""
    needle, _ = _normalised(claim.rstrip(".…"))
    if len(needle) < 8:
        return None
    hay, index = _normalised(passage_text)
    at = hay.find(needle)
    if at < 0:
        return None
    start, end = index[at], index[at + len(needle) - 1] + 1
    # take the closing punctuation and quote marks that the normalisation set aside
    while end < len(passage_text) and passage_text[end] in ".!?…" + _QUOTES + ")" and end - index[at + len(needle) - 1] <= 3:
        end += 1
    if passage_text[start - 1 : start] in _QUOTES and passage_text[start:end].count('"') % 2 == 1:
        start -= 1
    return start, end


def lexical_support(claim: str, evidence: Sequence[str]) -> float:
    """Share of the claim's content words (framing words aside) found in the evidence texts."""
    terms = [t for t in question_terms(claim) if not any(fold(v) in FRAMING for v in t)]
    if not terms:
        return 1.0
    found = TermSet(" ".join(evidence))
    return sum(found.has(t) for t in terms) / len(terms)


def best_sentence(claim: str, passage_text: str) -> tuple[int, int, float]:
    """The passage sentence that best supports the claim: (start, end, support)."""
    best = (0, len(passage_text), 0.0)
    for s, e in sentence_spans(passage_text):
        score = lexical_support(claim, [passage_text[s:e]])
        if score > best[2]:
            best = (s, e, score)
    return best


def is_framing(sentence: str) -> bool:
    """A sentence that frames rather than states (a lead-in ending with ':', no content word)."""
    text = claim_text(sentence)
    if not text or text.endswith(":"):
        return True
    terms = [t for t in question_terms(text) if not any(fold(v) in FRAMING for v in t)]
    return not terms


# --- verification --------------------------------------------------------------------------------------
def verify(
    text: str,
    passages: Sequence[ScoredPassage],
    threshold: float = 0.5,
    documents: dict[str, str] | None = None,
    similarity: Callable[[str, str], float] | None = None,
    exempt: Callable[[str], bool] | None = None,
    drop_unsupported: bool = True,
) -> Verified:
    """Resolve, check and renumber the citations of `text` (markers refer to passages 1..len(passages)).

    A cited sentence whose passages do not support it, or an uncited statement that no passage supports,
    is listed in `unsupported_sentences` and (with `drop_unsupported`) left out of the text.
    """
    out = Verified(text="")
    numbering: dict[tuple[int, int, int], int] = {}
    pieces: list[str] = []
    pos = 0
    for s, e in answer_sentences(text):
        pieces.append(text[pos:s])
        sentence = text[s:e]
        markers = parse_markers(sentence)
        cited = []
        for _, _, numbers in markers:
            for n in numbers:
                if 1 <= n <= len(passages):
                    if n - 1 not in cited:
                        cited.append(n - 1)
                else:
                    out.removed_markers += 1
        claim = claim_text(sentence)
        if not cited:
            new_sentence = strip_markers(sentence) if markers else sentence
            if not (is_framing(sentence) or (exempt and exempt(sentence))) and (
                lexical_support(claim, [p.text for p in passages]) < threshold
            ):
                out.unsupported_sentences.append(claim)
                if drop_unsupported:
                    new_sentence = ""
            pieces.append(new_sentence)
            pos = e
            continue
        spans, support, alone = [], 0.0, {}
        for i in cited:
            p = passages[i]
            hit = find_verbatim(claim, p.text)
            if hit:
                spans.append((i, hit[0], hit[1], 1.0))
                alone[i] = 1.0
            else:
                bs, be, score = best_sentence(claim, p.text)
                spans.append((i, bs, be, score))
                alone[i] = lexical_support(claim, [p.text])
                if similarity is not None:
                    alone[i] = max(alone[i], similarity(claim, p.text))
        # each citation is checked against the passage it names: a passage that neither supports the
        # sentence on its own nor brings anything the other cited passages lack is no source for it
        # (a document's own "[2]" copied by a model must not "cite" passage 2)
        kept = justified_citations(claim, cited, alone, [p.text for p in passages], threshold)
        if kept:  # (none justified: the sentence as a whole is unsupported, below)
            out.removed_markers += len(cited) - len(kept)
            spans = [span for span in spans if span[0] in kept]
            cited = kept
        if any(alone[i] >= 1.0 for i in cited):
            support = 1.0
        if support < 1.0:
            support = lexical_support(claim, [passages[i].text for i in cited])
            if similarity is not None:
                support = max(support, similarity(claim, " ".join(passages[i].text for i in cited)))
        supported = support >= threshold
        if not supported:
            out.unsupported_sentences.append(claim)
            if drop_unsupported:
                pos = e
                continue
        local: dict[int, int] = {}
        for i, ls, le, score in spans:
            key = (i, ls, le)
            if key not in numbering:
                numbering[key] = len(numbering) + 1
                out.citations.append(_citation(numbering[key], passages[i], ls, le, score, supported, documents))
            local[i + 1] = numbering[key]
        pieces.append(_rewrite_markers(sentence, local))
        pos = e
    pieces.append(text[pos:])
    out.text = re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]{2,}", " ", "".join(pieces))).strip()
    return out


def justified_citations(claim: str, cited: Sequence[int], alone: dict[int, float], texts: Sequence[str],
                        threshold: float) -> list[int]:
    """The cited passages (indices into `texts`) that are a source for `claim`: each one supports it on
    its own (`alone[i]`, verbatim = 1.0), or the claim is not supported without it, or it is the only one
    of them to hold one of the claim's figures."""
    if len(cited) == 1:
        return list(cited) if alone[cited[0]] >= threshold else []
    terms = [t for t in question_terms(claim) if not any(fold(v) in FRAMING for v in t)]
    sets = {i: TermSet(texts[i]) for i in cited}
    kept = []
    for i in cited:
        others = [j for j in cited if j != i]
        if alone[i] >= threshold:
            kept.append(i)
        elif any(alone[j] >= 1.0 for j in others):
            continue  # another cited passage holds the sentence word for word
        elif lexical_support(claim, [texts[j] for j in others]) < threshold <= lexical_support(
            claim, [texts[j] for j in cited]
        ):
            kept.append(i)
        elif any(sets[i].has(t) and not any(sets[j].has(t) for j in others)
                 for t in terms if any(v[:1].isdigit() for v in t)):
            kept.append(i)
    return kept


def _rewrite_markers(sentence: str, local: dict[int, int]) -> str:
    """Each marker group rewritten with the new numbers; groups left empty are removed."""

    def group(m: re.Match) -> str:
        numbers: list[int] = []
        for n in marker_numbers(m.group(1)):
            if n in local and local[n] not in numbers:
                numbers.append(local[n])
        return "".join(f"[{n}]" for n in numbers)

    out = MARKER.sub(group, sentence)
    return re.sub(r"[ \t]+([,.])(?=\s|$)", r"\1", re.sub(r"[ \t]{2,}", " ", out)).rstrip()


def _citation(number, passage, ls, le, support, supported, documents) -> Citation:
    quote = passage.text[ls:le]
    start = passage.start + ls
    doc = (documents or {}).get(passage.source)
    if doc is not None and doc[start : start + len(quote)] != quote:
        found = doc.find(quote)
        start = found if found >= 0 else start
    return Citation(
        number=number,
        source=passage.source,
        title=passage.title,
        chunk_id=passage.chunk_id,
        quote=quote,
        start=start,
        end=start + len(quote),
        passage_start=passage.start,
        passage_end=passage.end,
        passage_text=passage.text,
        supported=supported,
        support=round(float(support), 3),
    )


def renumber(text: str, citations: Sequence[Citation]) -> tuple[str, list[Citation]]:
    """Renumber citations 1..n in order of first appearance in the text; markers of unknown numbers and
    citations never shown are dropped."""
    by_number = {c.number: c for c in citations}
    order: list[int] = []
    for _, _, numbers in parse_markers(text):
        for n in numbers:
            if n in by_number and n not in order:
                order.append(n)
    mapping = {old: new for new, old in enumerate(order, start=1)}
    new_text = MARKER.sub(
        lambda m: "".join(f"[{mapping[n]}]" for n in marker_numbers(m.group(1)) if n in mapping), text
    )
    new_text = re.sub(r"[ \t]+([,.])(?=\s|$)", r"\1", new_text)
    return new_text, [by_number[old].model_copy(update={"number": mapping[old]}) for old in order]


def display_sentence(text: str) -> str:
    """A source sentence made readable for an answer (one line, tidy punctuation)."""
    return clean(text)
