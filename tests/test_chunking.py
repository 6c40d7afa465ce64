from assistant.chunking import chunk_document, chunk_id
from assistant.sentences import sentence_spans
from assistant.models import Document, PageSpan

from conftest import KNOWLEDGE


def _doc(text: str, source: str = "a.txt", pages=()) -> Document:
    return Document(source=source, title="T", text=text, content_hash="h", pages=list(pages))


def test_offsets_index_exactly_into_the_source_text():
    for path in KNOWLEDGE.glob("*.txt"):
        text = path.read_text(encoding="utf-8")
        passages = chunk_document(_doc(text, path.name), max_chars=400, overlap_sentences=1)
        assert len(passages) > 2
        for p in passages:
            assert text[p.start : p.end] == p.text
            assert len(p.text) <= 400


def test_passages_cover_every_sentence():
    text = open(KNOWLEDGE / "sommet-ia-paris-declaration.txt", encoding="utf-8").read()
    passages = chunk_document(_doc(text), max_chars=300, overlap_sentences=0)
    covered = set()
    for p in passages:
        covered.update(range(p.start, p.end))
    for span in sentence_spans(text):
        assert span.start in covered and span.end - 1 in covered


def test_sentences_are_not_cut_at_initials_or_titles():
    text = "Mardi, J.D. Vance a parlé. M. Guo a répondu. Fin."
    sentences = [text[s.start : s.end] for s in sentence_spans(text)]
    assert sentences == ["Mardi, J.D. Vance a parlé.", "M. Guo a répondu.", "Fin."]


def test_chunks_break_at_sentence_boundaries_and_overlap():
    text = " ".join(f"Phrase numéro {i} avec quelques mots de plus." for i in range(30))
    passages = chunk_document(_doc(text), max_chars=200, overlap_sentences=1)
    for p in passages:
        assert p.text.endswith(".")
    for a, b in zip(passages, passages[1:]):
        assert b.start < a.end  # one sentence shared


def test_overlong_sentence_is_split_at_whitespace():
    text = "mot " * 400
    passages = chunk_document(_doc(text.strip()), max_chars=100)
    assert all(len(p.text) <= 100 for p in passages)
    assert all(not p.text.startswith(" ") for p in passages)


def test_chunk_ids_are_stable_and_unique():
    text = open(KNOWLEDGE / "chine-rejette-critiques-vance.txt", encoding="utf-8").read()
    first = [p.chunk_id for p in chunk_document(_doc(text))]
    again = [p.chunk_id for p in chunk_document(_doc(text))]
    assert first == again and len(set(first)) == len(first)
    assert chunk_id("a.txt", 0, "x") != chunk_id("b.txt", 0, "x")


def test_page_numbers_are_kept():
    text = "Page one sentence.\n\nPage two sentence."
    pages = [PageSpan(page=1, start=0, end=18), PageSpan(page=2, start=20, end=len(text))]
    passages = chunk_document(_doc(text, pages=pages), max_chars=20, overlap_sentences=0)
    assert [p.page for p in passages] == [1, 2]


def test_empty_text_gives_no_passage():
    assert chunk_document(_doc("   \n\n  ")) == []
