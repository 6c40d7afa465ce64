"""What a question asks for (a number, a date, a person, an amount of money…), and requests that are not
questions about the sources at all (prompt injection, "write a poem"). Pure functions, FR and EN.
"""
from __future__ import annotations

import re

from assistant.language import NUMBER_WORD, STOP, TermSet, content_words, fold, variants

_KINDS = [
    ("money", r"\b(?:montant|budget|somme d'argent|combien d'(?:argent|euros?|dollars?)|combien .{0,40}"
              r"\b(?:investi|investir|financ|depens|coute|couter)|cout|financement|investissement|how much (?:money"
              r"|funding|did .{0,40}(?:invest|spend|cost|pay|pledge|announce|raise))|cost|costs|funding|investment"
              r"|amount|budget|price|prix)\b"),
    ("count", r"\b(?:combien|how many|nombre de|number of|quel nombre|what number|how much)\b"),
    ("date", r"\b(?:quand|a quelle date|quelle date|quel jour|quels jours|en quelle annee|quelle annee|when|what date"
             r"|which date|what day|which day|what year|which year|on what date)\b"),
    ("person", r"^(?:et )?(?:qui|who|whom|par qui|by whom|with whom|avec qui|a qui|whose)\b|\b(?:quelle personne|"
               r"which person|what person|quel(?:le)?s? (?:dirigeants?|responsables?|personnalites?|officiels?|ministres?)"
               r"|which (?:leaders?|officials?|politicians?|ministers?)|what (?:leaders?|officials?))\b"),
    ("place", r"\b(?:ou (?:s'est|se|a|ont|est|sont|aura|va|vont)|where|dans quelle ville|in which city|in what city"
              r"|quelle ville|which city|quel lieu)\b"),
]
_MONEY = re.compile(r"(?:€|\$|£|\b(?:euros?|dollars?|usd|eur|livres sterling|yuans?|pounds)\b)", re.I)
_MONTHS = (
    "janvier|fevrier|mars|avril|mai|juin|juillet|aout|septembre|octobre|novembre|decembre|january|february|march"
    "|april|may|june|july|august|september|october|november|december"
)
_DATE = re.compile(
    rf"\b(?:\d{{1,2}}(?:er)?\s+(?:et\s+\d{{1,2}}\s+)?(?:{_MONTHS})|(?:{_MONTHS})\s+\d{{1,2}}|(?:1\d|20)\d\d(?!\d)s?"
    r"|(?:in|en|around|vers|since|depuis|year|annee|an)\s+\d{3,4}(?!\d)"
    r"|\d{1,2}(?:st|nd|rd|th|e|eme|er)\s+(?:century|centuries|siecle)|[xvi]+e\s+siecle|(?:annees|the)\s+\d{2,4}s?"
    r"|lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|monday|tuesday|wednesday|thursday|friday|saturday"
    r"|sunday|hier|aujourd'hui|demain|yesterday|today|tomorrow)(?:\b|(?<=\d))"
)
_NAME = re.compile(r"(?<![.!?:]\s)(?<!^)\b[A-ZÉÈ][a-zéèëïîôüç]+(?:[- ][A-ZÉÈ][a-zéèëïîôüç]+)*")

_OFF_TASK = re.compile(
    r"(?:\b(?:ignore|ignorez|ignores|oublie|oubliez|disregard|forget|override|contourne)\b.{0,60}"
    r"\b(?:instructions?|consignes?|prompt|system|syst[eè]me|previous|pr[ée]c[ée]dentes?|above"
    r"|(?:tes|vos|your|these|ces|all|toutes les) (?:r[eè]gles|rules))"
    r"|\b(?:system prompt|prompt syst[eè]me|jailbreak|developer mode|mode d[ée]veloppeur|you are now|tu es maintenant"
    r"|vous [eê]tes maintenant|act as|pretend (?:to be|you)|fais comme si|joue le r[oô]le)"
    r"|\b(?:r[ée]ponds?|r[ée]pondez|respond|answer|reply|say|dis|print|affiche)\b.{0,20}"
    r"\b(?:seulement|uniquement|only|just)\b\s*[\"'«“]"
    r"|\b(?:[ée]cris|[ée]crivez|r[ée]dige|r[ée]digez|compose|write|generate|g[ée]n[eè]re|invente)"
    r"\b.{0,40}\b(?:po[eè]me|poem|haiku|chanson|song|blague|joke|histoire|story|code|script|programme"
    r"|program|fonction|function|recette|recipe|essay|dissertation|lettre d'amour|love letter|limerick|rap)"
    r"|\b(?:tell me|raconte(?:-moi)?|dis-moi)\b.{0,20}\b(?:po[eè]me|poem|blague|joke|histoire dr[oô]le|funny story))",
    re.IGNORECASE,
)


def question_kind(question: str) -> str:
    """money | count | date | person | place | other."""
    q = fold(question)
    for kind, pattern in _KINDS:
        if re.search(pattern, q):
            return kind
    return "other"


def has_number(text: str) -> bool:
    return bool(re.search(r"\d", text)) or any(
        fold(m.group()) not in ("un", "une", "one") for m in NUMBER_WORD.finditer(text)
    )


def has_money(text: str) -> bool:
    return bool(_MONEY.search(text))


def has_date(text: str) -> bool:
    return bool(_DATE.search(fold(text)))


_PERSON = re.compile(
    r"\b(?:[A-Z]\.\s?)*(?:[A-Z]{2}|[A-ZÉ][a-zéèëïîôüç]+)\s(?:[A-Z]\.\s?)*[A-ZÉ][a-zéèëïîôüç]+(?:[A-Z][a-z]+)?\b"
)


def has_person(text: str) -> bool:
    """Something like a person's name: two capitalised words in a row ("Guo Jiakun", "J.D. Vance")."""
    return any(m.start() > 0 or fold(m.group().split()[0]) not in STOP for m in _PERSON.finditer(text)) or bool(re.search(r"\b(?:[A-Z]\.){2}\s?[A-Z][a-z]+", text))


def has_name(text: str) -> bool:
    return bool(_NAME.search(text))


_COUNTED = re.compile(r"\b(?:combien\s+d[e']|how\s+many|nombre\s+d[e']|number\s+of)\s*([^\W\d_]+(?:[-'][^\W\d_]+)*)")
_ENUMERATION = re.compile(r"\b[A-ZÉ][\w-]+\s+(?:et|and)\s+(?:(?:le|la|les|the)\s+|l['’])?[A-ZÉ]")


def counted_noun(question: str) -> frozenset[str] | None:
    """Variants of the noun a count question counts ("Combien de pays…" -> pays)."""
    m = _COUNTED.search(fold(question))
    if not m:
        return None
    words = content_words(m.group(1), accents=True)
    return variants(words[0]) if words else None


def counts(sentence: str, noun: frozenset[str] | None) -> bool:
    """A number in the sentence with the counted noun within four words of it (or a list of names)."""
    if noun is None:
        return has_number(sentence)
    if _ENUMERATION.search(sentence):  # "les États-Unis et le Royaume-Uni": a count by listing
        return True
    tokens = re.findall(r"[^\W_]+(?:[-'’][^\W_]+)*", sentence)
    for i, tok in enumerate(tokens):
        if tok[0].isdigit() or (NUMBER_WORD.fullmatch(tok) and fold(tok) not in ("un", "une", "one")):
            window = " ".join(tokens[max(0, i - 4) : i + 5])
            if TermSet(window).has(noun):
                return True
    return False


def fits(kind: str, sentence: str, noun: frozenset[str] | None = None) -> bool:
    """Whether a sentence holds the kind of answer the question asks for."""
    if kind == "money":
        return has_money(sentence)
    if kind == "count":
        return counts(sentence, noun)
    if kind == "date":
        return has_date(sentence)
    if kind in ("person", "place"):
        return has_name(sentence)
    return True


def is_off_task(question: str) -> bool:
    """A request to drop the instructions, or to produce something other than an answer from the sources."""
    return bool(_OFF_TASK.search(question))


def looks_like_instruction(sentence: str) -> bool:
    """Text inside a document that talks to the assistant: it is data, never evidence."""
    return is_off_task(sentence)
