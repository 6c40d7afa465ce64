"""Follow-up questions rewritten into standalone ones, so that retrieval sees the whole topic.

With an LLM configured, a short prompt does it; otherwise (or when the LLM fails, or replies with something
that is no rewrite of the question: `plausible_rewrite`) an offline heuristic:
a question that opens with a connective ("Et les États-Unis… ?", "What about…?") or leans on a pronoun
with little content of its own carries the topic of the previous question:
"Et les États-Unis, l'ont-ils signée ?" after "Combien de pays ont signé la déclaration ?" becomes
"Les États-Unis, l'ont-ils signée ? (pays ont signé la déclaration)".

The heuristic is conservative: a question that names its own subject is standalone. French inversion is
no anaphora when a noun subject comes before the verb ("Quel montant la France a-t-elle investi ?",
"Quand le sommet s'est-il tenu ?": "elle" and "il" repeat "la France" and "le sommet"); it is when
nothing does ("Contre quoi a-t-il mis en garde ?"). A short question with a name or a figure of its own
("Qu'est-ce que DeepSeek ?") is standalone too.

Whatever rewrote the question, the chain retrieves for the question as asked and for its rewrite, and
`keep_rewrite` decides which one the answer is built on: the rewrite must find passages that support the
question's own words at least as well as the question alone does.
"""
from __future__ import annotations

import re
import time
from typing import Any, Sequence

from assistant.language import GENERIC, TermSet, content_words, question_terms, variants
from assistant.models import Turn

_CONNECTIVE = re.compile(
    r"^\s*(?:et\s+qu'en\s+est-il\s+(?:de\s+la|de\s+l'|du|des|de)?|et\s+concernant|et\s+pour|and\s+what\s+about|what\s+about"
    r"|how\s+about|and\s+for|and\s+in|et\s+en|et\s+dans|et|and|also|aussi|mais|but|so|alors|donc|puis|ensuite)\b[\s,]*",
    re.IGNORECASE,
)
# pronouns that stand for something said before ("-t-il" inversions are told apart in `_anaphoric_inversion`;
# "this/that/these/those" followed by a word are determiners of a noun the question names)
_PRONOUN = re.compile(
    r"\bl['’](?:ont|a|avait|avaient|aurait|auraient|est)\b|(?<![-\w])(?:ils|elles|lui|leur|eux|cela|ça"
    r"|celui-ci|celle-ci|ceux-ci|it|they|them|their|he|she|him|her|his)\b|\b(?:this|that|those|these)\b(?!\s+\w)"
    r"|\by\b(?!\s*a\b|\s*avait\b|-a-t-il)",
    re.IGNORECASE,
)
# a verb with an inverted subject pronoun: "a-t-il", "ont-elles", "s'est-il", "préconise-t-il"
_INVERSION = re.compile(r"(?<![\w-])([^\W\d_]+)-(?:t-)?(il|elle|ils|elles|on)\b", re.IGNORECASE)
# impersonal "il" ("y a-t-il", "faut-il", "s'agit-il"): it stands for nobody
_IMPERSONAL = re.compile(r"^(?:faut|fallait|faudra|agit|agissait)$", re.IGNORECASE)
# what opens a French question before its subject: a preposition, then an interrogative word or phrase
_FRENCH_ASKING = re.compile(
    r"^\s*(?:(?:à|a|de|d['’]|pour|contre|avec|sur|dans|en|par|depuis|vers|chez|selon|sans|sous|entre|jusqu['’]à)\s*)?"
    r"(?:quel(?:le)?s?\s+[^\W\d_][\w'’-]*(?:\s+d(?:e\s+|['’])[^\W\d_][\w-]*)?|combien\s+d(?:e\s+|['’])[^\W\d_][\w-]*"
    r"|combien|lequel|laquelle|lesquel(?:le)?s|qu['’]|que|quoi|qui|o[uù]|quand|pourquoi|comment)?\s*",
    re.IGNORECASE,
)
# a name or a figure: a capitalised word after the first, an acronym, a number
_NAME = re.compile(r"(?<=[\w?,;:]\s)[A-ZÀ-ÖØ-Þ][\w’'.-]*|\b[A-Z]{2,}\b|\d")
_INTERROGATIVE = re.compile(
    r"^\s*(?:est-ce\s+que|qu['’]est-ce\s+que|combien\s+d[e']|combien|qui\s+(?:est|sont|a|ont)|qui|quand|o[uù]"
    r"|pourquoi|comment|quel(?:le)?s?\s+(?:est|sont)|quel(?:le)?s?|que|qu['’]"
    r"|how\s+many|how\s+much|who\s+(?:is|are|was|were)|who|what\s+(?:is|are|was|were)|what|which|when|where|why|how"
    r"|did|does|do|is|are|was|were)\b\s*",
    re.IGNORECASE,
)

REWRITE_PROMPT = (
    "Rewrite the user's last question as a standalone question that can be understood without the "
    "conversation, in the same language as that question. Keep names and figures. If it is already "
    "standalone, return it unchanged. Output only the question."
)


def own_words(question: str) -> list[str]:
    """The question's own content words (folded), asking words aside."""
    return [w for w in content_words(question) if w not in GENERIC]


def _anaphoric_inversion(question: str) -> bool:
    """An inverted subject pronoun that stands for someone named before: no noun subject comes before its
    verb ("Pourquoi a-t-il critiqué… ?"), unlike "Pourquoi Keir Starmer a-t-il critiqué… ?"."""
    text = _CONNECTIVE.sub("", question, count=1)
    for m in _INVERSION.finditer(text):
        before = text[: m.start()]
        if m.group(2).lower() == "il" and (_IMPERSONAL.match(m.group(1)) or re.search(r"\by\s*$", before, re.I)):
            continue
        before = re.sub(r"\b(?:s|se|l|le|la|les|lui|leur|y|en|ne|n|m|t|nous|vous)['’]?\s*$", "", before.rstrip())
        subject = _FRENCH_ASKING.sub("", before, count=1)
        if not (content_words(subject) or re.search(r"\b[A-Z]\b|\d", subject)):  # "Combien X a-t-elle…"
            return True
    return False


def names_own_subject(question: str) -> bool:
    """The question carries its own topic: a name or a figure, and no pronoun standing for an earlier one."""
    return bool(_NAME.search(question.strip())) and not refers_back(question)


def refers_back(question: str) -> bool:
    """A pronoun that stands for something said before ("l'ont-ils", "he", "Qu'a-t-il dit ?")."""
    return bool(_PRONOUN.search(question)) or _anaphoric_inversion(question)


def is_follow_up(question: str) -> bool:
    if _CONNECTIVE.match(question) and not re.match(r"^\s*(?:et|and)\s*$", question):
        return True
    words = own_words(question)
    if refers_back(question):
        return len(words) <= 3
    return len(words) <= 1 and not names_own_subject(question)


def surely_follow_up(question: str) -> bool:
    """A follow-up beyond doubt: it opens with a connective, leans on a pronoun, or has no word of its own."""
    return bool(_CONNECTIVE.match(question)) or refers_back(question) or not own_words(question)


def keep_rewrite(question: str, asked: Sequence[str], rewritten: Sequence[str], sure: bool) -> bool:
    """Whether the passages retrieved for the rewrite (texts in rank order) should answer the question
    rather than those retrieved for the question as asked: they must support the question's own words
    (share found in the best passage, then in all of them) at least as well; on a tie, only a question
    that is surely a follow-up keeps its rewrite."""
    terms = question_terms(question, skip_generic=True)
    if not terms:
        return True

    def support(texts: Sequence[str]) -> tuple[float, float]:
        sets = [TermSet(t) for t in texts]
        best = max((sum(s.has(t) for t in terms) for s in sets), default=0)
        union = sum(any(s.has(t) for s in sets) for t in terms)
        return best / len(terms), union / len(terms)

    mine, theirs = support(asked), support(rewritten)
    return theirs > mine or (theirs == mine and sure)


def topic(question: str) -> str:
    """A question without its interrogative words: "Combien de pays ont signé… ?" -> "pays ont signé…"."""
    text = _CONNECTIVE.sub("", question.strip(), count=1).rstrip("?？ ").strip()
    for _ in range(3):
        stripped = _INTERROGATIVE.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return text.strip(" ,")


def heuristic_rewrite(question: str, history: Sequence[Turn]) -> str:
    question = question.strip()
    if not history or not is_follow_up(question):
        return question
    # the topic is set by the last question that was not itself a follow-up ("Et l'Inde ?" after
    # "Et les États-Unis ?" after "Combien de pays ont signé… ?" is about signing, not about the US)
    root = next((t.question for t in reversed(history) if not is_follow_up(t.question)), history[0].question)
    core = _CONNECTIVE.sub("", question, count=1).strip() or question
    core = core[:1].upper() + core[1:]
    carried = topic(root)
    if not carried or set(content_words(carried)) <= set(content_words(core)):
        return core
    return f"{core} ({carried})"


def rewrite(question: str, history: Sequence[Turn], llm: Any | None = None, deadline: float | None = None) -> str:
    """The standalone form of `question` given the earlier turns. `deadline` (time.monotonic()) bounds the
    LLM call: it spends the question's one LLM budget (ASSISTANT_LLM_TIMEOUT)."""
    question = question.strip()
    if not history:
        return question
    if llm is not None:
        try:
            return llm_rewrite(question, history, llm, deadline)
        except Exception:  # noqa: BLE001 — the heuristic is a fine fallback for a failed call
            pass
    return heuristic_rewrite(question, history)


def llm_rewrite(question: str, history: Sequence[Turn], llm: Any, deadline: float | None = None) -> str:
    from langchain_core.messages import HumanMessage, SystemMessage

    options = {}
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no time left for the rewrite")
        options["timeout"] = left

    lines = []
    for turn in history[-4:]:
        lines.append(f"User: {turn.question}")
        if turn.answer:
            lines.append(f"Assistant: {turn.answer[:400]}")
    lines.append(f"User (last question): {question}")
    reply = llm.invoke([SystemMessage(REWRITE_PROMPT), HumanMessage("\n".join(lines))], **options)
    text = str(getattr(reply, "content", reply)).strip().strip('"«»“”').strip()
    if not plausible_rewrite(question, text):
        raise ValueError(f"unusable rewrite: {text[:80]!r}")
    return text


def plausible_rewrite(question: str, text: str) -> bool:
    """Whether a model's reply has the shape of a rewrite of `question`: one line of reasonable length, a
    question when the user asked one, keeping at least half of the question's own words (a standalone
    rewrite adds the topic, it does not drop what was asked). An answer ("The answer is 61."), a comment
    or another question altogether is refused, and the offline heuristic rewrites instead."""
    if not text or "\n" in text or len(text) > max(400, 3 * len(question)):
        return False
    if question.rstrip().endswith(("?", "？")) and not text.rstrip().endswith(("?", "？")):
        return False
    kept = TermSet(text)
    if not all(kept.has(t) for t in _names(question)):
        return False
    terms = question_terms(question, skip_generic=True)
    return not terms or sum(kept.has(t) for t in terms) >= 0.5 * len(terms)


def _names(question: str) -> list[frozenset[str]]:
    """Variants of the names and figures of a question (capitalised words after the first, numbers): a rewrite keeps them all."""
    words = [w.strip(",;:!?.()\"'«»“”") for w in question.split()]
    return [variants(c) for i, w in enumerate(words) if w[:1].isdigit() or (i > 0 and w[:1].isupper() and len(w) > 1)
            for c in content_words(w, accents=True)]
