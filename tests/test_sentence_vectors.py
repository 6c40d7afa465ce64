"""Sentence vectors of the extractive generator: embedded at ingest into the knowledge base's store, so a
question nobody asked before embeds no sentence; deleted with their document; a broken or missing store
only costs speed; shared safely by several processes. Real Chroma, real embedders (counted, not mocked)."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from assistant.chain import Assistant
from assistant.embeddings import get_embedder
from assistant.embeddings.hashing import HashingEmbedder
from assistant.generation import extractive
from assistant.generation.sentence_store import SentenceStore, sentence_key, store_path
from assistant.generation.vectors import SentenceVectors
from assistant.indexing import delete_document, ingest

from conftest import KNOWLEDGE, ROOT

DOCS = {
    "vignoble.txt": "Le vignoble de Montrevel couvre 420 hectares sur les coteaux de la Saône. "
    "Il produit chaque année environ deux millions de bouteilles de vin blanc [1]. "
    "La coopérative locale fut fondée en 1931 par quarante vignerons du canton.\n\n"
    "# Histoire\n\nLe premier pressoir mécanique du village arriva en 1898 depuis Mâcon.\n",
    "observatoire.txt": "L'observatoire du Pic Ardent se trouve à 2 877 mètres d'altitude dans les Pyrénées. "
    "Son télescope principal, installé en 1982, mesure deux mètres de diamètre. "
    "Une équipe de douze astronomes y observe les étoiles variables toute l'année.\n",
}
QUESTIONS = [
    "Combien d'hectares couvre le vignoble de Montrevel ?",
    "Quand la coopérative a-t-elle été fondée ?",
    "À quelle altitude se trouve l'observatoire ?",
    "Quel est le diamètre du télescope principal ?",
    "Qui a gagné la Coupe du monde de football en 2022 ?",
]


class Counting:
    """The real embedder, counting the texts it is asked to embed as passages."""

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.texts = inner, inner.name, inner.dim, []

    def embed_passages(self, texts):
        self.texts.extend(texts)
        return self.inner.embed_passages(texts)

    def embed_query(self, text):
        return self.inner.embed_query(text)


@pytest.fixture
def counted(monkeypatch):
    """Every embedder the settings create, wrapped; a fresh sentence memory for this test."""
    from assistant import embeddings

    monkeypatch.setattr(extractive, "_VECTORS", {})
    wrapped: dict = {}
    real = embeddings.get_embedder

    def get(settings):
        inner = real(settings)
        return wrapped.setdefault(inner.name, Counting(inner))

    for module in ("assistant.embeddings", "assistant.indexing", "assistant.generation.extractive"):
        monkeypatch.setattr(f"{module}.get_embedder", get)
    return wrapped


def _folder(tmp_path, docs=DOCS):
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _answers(settings, kb, questions=QUESTIONS):
    assistant = Assistant(settings, kb)
    return [(a.text, a.declined, [c.quote for c in a.citations]) for a in map(assistant.ask, questions)]


def _rows(settings, kb, source=None):
    path = store_path(settings, kb, HashingEmbedder.name)
    with sqlite3.connect(path) as conn:
        if source is None:
            return conn.execute("SELECT count(*) FROM vectors").fetchone()[0]
        return conn.execute("SELECT count(*) FROM vectors WHERE source = ?", (source,)).fetchone()[0]


def test_after_ingest_a_new_question_embeds_no_sentence(make_settings, tmp_path, counted):
    """The default knowledge base and the default model: every question below is asked for the first time,
    and the answers are exactly those of a knowledge base whose sentences are embedded at answer time."""
    questions = ["Combien de pays ont signé la déclaration ?", "Qui est Guo Jiakun ?",
                 "Contre quoi JD Vance a-t-il mis en garde ?", "Who represented Xi Jinping at the summit?",
                 "Combien la France a-t-elle promis ?"]
    on = make_settings(data_dir=tmp_path / "on")
    report = ingest(on, KNOWLEDGE)
    assert report.sentences_embedded > 0
    (embedder,) = counted.values()
    embedder.texts.clear()
    with_store = _answers(on, "default", questions)
    assert embedder.texts == []  # every sentence the generator scored was embedded at ingest

    off = make_settings(data_dir=tmp_path / "off", sentence_vectors_at_ingest=False)
    assert ingest(off, KNOWLEDGE).sentences_embedded == 0
    embedder.texts.clear()
    assert _answers(off, "default", questions) == with_store
    assert len(embedder.texts) > 20  # the same sentences, embedded at answer time


def test_with_an_llm_answering_ingest_embeds_no_sentence_and_the_extractive_catches_up(make_settings, tmp_path,
                                                                                         counted):
    """An LLM writes the answers (it reads no sentence vector): ingest skips the sentence step; back to the
    extractive generator, the next ingest of the unchanged folder fills the store."""
    folder = _folder(tmp_path)
    llm = make_settings(data_dir=tmp_path / "data", embeddings="hashing", generator="openai",
                        openai_base_url="http://127.0.0.1:9/v1")
    report = ingest(llm, folder, kb="mine")
    assert report.added and report.sentences_embedded == 0
    back = make_settings(data_dir=tmp_path / "data", embeddings="hashing", generator="extractive")
    again = ingest(back, folder, kb="mine")
    assert not again.changed and again.sentences_embedded > 0
    assert _rows(back, "mine") == again.sentences_embedded


def test_document_markers_and_headings_are_stored_as_the_generator_sees_them(make_settings, tmp_path, counted):
    """A document's own "[1]" reaches the generator neutralised: the stored sentence is that text."""
    settings = make_settings(embeddings="hashing")
    ingest(settings, _folder(tmp_path), kb="wine")
    (embedder,) = counted.values()
    embedder.texts.clear()
    answers = _answers(settings, "wine")
    assert embedder.texts == []
    assert "420" in answers[0][0] and answers[-1][1]  # answered; the World Cup declined


def test_a_deleted_or_replaced_document_loses_its_sentence_vectors(make_settings, tmp_path, counted):
    settings = make_settings(embeddings="hashing")
    folder = _folder(tmp_path)
    ingest(settings, folder, kb="wine")
    wine = _rows(settings, "wine", "vignoble.txt")
    assert wine > 0 and _rows(settings, "wine", "observatoire.txt") > 0
    store = SentenceStore.of(settings, "wine", HashingEmbedder())
    old = extractive.document_sentence_texts(DOCS["vignoble.txt"], _passages(settings, "vignoble.txt"))
    assert len(store.lookup(old)) == len(old) == wine

    # replaced: the old version's sentences go, the new ones come
    new_text = "Le vignoble de Montrevel couvre désormais 510 hectares après le rachat du domaine voisin.\n"
    (folder / "vignoble.txt").write_text(new_text, encoding="utf-8")
    ingest(settings, folder, kb="wine")
    assert store.lookup(old) == {}
    assert _rows(settings, "wine", "vignoble.txt") == 1

    # deleted: none of its rows is left; the other document keeps its own
    assert delete_document(settings, "vignoble.txt", kb="wine")
    assert _rows(settings, "wine", "vignoble.txt") == 0 and "vignoble.txt" not in store.versions()
    assert _rows(settings, "wine", "observatoire.txt") > 0
    # removed from the folder: the same at the next ingest
    (folder / "observatoire.txt").unlink()
    ingest(settings, folder, kb="wine")
    assert _rows(settings, "wine") == 0 and store.versions() == {}


def _passages(settings, source):
    from assistant import documents
    from assistant.chunking import chunk_document

    doc = documents.load(settings.data_dir.parent / "docs" / source, root=settings.data_dir.parent / "docs")
    return chunk_document(doc, settings.chunk_chars, settings.chunk_overlap_sentences)


@pytest.mark.parametrize("damage", ["garbage", "missing", "truncated"])
def test_a_broken_or_missing_store_answers_the_same_and_the_next_ingest_repairs_it(
        make_settings, tmp_path, counted, damage, monkeypatch):
    settings = make_settings(embeddings="hashing")
    folder = _folder(tmp_path)
    ingest(settings, folder, kb="wine")
    expected = _answers(settings, "wine")
    path = store_path(settings, "wine", HashingEmbedder.name)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    if damage == "garbage":
        path.write_bytes(b"not a database" * 100)
    elif damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:1500])
    monkeypatch.setattr(extractive, "_VECTORS", {})
    (embedder,) = counted.values()
    embedder.texts.clear()
    assert _answers(settings, "wine") == expected  # only slower: the sentences were embedded again
    assert embedder.texts
    # unchanged documents: only their sentence vectors are redone (reusing those the answers just stored)
    assert not ingest(settings, folder, kb="wine").changed
    assert set(SentenceStore.of(settings, "wine", HashingEmbedder()).versions()) == set(DOCS)
    monkeypatch.setattr(extractive, "_VECTORS", {})
    embedder.texts.clear()
    assert _answers(settings, "wine") == expected and embedder.texts == []


def test_the_setting_off_embeds_at_answer_time_and_keeps_them_for_the_next_process(make_settings, tmp_path, counted,
                                                                                  monkeypatch):
    settings = make_settings(embeddings="hashing", sentence_vectors_at_ingest=False)
    ingest(settings, _folder(tmp_path), kb="wine")
    (embedder,) = counted.values()
    embedder.texts.clear()
    expected = _answers(settings, "wine")
    first = len(embedder.texts)
    assert first > 0
    monkeypatch.setattr(extractive, "_VECTORS", {})  # another process: nothing in memory
    embedder.texts.clear()
    assert _answers(settings, "wine") == expected and embedder.texts == []
    assert "vignoble.txt" not in SentenceStore.of(settings, "wine", HashingEmbedder()).versions()


def test_an_ingest_in_another_process_serves_this_one(make_settings, tmp_path, counted):
    """The CLI ingests (another process) while this one has the knowledge base open: its next new question
    reads the sentences the other process embedded."""
    settings = make_settings(embeddings="hashing")
    folder = _folder(tmp_path, {"observatoire.txt": DOCS["observatoire.txt"]})
    ingest(settings, folder, kb="wine")
    assistant = Assistant(settings, "wine")
    assistant.ask(QUESTIONS[2])
    (folder / "vignoble.txt").write_text(DOCS["vignoble.txt"], encoding="utf-8")
    env = {"ASSISTANT_DATA_DIR": str(settings.data_dir), "ASSISTANT_EMBEDDINGS": "hashing",
           "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "ANONYMIZED_TELEMETRY": "False"}
    subprocess.run([sys.executable, "-m", "assistant.cli", "ingest", str(folder), "--kb", "wine", "--quiet"],
                   env=env, check=True, capture_output=True, timeout=300)
    (embedder,) = counted.values()
    embedder.texts.clear()
    answer = assistant.ask(QUESTIONS[0])
    assert "420" in answer.text and embedder.texts == []


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from pathlib import Path
    from assistant.embeddings.hashing import HashingEmbedder
    from assistant.generation.sentence_store import SentenceStore
    path, me = Path(sys.argv[1]), int(sys.argv[2])
    e = HashingEmbedder()
    store = SentenceStore(path, e.dim)
    for i in range(60):
        texts = [f"Phrase {me}-{i}-{j} du document numéro {j}." for j in range(5)]
        if i % 10 == 0:
            store.put_document(f"doc-{me}-{i}.txt", "v1", texts, e.embed_passages(texts))
        else:
            store.add([f"doc-{me}.txt"] * len(texts), texts, e.embed_passages(texts))
""")


def test_two_processes_writing_one_store_keep_every_sentence_with_its_vector(tmp_path):
    (tmp_path / "sentences").mkdir()
    path = tmp_path / "sentences" / "model.sqlite3"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(me)], cwd=ROOT) for me in (1, 2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    embedder = HashingEmbedder()
    texts = [f"Phrase {me}-{i}-{j} du document numéro {j}." for me in (1, 2) for i in range(60) for j in range(5)]
    found = SentenceStore(path, embedder.dim).lookup(texts)
    assert len(found) == len(texts)
    assert np.allclose(np.vstack([found[t] for t in texts]), embedder.embed_passages(texts), atol=1e-6)
    assert len(SentenceStore(path, embedder.dim).versions()) == 12


def test_memory_holds_only_the_most_recent_sentences(tmp_path):
    (tmp_path / "sentences").mkdir()
    embedder = HashingEmbedder()
    store = SentenceStore(tmp_path / "sentences" / "m.sqlite3", embedder.dim)
    vectors = SentenceVectors(embedder, store, memory=10)
    texts = [f"Une phrase numéro {i} assez longue." for i in range(25)]
    got = vectors.get(texts, ["a.txt"] * len(texts))
    assert np.allclose(got, embedder.embed_passages(texts), atol=1e-6)
    assert len(vectors._rows) == 10 and vectors.embedded == 25
    assert np.allclose(vectors.get(texts[:5]), got[:5]) and vectors.embedded == 25  # read back from the store
    assert set(store.lookup(texts)) == set(texts)
    assert sentence_key(texts[0]) != sentence_key(texts[1])


def test_the_fragment_check_counts_content_words_as_content_words_does():
    from assistant.language import content_words
    from assistant.sentences import sentence_spans

    texts = [p.read_text(encoding="utf-8") for p in sorted(KNOWLEDGE.glob("*.txt"))] + list(DOCS.values())
    sentences = [t[s:e] for t in texts for s, e in sentence_spans(t)]
    sentences += ["A-t-il signé ?", "L'IA d'abord.", "Qu'en pense-t-elle vraiment", "China's AI, 2025.", "le la les"]
    for n in (1, 3, 5):
        assert [extractive._content_words_at_least(s, n) for s in sentences] == \
            [len(content_words(s)) >= n for s in sentences]


@pytest.mark.slow
def test_server_mode_another_machines_document_is_embedded_once_and_forgotten_when_deleted(
        chroma_server, tmp_path, counted):
    """Two processes with their own data dirs share one `chroma run`: the sentences of a document the other
    one ingested are embedded here on first use (then kept in this data dir), and dropped here once this
    process learns the document was deleted."""
    from assistant.config import Settings
    from test_server_mode import NEW, _other_process

    host, port, _ = chroma_server
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "vacherin.md").write_text(NEW, encoding="utf-8")
    (folder / "observatoire.txt").write_text(DOCS["observatoire.txt"], encoding="utf-8")
    assert "vacherin.md" in _other_process(tmp_path, host, port, folder=folder)

    here = Settings(data_dir=tmp_path / "data-b", chroma_host=host, chroma_port=port, embeddings="hashing",
                    lexical_sync_seconds=0)
    assistant = Assistant(here, "shared")
    question = "Comment se déguste le vacherin Mont-d'Or ?"
    assert "cuillère" in assistant.ask(question).text
    (embedder,) = counted.values()
    assert embedder.texts  # not ingested here: embedded on first use…
    assert _rows(here, "shared", "vacherin.md") > 0
    extractive._VECTORS.clear()  # …and kept: a new process here embeds nothing for it
    embedder.texts.clear()
    assert "cuillère" in assistant.ask(question).text and embedder.texts == []

    _other_process(tmp_path, host, port, delete="vacherin.md")
    assistant.retriever.search("vacherin Mont-d'Or cuillère")  # this process's index learns of the delete
    assert _rows(here, "shared", "vacherin.md") == 0
