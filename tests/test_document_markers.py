"""Bracketed numbers inside documents ("[1]", "[2]" of a press review or a Wikipedia copy) are document text,
never citations — for both generators, on a real knowledge base ingested into real Chroma.

The knowledge base: a press review whose sentences end with its own footnote markers, and a company
statement that says the opposite of the review. A citation to the statement for the review's claim would
be a false claim "cited" to an article that contradicts it.
"""
from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from assistant.chain import Assistant
from assistant.citations import MARKER, neutralise_markers
from test_openai_generator import KEY, fake_llm  # noqa: F401 — the real loopback chat-completions server

REVIEW = "revue-de-presse.txt"
STATEMENT = "zorbex-communique.txt"
DOCS = {
    REVIEW: "Revue de presse du 12 mars 2025 sur les start-up de l'intelligence artificielle.\n\n"
    "Selon un blog spécialisé, la start-up Zorbex aurait levé 40 millions d'euros auprès de fonds étrangers [2]. "
    "Le même blog affirme que Zorbex ouvrira bientôt un bureau à Lyon [1].\n",
    STATEMENT: "Communiqué de la société Zorbex, publié le 13 mars 2025.\n\n"
    "La direction de Zorbex dément toute levée de fonds : l'entreprise n'a reçu aucun financement extérieur "
    "depuis sa création. La société emploie douze personnes à Grenoble et n'envisage aucune implantation "
    "ailleurs.\n",
}
CLAIM = "Selon un blog spécialisé, la start-up Zorbex aurait levé 40 millions d'euros auprès de fonds étrangers"


@pytest.fixture(scope="module")
def press_settings(indexed_settings, tmp_path_factory):
    from assistant.indexing import ingest

    folder = tmp_path_factory.mktemp("press-docs")
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    ingest(indexed_settings, source_dir=folder, kb="press")
    return indexed_settings


def check_citations(answer) -> None:
    """Every ASCII marker of the answer is a citation; each quote is the document's own words at its offsets
    and comes from the passage it names."""
    assert answer.error is None, answer.error
    numbers = {int(n) for m in MARKER.finditer(answer.text) for n in re.findall(r"\d+", m.group(1))}
    assert numbers == {c.number for c in answer.citations}, answer.text
    for c in answer.citations:
        assert DOCS[c.source][c.start : c.end] == c.quote
        assert c.quote in c.passage_text
        assert c.supported


def test_neutralising_keeps_length_and_offsets():
    text = DOCS[REVIEW]
    neutral = neutralise_markers(text)
    assert len(neutral) == len(text) and not MARKER.search(neutral)
    assert "étrangers ［2］." in neutral and "Lyon ［1］." in neutral
    assert neutralise_markers("[citation nécessaire] et [sic]") == "[citation nécessaire] et [sic]"


def test_extractive_answer_never_cites_a_document_marker(press_settings):
    assistant = Assistant(press_settings.model_copy(update={"generator": "extractive"}), kb="press")
    answer = assistant.ask("Combien Zorbex a-t-elle levé ?")
    assert not answer.declined and "40 millions" in answer.text
    assert {p.source for p in answer.passages} == {REVIEW, STATEMENT}  # the statement was retrieved…
    assert {c.source for c in answer.citations} == {REVIEW}  # …and is not "cited" for the review's claim
    assert "［2］" in answer.text  # the review's own marker is shown as document text
    check_citations(answer)


@pytest.fixture
def llm_assistant(press_settings, fake_llm):  # noqa: F811
    settings = press_settings.model_copy(update={
        "generator": "openai", "openai_base_url": fake_llm.url, "openai_api_key": SecretStr(KEY),
        "llm_model": "fake-model", "llm_timeout": 5.0, "llm_max_retries": 0})
    return Assistant(settings, kb="press")


def echo_review(fake_llm, body, own: bool) -> str:  # noqa: F811
    """The model copies the review's sentence with the review's "[2]", as a careless model would; with
    `own`, it also adds the right citation."""
    passages = fake_llm.passages(body)
    review = next(n for n, text in passages.items() if "Zorbex aurait" in text)
    statement = next(n for n in passages if n != review)
    suffix = f" [{review}]" if own else ""
    return f"{CLAIM} [{statement}].{suffix}"


@pytest.mark.parametrize("own", [True, False])
def test_llm_echoing_a_document_marker_cannot_cite_the_wrong_passage(llm_assistant, fake_llm, own):  # noqa: F811
    fake_llm.reply = lambda body: echo_review(fake_llm, body, own)
    answer = llm_assistant.ask("Combien Zorbex a-t-elle levé ?")
    user = fake_llm.requests[-1]["messages"][-1]["content"]
    assert "étrangers ［2］." in user and "Lyon ［1］." in user  # neutralised in the prompt
    assert not any(MARKER.search(text) for text in fake_llm.passages(fake_llm.requests[-1]).values())
    assert STATEMENT not in {c.source for c in answer.citations}, answer.text
    check_citations(answer)
    if own:  # the sentence stays, cited to the review only
        assert [c.source for c in answer.citations] == [REVIEW] and "40 millions" in answer.text
    else:  # it names only a passage that contradicts it: it is not shown as a cited claim
        assert "40 millions" not in answer.text or answer.declined


def test_llm_citation_to_a_supporting_passage_is_kept(llm_assistant, fake_llm):  # noqa: F811
    def reply(body):
        passages = fake_llm.passages(body)
        statement = next(n for n, text in passages.items() if "dément" in text)
        return f"La direction de Zorbex dément toute levée de fonds [{statement}]."

    fake_llm.reply = reply
    answer = llm_assistant.ask("Zorbex a-t-elle levé des fonds ?")
    assert [c.source for c in answer.citations] == [STATEMENT], answer.text
    check_citations(answer)
