"""Follow-up detection and its safety net, through the real chain on the real knowledge/ index.

A standalone question asked after an unrelated one must be answered for itself — not glued to the previous
topic and answered with the previous answer. Whatever rewrote it (the offline heuristic or an LLM), the
rewrite is never worse than the question as asked.
"""
from __future__ import annotations

import pytest
from pydantic import SecretStr

from assistant.chain import Assistant
from assistant.models import Turn
from assistant.rewrite import REWRITE_PROMPT, heuristic_rewrite
from test_openai_generator import KEY, fake_llm  # noqa: F401 — the real loopback chat-completions server


@pytest.fixture(scope="module")
def extractive(indexed_settings):
    return Assistant(indexed_settings.model_copy(update={"generator": "extractive"}))


def after(assistant: Assistant, earlier: str) -> list[Turn]:
    return [Turn(question=earlier, answer=assistant.ask(earlier).text)]


def test_inverted_question_after_another_topic_is_answered_for_itself(extractive):
    history = after(extractive, "Qui est Guo Jiakun ?")
    question = "Quand le sommet de Paris s'est-il tenu ?"
    answer = extractive.ask(question, history)
    assert answer.standalone_question == question
    assert "10 et 11 février" in answer.text and not answer.declined
    assert "Guo Jiakun" not in answer.text  # not the previous answer again
    alone = extractive.ask(question)
    assert answer.text == alone.text and [c.quote for c in answer.citations] == [c.quote for c in alone.citations]


def test_unanswerable_inverted_question_declines_instead_of_repeating_the_topic(extractive):
    history = after(extractive, "Combien de pays ont signé la déclaration ?")
    answer = extractive.ask("Quel âge JD Vance a-t-il ?", history)
    assert answer.standalone_question == "Quel âge JD Vance a-t-il ?"
    assert answer.declined and not answer.citations, answer.text


def test_a_real_follow_up_still_carries_its_topic(extractive):
    history = after(extractive, "Qui est Keir Starmer ?")
    answer = extractive.ask("Pourquoi a-t-il critiqué la déclaration ?", history)
    assert "Keir Starmer" in answer.standalone_question
    assert "clarté" in answer.text and not answer.declined


@pytest.fixture
def llm_assistant(indexed_settings, fake_llm):  # noqa: F811
    settings = indexed_settings.model_copy(update={
        "generator": "openai", "openai_base_url": fake_llm.url, "openai_api_key": SecretStr(KEY),
        "llm_model": "fake-model", "llm_timeout": 5.0, "llm_max_retries": 0})
    return Assistant(settings)


def scripted(fake_llm, rewrite: str):  # noqa: F811
    """The model rewrites the question as `rewrite`, and answers by quoting the first passage it is given."""

    def reply(body):
        if body["messages"][0]["content"] == REWRITE_PROMPT:
            return rewrite
        first = fake_llm.passages(body)[1].split("\n", 2)[1]
        return f"{first.split('. ')[0].rstrip('.')} [1]."

    return reply


def test_llm_rewrite_worse_than_the_question_is_not_used(llm_assistant, fake_llm):  # noqa: F811
    question = "Qui est le porte-parole du ministère chinois des Affaires étrangères ?"
    history = [Turn(question="Combien de pays ont signé la déclaration ?", answer="61 pays [1].")]
    fake_llm.reply = scripted(fake_llm, "Combien de pays ont signé la déclaration ?")  # glued to the old topic
    answer = llm_assistant.ask(question, history)
    alone = llm_assistant.ask(question)
    assert answer.standalone_question == question
    assert [p.chunk_id for p in answer.passages] == [p.chunk_id for p in alone.passages]


def test_llm_rewrite_of_a_follow_up_is_kept_and_loses_no_passage(llm_assistant, fake_llm):  # noqa: F811
    question = "Qu'a-t-il souligné ?"
    rewritten = "Qu'a souligné Zhang Guoqing, représentant spécial de Xi Jinping ?"
    history = [Turn(question="Qui a représenté Xi Jinping au sommet ?", answer="Zhang Guoqing [1].")]
    fake_llm.reply = scripted(fake_llm, rewritten)
    answer = llm_assistant.ask(question, history)
    assert answer.standalone_question == rewritten
    alone = llm_assistant.ask(question)
    assert {p.chunk_id for p in alone.passages} <= {p.chunk_id for p in answer.passages}
    assert [p.rank for p in answer.passages] == list(range(1, len(answer.passages) + 1))


def test_llm_reply_that_is_not_a_rewrite_falls_back_to_the_heuristic(llm_assistant, fake_llm):  # noqa: F811
    """A small model answers instead of rewriting ("The answer is 61."): that is no question, so the
    offline heuristic rewrites the follow-up and the answer is built on its passages."""
    question = "Et les États-Unis, l'ont-ils signée ?"
    history = [Turn(question="Combien de pays ont signé la déclaration ?", answer="61 pays [1].")]
    fake_llm.reply = scripted(fake_llm, "The answer is 61.")
    answer = llm_assistant.ask(question, history)
    assert answer.standalone_question == heuristic_rewrite(question, history)


@pytest.mark.slow
def test_follow_up_slice_gate(indexed_settings, tmp_path, monkeypatch, capsys):
    """evals/followups.jsonl (pairs where the second question is and is not a follow-up, FR and EN) through
    the eval runner: every rewrite decision right, and the answers at the level reported in evals/README.md."""
    import json
    from pathlib import Path

    from assistant.cli import main

    dataset = Path(__file__).resolve().parent.parent / "evals" / "followups.jsonl"
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(indexed_settings.data_dir))
    code = main(["eval", str(dataset), "--out", str(tmp_path / "fu"), "--quiet",
                 "--min-follow-up-detection", "1.0", "--min-accuracy", "0.9", "--max-false-answer", "0"])
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    summary = json.loads((tmp_path / "fu" / "report.json").read_text())["summary"]
    assert summary["n"] >= 24 and summary["follow_up_detection"] == 1.0
