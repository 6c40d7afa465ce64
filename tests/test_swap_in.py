"""Swap-in corpus: a PIAF sample (French Wikipedia, questions written by others) as its own knowledge base."""
import pytest

from assistant.evaluation.dataset import load_dataset
from assistant.evaluation.importers import import_squad
from assistant.evaluation.metrics import hit_at_k
from assistant.catalog import list_documents
from assistant.indexing import ingest
from assistant.retrieval import open_retriever

from conftest import SHARED

PIAF = SHARED / "external" / "piaf" / "piaf-v1.1.json"


@pytest.mark.slow
@pytest.mark.skipif(not PIAF.exists(), reason="../shared/external/piaf is not beside the checkout")
def test_piaf_sample_as_its_own_knowledge_base(indexed_settings, tmp_path):
    imported = import_squad(PIAF, tmp_path / "piaf", articles=15, seed=1, max_questions=5)
    report = ingest(indexed_settings, imported.docs_dir, kb="piaf")
    assert report.chunks > 20 and not report.skipped
    items = load_dataset(imported.dataset)
    retriever = open_retriever(indexed_settings, "piaf", k=5)
    hits = [hit_at_k([p.source for p in retriever.search(i.question)], i.sources, 5) for i in items]
    score = sum(hits) / len(hits)
    print(f"\nPIAF sample: {len(items)} questions over {report.chunks} passages, hit@5 = {score:.2f}")
    assert score >= 0.8
    # the default knowledge base is untouched by the swap-in
    assert {d.source for d in list_documents(indexed_settings)} == {
        "sommet-ia-paris-declaration.txt", "chine-rejette-critiques-vance.txt"}


@pytest.mark.skipif(not PIAF.exists(), reason="../shared/external/piaf is not beside the checkout")
def test_default_passage_budget_is_far_above_every_piaf_article(tmp_path):
    """The budget must never skip a real article: every PIAF article, chunked as ingest does, is far below it."""
    from assistant import documents
    from assistant.chunking import chunk_document
    from assistant.config import Settings

    settings = Settings(data_dir=tmp_path / "data")
    imported = import_squad(PIAF, tmp_path / "piaf")
    sizes = [len(chunk_document(documents.load(p, root=imported.docs_dir), settings.chunk_chars,
                                settings.chunk_overlap_sentences)) for p in documents.iter_files(imported.docs_dir)]
    assert len(sizes) > 400
    assert max(sizes) * 20 <= settings.max_document_passages, max(sizes)
