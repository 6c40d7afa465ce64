"""Offline follow-up rewriting (assistant/rewrite.py): pure functions."""
from __future__ import annotations

import pytest

from assistant.models import Turn
from assistant.rewrite import heuristic_rewrite, is_follow_up, keep_rewrite, names_own_subject, rewrite, topic


@pytest.mark.parametrize("question", ["Et les États-Unis, l'ont-ils signée ?", "What about the United Kingdom?",
                                      "And India?", "Pourquoi ?", "What did he say about China's 5G exports?"])
def test_follow_ups_are_recognised(question):
    assert is_follow_up(question)


@pytest.mark.parametrize("question", ["Combien de pays ont signé la déclaration ?",
                                      "Who is the spokesman of the Chinese foreign ministry?",
                                      "Qui a représenté Xi Jinping au sommet ?"])
def test_standalone_questions_are_left_alone(question):
    assert not is_follow_up(question)
    assert heuristic_rewrite(question, [Turn(question="Qui est Keir Starmer ?")]) == question


@pytest.mark.parametrize("question", [
    "Quel montant la France a-t-elle investi ?",  # inversion after a noun subject: "elle" is "la France"
    "Combien Mistral a-t-elle levé ?",
    "Combien X a-t-elle levé ?",
    "Combien la start-up Mistral a-t-elle levé ?",
    "Quand le sommet de Paris s'est-il tenu ?",
    "Quel âge JD Vance a-t-il ?",
    "Pourquoi Keir Starmer a-t-il critiqué la déclaration ?",
    "La Chine a-t-elle signé ?",
    "Y a-t-il eu un accord ?",  # impersonal "il"
    "Que faut-il retenir du sommet ?",
    "Qu'est-ce que DeepSeek ?",  # short, but names its subject
    "Qui est Macron ?",
    "Who said that AI must be regulated?",  # "that" is a conjunction here
    "How old is JD Vance?",
])
def test_questions_that_name_their_own_subject_are_standalone(question):
    assert not is_follow_up(question)
    history = [Turn(question="Combien de pays ont signé la déclaration ?")]
    assert heuristic_rewrite(question, history) == question


@pytest.mark.parametrize("question", ["Qu'a-t-il souligné ?", "Contre quoi a-t-il mis en garde ?",
                                      "Que préconise-t-il ?", "Quel montant a-t-il investi ?", "A-t-il signé ?",
                                      "Pourquoi l'a-t-il critiquée ?", "What did he say about that?",
                                      "Did the UK sign it?", "Combien de pays y étaient représentés ?"])
def test_pronouns_standing_for_an_earlier_subject_are_follow_ups(question):
    assert is_follow_up(question)
    assert not names_own_subject(question)


def test_a_rewrite_is_kept_only_if_it_supports_the_question_as_well():
    asked = ["La France a investi 109 milliards d'euros dans l'IA.", "Le sommet de Paris a réuni 100 pays."]
    glued = ["61 pays ont signé la déclaration.", "Cinquante-huit pays ont signé une déclaration commune."]
    question = "Quel montant la France a-t-elle investi ?"
    assert not keep_rewrite(question, asked, glued, sure=True)  # loses "montant/investi": never worse
    assert keep_rewrite("Qu'a-t-il souligné ?", ["Il a souligné l'avenir."], ["Zhang a souligné l'avenir."], sure=True)
    # a tie: only a sure follow-up keeps its rewrite
    assert not keep_rewrite(question, glued, glued, sure=False)
    assert keep_rewrite(question, glued, glued, sure=True)
    assert keep_rewrite("Pourquoi ?", asked, glued, sure=True)  # nothing of its own to support


def test_topic_drops_the_interrogative():
    assert topic("Combien de pays ont signé la déclaration ?") == "pays ont signé la déclaration"
    assert topic("Who is JD Vance?") == "JD Vance"


def test_follow_up_carries_the_previous_topic():
    history = [Turn(question="Combien de pays ont signé la déclaration ?")]
    assert heuristic_rewrite("Et les États-Unis, l'ont-ils signée ?", history) == \
        "Les États-Unis, l'ont-ils signée ? (pays ont signé la déclaration)"
    chained = history + [Turn(question="Et les États-Unis ?")]
    assert heuristic_rewrite("Et l'Inde ?", chained) == "L'Inde ? (pays ont signé la déclaration)"


def test_no_history_means_no_rewrite():
    assert rewrite("Et les États-Unis ?", []) == "Et les États-Unis ?"


def test_llm_rewrite_falls_back_to_the_heuristic_on_failure():
    class Broken:
        def invoke(self, messages):
            raise ConnectionError("down")

    history = [Turn(question="Combien de pays ont signé la déclaration ?")]
    assert rewrite("Et les États-Unis ?", history, llm=Broken()) == "Les États-Unis ? (pays ont signé la déclaration)"


def test_llm_reply_that_is_no_rewrite_is_refused():
    class Answers:  # a small model that answers the question instead of rewriting it
        def __init__(self, reply):
            self.reply = reply

        def invoke(self, messages, **options):
            return self.reply

    history = [Turn(question="Combien de pays ont signé la déclaration ?")]
    heuristic = "Les États-Unis, l'ont-ils signée ? (pays ont signé la déclaration)"
    for reply in ("The answer is 61.", "Combien de pays ont signé la déclaration ?", "Je ne sais pas."):
        assert rewrite("Et les États-Unis, l'ont-ils signée ?", history, llm=Answers(reply)) == heuristic
    kept = "Les États-Unis ont-ils signé la déclaration ?"
    assert rewrite("Et les États-Unis, l'ont-ils signée ?", history, llm=Answers(kept)) == kept
