"""Ingest never reads outside the folder, never lets one document hold the machine, and says sizes in one unit.

Real files and symbolic links on disk, a real embedded Chroma (hashing embedder: fast, deterministic),
and the real `assistant ingest` process where the report is what the user reads.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from assistant import documents
from assistant.catalog import list_documents
from assistant.indexing import ingest
from assistant.retrieval import open_retriever

from conftest import KNOWLEDGE

SECRET = "Le mot de passe du coffre Quetzalcoatlus est 8812-ZEBRE.\n"
SHIPPED = {p.name for p in KNOWLEDGE.glob("*.txt")}

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32",
                                    reason="symbolic links need a POSIX file system")


@pytest.fixture
def settings(make_settings):
    return make_settings(embeddings="hashing")


@pytest.fixture
def docs(tmp_path):
    """A folder with the seed articles, beside private files that must never be read."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for path in KNOWLEDGE.glob("*.txt"):
        shutil.copy(path, folder / path.name)
    return folder


def _trap(tmp_path, docs):
    """Every kind of link out of (or round in) the folder; returns the names the report must refuse."""
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET, encoding="utf-8")
    (outside / "nested").mkdir()
    (outside / "nested" / "deep.md").write_text(SECRET, encoding="utf-8")
    (outside / "meta.json").write_text(json.dumps({"title": "Quetzalcoatlus"}), encoding="utf-8")
    os.symlink(outside / "secret.txt", docs / "passwd.txt")  # absolute link to a file outside
    os.symlink("../private/secret.txt", docs / "dotdot.txt")  # relative `..` link
    os.symlink(outside, docs / "linked-folder")  # a folder outside
    (docs / "sub").mkdir()
    os.symlink("../../private/nested", docs / "sub" / "up")  # `..` from a subfolder
    os.symlink("loop.txt", docs / "loop.txt")  # a link to itself
    os.symlink("ping.txt", docs / "pong.txt")  # a cycle of two
    os.symlink("pong.txt", docs / "ping.txt")
    os.symlink("missing.txt", docs / "dangling.txt")
    os.symlink("sommet-ia-paris-declaration.txt", docs / "alias.txt")  # inside: not followed either
    os.symlink(outside / "meta.json", docs / "sommet-ia-paris-declaration.txt.meta.json")  # metadata link
    return {"passwd.txt", "dotdot.txt", "linked-folder", "sub/up", "loop.txt", "ping.txt", "pong.txt",
            "dangling.txt", "alias.txt"}


@needs_symlinks
def test_symbolic_links_are_never_followed_and_are_reported(settings, docs, tmp_path):
    refused = _trap(tmp_path, docs)
    report = ingest(settings, docs, kb="t")
    reasons = dict(report.skipped)
    assert refused <= set(reasons), reasons
    assert {d.source for d in list_documents(settings, "t")} == SHIPPED
    for name in ("passwd.txt", "dotdot.txt"):
        assert reasons[name] == "symbolic link to a file outside the folder: not read"
    for name in ("linked-folder", "sub/up"):
        assert reasons[name] == "symbolic link to a folder outside the folder: not read"
    for name in ("loop.txt", "ping.txt", "pong.txt", "dangling.txt"):
        assert "broken or looping symbolic link" in reasons[name]
    assert "links are not followed" in reasons["alias.txt"] and "sommet-ia-paris-declaration.txt" in reasons["alias.txt"]
    # nothing of the private files reached the index: not its text, not the linked metadata's title
    retriever = open_retriever(settings, "t", k=5)
    for passage in retriever.search("mot de passe du coffre Quetzalcoatlus 8812-ZEBRE"):
        assert "Quetzalcoatlus" not in passage.text and "Quetzalcoatlus" not in passage.title
    assert all(d.title != "Quetzalcoatlus" for d in list_documents(settings, "t"))


@needs_symlinks
def test_a_file_replaced_by_a_link_leaves_the_index(settings, docs, tmp_path):
    ingest(settings, docs, kb="t")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text(SECRET, encoding="utf-8")
    (docs / "chine-rejette-critiques-vance.txt").unlink()
    os.symlink(outside, docs / "chine-rejette-critiques-vance.txt")
    report = ingest(settings, docs, kb="t")
    assert report.removed == ["chine-rejette-critiques-vance.txt"]
    assert dict(report.skipped)["chine-rejette-critiques-vance.txt"].startswith("symbolic link to a file outside")


@needs_symlinks
def test_load_refuses_links_and_paths_outside_the_root(docs, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text(SECRET, encoding="utf-8")
    os.symlink(outside, docs / "link.txt")
    with pytest.raises(documents.UnsupportedDocument, match="symbolic link"):
        documents.load(docs / "link.txt", root=docs)
    with pytest.raises(documents.UnsupportedDocument, match="outside the folder"):
        documents.load(docs / ".." / "secret.txt", root=docs)
    (docs / "sub").mkdir()
    os.symlink(tmp_path, docs / "sub" / "up")  # a linked folder in the middle of the path
    with pytest.raises(documents.UnsupportedDocument, match="outside the folder"):
        documents.load(docs / "sub" / "up" / "secret.txt", root=docs)
    assert documents.iter_files(docs) == [docs / name for name in sorted(SHIPPED)]


@needs_symlinks
def test_linked_metadata_files_are_not_read(docs, tmp_path):
    outside = tmp_path / "meta.json"
    outside.write_text(json.dumps({"sommet-ia-paris-declaration.txt": {"title": "Quetzalcoatlus"}}), encoding="utf-8")
    os.symlink(outside, docs / documents.MANIFEST_NAME)
    assert documents.load_metadata(docs) == {}


def run_cli(*args, data, env=None):
    full = {**os.environ, "ASSISTANT_DATA_DIR": str(data), "ASSISTANT_EMBEDDINGS": "hashing", **(env or {})}
    exe = shutil.which("assistant", path=os.path.dirname(sys.executable))
    cmd = [exe] if exe else [sys.executable, "-m", "assistant.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=full, timeout=300)


@needs_symlinks
def test_cli_ingest_reports_links_and_answers_nothing_from_them(docs, tmp_path):
    _trap(tmp_path, docs)
    data = tmp_path / "data"
    done = run_cli("ingest", str(docs), "--kb", "t", data=data)
    assert done.returncode == 0, done.stderr
    assert "skipped passwd.txt: symbolic link to a file outside the folder: not read" in done.stdout
    assert "skipped linked-folder: symbolic link to a folder outside the folder: not read" in done.stdout
    assert "Quetzalcoatlus" not in done.stdout + done.stderr
    found = run_cli("search", "coffre Quetzalcoatlus 8812-ZEBRE", "--kb", "t", "--json", data=data)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert {h["source"] for h in hits} <= SHIPPED and not any("Quetzalcoatlus" in h["text"] for h in hits)


# --- the passage budget ------------------------------------------------------------------------------------
def _one_line(n_chars: int) -> str:
    """A single line without a sentence end: the shape of the file that held the machine for an hour."""
    words = "donnée " * (n_chars // 7 + 1)
    return words[:n_chars]


def test_oversized_document_is_skipped_before_anything_is_embedded(make_settings, docs):
    settings = make_settings(embeddings="hashing", max_document_passages=20)
    (docs / "huge.txt").write_text(_one_line(40_000), encoding="utf-8")  # ~50 passages of 800 characters
    report = ingest(settings, docs, kb="t")
    reason = dict(report.skipped)["huge.txt"]
    assert reason.startswith("too many passages (") and "> 20, the max_document_passages limit" in reason
    assert "nothing embedded" in reason
    assert "huge.txt" not in report.added
    assert {d.source for d in list_documents(settings, "t")} == SHIPPED
    assert report.embedded == report.chunks == sum(d.chunks for d in list_documents(settings, "t"))


def test_document_grown_over_the_budget_leaves_the_index(make_settings, docs):
    settings = make_settings(embeddings="hashing", max_document_passages=20)
    (docs / "grows.txt").write_text("Une phrase courte sur le fromage de Brie.\n", encoding="utf-8")
    assert "grows.txt" in ingest(settings, docs, kb="t").added
    (docs / "grows.txt").write_text(_one_line(40_000), encoding="utf-8")
    report = ingest(settings, docs, kb="t")
    assert report.removed == ["grows.txt"] and report.embedded == 0
    assert "too many passages" in dict(report.skipped)["grows.txt"]


def test_default_budget_is_far_above_the_seed_corpus(settings, tmp_path):
    report = ingest(settings, KNOWLEDGE, kb="seed")
    largest = max(d.chunks for d in list_documents(settings, "seed"))
    assert not report.skipped and settings.max_document_passages >= 100 * largest


def test_cli_reports_the_pathological_single_line_file(docs, tmp_path):
    (docs / "one-line.txt").write_text(_one_line(5_000_000), encoding="utf-8")  # the 5 MB file of the issue
    done = run_cli("ingest", str(docs), "--kb", "t", "--json", data=tmp_path / "data")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    skipped = dict(map(tuple, report["skipped"]))
    assert skipped["one-line.txt"].startswith("too many passages (")
    assert "> 2,000, the max_document_passages limit" in skipped["one-line.txt"]
    assert report["embedded"] == report["chunks"] < 50  # the two seed articles only
    small = run_cli("ingest", str(docs), "--kb", "t", data=tmp_path / "data",
                    env={"ASSISTANT_MAX_DOCUMENT_PASSAGES": "3"})
    assert "skipped sommet-ia-paris-declaration.txt: too many passages (" not in small.stdout  # unchanged: kept
    assert "skipped one-line.txt: too many passages (" in small.stdout and "> 3, the max_document_passages" in small.stdout


# --- one unit for sizes: MB = 10^6 bytes --------------------------------------------------------------------
def test_document_size_limit_is_in_megabytes_and_says_so(make_settings, docs):
    settings = make_settings(embeddings="hashing", max_document_mb=1)
    (docs / "big.txt").write_text("Une phrase sur le fromage de Brie.\n" * 29_400, encoding="utf-8")  # 1.029 MB
    size = (docs / "big.txt").stat().st_size
    assert 1_000_000 < size < 1024 * 1024
    report = ingest(settings, docs, kb="t")
    assert dict(report.skipped)["big.txt"] == f"too large ({documents.megabytes(size)} > 1 MB limit)"
    assert documents.megabytes(size) == "1.03 MB"


def test_megabytes_are_decimal_everywhere():
    assert documents.MB == 1_000_000
    assert documents.megabytes(50 * documents.MB) == "50 MB"
    assert documents.megabytes(52_428_800) == "52.43 MB"  # what "50 MB" used to mean: 50 MiB
    assert documents.megabytes(1500) == "0.0015 MB"
    with pytest.raises(documents.UnsupportedDocument) as info:
        documents.load(KNOWLEDGE / "sommet-ia-paris-declaration.txt", root=KNOWLEDGE, max_bytes=1000)
    assert info.value.reason.endswith(" MB > 0.001 MB limit)")
