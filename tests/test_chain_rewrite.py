"""Offline follow-up rewriting (assistant/rewrite.py): pure functions."""
from __future__ import annotations

import pytest

from assistant.models import Turn
from assistant.rewrite import heuristic_rewrite, is_follow_up, rewrite, topic


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
