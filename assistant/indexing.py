"""Incremental indexing of a folder of documents into a knowledge base.

The state of the index is read from the store itself: every passage carries its document's content
hash and chunk count. A document is up to date when all its passages carry the file's current hash
and their number is the recorded count. So an unchanged corpus embeds nothing, and a run killed half
way (some passages written, old ones not yet removed) is detected and repaired by the next run.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from assistant import documents
from assistant.chunking import chunk_document
from assistant.config import Settings
from assistant.embeddings import get_embedder
from assistant.lexical import LexicalIndex, fingerprint
from assistant.models import Document, Passage
from assistant.store import StoreError, VectorStore, check_kb_name, drop_kb, passage_key

Progress = Callable[[int, int, str], None]  # (done, total, message)


@dataclass
class IngestReport:
    kb: str
    source_dir: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    chunks: int = 0  # passages in the knowledge base after the run
    embedded: int = 0  # passages embedded during the run
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


@dataclass
class DocumentInfo:
    source: str
    title: str
    chunks: int
    content_hash: str
    size: int
    indexed_at: str
    complete: bool


# --- knowledge bases and their folders ----------------------------------------------------------
def _kb_file(settings: Settings, kb: str) -> Path:
    return settings.kb_dir(kb) / "kb.json"


def source_dir_of(settings: Settings, kb: str | None = None) -> Path:
    """Where a knowledge base's documents live: recorded at ingest, else knowledge/ for `default`,
    else a `documents/` folder in the knowledge base's data directory (used by uploads)."""
    kb = check_kb_name(kb or settings.kb)
    try:
        return Path(json.loads(_kb_file(settings, kb).read_text())["source_dir"])
    except (OSError, ValueError, KeyError):
        pass
    return settings.knowledge_dir if kb == "default" else settings.kb_dir(kb) / "documents"


def _remember_source_dir(settings: Settings, kb: str, folder: Path) -> None:
    path = _kb_file(settings, kb)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"source_dir": str(folder.resolve())}))


def open_store(settings: Settings, kb: str | None = None, create: bool = True) -> VectorStore:
    embedder = get_embedder(settings)
    return VectorStore(settings, kb or settings.kb, embedder.name, embedder.dim, create=create)


def lexical_dir(settings: Settings, kb: str) -> Path:
    return settings.kb_dir(kb) / "lexical"


def index_version(settings: Settings, kb: str | None = None) -> str:
    """Changes whenever the knowledge base's passages change (every write rebuilds the lexical index),
    whoever made the change: this process, the CLI or another browser tab."""
    meta = lexical_dir(settings, kb or settings.kb) / "meta.json"
    try:
        stat = meta.stat()
    except OSError:
        return "none"
    return f"{stat.st_mtime_ns}-{stat.st_size}"


# --- state of the index -----------------------------------------------------------------------------
def _index_state(store: VectorStore) -> dict[str, dict]:
    """Per source: ids, hashes seen, recorded chunk count, title, size, indexed_at."""
    state: dict[str, dict] = defaultdict(lambda: {"ids": [], "hashes": set(), "n": 0})
    for pid, meta in store.all_metadata():
        entry = state[meta["source"]]
        entry["ids"].append(pid)
        entry["hashes"].add((meta.get("content_hash", ""), meta.get("meta_hash", "")))
        entry["n"] = int(meta.get("n_chunks", 0))
        for key in ("title", "size", "indexed_at"):
            entry[key] = meta.get(key)
    return dict(state)


def _complete(entry: dict, version: tuple[str, str]) -> bool:
    """All passages come from this version of the document (file hash, metadata + chunking hash) and none is missing."""
    return entry["hashes"] == {version} and len(entry["ids"]) == entry["n"]


def _meta_hash(meta: dict | None, settings: Settings) -> str:
    """Everything besides the file's bytes that shapes its passages: its metadata (title…) and the
    chunking settings. A change of either re-indexes the document on the next ingest."""
    shape = {"metadata": meta or {}, "chunking": [settings.chunk_chars, settings.chunk_overlap_sentences]}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def _scan(folder: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """(path, hash) of the files to index, de-duplicated by content, and the files skipped."""
    keep, skipped, seen = [], [], {}
    for path in documents.iter_files(folder):
        name = path.relative_to(folder).as_posix()
        if path.suffix.lower() not in documents.SUPPORTED_SUFFIXES:
            skipped.append((name, f"unsupported type {path.suffix or '(none)'}"))
            continue
        try:
            digest = documents.file_hash(path)
        except OSError as exc:
            skipped.append((name, f"unreadable: {exc.strerror or exc}"))
            continue
        if digest in seen:
            skipped.append((name, f"same content as {seen[digest]} (indexed once)"))
            continue
        seen[digest] = name
        keep.append((path, digest))
    for path in documents.set_aside_files(folder):
        skipped.append((path.relative_to(folder).as_posix(), "README/licence-like name, not indexed (rename it to index it)"))
    return keep, skipped


# --- ingest -----------------------------------------------------------------------------------------
def ingest(
    settings: Settings,
    source_dir: Path | None = None,
    kb: str | None = None,
    progress: Progress | None = None,
    rebuild: bool = False,
) -> IngestReport:
    """Bring the knowledge base in line with the folder: add, replace and remove documents."""
    t0 = time.perf_counter()
    kb = check_kb_name(kb or settings.kb)
    folder = Path(source_dir) if source_dir else source_dir_of(settings, kb)
    if not folder.is_dir():
        raise StoreError(f"document folder {folder} does not exist")
    report = IngestReport(kb=kb, source_dir=str(folder))
    if rebuild:
        drop_kb(settings, kb)
        shutil.rmtree(lexical_dir(settings, kb), ignore_errors=True)
    store = open_store(settings, kb)
    _remember_source_dir(settings, kb, folder)
    embedder = get_embedder(settings)
    max_bytes = int(settings.max_document_mb * 1024 * 1024)

    files, report.skipped = _scan(folder)
    state = _index_state(store)
    metadata = documents.load_metadata(folder)
    todo: list[Document] = []
    for path, digest in files:
        name = path.relative_to(folder).as_posix()
        entry = state.get(name)
        if entry and _complete(entry, (digest, _meta_hash(metadata.get(name), settings))):
            report.unchanged.append(name)
            continue
        try:
            doc = documents.load(path, root=folder, metadata=metadata.get(name), max_bytes=max_bytes)
        except documents.UnsupportedDocument as exc:
            report.skipped.append((name, exc.reason))
            continue
        (report.updated if entry else report.added).append(name)
        todo.append(doc)

    batch: list[tuple[Passage, dict]] = []
    total = len(todo)
    done_docs = 0
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for doc in todo:
        passages = chunk_document(doc, settings.chunk_chars, settings.chunk_overlap_sentences)
        extra = {
            "n_chunks": len(passages),
            "size": doc.size,
            "indexed_at": stamp,
            "meta_hash": _meta_hash(metadata.get(doc.source), settings),
            **_doc_meta(doc),
        }
        batch.extend((p, extra) for p in passages)
        while len(batch) >= settings.embedding_batch:
            report.embedded += _flush(store, embedder, batch[: settings.embedding_batch])
            batch = batch[settings.embedding_batch :]
        done_docs += 1
        if progress:
            progress(done_docs, total, doc.source)
        new_ids = {passage_key(p) for p in passages}
        old = state.get(doc.source)
        if old:  # replaced document: its stale passages go once the new ones are written
            old["stale"] = [i for i in old["ids"] if i not in new_ids]
    report.embedded += _flush(store, embedder, batch)

    present = {p.relative_to(folder).as_posix() for p, _ in files}
    for name, entry in state.items():
        if name not in present or any(n == name for n, _ in report.skipped):
            store.delete_ids(entry["ids"])
            report.removed.append(name)
        elif entry.get("stale"):
            store.delete_ids(entry["stale"])

    wrote = report.embedded or report.removed or any(e.get("stale") for e in state.values())
    # nothing written: the ids read above are the collection's, no need to read them again
    current_ids = None if wrote else [pid for e in state.values() for pid in e["ids"]]
    rebuild_lexical(settings, kb, store, ids=current_ids)
    report.chunks = store.count()
    report.seconds = time.perf_counter() - t0
    return report


def _doc_meta(doc: Document) -> dict:
    return {k: str(v) for k, v in doc.metadata.items() if k in ("publisher", "date", "language", "url") and v}


def _flush(store: VectorStore, embedder, batch: list[tuple[Passage, dict]]) -> int:
    if not batch:
        return 0
    vectors = embedder.embed_passages([p.text for p, _ in batch])
    by_extra: dict[int, list[int]] = defaultdict(list)
    for i, (_, extra) in enumerate(batch):
        by_extra[id(extra)].append(i)
    for rows in by_extra.values():
        store.upsert([batch[i][0] for i in rows], vectors[rows], batch[rows[0]][1])
    return len(batch)


def rebuild_lexical(
    settings: Settings,
    kb: str,
    store: VectorStore | None = None,
    force: bool = False,
    ids: list[str] | None = None,
) -> LexicalIndex:
    """Rebuild the BM25 index from the store when it no longer matches (or is missing).

    Whether it matches is decided on the passage ids alone (`ids` when the caller has just read them,
    else an ids-only read); texts are read only to rebuild."""
    folder = lexical_dir(settings, kb)
    current = LexicalIndex.load(folder)
    store = store or open_store(settings, kb, create=False)
    if current is not None and not force:
        if current.fingerprint == fingerprint(ids if ids is not None else store.ids()):
            return current
    rows = store.all_passages()
    index = LexicalIndex.build([r[0] for r in rows], [f"{r[2].get('title', '')}\n{r[1]}" for r in rows])
    index.save(folder)
    return index


# --- knowledge-base administration --------------------------------------------------------------------
def list_documents(settings: Settings, kb: str | None = None) -> list[DocumentInfo]:
    store = open_store(settings, kb, create=False)
    out = []
    for source, entry in sorted(_index_state(store).items()):
        version = next(iter(entry["hashes"])) if len(entry["hashes"]) == 1 else ("(inconsistent)", "")
        digest = version[0]
        out.append(
            DocumentInfo(
                source=source,
                title=entry.get("title") or source,
                chunks=len(entry["ids"]),
                content_hash=digest,
                size=int(entry.get("size") or 0),
                indexed_at=entry.get("indexed_at") or "",
                complete=_complete(entry, version),
            )
        )
    return out


def delete_document(settings: Settings, source: str, kb: str | None = None, remove_file: bool = True) -> bool:
    """Remove a document's passages from the index at once (and its file from the folder)."""
    kb = kb or settings.kb
    store = open_store(settings, kb, create=False)
    entry = _index_state(store).get(source)
    if entry:
        store.delete_ids(entry["ids"])
        rebuild_lexical(settings, kb, store)
    if remove_file:
        folder = source_dir_of(settings, kb).resolve()
        path = (folder / source).resolve()
        if path.is_file() and folder in path.parents:
            path.unlink()
    return entry is not None


def delete_kb(settings: Settings, kb: str) -> bool:
    """Drop a knowledge base's collection and state (documents outside the data dir are left alone)."""
    existed = drop_kb(settings, kb)
    if settings.kb_dir(kb).exists():
        shutil.rmtree(settings.kb_dir(kb))
        existed = True
    return existed


def kb_content_hash(settings: Settings, kb: str | None = None) -> str:
    """One hash of the knowledge base's documents (names + content hashes), for eval reports."""
    docs = list_documents(settings, kb)
    return fingerprint([f"{d.source}:{d.content_hash}" for d in docs])[:16]
