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
    folders: list[str] = field(default_factory=list)  # every folder indexed: source_dir, then the uploads folder
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


def upload_dir_of(settings: Settings, kb: str | None = None) -> Path:
    """Where the Library page writes uploads. For `default`, a folder in the data directory: the shipped
    knowledge/ folder is never written (the checkout stays clean); for the others, their documents folder."""
    kb = check_kb_name(kb or settings.kb)
    return settings.kb_dir(kb) / "uploads" if kb == "default" else source_dir_of(settings, kb)


def _same_folder(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def kb_folders(settings: Settings, kb: str | None = None, source_dir: Path | None = None) -> list[Path]:
    """The folders a knowledge base indexes, first one first: its documents folder (`source_dir` when
    given), then its uploads folder when that is another folder. A name found in both is the first's."""
    main = Path(source_dir) if source_dir else source_dir_of(settings, kb)
    uploads = upload_dir_of(settings, kb)
    return [main] if _same_folder(main, uploads) else [main, uploads]


def read_only_dirs(settings: Settings, kb: str | None = None) -> list[Path]:
    """Folders of a knowledge base whose files the app never writes nor deletes (knowledge/ for `default`)."""
    return kb_folders(settings, kb)[:-1]


def document_file(settings: Settings, kb: str | None, source: str) -> tuple[Path, Path] | None:
    """(path, folder) of a document's file, looked up as ingest does (first folder first), or None. Never a
    symbolic link nor a path outside the folder (`source` comes from the index: it is not trusted)."""
    for folder in kb_folders(settings, kb):
        path = folder / source
        if path.is_file() and not path.is_symlink() and documents.inside(path, folder):
            return path, folder
    return None


class ReadOnlyDocument(StoreError):
    """A document of a folder the app never modifies (the shipped knowledge/ of `default`)."""


def delete_refusal(settings: Settings, source: str, kb: str | None = None) -> str | None:
    """Why the app will not delete this document's file, or None when it may."""
    found = document_file(settings, kb, source)
    if found and any(_same_folder(found[1], ro) for ro in read_only_dirs(settings, kb)):
        return (f"{source} is shipped with the application in {found[1]}: it is read-only here "
                "(only uploaded documents can be deleted)")
    return None


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
) -> IngestReport:
    """Bring the knowledge base in line with the folder: add, replace and remove documents."""
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
    _remember_source_dir(settings, kb, folder)
    embedder = get_embedder(settings)
    max_bytes = int(settings.max_document_mb * documents.MB)

    files, report.skipped = _scan(folders)
    state = _index_state(store)
    metadata = {f: documents.load_metadata(f) for f in folders}  # per folder: names are per folder
    failed: set[str] = set()  # found but not indexable: their old passages leave the index
    todo: list[tuple[Document, list[Passage], dict | None]] = []
    for file in files:
        name, meta = file.name, metadata[file.folder].get(file.name)
        entry = state.get(name)
        if entry and _complete(entry, (file.digest, _meta_hash(meta, settings))):
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
        todo.append((doc, passages, meta))

    batch: list[tuple[Passage, dict]] = []
    total = len(todo)
    done_docs = 0
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for doc, passages, meta in todo:
        extra = {
            "n_chunks": len(passages),
            "size": doc.size,
            "indexed_at": stamp,
            "meta_hash": _meta_hash(meta, settings),
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

    present = {f.name for f in files}
    for name, entry in state.items():
        if name not in present or name in failed:
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
    """Remove a document's passages from the index at once (and its file from its folder). The file of a
    read-only folder (knowledge/ of `default`) is never removed: `ReadOnlyDocument`, nothing changed."""
    kb = check_kb_name(kb or settings.kb)
    refusal = delete_refusal(settings, source, kb) if remove_file else None
    if refusal:
        raise ReadOnlyDocument(refusal)
    store = open_store(settings, kb, create=False)
    entry = _index_state(store).get(source)
    if entry:
        store.delete_ids(entry["ids"])
        rebuild_lexical(settings, kb, store)
    found = document_file(settings, kb, source) if remove_file else None
    if found:
        found[0].unlink()
    return entry is not None


def delete_kb(settings: Settings, kb: str) -> bool:
    """Drop a knowledge base's collection and state (documents outside the data dir are left alone, and
    so are the documents uploaded to `default`: the next ingest of knowledge/ indexes them again)."""
    existed = drop_kb(settings, kb)
    folder = settings.kb_dir(kb)
    keep = upload_dir_of(settings, kb) if kb == "default" else None
    if folder.exists():
        existed = True
        for child in folder.iterdir():
            if keep is not None and child == keep:
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()
    return existed


def kb_content_hash(settings: Settings, kb: str | None = None) -> str:
    """One hash of the knowledge base's documents (names + content hashes), for eval reports."""
    docs = list_documents(settings, kb)
    return fingerprint([f"{d.source}:{d.content_hash}" for d in docs])[:16]
