"""Loading source files: formats, encodings, rejections with reasons, metadata, file discovery."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from assistant.documents import (
    SUPPORTED_SUFFIXES,
    UnsupportedDocument,
    file_hash,
    iter_files,
    set_aside_files,
    load,
    load_metadata,
)

KNOWLEDGE = Path(__file__).resolve().parent.parent / "knowledge"


def rejected(path: Path, **kwargs) -> str:
    with pytest.raises(UnsupportedDocument) as info:
        load(path, **kwargs)
    assert info.value.source == path.name
    return info.value.reason


def make_pdf(path: Path, pages: list[list[str]]) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    for lines in pages:
        for i, line in enumerate(lines):
            pdf.drawString(72, 760 - 20 * i, line)
        pdf.showPage()
    pdf.save()


def test_supported_suffixes():
    assert SUPPORTED_SUFFIXES == {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"}


@pytest.mark.parametrize("path", sorted(KNOWLEDGE.glob("*.txt")), ids=lambda p: p.name)
def test_real_knowledge_files_load_verbatim(path: Path):
    doc = load(path, root=KNOWLEDGE)
    content = path.read_text(encoding="utf-8")
    assert doc.text == content
    assert doc.source == path.name
    first_line = next(line.strip() for line in content.splitlines() if line.strip())
    assert first_line.startswith(doc.title) and 60 <= len(doc.title) <= 120
    assert doc.title == first_line or first_line[len(doc.title)] == " "  # cut at a word boundary
    assert doc.content_hash == file_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert doc.size == path.stat().st_size and doc.pages == []


def test_pdf_two_pages_with_spans(tmp_path: Path):
    path = tmp_path / "report.pdf"
    make_pdf(path, [["First page heading", "Paris summit on AI"], ["Second page", "61 countries signed"]])
    doc = load(path)
    assert [span.page for span in doc.pages] == [1, 2]
    first, second = (doc.text[span.start : span.end] for span in doc.pages)
    assert "First page heading" in first and "Paris summit on AI" in first and "61 countries" not in first
    assert "Second page" in second and "61 countries signed" in second
    assert doc.pages[0].start == 0 and doc.pages[1].end == len(doc.text)
    assert doc.text[doc.pages[0].end : doc.pages[1].start] == "\n\n"
    assert doc.title == "First page heading"


def test_pdf_without_text_is_rejected(tmp_path: Path):
    path = tmp_path / "scan.pdf"
    make_pdf(path, [[]])
    assert "no extractable text" in rejected(path)


def test_pdf_blank_page_keeps_physical_page_numbers(tmp_path: Path):
    path = tmp_path / "gap.pdf"
    make_pdf(path, [["Page one"], [], ["Page three"]])
    doc = load(path)
    assert [span.page for span in doc.pages] == [1, 3]
    assert [doc.text[s.start : s.end] for s in doc.pages] == ["Page one", "Page three"]


def test_encrypted_pdf_is_rejected(tmp_path: Path):
    from pypdf import PdfReader, PdfWriter

    plain = tmp_path / "plain.pdf"
    make_pdf(plain, [["Secret text"]])
    writer = PdfWriter()
    writer.append(PdfReader(plain))
    writer.encrypt(user_password="pw", algorithm="RC4-128")
    locked = tmp_path / "locked.pdf"
    with open(locked, "wb") as fh:
        writer.write(fh)
    assert rejected(locked) == "unreadable PDF: encrypted (password required)"


def test_fake_pdf_is_rejected(tmp_path: Path):
    path = tmp_path / "fake.pdf"
    path.write_text("this is just text pretending to be a PDF\n" * 5)
    assert rejected(path).startswith("unreadable PDF")


def test_docx_paragraphs_and_tables(tmp_path: Path):
    import docx

    document = docx.Document()
    document.add_heading("Sommet pour l'action sur l'IA", level=1)
    document.add_paragraph("")
    document.add_paragraph("Soixante et un pays ont signé la déclaration.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Pays", "Signé"
    table.cell(1, 0).text, table.cell(1, 1).text = "Chine", "oui"
    document.add_paragraph("Fin.")
    path = tmp_path / "note.docx"
    document.save(path)
    doc = load(path)
    assert doc.text == (
        "Sommet pour l'action sur l'IA\n\nSoixante et un pays ont signé la déclaration.\n\n"
        "Pays | Signé\nChine | oui\n\nFin."
    )
    assert doc.title == "Sommet pour l'action sur l'IA" and doc.pages == []


def test_broken_docx_is_rejected(tmp_path: Path):
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04 not really a zip archive")
    assert rejected(path).startswith("broken .docx")


def test_html_strips_scripts_and_chrome(tmp_path: Path):
    path = tmp_path / "page.html"
    path.write_text(
        """<!DOCTYPE html><html><head><title>Summit   news</title><style>p {color: red}</style></head>
        <body><header>Site header</header><nav><a href="/">Home</a></nav>
        <script>var secret = 1;</script><!-- a comment -->
        <h1>Big   heading</h1>
        <p>First   paragraph
           continues here.</p><p>Second<br>line two</p>
        <ul><li>item one</li><li>item <b>two</b></li></ul>
        <footer>Copyright</footer></body></html>""",
        encoding="utf-8",
    )
    doc = load(path)
    assert doc.title == "Summit news"
    assert doc.text == (
        "Big heading\n\nFirst paragraph continues here.\n\nSecond\nline two\n\nitem one\n\nitem two"
    )
    for junk in ("secret", "color", "Site header", "Home", "Copyright", "comment"):
        assert junk not in doc.text


def test_html_title_falls_back_to_h1_and_metadata_wins(tmp_path: Path):
    path = tmp_path / "page.htm"
    path.write_text("<html><body><h1>Only heading</h1><p>Body text.</p></body></html>", encoding="utf-8")
    assert load(path).title == "Only heading"
    assert load(path, metadata={"title": "From metadata"}).title == "From metadata"


def test_markdown_kept_as_is(tmp_path: Path):
    content = "# Déclaration de Paris\n\n- 61 pays\n- **Chine** signataire\n"
    path = tmp_path / "notes.md"
    path.write_text(content, encoding="utf-8")
    doc = load(path)
    assert doc.text == content and doc.title == "Déclaration de Paris"


def test_windows_1252_text_is_decoded(tmp_path: Path):
    path = tmp_path / "legacy.txt"
    path.write_bytes("L’été à Paris\r\nCafé crème\r\n".encode("cp1252"))
    doc = load(path)
    assert doc.text == "L’été à Paris\nCafé crème\n"
    assert doc.title == "L’été à Paris"


def test_utf8_bom_is_stripped(tmp_path: Path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "Première ligne\nsuite".encode("utf-8"))
    doc = load(path)
    assert doc.text == "Première ligne\nsuite" and doc.title == "Première ligne"


def test_long_first_line_title_cut_at_word_boundary(tmp_path: Path):
    path = tmp_path / "long.txt"
    path.write_text("word " * 60 + "\nbody", encoding="utf-8")
    title = load(path).title
    assert len(title) <= 120 and title.endswith("word") and title.startswith("word word")


def test_metadata_title_used_and_metadata_kept(tmp_path: Path):
    path = tmp_path / "a.txt"
    path.write_text("First line\n", encoding="utf-8")
    doc = load(path, root=tmp_path, metadata={"title": "Real title", "publisher": "AFP"})
    assert doc.title == "Real title" and doc.metadata == {"title": "Real title", "publisher": "AFP"}


def test_source_is_relative_posix_path(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "a.txt"
    path.write_text("hello", encoding="utf-8")
    assert load(path, root=tmp_path).source == "sub/a.txt"
    assert load(path).source == "a.txt"


def test_empty_and_whitespace_files_are_rejected(tmp_path: Path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert rejected(empty) == "empty file (0 bytes)"
    blank = tmp_path / "blank.md"
    blank.write_text("  \n\n\t \n", encoding="utf-8")
    assert rejected(blank).startswith("empty")


def test_binary_file_is_rejected(tmp_path: Path):
    path = tmp_path / "random.txt"
    path.write_bytes(os.urandom(2048) + b"\x00\x00" + os.urandom(512))
    assert rejected(path) == "binary content, not text"
    controls = tmp_path / "controls.txt"
    controls.write_bytes(bytes(range(1, 9)) * 100)
    assert rejected(controls) == "binary content, not text"


def test_unsupported_type(tmp_path: Path):
    path = tmp_path / "setup.exe"
    path.write_bytes(b"MZ\x90\x00")
    assert rejected(path) == "unsupported type .exe"


def test_too_large(tmp_path: Path):
    path = tmp_path / "big.txt"
    path.write_text("x" * 2000, encoding="utf-8")
    assert rejected(path, max_bytes=1000).startswith("too large")
    assert load(path, max_bytes=None).size == 2000


def test_missing_file_is_rejected_not_raised(tmp_path: Path):
    assert rejected(tmp_path / "gone.txt").startswith("unreadable file")


def test_metadata_manifest_and_sidecar_precedence(tmp_path: Path):
    (tmp_path / "_metadata.json").write_text(
        json.dumps({
            "a.txt": {"title": "Manifest A", "publisher": "AFP", "date": "2025-02-12"},
            "b.txt": {"title": "Manifest B"},
            "bad.txt": "not an object",
        }),
        encoding="utf-8",
    )
    (tmp_path / "a.txt.meta.json").write_text(json.dumps({"title": "Sidecar A", "url": "https://x"}), encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt.meta.json").write_text(json.dumps({"language": "fr"}), encoding="utf-8")
    meta = load_metadata(tmp_path)
    assert meta["a.txt"] == {"title": "Sidecar A", "publisher": "AFP", "date": "2025-02-12", "url": "https://x"}
    assert meta["b.txt"] == {"title": "Manifest B"}
    assert meta["sub/c.txt"] == {"language": "fr"}
    assert "bad.txt" not in meta


def test_broken_metadata_json_is_ignored_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    (tmp_path / "_metadata.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "a.txt.meta.json").write_text("[1, 2", encoding="utf-8")
    (tmp_path / "b.txt.meta.json").write_text(json.dumps({"title": "B"}), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="assistant.documents"):
        assert load_metadata(tmp_path) == {"b.txt": {"title": "B"}}
    assert "_metadata.json" in caplog.text and "a.txt.meta.json" in caplog.text
    assert load_metadata(tmp_path / "missing") == {}


def test_iter_files_skips_hidden_sidecars_and_readme(tmp_path: Path):
    for name in [
        "b.txt", "a.md", "tool.exe", "a.md.meta.json", "_metadata.json", "README.md", ".hidden.txt",
        ".git/config.txt", "sub/c.pdf", "sub/.cache/d.txt",
    ]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_files(tmp_path)]
    assert found == ["a.md", "b.txt", "sub/c.pdf", "tool.exe"]
    assert iter_files(tmp_path / "missing") == []
    assert [p.name for p in set_aside_files(tmp_path)] == ["README.md"]
