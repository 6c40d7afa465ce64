"""Conflicting figures across sources: the same fact (a counted noun and what it did, or the date of an
event) stated with different values by different documents — e.g. "61 pays … ont signé" vs
"Cinquante-huit pays … ont signé". Pure functions.

A number claim is (value, counted noun, predicate): "plus de 100 pays se sont réunis" counts countries
that *met*, "61 pays … ont signé" countries that *signed* — different facts, no conflict.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from assistant.language import GLOSSARY, NUMBER_WORD, STOP, fold, parse_number_words, variants
from assistant.models import Conflict, ConflictValue

_TOKEN = re.compile(r"\d+(?:[  .,]\d{3})*(?:,\d+)?|[^\W\d_]+(?:[-'’][^\W\d_]+)*|[(),;:.]")
_AUX = frozenset(
    "a ont as avait avaient aura auront est sont etait etaient sera seront se s s'est s'etaient se sont ete"
    " n ne pas n'ont n'a n'est n'avaient plus deja aussi cependant toutefois pourtant egalement notamment"
    " have has had were was are is be been not also already however did do does".split()
)
_ARTICLES = frozenset("la le les l un une des du de d et ou the a an and or".split())
_APPOSITION = frozenset("dont including among notamment parmi y comme such like incluant".split())
_QUALIFIERS = {
    "plus de": "min", "au moins": "min", "more than": "min", "over": "min", "at least": "min",
    "moins de": "max", "less than": "max", "fewer than": "max", "under": "max",
    "pres de": "about", "environ": "about", "quelque": "about", "about": "about", "around": "about",
    "nearly": "about", "almost": "about", "some": "about", "approximately": "about", "presque": "about",
}
MONTHS = {
    m: i % 12 + 1
    for i, m in enumerate(
        "janvier fevrier mars avril mai juin juillet aout septembre octobre novembre decembre"
        " january february march april may june july august september october november december".split()
    )
}


@dataclass(frozen=True)
class SentenceRef:
    """A sentence of a source, cited in the answer (citation = its number) or only retrieved."""

    text: str
    source: str
    citation: int | None = None


@dataclass(frozen=True)
class Claim:
    value: int
    shown: str  # "61", "plus de 100"
    noun: str  # folded
    noun_surface: str
    predicate: str
    predicate_surface: str
    qualifier: str | None
    ref: SentenceRef


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _number_at(tokens: list[str], i: int) -> tuple[int, int] | None:
    """(value, tokens used) when a number (digits or words) starts at token i."""
    tok = tokens[i]
    if tok[0].isdigit():
        digits = re.sub(r"[  .]", "", tok)
        return (int(digits), 1) if digits.isdigit() else None
    for n in range(min(4, len(tokens) - i), 0, -1):
        phrase = " ".join(tokens[i : i + n])
        if NUMBER_WORD.fullmatch(phrase) and fold(phrase) not in ("un", "une", "one"):
            value = parse_number_words(phrase)
            if value is not None:
                return value, n
    return None


def _predicate_after(tokens: list[str], j: int) -> tuple[str, str] | None:
    """The verb that follows a counted noun, skipping appositions ("dont la Chine, …") and auxiliaries."""
    k, n = j, len(tokens)
    if k < n - 1 and tokens[k] == "," and fold(tokens[k + 1]) in _APPOSITION:
        k += 2
        while k < n:
            if tokens[k] == "(":
                while k < n and tokens[k] != ")":
                    k += 1
            elif tokens[k] == "," and k + 1 < n and tokens[k + 1] not in "(),;:." and not tokens[k + 1][0].isupper() \
                    and fold(tokens[k + 1]) not in _ARTICLES:
                k += 1
                break
            elif fold(tokens[k]) in _AUX and fold(tokens[k]) not in ("y", "plus", "pas"):
                break
            k += 1
    elif k < n and tokens[k] == "(":
        while k < n and tokens[k] != ")":
            k += 1
        k += 1
    for t in tokens[k : k + 6]:
        f = fold(t)
        if t in "(),;:.":
            return None
        if f in _AUX or f.startswith(("n'", "s'")):
            continue
        return (None if f in STOP else (f, t))
    return None


def _predicate_before(tokens: list[str], i: int) -> tuple[str, str] | None:
    """Passive voice: "… signée par 61 pays" -> "signée"."""
    if i >= 2 and fold(tokens[i - 1]) in ("par", "by"):
        t = tokens[i - 2]
        if t not in "(),;:." and fold(t) not in STOP:
            return fold(t), t
    return None


def extract_claims(ref: SentenceRef) -> list[Claim]:
    """Counted-noun claims of one sentence."""
    tokens = _tokens(ref.text)
    claims = []
    i = 0
    while i < len(tokens):
        found = _number_at(tokens, i)
        if not found:
            i += 1
            continue
        value, used = found
        j = i + used
        if j >= len(tokens) or tokens[j] in "(),;:." or fold(tokens[j]) in STOP or fold(tokens[j]) in MONTHS:
            i = j
            continue
        noun = tokens[j]
        pred = _predicate_after(tokens, j + 1) or _predicate_before(tokens, i)
        if pred:
            before = " ".join(fold(t) for t in tokens[max(0, i - 2) : i])
            qualifier = next((q for q in _QUALIFIERS if before.endswith(q)), None)
            shown = f"{tokens[i - 2]} {tokens[i - 1]} {value}" if qualifier and len(qualifier.split()) == 2 else (
                f"{tokens[i - 1]} {value}" if qualifier else str(value))
            claims.append(Claim(value, shown, fold(noun), noun, pred[0], pred[1], qualifier, ref))
        i = j + 1
    return claims


def _same(a: str, b: str) -> bool:
    return a == b or bool(variants(a) & variants(b))


def _compatible(a: Claim, b: Claim) -> bool:
    """Values that do not contradict each other ("plus de 100" and 120, "environ 60" and 61)."""
    if a.value == b.value:
        return True
    for x, y in ((a, b), (b, a)):
        kind = _QUALIFIERS.get(x.qualifier or "")
        if kind == "min" and y.value >= x.value or kind == "max" and y.value <= x.value:
            return True
        if kind == "about" and abs(y.value - x.value) <= 0.1 * max(x.value, 1):
            return True
    return False


def find_conflicts(refs: Sequence[SentenceRef], require_cited: bool = True) -> list[Conflict]:
    """Facts stated with incompatible values by different sources (at least one of them cited)."""
    claims = [c for ref in refs for c in extract_claims(ref)]
    groups: list[list[Claim]] = []
    for c in claims:
        for g in groups:
            if _same(g[0].noun, c.noun) and _same(g[0].predicate, c.predicate):
                g.append(c)
                break
        else:
            groups.append([c])
    conflicts = []
    for g in groups:
        sources = {c.ref.source for c in g}
        clash = any(
            a.ref.source != b.ref.source and not _compatible(a, b) for a in g for b in g if a is not b
        )
        if len(sources) < 2 or not clash or (require_cited and all(c.ref.citation is None for c in g)):
            continue
        clashing = [a for a in g if any(a.ref.source != b.ref.source and not _compatible(a, b) for b in g)]
        seen: dict[tuple[int, str], ConflictValue] = {}
        for c in sorted(clashing, key=lambda c: (c.ref.citation is None, c.ref.citation or 0)):
            key = (c.value, c.ref.source)
            if key not in seen:
                seen[key] = ConflictValue(value=c.shown, source=c.ref.source, citation=c.ref.citation, quote=c.ref.text)
        conflicts.append(Conflict(about=f"{g[0].noun_surface} — {g[0].predicate_surface}", values=list(seen.values())))
    return conflicts



_DISAGREE = re.compile(r"diverg|disagree|contradi|differ|diff[eé]r|d[eé]saccord|inconsisten|whereas|tandis que|alors que")


def stated(conflict: Conflict, text: str) -> bool:
    """Whether an answer already says the sources disagree and gives every value with its citation."""
    folded = fold(text)
    if not _DISAGREE.search(folded):
        return False
    return all(
        v.citation is not None and f"[{v.citation}]" in text and str(_value_number(v.value)) in folded
        for v in conflict.values
    )


def statement(conflict: Conflict, lang: str) -> str:
    """"Les sources divergent : 61 pays selon [1], 58 pays selon [2]." (values must carry citations)."""
    noun = conflict.about.split(" — ")[0]
    if lang == "en":
        english = [k for k, v in GLOSSARY.items() if v == fold(noun)]
        noun = max(english, key=lambda w: w.endswith("s")) if english else f"« {noun} »"
    parts = []
    for v in conflict.values:
        mark = f" [{v.citation}]" if v.citation is not None else ""
        parts.append(f"{v.value} {noun} " + ("according to" if lang == "en" else "selon") + mark)
    if lang == "en":
        return "The sources disagree: " + ", ".join(parts) + "."
    return "Les sources divergent : " + ", ".join(parts) + "."


def _value_number(shown: str) -> int:
    digits = re.findall(r"\d+", shown)
    return int(digits[-1]) if digits else -1


def relevant(conflict: Conflict, question: str) -> bool:
    """Whether a conflict is about what the question asks: its counted noun, and the verb that follows
    that noun in the question ("Combien de pays ont signé…" yes, "Quels pays ont refusé de signer…" no)."""
    from assistant.language import TermSet, content_words

    noun, _, predicate = conflict.about.partition(" — ")
    tokens = _tokens(question)
    noun_variants = set().union(*(variants(w) for w in content_words(noun, accents=True))) if noun else set()
    for i, tok in enumerate(tokens):
        if tok not in "(),;:." and variants(tok.lower()) & noun_variants:
            asked = _predicate_after(tokens, i + 1)
            if asked:
                a, b = variants(asked[1].lower()), variants(predicate.lower())
                return bool(a & b) or any(x[:4] == y[:4] for x in a for y in b if min(len(x), len(y)) >= 4)
    words = TermSet(question)
    return all(any(words.has(variants(w)) for w in content_words(part, accents=True)) for part in (noun, predicate) if part)
