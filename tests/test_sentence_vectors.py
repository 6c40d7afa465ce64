"""The sentence-vector cache of the extractive generator: append-only on disk, shared safely."""
import numpy as np

from assistant.embeddings.hashing import HashingEmbedder
from assistant.generation.vectors import SentenceVectors


def _file(folder):
    (path,) = folder.glob("sentences-*.bin")
    return path


def test_new_sentences_are_appended_and_read_back(tmp_path):
    embedder = HashingEmbedder()
    cache = SentenceVectors(embedder, tmp_path)
    first = cache.get(["Le sommet s'est tenu à Paris.", "Soixante pays ont signé."])
    size = _file(tmp_path).stat().st_size
    cache.get(["Le sommet s'est tenu à Paris.", "Les États-Unis n'ont pas signé."])
    grown = _file(tmp_path).stat().st_size
    # one record more, the earlier ones untouched (appended, not rewritten)
    assert size < grown < 2 * size
    again = SentenceVectors(embedder, tmp_path)
    assert len(again._rows) == 3
    assert np.allclose(again.get(["Le sommet s'est tenu à Paris.", "Soixante pays ont signé."]), first)


def test_two_processes_appending_keep_each_sentence_with_its_vector(tmp_path):
    embedder = HashingEmbedder()
    a, b = SentenceVectors(embedder, tmp_path), SentenceVectors(embedder, tmp_path)
    texts = [f"Phrase numéro {i} du document." for i in range(40)]
    for i, text in enumerate(texts):
        (a if i % 2 else b).get([text])
    merged = SentenceVectors(embedder, tmp_path)
    assert set(merged._rows) == set(texts)
    assert np.allclose(merged.get(texts), np.asarray(embedder.embed_passages(texts)), atol=1e-6)


def test_a_torn_last_record_is_dropped(tmp_path):
    embedder = HashingEmbedder()
    SentenceVectors(embedder, tmp_path).get(["Une phrase entière.", "Une autre phrase entière."])
    path = _file(tmp_path)
    path.write_bytes(path.read_bytes()[:-7])  # killed in the middle of an append
    cache = SentenceVectors(embedder, tmp_path)
    assert list(cache._rows) == ["Une phrase entière."]
    assert np.allclose(cache.get(["Une autre phrase entière."]), embedder.embed_passages(["Une autre phrase entière."]))
    assert len(SentenceVectors(embedder, tmp_path)._rows) == 2
