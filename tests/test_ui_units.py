"""The UI's pure helpers: safe uploads, highlighting and escaping, eval report tables."""
from __future__ import annotations

import json
import os

import pytest

from assistant.models import Citation
from ui import evals_data as ed
from ui.render import answer_html, highlighted, label_text, plain, quote_offsets
from ui.uploads import UploadRefused, safe_name, save_upload

TEXT = "Le sommet a réuni 61 pays.\nLa Chine a signé.\n"


def listing(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- uploads ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("notes.txt", "notes.txt"), ("../../etc/passwd.txt", "passwd.txt"), ("C:\\Users\\me\\rapport.md", "rapport.md"),
    ("  espace.html ", "espace.html"), ("Article été.PDF", "Article été.PDF"),
])
def test_safe_name_keeps_the_base_name_only(raw, expected):
    assert safe_name(raw) == expected


@pytest.mark.parametrize("raw, reason", [
    ("", "no usable"), ("..", "no usable"), ("dir/", "no usable"), (".env.txt", "hidden"), ("../.bashrc.md", "hidden"),
    ("a\x00b.txt", "forbidden"), ("run.exe", "unsupported type .exe"), ("noext", "unsupported type (no extension)"),
    ("x" * 200 + ".txt", "longer"),
])
def test_safe_name_refusals(raw, reason):
    with pytest.raises(UploadRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        safe_name(raw)


def test_save_upload_writes_a_valid_file(tmp_path):
    folder = tmp_path / "docs"
    result = save_upload(folder, "../nested/../note.txt", TEXT.encode(), max_mb=1)
    assert result.ok and result.changed and result.message == "added"
    assert (folder / "note.txt").read_text(encoding="utf-8") == TEXT
    assert listing(folder) == ["note.txt"]  # no temporary file left behind


@pytest.mark.parametrize("name, data, reason", [
    ("empty.txt", b"", "empty file"),
    ("blank.txt", b"   \n\n  ", "empty"),
    ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00IHDR" * 10, "binary"),
    ("fake.pdf", b"%PDF-1.4 not really a pdf", "PDF"),
    ("fake.docx", b"PK\x03\x04 nope", "docx"),
    ("big.txt", b"a" * 2_000_000, "too large"),
    ("README.md", b"# Read me\n\nSome text.", "ignores files with this name"),
    ("tool.exe", b"MZ\x90\x00", "unsupported type"),
])
def test_bad_uploads_are_refused_and_nothing_is_written(tmp_path, name, data, reason):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "keep.txt").write_text(TEXT, encoding="utf-8")
    result = save_upload(folder, name, data, max_mb=1)
    assert not result.ok and not result.changed
    assert reason in result.message
    assert listing(folder) == ["keep.txt"] and (folder / "keep.txt").read_text(encoding="utf-8") == TEXT


def test_no_silent_overwrite_and_no_duplicate_content(tmp_path):
    folder = tmp_path / "docs"
    assert save_upload(folder, "a.txt", TEXT.encode(), max_mb=1).ok
    again = save_upload(folder, "a.txt", TEXT.encode(), max_mb=1)
    assert again.ok and not again.changed and "unchanged" in again.message
    other = save_upload(folder, "a.txt", b"Un autre texte.", max_mb=1)
    assert not other.ok and "replace" in other.message
    assert (folder / "a.txt").read_text(encoding="utf-8") == TEXT
    twin = save_upload(folder, "b.txt", TEXT.encode(), max_mb=1)
    assert not twin.ok and "same content as a.txt" in twin.message
    replaced = save_upload(folder, "a.txt", b"Un autre texte.", max_mb=1, replace=True)
    assert replaced.ok and replaced.changed and replaced.message == "replaced"
    assert (folder / "a.txt").read_text(encoding="utf-8") == "Un autre texte."
    assert listing(folder) == ["a.txt"]


# --- rendering ----------------------------------------------------------------------------------------------
def citation(**kw) -> Citation:
    base = dict(number=1, source="a.txt", title="A", chunk_id="c0", quote="61 pays", start=118, end=125,
                passage_start=100, passage_end=100 + len(TEXT), passage_text=TEXT)
    return Citation(**{**base, **kw})


def test_quote_offsets_from_offsets_then_by_search():
    assert quote_offsets(citation()) == (18, 25) and TEXT[18:25] == "61 pays"
    assert quote_offsets(citation(start=104)) == (18, 25)  # offsets that do not match: found by search
    assert quote_offsets(citation(quote="absent")) is None


def test_highlighting_escapes_html_and_marks_the_span():
    text = "Avant <script>alert(1)</script> le chiffre 61 $ après"
    at = text.index("61")
    out = highlighted(text, (at, at + 2))
    assert "<script>" not in out and "&#60;script&#62;" in out
    assert '<mark class="cite">61</mark>' in out and "$" not in out
    window = highlighted("x" * 1000 + "61" + "y" * 1000, (1000, 1002), window=50)
    assert window.startswith("…") and window.endswith("…") and len(window) < 200


def test_plain_leaves_no_markup_character_and_no_blank_line():
    text = "![x](http://h/p.png) **b** :warning: :material/home: <b>h</b> [/] $5 a -> b\n\nnext"
    out = plain(text)
    assert not set(out) & set("![]()*:<>$/-") - set("<br>")  # every punctuation mark is a character reference
    assert "\n" not in out and out.count("<br>") == 2
    import html
    assert html.unescape(out.replace("<br>", "\n")) == text


def test_only_the_assistants_markers_become_links():
    quote = "Selon le rapport [1] du port, 73 pêcheurs ont signé."
    cited = [citation(number=1, quote=quote), citation(number=2, quote="75 pêcheurs")]
    out = answer_html(f"« {quote} » [1] et [2], pas [3].", cited, key="a0")
    assert out.count('class="cite-ref"') == 2
    assert 'href="#cite-a0-1"' in out and 'href="#cite-a0-2"' in out
    assert "rapport &#91;1&#93;" in out and "pas &#91;3&#93;" in out  # the document's [1], an unknown [3]: text


def test_a_neutralised_document_marker_is_shown_as_the_documents_characters_never_as_a_link():
    """The chain hands the answer text with a document's "[1]" as "［1］" (assistant.citations): the page shows
    the document's own "[1]" again, as text, even when a citation 1 exists."""
    from assistant.citations import neutralise_markers

    quote = "Selon le rapport [1] du port, 73 pêcheurs ont signé."
    out = answer_html(f"« {neutralise_markers(quote)} » [1]", [citation(number=1, quote=quote)], key="a0")
    assert out.count('class="cite-ref"') == 1
    assert "rapport &#91;1&#93; du port" in out and "\uff3b" not in out


def test_labels_keep_no_markup():
    label = label_text("Combien ![x](http://h/p.png) **b** :warning: de pays ?", limit=200)
    assert label == "Combien ! x http h p png b warning de pays ?"
    assert len(label_text("mot " * 50)) == 40


# --- eval reports -------------------------------------------------------------------------------------------
def write(folder, name, report, mtime):
    (folder / name).mkdir(parents=True)
    path = folder / name / "report.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    os.utime(path, (mtime, mtime))


def report(results, **summary):
    return {"summary": {"n": len(results), **summary}, "config": {}, "results": results}


def test_find_reports_newest_first_and_flipped_questions(tmp_path, monkeypatch):
    monkeypatch.delenv(ed.ENV_DIR, raising=False)
    old = report([{"id": "a", "correct": True}, {"id": "b", "correct": False}, {"id": "c", "correct": True}], accuracy=0.66)
    new = report([{"id": "a", "correct": False}, {"id": "b", "correct": True}, {"id": "c", "correct": True}], accuracy=0.66)
    write(tmp_path, "old", old, 1_700_000_000)
    write(tmp_path, "new", new, 1_700_000_100)
    (tmp_path / "junk").mkdir()
    refs = ed.find_reports(ed.report_dirs(str(tmp_path)))
    assert [r.name for r in refs if r.path.parent.parent == tmp_path] == ["new", "old"]
    flips = ed.flipped(ed.load_report(refs[0].path), ed.load_report(refs[1].path))
    assert dict(zip(flips["id"], flips["now"])) == {"a": "broken", "b": "fixed"}


def test_load_report_refuses_other_json(tmp_path):
    (tmp_path / "r.json").write_text('{"results": []}', encoding="utf-8")
    with pytest.raises(ValueError, match="not an evaluation report"):
        ed.load_report(tmp_path / "r.json")


def test_frames_for_charts():
    summary = {"accuracy": 0.5, "hit_at_k": 1.0, "mrr": None,
               "slices": {"lang": {"fr": {"n": 2, "accuracy": 0.5, "hit_at_k": 1.0, "citation_validity": None}}}}
    frame = ed.metrics_frame(summary, {"accuracy": 0.25})
    assert frame.loc["accuracy", "this run"] == 0.5 and frame.loc["accuracy", "baseline"] == 0.25
    assert "MRR" not in frame.index
    assert list(ed.slice_frame(summary, "lang").index) == ["fr (n=2)"]
