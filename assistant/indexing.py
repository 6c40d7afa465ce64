"""Incremental indexing of a folder of documents into a knowledge base.

The state of the index is a compact record per document (version hashes, passage count and ids,
pending/complete) kept in Chroma beside the passages and mirrored, with the lexical index, in a local
SQLite file (`assistant.lexical`). A document is up to date when its record is complete and carries
the file's current hash and the current metadata + chunking hash. So an unchanged corpus reads no
passage and embeds nothing; adding, replacing or deleting a document costs that document (its
passages, its records, its rows of the lexical index); and a run killed half way (some passages
written, old ones not yet removed) leaves a pending record that the next run repairs.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from assistant import documents
from assistant.chunking import chunk_document
from assistant.config import Settings
from assistant.embeddings import get_embedder
from assistant.folders import (
    DOCUMENT_FOLDERS, ReadOnlyDocument, delete_refusal, document_file, kb_folders, remember_source_dir,
)
from assistant.kb_lock import kb_write_lock
from assistant.lexical import DocRecord, LexicalIndex, LocalRecords, detect_language
from assistant.models import Document, Passage
from assistant.store import KB_RECORD, StoreError, VectorStore, check_kb_name, drop_kb, passage_key

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
    folders: list[str] = field(default_factory=list)  # every folder indexed: source_dir, then the uploads folder
    chunks: int = 0  # passages in the knowledge base after the run
    embedded: int = 0  # passages embedded during the run
    seconds: float = 0.0
    sentences_embedded: int = 0  # sentences embedded for the extractive generator, after the passages
    sentence_seconds: float = 0.0  # of `seconds`: that step (the passages were searchable before it)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def open_store(settings: Settings, kb: str | None = None, create: bool = True) -> VectorStore:
    embedder = get_embedder(settings)
    return VectorStore(settings, kb or settings.kb, embedder.name, embedder.dim, create=create)


def lexical_dir(settings: Settings, kb: str) -> Path:
    return settings.kb_dir(kb) / "lexical"


def lexical_path(settings: Settings, kb: str) -> Path:
    return lexical_dir(settings, kb) / "index.sqlite3"


_OPEN: dict[str, LexicalIndex] = {}
_OPEN_LOCK = threading.Lock()


def open_lexical(settings: Settings, kb: str) -> LexicalIndex:
    """This process's handle on a knowledge base's SQLite mirror (one per file; connections per thread)."""
    path = lexical_path(settings, kb)
    with _OPEN_LOCK:
        index = _OPEN.get(str(path))
        if index is None or not path.exists():  # first use, or the folder was removed (a rebuild)
            if index is not None:
                index.close()
            folder = path.parent
            if folder.is_dir():  # the files of the former BM25 index (bm25s), if any
                for child in folder.iterdir():
                    if not (child.name.startswith(path.name) or child.name == "tantivy"):
                        shutil.rmtree(child) if child.is_dir() else child.unlink(missing_ok=True)
            index = _OPEN[str(path)] = LexicalIndex(path)
        return index


def index_version(settings: Settings, kb: str | None = None) -> str:
    """Changes whenever the knowledge base's passages change (every write bumps its generation),
    whoever made the change: this process, the CLI or another browser tab (in server mode: once this
    process's lexical index has caught up, see `lexical_sync_seconds`)."""
    path = lexical_path(settings, kb or settings.kb)
    if not path.is_file():
        return "none"
    try:
        conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return "none"
    return row[0] if row else "none"


# --- state of the index -----------------------------------------------------------------------------
# The truth is a record per document in Chroma (`VectorStore.state_records`), written before and after
# its passages: `pending` with the ids old ∪ new before, `complete` with the new ids after the stale ones
# are gone. A run killed in between leaves a pending record: the next run re-ingests that document and
# deletes every id the record lists that it does not write again. The knowledge base's record carries a
# generation bumped by every write; the SQLite mirror records the generation it reflects, so "is it up
# to date" costs one record read, and the mirror is brought up to date by reading only the documents
# whose record changed.
def _generation() -> str:
    return uuid.uuid4().hex


def _kb_meta(generation: str, language: str) -> dict:
    return {"source": KB_RECORD, "generation": generation, "language": language}


def _derive_records(store: VectorStore) -> list[DocRecord]:
    """Per-document records from the passages' own metadata (a knowledge base written before the
    records existed, or whose records were lost): reads every passage's metadata, once."""
    state: dict[str, dict] = defaultdict(lambda: {"ids": [], "versions": set(), "n": 0})
    for pid, meta in store.all_metadata():
        entry = state[meta["source"]]
        entry["ids"].append(pid)
        entry["versions"].add((meta.get("content_hash", ""), meta.get("meta_hash", "")))
        entry["n"] = int(meta.get("n_chunks", 0))
        for key in ("title", "size", "indexed_at"):
            entry[key] = meta.get(key)
    out = []
    for source, e in state.items():
        version = next(iter(e["versions"])) if len(e["versions"]) == 1 else ("", "")
        ok = len(e["versions"]) == 1 and len(e["ids"]) == e["n"]
        out.append(DocRecord(source, version[0], version[1], e["n"], sorted(e["ids"]),
                             "complete" if ok else "pending", e.get("title") or "", int(e.get("size") or 0),
                             e.get("indexed_at") or ""))
    return out


def records_of(settings: Settings, kb: str, store: VectorStore):
    """Where the per-document records live: beside the passages. In Chroma (a `kbdocs_<kb>` collection)
    when the store is a server that several processes share; in the knowledge base's SQLite file when
    the store is embedded on this disk (a Chroma write costs ~0.1 s whatever its size)."""
    return store if settings.chroma_host else LocalRecords(open_lexical(settings, kb))


def kb_record(store: VectorStore, records, language_texts: list[str] | None = None) -> dict:
    """The knowledge base's record; made when missing (from the passages' metadata if there are any)."""
    record = records.kb_record()
    if record is not None:
        return record
    if store.count():
        derived = _derive_records(store)
        sample = store.sample_texts(500) if language_texts is None else language_texts
        records.put_state([r.to_meta() for r in derived])
    else:
        sample = language_texts or []
    record = _kb_meta(_generation(), detect_language(sample))
    records.put_state([record])
    return record


def sync_lexical(settings: Settings, kb: str, store: VectorStore, force: bool = False) -> LexicalIndex:
    """Bring this process's lexical index (and document records) in line with Chroma: nothing to do
    when the generations match; else only the documents whose record changed are read again; all of
    them when the mirror is missing, was built from another collection or language, or `force`."""
    index = open_lexical(settings, kb)
    records = records_of(settings, kb, store)
    record = kb_record(store, records)
    collection, language = store.collection_id, record.get("language") or "french"
    if (not force and index.generation == record["generation"] and index.collection == collection
            and index.language == language):
        return index
    remote = {m["source"]: DocRecord.from_meta(m) for m in records.state_records() if m.get("source") != KB_RECORD}
    if index.collection != collection or index.language != language or not index.generation:
        index.reset(language, collection)
        local: dict[str, DocRecord] = {}
    else:
        local = index.documents()
    # `force` re-reads every document, each replaced in place by its name: searches running meanwhile
    # keep finding every document (a reset would leave them an empty index until the rebuild ends)
    changed = [r for s, r in sorted(remote.items()) if force or not r.same_as(local.get(s))]
    removed = [s for s in local if s not in remote]
    step = store.max_batch_size
    group: list[DocRecord] = []
    for i, rec in enumerate(changed + [None]):  # read and write in groups of about one Chroma batch
        if rec is not None:
            group.append(rec)
        if group and (rec is None or sum(len(r.ids) for r in group) >= step):
            rows = store.get([pid for r in group for pid in r.ids])
            passages = {r.source: [(pid, f"{rows[pid][1].get('title', '')}\n{rows[pid][0]}")
                                   for pid in r.ids if pid in rows] for r in group}
            index.apply(records=group, passages=passages)
            group = []
    index.apply(removed=removed, generation=record["generation"])
    if removed:  # removed by another process (another machine, in server mode): their sentence vectors go
        from assistant.generation.sentence_store import forget_documents

        forget_documents(settings, kb, store.model, store.dim, removed)
    return index


def rebuild_lexical(settings: Settings, kb: str, store: VectorStore | None = None, force: bool = False,
                    ids=None) -> LexicalIndex:
    """The lexical index brought up to date from the store (`force`: rebuilt from every passage)."""
    return sync_lexical(settings, kb, store or open_store(settings, kb, create=False), force=force)


def _meta_hash(meta: dict | None, settings: Settings) -> str:
    """Everything besides the file's bytes that shapes its passages: its metadata (title…) and the
    chunking settings. A change of either re-indexes the document on the next ingest."""
    shape = {"metadata": meta or {}, "chunking": [settings.chunk_chars, settings.chunk_overlap_sentences]}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _File:
    path: Path
    folder: Path
    name: str  # the document's source: its path relative to its folder
    digest: str


def _scan(folders: list[Path]) -> tuple[list[_File], list[tuple[str, str]]]:
    """The files to index, de-duplicated by name (first folder wins) and by content, and the files skipped."""
    keep: list[_File] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, str] = {}  # content hash -> name
    owner: dict[str, Path] = {}  # name -> folder
    for folder in folders:
        listing = documents.scan_folder(folder)
        skipped.extend(listing.refused)
        for path in listing.files:
            name = path.relative_to(folder).as_posix()
            if name in owner:
                skipped.append((name, f"the copy in {folder} is not indexed: a document of the same name is in "
                                      f"{owner[name]} (rename it)"))
                continue
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
            owner[name] = folder
            keep.append(_File(path, folder, name, digest))
        for path in listing.set_aside:
            skipped.append((path.relative_to(folder).as_posix(),
                            "README/licence-like name, not indexed (rename it to index it)"))
    return keep, skipped


def passage_budget_problem(n_passages: int, settings: Settings) -> str | None:
    """Why a document of `n_passages` passages is not indexed (over `max_document_passages`), or None."""
    limit = settings.max_document_passages
    if n_passages <= limit:
        return None
    return (f"too many passages ({n_passages:,} > {limit:,}, the max_document_passages limit): not indexed, "
            "nothing embedded; split the file or raise the limit")


# --- ingest -----------------------------------------------------------------------------------------
def ingest(
    settings: Settings,
    source_dir: Path | None = None,
    kb: str | None = None,
    progress: Progress | None = None,
    rebuild: bool = False,
    waiting: Callable[[str], None] | None = None,
) -> IngestReport:
    """Bring the knowledge base in line with the folder: add, replace and remove documents. One ingest
    of a knowledge base at a time: another one running (any process on this data dir) is waited for,
    `waiting` told so."""
    kb = check_kb_name(kb or settings.kb)
    with kb_write_lock(settings, kb, waiting):
        return _ingest(settings, source_dir, kb, progress, rebuild)


def _ingest(
    settings: Settings,
    source_dir: Path | None = None,
    kb: str | None = None,
    progress: Progress | None = None,
    rebuild: bool = False,
) -> IngestReport:
    t0 = time.perf_counter()
    kb = check_kb_name(kb or settings.kb)
    folders = kb_folders(settings, kb, source_dir)
    folder = folders[0]
    if not folder.is_dir():
        raise StoreError(f"document folder {folder} does not exist")
    folders = [folder] + [f for f in folders[1:] if f.is_dir()]  # an uploads folder appears with the first upload
    report = IngestReport(kb=kb, source_dir=str(folder), folders=[str(f) for f in folders])
    if rebuild:
        drop_kb(settings, kb)
        shutil.rmtree(lexical_dir(settings, kb), ignore_errors=True)
    store = open_store(settings, kb)
    remember_source_dir(settings, kb, folder)
    embedder = get_embedder(settings)
    max_bytes = int(settings.max_document_mb * documents.MB)

    files, report.skipped = _scan(folders)
    fresh = records_of(settings, kb, store).kb_record() is None and store.count() == 0  # new: nothing to read
    index = None if fresh else sync_lexical(settings, kb, store)
    state: dict[str, DocRecord] = {} if index is None else index.documents()
    metadata = {f: documents.load_metadata(f) for f in folders}  # per folder: names are per folder
    failed: set[str] = set()  # found but not indexable: their old passages leave the index
    todo: list[tuple[Document, list[Passage], dict | None, str]] = []
    for file in files:
        name, meta = file.name, metadata[file.folder].get(file.name)
        entry = state.get(name)
        if entry and entry.complete and entry.version == (file.digest, _meta_hash(meta, settings)):
            report.unchanged.append(name)
            continue
        try:
            doc = documents.load(file.path, root=file.folder, metadata=meta, max_bytes=max_bytes)
        except documents.UnsupportedDocument as exc:
            report.skipped.append((name, exc.reason))
            failed.add(name)
            continue
        # chunked before anything is embedded, so an oversized document costs nothing but this report line
        passages = chunk_document(doc, settings.chunk_chars, settings.chunk_overlap_sentences)
        problem = passage_budget_problem(len(passages), settings)
        if problem:
            report.skipped.append((name, problem))
            failed.add(name)
            continue
        (report.updated if entry else report.added).append(name)
        todo.append((doc, passages, meta, file.digest))

    if index is None:  # the first write: the knowledge base's record, its stemming language from these texts
        kb_record(store, records_of(settings, kb, store), [p.text for _, ps, _, _ in todo for p in ps][:500])
        index = sync_lexical(settings, kb, store)
    writer = _Writer(settings, store, index, embedder, state)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for done_docs, (doc, passages, meta, digest) in enumerate(todo, start=1):
        extra = {
            "n_chunks": len(passages),
            "size": doc.size,
            "indexed_at": stamp,
            "meta_hash": _meta_hash(meta, settings),
            **_doc_meta(doc),
        }
        record = DocRecord(doc.source, digest, extra["meta_hash"], len(passages),
                           [passage_key(p) for p in passages], "complete", doc.title, doc.size, stamp)
        writer.add(passages, extra, record)
        if progress:
            progress(done_docs, len(todo), doc.source)
    writer.flush()
    report.embedded = writer.embedded

    present = {f.name for f in files}
    gone = [name for name in state if name not in present or name in failed]
    writer.remove(gone)
    report.removed.extend(gone)
    report.chunks = store.count()
    # the passages are searchable; then the sentence vectors of what was written (or is missing)
    from assistant.generation.sentence_store import after_ingest

    by_name = {f.name: f for f in files}
    report.sentences_embedded, report.sentence_seconds = after_ingest(
        settings, kb, embedder, state, {d.source: (d.text, ps) for d, ps, _, _ in todo},
        lambda source: _reload(settings, by_name.get(source), metadata, max_bytes))
    report.seconds = time.perf_counter() - t0
    return report


def _reload(settings: Settings, file: _File | None, metadata: dict, max_bytes: int):
    """(text, passages) of an unchanged document, for a step that needs them again; None if unreadable."""
    if file is None:
        return None
    try:
        doc = documents.load(file.path, root=file.folder, metadata=metadata[file.folder].get(file.name),
                             max_bytes=max_bytes)
    except (documents.UnsupportedDocument, OSError):
        return None
    return doc.text, chunk_document(doc, settings.chunk_chars, settings.chunk_overlap_sentences)


def _doc_meta(doc: Document) -> dict:
    return {k: str(v) for k, v in doc.metadata.items() if k in ("publisher", "date", "language", "url") and v}


@dataclass
class _Pending:
    record: DocRecord  # the new version's record (complete)
    old: DocRecord | None
    passages: list[Passage]
    marked: bool = False  # its pending record is written
    done: bool = False  # all its passages are embedded (in the buffer or written)

    def pending(self) -> DocRecord:
        ids = list(dict.fromkeys([*(self.old.ids if self.old else []), *self.record.ids]))
        return replace(self.record, ids=ids, status="pending")


class _Writer:
    """Embeds in batches of `embedding_batch`, writes to Chroma in batches of `upsert_batch` (Chroma's
    maximum by default) or every `upsert_every_seconds`, and keeps the document records and the
    lexical index in step with every write."""

    def __init__(self, settings: Settings, store: VectorStore, index: LexicalIndex, embedder,
                 state: dict[str, DocRecord]):
        self.store, self.index, self.embedder, self.state = store, index, embedder, state
        self.settings = settings
        self.records = records_of(settings, store.kb, store)
        self.embed_batch = max(1, settings.embedding_batch)
        self.limit = settings.upsert_batch or store.max_batch_size
        self.every = settings.upsert_every_seconds
        self.buffer: list[tuple[Passage, dict, np.ndarray]] = []
        self.docs: list[_Pending] = []  # documents with passages in the buffer, or not finished
        self.embedded = 0
        self.last = time.perf_counter()

    def add(self, passages: list[Passage], extra: dict, record: DocRecord) -> None:
        doc = _Pending(record, self.state.get(record.source), passages)
        self.docs.append(doc)
        if not passages:
            doc.done = True
        for i in range(0, len(passages), self.embed_batch):
            part = passages[i : i + self.embed_batch]
            vectors = self.embedder.embed_passages([p.text for p in part])
            self.buffer.extend((p, extra, v) for p, v in zip(part, vectors))
            self.embedded += len(part)
            doc.done = i + self.embed_batch >= len(passages)
            if len(self.buffer) >= self.limit or time.perf_counter() - self.last >= self.every:
                self.flush()

    def _bump(self) -> dict:
        return _kb_meta(_generation(), self.index.language or "french")

    def flush(self) -> None:
        if not self.docs and not self.buffer:
            return
        # 1. the documents written for the first time are marked pending (ids: old ∪ new)
        marks = [d for d in self.docs if not d.marked]
        if marks:
            self.records.put_state([d.pending().to_meta() for d in marks] + [self._bump()])
            for d in marks:
                d.marked = True
        # 2. the passages
        if self.buffer:
            self.store.upsert([b[0] for b in self.buffer], np.asarray([b[2] for b in self.buffer]),
                              [b[1] for b in self.buffer])
            self.buffer = []
        # 3. documents finished: their stale passages go, their records become complete
        done = [d for d in self.docs if d.done]
        new_ids = {i for d in done for i in d.record.ids}
        stale = [i for d in done if d.old for i in d.old.ids if i not in new_ids]
        if stale:
            self.store.delete_ids(stale)
        kb = self._bump()
        self.records.put_state([d.record.to_meta() for d in done] + [kb])
        # 4. this process's lexical index, in one transaction (the texts are at hand: nothing is read back)
        unfinished = [d.pending() for d in self.docs if not d.done]
        self.index.apply(
            records=[d.record for d in done] + unfinished,
            passages={d.record.source: [(passage_key(p), f"{p.title}\n{p.text}") for p in d.passages] for d in done},
            generation=kb["generation"],
        )
        for d in done:
            self.state[d.record.source] = d.record
        self.docs = [d for d in self.docs if not d.done]
        self.last = time.perf_counter()

    def remove(self, sources: list[str]) -> None:
        """Documents out of the index: passages first, then their records (a crash between the two
        leaves records the next run removes again)."""
        if not sources:
            return
        self.store.delete_ids([i for s in sources for i in self.state[s].ids])
        self.records.delete_state(sources)
        kb = self._bump()
        self.records.put_state([kb])
        self.index.apply(removed=sources, generation=kb["generation"])
        for s in sources:
            self.state.pop(s, None)
        from assistant.generation.sentence_store import forget_documents

        forget_documents(self.settings, self.store.kb, self.store.model, self.store.dim, sources)


# --- removing documents and knowledge bases ------------------------------------------------------------
def delete_document(settings: Settings, source: str, kb: str | None = None, remove_file: bool = True) -> bool:
    """Remove a document's passages from the index at once (and its file from its folder). The file of a
    read-only folder (knowledge/ of `default`) is never removed: `ReadOnlyDocument`, nothing changed."""
    kb = check_kb_name(kb or settings.kb)
    refusal = delete_refusal(settings, source, kb) if remove_file else None
    if refusal:
        raise ReadOnlyDocument(refusal)
    with kb_write_lock(settings, kb):
        store = open_store(settings, kb, create=False)
        index = sync_lexical(settings, kb, store)
        state = index.documents()
        entry = state.get(source)
        if entry:
            _Writer(settings, store, index, None, state).remove([source])
        found = document_file(settings, kb, source) if remove_file else None
        if found:
            found[0].unlink()
    return entry is not None


def delete_kb(settings: Settings, kb: str, delete_uploads: bool = False) -> bool:
    """Drop a knowledge base's index: its collections and its derived state in the data dir. Documents
    are kept: the folders of the user's (knowledge/, a folder given to `ingest`) always, the uploads
    folder in the data dir unless `delete_uploads` (never followed if it is a symbolic link)."""
    kb = check_kb_name(kb)
    with kb_write_lock(settings, kb):
        existed = drop_kb(settings, kb)
        folder = settings.kb_dir(kb)
        if folder.is_dir():
            for child in folder.iterdir():
                if child.name in DOCUMENT_FOLDERS and not delete_uploads:
                    continue
                existed = True
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            if not any(folder.iterdir()):
                folder.rmdir()
    return existed
