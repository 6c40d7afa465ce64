"""Uploads through the functions the Library page uses (ui/uploads.py, assistant.indexing) and the page itself.

An upload never writes through a symbolic link nor creates one, never lands in the shipped knowledge/
folder (the checkout stays clean), and the shipped documents cannot be deleted from the app.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from assistant.folders import ReadOnlyDocument, delete_refusal, read_only_dirs, upload_dir_of
from assistant.catalog import list_documents
from assistant.indexing import delete_document, delete_kb, ingest
from assistant.retrieval import open_retriever
from ui.uploads import save_upload

from conftest import KNOWLEDGE, ROOT

TEXT = "Le festival Zorglub de Tromsø a accueilli exactement 4321 visiteurs en 2031.\n"
SHIPPED = {p.name for p in KNOWLEDGE.glob("*.txt")}
needs_symlinks = pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need a POSIX file system")


def snapshot(folder):
    """Every entry under `folder` (links not followed) with its content hash: to prove nothing changed."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        out[rel] = "link" if path.is_symlink() else ("dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def git_status(folder):
    """`git status` of the folder in the checkout, or None when the tests do not run from a git checkout."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", str(folder)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


# --- symbolic links and names -----------------------------------------------------------------------------
@needs_symlinks
def test_an_upload_never_replaces_nor_writes_through_a_link(tmp_path):
    folder, outside = tmp_path / "lib", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "victim.txt").write_text("intact\n", encoding="utf-8")
    (folder / "real.txt").write_text("Un document déjà là, sur le fromage de Brie.\n", encoding="utf-8")
    os.symlink(outside / "victim.txt", folder / "note.txt")
    os.symlink("real.txt", folder / "alias.txt")
    before = snapshot(folder)
    for name in ("note.txt", "alias.txt"):
        result = save_upload(folder, name, TEXT.encode(), max_mb=1, replace=True)
        assert not result.ok and "symbolic link" in result.message, result
    assert (outside / "victim.txt").read_text(encoding="utf-8") == "intact\n"
    assert snapshot(folder) == before and (folder / "alias.txt").is_symlink()


@needs_symlinks
def test_a_planted_link_at_the_temporary_name_is_not_written_through(tmp_path):
    folder, victim = tmp_path / "lib", tmp_path / "victim.txt"
    folder.mkdir()
    for pid in {os.getpid(), os.getppid()}:  # the temporary name used to be predictable
        os.symlink(victim, folder / f".note.txt.{pid}.upload")
    result = save_upload(folder, "note.txt", TEXT.encode(), max_mb=1)
    assert result.ok and result.changed
    assert not victim.exists()
    assert (folder / "note.txt").read_text(encoding="utf-8") == TEXT and not (folder / "note.txt").is_symlink()


@pytest.mark.parametrize("raw", ["../x.txt", "/etc/x.txt", "..\\..\\x.txt", "sub/../../x.txt", "./x.txt"])
def test_names_with_path_parts_land_in_the_folder_only(tmp_path, raw):
    folder = tmp_path / "a" / "lib"
    result = save_upload(folder, raw, TEXT.encode(), max_mb=1)
    assert result.ok and result.path == folder / "x.txt"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["a", "a/lib", "a/lib/x.txt"]


def test_upload_over_the_passage_budget_is_refused_and_nothing_written(make_settings, tmp_path):
    settings = make_settings(embeddings="hashing", max_document_passages=3)
    folder = tmp_path / "lib"
    result = save_upload(folder, "long.txt", ("donnée " * 1000).encode(), max_mb=1, settings=settings)
    assert not result.ok and result.message.startswith("too many passages (")
    assert "> 3, the max_document_passages limit" in result.message
    assert not folder.exists() or not any(folder.iterdir())


def test_upload_limit_is_in_megabytes(tmp_path):
    data = ("Une phrase sur le fromage de Brie.\n" * 29_400).encode()  # 1,029,000 bytes: over 1 MB, under 1 MiB
    result = save_upload(tmp_path / "lib", "big.txt", data, max_mb=1)
    assert not result.ok and result.message == "too large (1.03 MB > 1 MB limit)"


# --- the default knowledge base: knowledge/ read-only, uploads in the data directory ---------------------------
def test_default_kb_uploads_live_in_the_data_dir_and_shipped_documents_stay(make_settings):
    settings = make_settings(embeddings="hashing")
    assert settings.knowledge_dir == KNOWLEDGE
    before, status = snapshot(KNOWLEDGE), git_status(KNOWLEDGE)
    ingest(settings)
    uploads, read_only = upload_dir_of(settings), read_only_dirs(settings)
    assert uploads.is_relative_to(settings.data_dir) and read_only == [KNOWLEDGE]

    saved = save_upload(uploads, "zorglub.txt", TEXT.encode(), settings.max_upload_mb, read_only=read_only,
                        settings=settings)
    assert saved.ok and saved.path == uploads / "zorglub.txt"
    clash = save_upload(uploads, "sommet-ia-paris-declaration.txt", TEXT.encode() + b"!", settings.max_upload_mb,
                        replace=True, read_only=read_only, settings=settings)
    assert not clash.ok and "ships with the application" in clash.message and "rename" in clash.message
    twin = save_upload(uploads, "copie.txt", (KNOWLEDGE / "sommet-ia-paris-declaration.txt").read_bytes(),
                       settings.max_upload_mb, read_only=read_only, settings=settings)
    assert not twin.ok and "same content as sommet-ia-paris-declaration.txt" in twin.message

    report = ingest(settings)
    assert report.added == ["zorglub.txt"] and report.folders == [str(KNOWLEDGE), str(uploads)]
    assert {d.source for d in list_documents(settings)} == SHIPPED | {"zorglub.txt"}
    retriever = open_retriever(settings, k=3)
    assert retriever.search("festival Zorglub de Tromsø visiteurs")[0].source == "zorglub.txt"
    assert retriever.document_text("zorglub.txt") == TEXT  # the source cards read uploads too
    assert ingest(settings).embedded == 0  # stable sources: nothing re-embedded

    assert delete_refusal(settings, "zorglub.txt") is None
    refusal = delete_refusal(settings, "sommet-ia-paris-declaration.txt")
    assert refusal and "read-only" in refusal
    with pytest.raises(ReadOnlyDocument):
        delete_document(settings, "sommet-ia-paris-declaration.txt")
    assert delete_document(settings, "zorglub.txt")
    assert not (uploads / "zorglub.txt").exists()
    assert {d.source for d in list_documents(settings)} == SHIPPED
    assert snapshot(KNOWLEDGE) == before and git_status(KNOWLEDGE) == status


def test_a_name_in_both_folders_is_the_shipped_documents(make_settings):
    settings = make_settings(embeddings="hashing")
    uploads = upload_dir_of(settings)
    uploads.mkdir(parents=True)
    (uploads / "sommet-ia-paris-declaration.txt").write_text(TEXT, encoding="utf-8")  # e.g. shipped after the upload
    report = ingest(settings)
    reason = dict(report.skipped)["sommet-ia-paris-declaration.txt"]
    assert f"the copy in {uploads} is not indexed" in reason and str(KNOWLEDGE) in reason
    assert sorted(d.source for d in list_documents(settings)) == sorted(SHIPPED)
    shipped = (KNOWLEDGE / "sommet-ia-paris-declaration.txt").read_text(encoding="utf-8")
    assert open_retriever(settings).document_text("sommet-ia-paris-declaration.txt") == shipped


def test_deleting_the_default_kb_keeps_the_uploaded_documents(make_settings):
    settings = make_settings(embeddings="hashing")
    uploads = upload_dir_of(settings)
    assert save_upload(uploads, "zorglub.txt", TEXT.encode(), 1, read_only=read_only_dirs(settings)).ok
    ingest(settings)
    assert delete_kb(settings, "default")
    assert (uploads / "zorglub.txt").read_text(encoding="utf-8") == TEXT  # the user's document, not index state
    assert not (settings.kb_dir("default") / "lexical").exists()
    assert ingest(settings).added == sorted(SHIPPED | {"zorglub.txt"})


# --- the Library page -------------------------------------------------------------------------------------------
@pytest.fixture
def default_kb_app(monkeypatch, tmp_path):
    """The app on the default knowledge base with a private data dir (hashing embedder: fast)."""
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASSISTANT_EMBEDDINGS", "hashing")
    monkeypatch.setenv("ASSISTANT_EVAL_REPORTS", str(tmp_path / "no-reports"))
    monkeypatch.delenv("ASSISTANT_KB", raising=False)
    return tmp_path / "data" / "kbs" / "default" / "uploads"


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader[0].set_value((name, data, "text/plain")).run()
    next(b for b in at.button if b.label == "Add and index").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_library_page_uploads_to_the_data_dir_and_keeps_shipped_documents(default_kb_app):
    uploads = default_kb_app
    before, status = snapshot(KNOWLEDGE), git_status(KNOWLEDGE)
    at = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=180)
    at.run()
    at.switch_page("pages/library.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "up to 20 MB each" in at.file_uploader[0].label and at.file_uploader[0].proto.max_upload_size_mb == 20

    _upload(at, "../festival-zorglub.txt", TEXT.encode())
    # alerts show file names with their Markdown punctuation backslash-escaped (ui/render.py alert_text)
    assert any("Added and indexed festival-zorglub.txt" in _shown(s.value) for s in at.success), \
        [s.value for s in at.success]
    assert (uploads / "festival-zorglub.txt").read_text(encoding="utf-8") == TEXT
    table = at.dataframe[0].value
    assert set(table["file"]) == SHIPPED | {"festival-zorglub.txt"}
    sizes = dict(zip(table["file"], table["size (KB)"]))  # KB = 10^3 bytes, like MB = 10^6 bytes
    assert all(sizes[n] == round((KNOWLEDGE / n).stat().st_size / 1000, 1) for n in SHIPPED), sizes
    _upload(at, "chine-rejette-critiques-vance.txt", b"Un autre texte.")
    assert any("ships with the application" in _shown(e.value) for e in at.error), [e.value for e in at.error]

    at.selectbox(key="delete_choice").set_value("chine-rejette-critiques-vance.txt").run()
    assert at.button(key="delete_button").disabled
    assert any("read-only" in c.value for c in at.caption)
    at.selectbox(key="delete_choice").set_value("festival-zorglub.txt").run()
    assert not at.button(key="delete_button").disabled
    at.button(key="delete_button").click().run()
    assert any("Deleted festival-zorglub.txt" in _shown(s.value) for s in at.success)
    assert not (uploads / "festival-zorglub.txt").exists()
    assert set(at.dataframe[0].value["file"]) == SHIPPED
    assert snapshot(KNOWLEDGE) == before and git_status(KNOWLEDGE) == status


def _shown(markdown: str) -> str:
    """The text a reader sees of an escaped alert: backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", markdown)
