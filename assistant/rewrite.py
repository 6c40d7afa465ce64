"""Follow-up questions rewritten into standalone ones, so that retrieval sees the whole topic.

With an LLM configured, a short prompt does it; otherwise (or when the LLM fails) an offline heuristic:
a question that opens with a connective ("Et les États-Unis… ?", "What about…?") or leans on a pronoun
with little content of its own carries the topic of the previous question:
"Et les États-Unis, l'ont-ils signée ?" after "Combien de pays ont signé la déclaration ?" becomes
"Les États-Unis, l'ont-ils signée ? (pays ont signé la déclaration)".
"""
from __future__ import annotations

import re
import time
from typing import Any, Sequence

from assistant.language import GENERIC, content_words
from assistant.models import Turn

_CONNECTIVE = re.compile(
    r"^\s*(?:et\s+qu'en\s+est-il\s+(?:de\s+la|de\s+l'|du|des|de)?|et\s+concernant|et\s+pour|and\s+what\s+about|what\s+about"
    r"|how\s+about|and\s+for|and\s+in|et\s+en|et\s+dans|et|and|also|aussi|mais|but|so|alors|donc|puis|ensuite)\b[\s,]*",
    re.IGNORECASE,
)
_PRONOUN = re.compile(
    r"\bl['’](?:ont|a|avait|avaient|aurait|auraient|est)\b|-(?:t-)?(?:ils?|elles?)\b|\b(?:ils|elles|lui|leur|eux|cela|ça"
    r"|celui-ci|celle-ci|ceux-ci|it|they|them|their|he|she|him|her|his|this|that|those|these|there)\b",
    re.IGNORECASE,
)
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


def is_follow_up(question: str) -> bool:
    if _CONNECTIVE.match(question) and not re.match(r"^\s*(?:et|and)\s*$", question):
        return True
    words = [w for w in content_words(question) if w not in GENERIC]
    return len(words) <= 1 or (bool(_PRONOUN.search(question)) and len(words) <= 3)


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
    if not text or "\n" in text or len(text) > max(400, 3 * len(question)):
        raise ValueError("unusable rewrite")
    return text
