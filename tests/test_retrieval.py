"""Hybrid retrieval on the real articles, embedded and through a real `chroma run` server."""
import pytest

from assistant.config import Settings
from assistant.indexing import ingest
from assistant.retrieval import open_retriever, rrf

DECLARATION = "sommet-ia-paris-declaration.txt"
VANCE = "chine-rejette-critiques-vance.txt"

CASES = [
    ("Qui a représenté Xi Jinping ?", DECLARATION, "Zhang Guoqing"),
    ("Which countries refused to sign the declaration?", DECLARATION, "Royaume-Uni"),
    ("Quel porte-parole chinois a répondu aux propos de J.D. Vance ?", VANCE, "Guo Jiakun"),
    ("What did Vance say about authoritarian regimes?", VANCE, "régimes autoritaires"),
    ("Qu'a dit Keir Starmer de la déclaration ?", DECLARATION, "Keir Starmer"),
]


def _check(settings: Settings, kb: str = "default") -> None:
    retriever = open_retriever(settings, kb)
    for question, source, needle in CASES:
        passages = retriever.search(question)
        assert passages, question
        assert passages[0].source == source, (question, [p.source for p in passages])
        assert any(needle in p.text for p in passages[:3]), (question, needle)
        assert [p.rank for p in passages] == list(range(1, len(passages) + 1))


def test_right_article_first(indexed_settings):
    _check(indexed_settings)


def test_passages_carry_offsets_title_and_scores(indexed_settings):
    retriever = open_retriever(indexed_settings, k=3)
    for p in retriever.search("Combien de pays ont signé la déclaration ?"):
        text = retriever.document_text(p.source)
        assert text[p.start : p.end] == p.text
        assert p.title and p.chunk_id and p.score > 0
        assert p.dense_score is not None or p.lexical_score is not None
    assert retriever.document_text("no-such-file.txt") is None


def test_is_a_langchain_retriever(indexed_settings):
    docs = open_retriever(indexed_settings, k=2).invoke("Keir Starmer")
    assert len(docs) == 2
    assert docs[0].metadata["source"] == DECLARATION and "Starmer" in docs[0].page_content


def test_k_is_configurable(indexed_settings):
    assert len(open_retriever(indexed_settings).search("sommet", k=7)) == 7


def test_rrf_rewards_agreement():
    scores = rrf([["a", "b", "c"], ["b", "a", "d"]], k=60)
    assert scores["a"] == scores["b"] > scores["c"] > 0
    assert set(scores) == {"a", "b", "c", "d"}


@pytest.mark.slow
def test_server_mode_same_results(chroma_server, tmp_path):
    host, port, _ = chroma_server
    settings = Settings(data_dir=tmp_path / "data", chroma_host=host, chroma_port=port)
    report = ingest(settings)
    assert report.chunks > 0 and not report.skipped
    _check(settings)
    assert ingest(settings).embedded == 0
    from assistant.indexing import open_store

    assert open_store(settings).effective_search_ef == settings.hnsw_search_ef
    assert open_store(settings.model_copy(update={"hnsw_search_ef": 200})).effective_search_ef == 200


def test_dead_chroma_server_gives_a_clear_error(tmp_path):
    from conftest import free_port

    from assistant.store import StoreError

    settings = Settings(data_dir=tmp_path, chroma_host="127.0.0.1", chroma_port=free_port())
    with pytest.raises(StoreError, match="cannot open the Chroma server at 127.0.0.1"):
        open_retriever(settings)
