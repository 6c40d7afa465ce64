"""Small language helpers shared by the answer chain: FR/EN detection, accent folding, content terms,
number words, and a tiny English→French glossary so English questions can match French text lexically.

Pure functions, no model, no download.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

def fold(text: str) -> str:
    """Lower case, accents removed, typographic apostrophes unified: 'États-Unis' -> 'etats-unis'."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


WORD = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*", re.UNICODE)

FR_MARKERS = frozenset(
    "le la les des du de un une est sont ont a qui que quoi quel quelle quels quelles combien quand où pourquoi"
    " comment et ou dans pour sur avec par pas ne au aux ce cette ces il elle ils elles leur son sa ses"
    " selon lors été être".split()
)
EN_MARKERS = frozenset(
    "the a an of is are was were did does do who what which when where why how many much and or in on for"
    " with by not to from this that these those it its they their has have had be been according".split()
)

STOP = frozenset(
    # French
    "le la les l un une des du de d au aux a à ce cet cette ces c qu que qui quoi quel quelle quels quelles"
    " lequel laquelle lesquels dont où et ou ni mais donc or car ne n pas plus moins très trop en y se s"
    " il elle ils elles on nous vous je j tu me m te t lui leur leurs son sa ses mon ma mes ton ta tes notre"
    " nos votre vos est sont ont été être avoir a as avons avez fait faire était étaient sera seront dans"
    " pour par sur sous avec sans chez entre vers lors selon comme aussi ainsi alors quand comment pourquoi"
    " combien quoi si tout tous toute toutes autre autres même mêmes cela ça ceci celui celle ceux celles"
    " t-il t-elle t-ils t-elles est-ce qu'est-ce quelqu quelque quelques y-a-t-il -il -elle -ils -elles"
    # English
    " the a an of to in on at by for with from about as into over under after before between is are was"
    " were be been being am do does did done has have had having will would shall should can could may"
    " might must it its it's they them their theirs he him his she her hers we us our you your i me my"
    " this that these those there here what which who whom whose when where why how many much and or but"
    " not no nor so than then too very also just only any some all each every other such own same"
    " according".split()
)
STOP = frozenset(fold(w) for w in STOP) | STOP

# Words that frame an answer rather than state a fact: ignored when measuring support.
FRAMING = frozenset(
    "source sources article articles document documents texte passage passages selon d'après according"
    " divergent divergence disagree disagreement differ differs indique indiquent mentionne mentionnent"
    " say says said dit disent affirme affirment state states report reports".split()
)

QUESTION_WORDS = frozenset(
    "qui que quoi quel quelle quels quelles combien quand où pourquoi comment lequel laquelle"
    " who what which when where why how whom whose".split()
)
QUESTION_WORDS = frozenset(fold(w) for w in QUESTION_WORDS) | QUESTION_WORDS

# Words a question uses to ask, not to name its topic ("Quel est le rôle de…", "What did X say…").
GENERIC = frozenset(
    "role rôle position date jour jours dit dire disent dite say says said tell told mention mentionne mentionné"
    " mentionnée mentioned parle parlé talk talked about propos sujet question against contre fait faire"
    " did does do done happen happened passe passé etaient étaient ete été aura auront sera seront will would"
    " chose choses thing things ya y-a-t-il exist existe type sorte kind fonction fonctions occupe occupait"
    " occuper poste titre title hold holds held job signifie signifient mean means meaning nom name named"
    " appelle appelé called lieu endroit ville city place where quelle quel moment année annee year jour"
    " exactement exactly precisement precisely".split()
)
GENERIC = frozenset(fold(w) for w in GENERIC)

# English words of the news vocabulary -> their usual French counterparts (folded).
GLOSSARY = {
    "country": "pays", "countries": "pays", "nation": "nation", "nations": "nation",
    "sign": "sign", "signed": "sign", "signatory": "sign", "signatories": "sign",
    "refuse": "refus", "refused": "refus", "decline": "refus", "declined": "refus",
    "spokesman": "porte-parole", "spokesperson": "porte-parole", "spokeswoman": "porte-parole",
    "foreign": "etranger", "ministry": "ministere", "minister": "ministre", "prime": "premier",
    "vice": "vice", "president": "president", "representative": "representant", "represented": "represent",
    "represent": "represent", "summit": "sommet", "meeting": "reunion", "met": "reun", "gathered": "reun",
    "held": "tenu", "took": "tenu", "statement": "declaration", "text": "texte", "agreement": "accord",
    "law": "loi", "regulation": "reglementation", "regulations": "reglementation", "rules": "regle",
    "warned": "garde", "warning": "garde", "warn": "garde", "criticism": "critique", "criticisms": "critique",
    "criticized": "critique", "criticised": "critique", "rejects": "rejette", "rejected": "rejette",
    "opposition": "opposition", "opposes": "oppose", "oppose": "oppose", "security": "securite",
    "safety": "securite", "national": "national", "global": "mondial", "world": "mondial",
    "worldwide": "mondial", "governance": "gouvernance", "development": "developpement",
    "developing": "developpement", "open": "ouvert", "source": "source", "ethical": "ethique",
    "inclusive": "inclusi", "sustainable": "durable", "people": "peuple", "planet": "planete",
    "artificial": "artificiel", "intelligence": "intelligence", "ai": "ia", "technology": "technologi",
    "technologies": "technologi", "technological": "technologi", "chinese": "chinois", "china": "chine",
    "american": "americain", "americans": "americain", "united": "etats-unis", "states": "etats-unis",
    "us": "etats-unis", "usa": "etats-unis", "america": "etats-unis", "britain": "royaume-uni",
    "british": "britannique", "kingdom": "royaume-uni", "uk": "royaume-uni", "india": "inde",
    "indian": "inde", "europe": "europe", "european": "europeen", "union": "union", "commission": "commission",
    "beijing": "pekin", "paris": "paris", "france": "france", "french": "francais", "germany": "allemagne",
    "japan": "japon", "russia": "russie", "taiwan": "taiwan", "uyghurs": "ouighour", "tibet": "tibet",
    "company": "entreprise", "companies": "entreprise", "authoritarian": "autoritaire", "regimes": "regime",
    "regime": "regime", "partnership": "partenariat", "partnerships": "partenariat", "exports": "exportation",
    "subsidized": "subventionn", "subsidised": "subventionn", "leaders": "dirigeant", "leader": "dirigeant",
    "bosses": "patron", "politicization": "politisation", "politicisation": "politisation",
    "trade": "commerce", "commerce": "commerce", "conference": "conference", "jobs": "emploi",
    "health": "sante", "action": "action", "plan": "plan", "coorganizers": "coorganisateur",
    "organizers": "organisateur", "organized": "organis", "speech": "discours", "said": "declar",
    "declared": "declar", "declaration": "declaration", "industry": "industri", "kill": "tuer",
    "wednesday": "mercredi", "tuesday": "mardi", "monday": "lundi", "thursday": "jeudi", "friday": "vendredi",
    "february": "fevrier", "january": "janvier", "march": "mars", "day": "jour", "days": "jour",
    "city": "ville", "logo": "logo", "chatbot": "chatbot", "focus": "concentr",
    "focused": "concentr", "public": "public", "interest": "interet", "innovation": "innovation",
    "future": "avenir", "humanity": "humanite", "common": "commun", "shared": "commun", "costs": "cout",
    "clarity": "clarte", "infrastructure": "infrastructure", "information": "information",
}
GLOSSARY.update({
    "take": "tenu", "place": "lieu", "advocate": "preconise", "advocates": "preconise", "promote": "promouvoir",
    "promotes": "promeut", "accessibility": "accessibilite", "expressed": "exprime", "willingness": "volonte",
    "invited": "invite", "members": "membre", "member": "membre", "title": "titre", "event": "evenement",
    "co-organizers": "coorganisateur", "co-organized": "coorganisateur", "co-organised": "coorganisateur",
    "hosted": "organis", "host": "organis", "silence": "taisent", "censor": "taisent", "topics": "sujet",
    "subjects": "sujet", "apps": "application", "applications": "application", "veiled": "voile",
    "representatives": "representant", "week": "semaine", "year": "annee", "month": "mois", "dominate": "domin",
    "dominates": "domin", "sector": "secteur", "strategic": "strategique", "master": "maitre", "seize": "emparer",
    "mention": "evoqu", "mentioned": "evoqu", "cited": "evoqu", "stressed": "soulign", "emphasized": "soulign",
    "underlined": "soulign", "wants": "souhait", "wished": "souhait", "build": "construire", "create": "creer",
    "support": "soutien", "supports": "soutien", "supported": "soutien", "help": "aide", "helps": "aide",
    "strengthen": "renforcer", "capacities": "capacite", "capabilities": "capacite", "strict": "strict",
    "excessive": "excessif", "legal": "juridique", "financial": "financier", "lack": "manque", "enough": "suffisamment",
    "issues": "question", "questions": "question", "response": "reponse", "answer": "reponse", "remarks": "propos",
    "comments": "propos", "ideology": "ideologie", "economic": "economique", "commercial": "commercial",
    "importance": "importance", "attaches": "attach", "beneficial": "benefique", "term": "terme",
    "nation": "nation", "politicians": "politique", "political": "politique", "tech": "tech", "heavily": "lourdement",
    "declare": "declar", "announced": "annonc", "announce": "annonc", "amount": "montant", "money": "argent",
    "caption": "logo", "photo": "logo", "southwest": "sud-ouest", "south-west": "sud-ouest",
    "silent": "taisent", "sensitive": "tendancieux", "controversial": "tendancieux",
})

_NUMBER_UNITS = {
    "zero": 0, "un": 1, "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "six": 6, "sept": 7,
    "huit": 8, "neuf": 9, "dix": 10, "onze": 11, "douze": 12, "treize": 13, "quatorze": 14, "quinze": 15,
    "seize": 16, "vingt": 20, "vingts": 20, "trente": 30, "quarante": 40, "cinquante": 50, "soixante": 60,
    "cent": 100, "cents": 100, "mille": 1000,
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
}
# "six" is both French and English; "dix-sept" etc. come from composition.
NUMBER_WORD = re.compile(
    r"\b(?:" + "|".join(sorted(_NUMBER_UNITS, key=len, reverse=True)) + r")(?:(?:[- ]et[- ]|[- ]and[- ]|[- ])"
    r"(?:" + "|".join(sorted(_NUMBER_UNITS, key=len, reverse=True)) + r"))*\b",
    re.IGNORECASE,
)


def detect_language(text: str) -> str:
    """'fr' or 'en' from function words; accents tip a tie towards French (the corpus language)."""
    words = [w.lower() for w in re.findall(r"[^\W\d_]+", text)]
    fr = sum(w in FR_MARKERS for w in words) + sum(ch in "éèêàùçôî" for ch in text.lower())
    en = sum(w in EN_MARKERS for w in words)
    return "en" if en > fr else "fr"


def parse_number_words(text: str) -> int | None:
    """'Cinquante-huit' -> 58, 'soixante et un' -> 61, 'quatre-vingt-dix' -> 90, 'fifty-eight' -> 58."""
    parts = [p for p in re.split(r"[- ]+", fold(text)) if p and p not in ("et", "and")]
    if not parts or any(p not in _NUMBER_UNITS for p in parts):
        return None
    total, current = 0, 0
    for i, p in enumerate(parts):
        v = _NUMBER_UNITS[p]
        if v == 1000:
            total += max(current, 1) * 1000
            current = 0
        elif v == 100:
            current = max(current, 1) * 100
        elif v == 20 and current % 100 == 4:  # quatre-vingt(s)
            current = current - 4 + 80
        elif v in (10, 11, 12, 13, 14, 15, 16) and current % 100 in (60, 80):  # soixante-dix, quatre-vingt-onze
            current += v
        else:
            current += v
    return total + current


@lru_cache(maxsize=4)
def _stemmer(lang: str):
    import Stemmer

    return Stemmer.Stemmer("english" if lang == "en" else "french")


def stem(word: str, lang: str = "fr") -> str:
    return fold(_stemmer(lang).stemWord(word.lower()))


def words(text: str) -> list[str]:
    return WORD.findall(text)


_PRONOUNS = frozenset("t il elle ils elles on je tu nous vous ce moi toi lui leur y en".split())


def content_words(text: str, accents: bool = False) -> list[str]:
    """Content words, folded (or only lower-cased with `accents`): stop words, question words and elided
    articles ("l'IA" -> "ia") removed."""
    out = []
    for raw in words(text):
        w = re.sub(r"^(?:l|d|j|m|n|s|t|c|qu|jusqu|lorsqu|puisqu)['’]", "", raw.lower())
        w = re.sub(r"['’]s$", "", w)  # English possessive: "China's" -> "china"
        parts = w.split("-")
        if len(parts) > 1 and any(fold(p) in _PRONOUNS for p in parts):
            pieces = [p for p in parts if fold(p) not in _PRONOUNS]
        else:
            pieces = [w]
        for p in pieces:
            f = fold(p)
            if f and f not in STOP and f not in QUESTION_WORDS and (len(f) > 1 or f.isdigit()):
                out.append(p if accents else f)
    return out


@lru_cache(maxsize=16384)
def variants(word: str) -> frozenset[str]:
    """The forms a word may take in a text: French and English stems (of the accented and of the folded
    word, all folded), and the stem of its French gloss."""
    folded = fold(word)
    if folded.isdigit():
        return frozenset((folded,))
    out = {stem(word, "fr"), stem(word, "en"), stem(folded, "fr"), stem(folded, "en")}
    gloss = GLOSSARY.get(folded)
    if gloss:
        out.add(stem(gloss, "fr"))
    return frozenset(out)


def numbers_in(text: str) -> list[int]:
    """Integers written with digits or words ("61", "Cinquante-huit")."""
    found = [int(m.replace(" ", "").replace("\u202f", "")) for m in re.findall(r"\d[\d \u202f]*\d|\d", text)]
    for m in NUMBER_WORD.finditer(text):
        value = parse_number_words(m.group())
        if value is not None and fold(m.group()) not in ("un", "une", "one"):
            found.append(value)
    return found


class TermSet:
    """The content terms of a text, for fast cross-language, accent-insensitive matching."""

    def __init__(self, text: str):
        self.terms: set[str] = set()
        for w in content_words(text, accents=True):
            self.terms |= variants(w)
        self.terms |= {str(n) for n in numbers_in(text)}
        self.prefixes = {t[:5] for t in self.terms if len(t) >= 5 and not t.isdigit()}

    def has(self, word_variants: frozenset[str]) -> bool:
        return any(v in self.terms or (len(v) >= 5 and v[:5] in self.prefixes) for v in word_variants)


def question_terms(text: str, skip_generic: bool = False) -> list[frozenset[str]]:
    """One set of variants per content word of a question (numbers written in words become digits)."""
    out = [variants(w) for w in content_words(text, accents=True) if not (skip_generic and fold(w) in GENERIC)]
    for n in numbers_in(text):
        if frozenset((str(n),)) not in out:
            out.append(frozenset((str(n),)))
    return out
