"""Pure functions: sentence splitting of messy text, markers, verification, renumbering, conflicts."""
from __future__ import annotations

from pathlib import Path

import pytest

from assistant.citations import answer_sentences, find_verbatim, lexical_support, parse_markers, renumber, verify
from assistant.conflicts import SentenceRef, extract_claims, find_conflicts, relevant, stated, statement
from assistant.sentences import clean, sentence_spans
from assistant.language import detect_language, numbers_in, parse_number_words
from assistant.models import ScoredPassage

KNOWLEDGE = Path(__file__).resolve().parent.parent / "knowledge"
SUMMIT = "sommet-ia-paris-declaration.txt"
VANCE = "chine-rejette-critiques-vance.txt"


def doc(name: str) -> str:
    return (KNOWLEDGE / name).read_text(encoding="utf-8")


def passage(source: str, text: str, start: int = 0, rank: int = 1) -> ScoredPassage:
    return ScoredPassage(chunk_id=f"{source}-{start}", source=source, title=source, text=text, start=start,
                         end=start + len(text), rank=rank)


def passage_of(source: str, needle: str, rank: int = 1, until: str | None = None) -> ScoredPassage:
    """The line of the real article that holds `needle` (or up to `until`), with its true offsets."""
    text = doc(source)
    at = text.index(needle)
    start = text.rfind("\n", 0, at) + 1
    end = text.index(until, at) + len(until) if until else text.find("\n", at)
    end = len(text) if end < 0 else end
    return passage(source, text[start:end], start, rank)


# --- sentences ------------------------------------------------------------------------------------------
def test_sentences_join_quotation_lines_and_split_glued_sentences():
    text = doc(VANCE)
    sentences = [clean(text[s:e]) for s, e in sentence_spans(text)]
    assert ("La Chine a affirmé mercredi son opposition à la \"politisation\" des questions technologiques, après "
            "la mise en garde du vice-président américain J.D. Vance contre l'utilisation de l'intelligence "
            "artificielle par les \"régimes autoritaires\", une référence à peine voilée à Pékin.") in sentences
    assert any(s.startswith("Cinquante-huit pays") and s.endswith('"éthique".') for s in sentences)
    summit = doc(SUMMIT)
    parts = [summit[s:e] for s, e in sentence_spans(summit)]
    assert "La Chine a exprimé sa volonté collaborer au développement de l'IA" in parts  # "…l'IALes membres…"
    assert any(p.startswith("Les membres de la Commission") for p in parts)
    assert "Zhang GuoqingVice-premier ministre chinois et représentant spécial du président Xi Jinping" in parts
    assert not any(p.startswith("D. Vance") or p == '"' for p in parts)  # "J.D. Vance" is no sentence end


def test_sentence_offsets_are_exact():
    text = doc(VANCE)
    for s, e in sentence_spans(text):
        assert text[s:e] == text[s:e].strip() and text[s:e]


# --- markers and verification --------------------------------------------------------------------------
def test_parse_markers_forms():
    found = [numbers for _, _, numbers in parse_markers("a [1]. b [1, 3]. c [2][4]. d [2-3].")]
    assert found == [[1], [1, 3], [2], [4], [2, 3]]


def test_answer_sentences_keep_markers_after_the_period():
    text = "Première phrase. [1] Deuxième phrase [2]. Troisième [3]\n- puce [1]"
    pieces = [text[s:e] for s, e in answer_sentences(text)]
    assert pieces == ["Première phrase. [1]", "Deuxième phrase [2].", "Troisième [3]", "- puce [1]"]


def test_verify_resolves_renumbers_and_gives_exact_offsets():
    p1 = passage_of(SUMMIT, "61 pays, dont la Chine", rank=1)
    p2 = passage_of(VANCE, "Cinquante-huit pays", rank=2, until="le texte.")
    answer = ("Cinquante-huit pays, dont la Chine, la France et l'Inde (coorganisateurs de l'événement), ont signé "
              "une déclaration commune en faveur d'une IA \"ouverte\" et \"éthique\". [2] "
              "61 pays, dont la Chine, ont signé la \"Déclaration sur l'IA inclusive et durable pour les peuples et "
              "la planète\" [1]. Une affirmation inventée [7].")
    checked = verify(answer, [p1, p2], 0.5, {SUMMIT: doc(SUMMIT), VANCE: doc(VANCE)})
    assert checked.removed_markers == 1
    assert "[7]" not in checked.text
    assert [c.number for c in checked.citations] == [1, 2]
    first, second = checked.citations
    assert first.source == VANCE and second.source == SUMMIT  # renumbered in order of appearance
    assert "[1]" in checked.text.split("61 pays")[0] and "[2]" in checked.text.split("61 pays")[1]
    for c in checked.citations:
        assert c.support == 1.0 and c.supported
        assert doc(c.source)[c.start : c.end] == c.quote
        assert c.quote in c.passage_text
    assert checked.unsupported_sentences == ["Une affirmation inventée."]
    assert "inventée" not in checked.text  # left out of the answer, listed in the answer object


def test_verify_paraphrase_uses_lexical_support_and_flags_unsupported():
    p = passage_of(SUMMIT, "Cependant, les États-Unis")
    good = verify("Washington et Londres ont refusé de signer le document [1].", [p], 0.5)
    assert good.citations[0].support < 1.0 and good.citations[0].supported
    assert good.citations[0].quote.startswith("Cependant, les États-Unis")
    bad = verify("La France a annoncé 109 milliards d'euros d'investissements [1].", [p], 0.5)
    assert bad.citations == [] and bad.text == ""
    assert bad.unsupported_sentences == ["La France a annoncé 109 milliards d'euros d'investissements."]
    kept = verify("La France a annoncé 109 milliards d'euros [1].", [p], 0.5, drop_unsupported=False)
    assert not kept.citations[0].supported and kept.text.endswith("[1].")
    uncited = verify("Cependant, les États-Unis et le Royaume-Uni ont refusé. Le prix Nobel est suédois.", [p])
    assert uncited.text == "Cependant, les États-Unis et le Royaume-Uni ont refusé."
    assert uncited.unsupported_sentences == ["Le prix Nobel est suédois."]


def test_verify_same_passage_two_quotes_get_two_numbers():
    p = passage_of(SUMMIT, "Cependant, les États-Unis")
    text = ("Cependant, les États-Unis et le Royaume-Uni ont refusé de signer le document [1]. "
            "La Commission européenne, qui a critiqué les réglementations européennes [1].")
    checked = verify(text, [p], 0.5)
    assert [c.number for c in checked.citations] == [1, 2]
    assert checked.text.endswith("européennes [2].")


def test_each_citation_is_checked_against_the_passage_it_names():
    """A sentence "cited" to a passage that says nothing of it loses that citation, even when another
    cited passage holds it word for word (a model copying a document's own "[2]")."""
    p1 = passage_of(SUMMIT, "Cependant, les États-Unis")
    p2 = passage_of(VANCE, "préconise une intelligence artificielle", rank=2)
    sentence = "Cependant, les États-Unis et le Royaume-Uni ont refusé de signer le document"
    checked = verify(f"{sentence} [1][2].", [p1, p2], 0.5)
    assert [c.source for c in checked.citations] == [SUMMIT] and checked.text.endswith("document [1].")
    assert checked.removed_markers == 1
    alone = verify(f"{sentence} [2].", [p1, p2], 0.5)  # named passage alone does not support it: left out
    assert alone.citations == [] and alone.unsupported_sentences == [sentence + "."]
    # a synthesis citing two sources that each bring one of its figures keeps both
    both = verify("La déclaration a été signée par 61 pays [1] ou par cinquante-huit pays [2].",
                  [passage_of(SUMMIT, "61 pays, dont la Chine"),
                   passage_of(VANCE, "Cinquante-huit pays", rank=2, until="le texte.")], 0.5)
    assert {c.source for c in both.citations} == {SUMMIT, VANCE}


def test_lexical_support_folds_accents_and_reads_number_words():
    assert lexical_support("58 pays ont signe la declaration", ["Cinquante-huit pays ont signé une déclaration"]) == 1.0
    assert lexical_support("Countries signed the declaration", ["Les pays ont signé la déclaration"]) == 1.0
    assert lexical_support("Le prix Nobel de physique", ["Les pays ont signé la déclaration"]) == 0.0


def test_find_verbatim_ignores_whitespace_and_quote_marks():
    text = 'M. Guo a ajouté que la Chine\n"préconise une intelligence artificielle en open source"\n, tout en'
    s, e = find_verbatim("la Chine « préconise une intelligence artificielle en open source »", text)
    assert text[s:e].startswith("la Chine") and "open source" in text[s:e]


def test_renumber_drops_citations_never_shown():
    p = passage_of(SUMMIT, "Cependant, les États-Unis")
    checked = verify("Cependant, les États-Unis et le Royaume-Uni ont refusé de signer le document [1].", [p])
    text, citations = renumber("Avant [5]. " + checked.text.replace("[1]", "[3]"),
                               [c.model_copy(update={"number": 3}) for c in checked.citations])
    assert text.startswith("Avant.") and "[5]" not in text and text.endswith("le document [1].")
    assert [c.number for c in citations] == [1]


# --- numbers and conflicts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("words,value", [("Cinquante-huit", 58), ("soixante et un", 61), ("quatre-vingt-dix", 90),
                                         ("soixante-dix-sept", 77), ("fifty-eight", 58), ("deux cents", 200)])
def test_number_words(words, value):
    assert parse_number_words(words) == value


def test_numbers_in_ignores_articles():
    assert numbers_in("Une déclaration signée par 61 pays et cinquante-huit autres") == [61, 58]


def _article_refs(cited: str | None = None) -> list[SentenceRef]:
    refs = []
    for name in (SUMMIT, VANCE):
        text = doc(name)
        for s, e in sentence_spans(text):
            refs.append(SentenceRef(text[s:e], name, 1 if cited and cited in text[s:e] else None))
    return refs


def test_claims_separate_signing_from_attending():
    text = doc(SUMMIT)
    claims = [c for s, e in sentence_spans(text) for c in extract_claims(SentenceRef(text[s:e], SUMMIT))]
    by_value = {c.value: c for c in claims}
    assert by_value[61].noun == "pays" and by_value[61].predicate == "signe"
    assert by_value[100].predicate == "reunis" and by_value[100].qualifier == "plus de"


def test_conflict_61_vs_58_and_not_100():
    conflicts = find_conflicts(_article_refs(cited="61 pays"))
    assert len(conflicts) == 1
    values = {v.value: v for v in conflicts[0].values}
    assert set(values) == {"61", "58"}
    assert values["61"].source == SUMMIT and values["61"].citation == 1
    assert values["58"].source == VANCE and values["58"].quote.startswith("Cinquante-huit pays")
    assert relevant(conflicts[0], "Combien de pays ont signé la déclaration ?")
    assert relevant(conflicts[0], "How many countries signed the declaration?")
    assert not relevant(conflicts[0], "Qui a représenté Xi Jinping au sommet ?")


def test_conflicts_need_a_cited_value_and_two_sources():
    assert find_conflicts(_article_refs()) == []
    same_source = [SentenceRef("61 pays ont signé la déclaration.", "a.txt", 1),
                   SentenceRef("58 pays ont signé la déclaration.", "a.txt")]
    assert find_conflicts(same_source) == []
    compatible = [SentenceRef("Plus de 100 pays ont signé.", "a.txt", 1), SentenceRef("120 pays ont signé.", "b.txt")]
    assert find_conflicts(compatible) == []


def test_conflict_statement_and_detection_of_a_stated_conflict():
    conflict = find_conflicts(_article_refs(cited="61 pays"))[0]
    for v, n in zip(conflict.values, (1, 2)):
        v.citation = n
    fr = statement(conflict, "fr")
    assert fr.startswith("Les sources divergent") and "61 pays selon [1]" in fr and "58 pays selon [2]" in fr
    en = statement(conflict, "en")
    assert en.startswith("The sources disagree") and "61 countries according to [1]" in en
    assert stated(conflict, fr) and not stated(conflict, "61 pays ont signé [1].")


def test_detect_language():
    assert detect_language("Who is the spokesman of the Chinese foreign ministry?") == "en"
    assert detect_language("Qui a représenté Xi Jinping au sommet ?") == "fr"
