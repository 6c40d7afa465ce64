"""A knowledge base's sentence vectors: embedded at ingest, looked up by the extractive generator.

The extractive generator scores every candidate sentence of the passages it reads by embedding
similarity; embedding them at answer time cost ~40 ms a sentence with the default model (~1 s for a
question whose passages were never read before). Ingest therefore embeds, right after a document's
passages are written, exactly the sentences the generator will score (`extractive.passage_sentences`),
and stores them here; an answer then looks up its few tens of sentences instead of embedding them.

One SQLite file per knowledge base and embedding model, `<kb_dir>/sentences/<model tag>.sqlite3`
(removed with the knowledge base's folder). Rows are per document, keyed by a hash of the sentence's
text (the text itself is not stored); a document's rows are replaced when it is re-indexed and deleted
with it. A vector depends only on (model, text), so a row is never wrong: a missing, stale or broken
store only costs speed (the sentences it lacks are embedded at answer time and added to it). WAL mode
and a busy timeout let the UI, the API and the CLI share one file; every write is one transaction, so
a crash leaves each document's rows whole or absent. Only the rows one answer asks for are read.
"""
from __future__ import annotations

import hashlib
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from assistant.config import Settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (source TEXT PRIMARY KEY, version TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    source TEXT NOT NULL, key BLOB NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_by_key ON vectors (key);
"""
_LOOKUP_CHUNK = 500  # keys per SELECT (SQLite's bound-parameter limit is 32,766; small is plenty)


def sentence_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def store_path(settings: Settings, kb: str, model: str) -> Path:
    tag = hashlib.sha1(model.encode()).hexdigest()[:12]
    return settings.kb_dir(kb) / "sentences" / f"{tag}.sqlite3"


class SentenceStore:
    def __init__(self, path: Path, dim: int, timeout: float = 5.0):
        self.path, self.dim, self.timeout = Path(path), int(dim), timeout

    @classmethod
    def of(cls, settings: Settings, kb: str, embedder) -> "SentenceStore":
        return cls(store_path(settings, kb, embedder.name), embedder.dim)

    # --- connections: one per call (a deleted or replaced file is never held open between calls)
    def _open(self, create: bool) -> sqlite3.Connection | None:
        if not create and not self.path.is_file():
            return None
        if create:  # inside the knowledge base's folder, never re-creating a deleted one
            self.path.parent.mkdir(exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if create:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('dim', ?)", (str(self.dim),))
            row = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
            if row is None or int(row[0]) != self.dim:
                raise sqlite3.DatabaseError(f"{self.path}: vectors of another dimension")
        except BaseException:
            conn.close()
            raise
        return conn

    def _writable(self) -> sqlite3.Connection | None:
        """A connection for writing; a broken file is replaced by an empty store (it only held vectors)."""
        for attempt in (1, 2):
            try:
                return self._open(create=True)
            except sqlite3.Error:
                if attempt == 2:
                    return None
                self.remove()
            except OSError:
                return None
        return None

    def remove(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            try:
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            except OSError:
                pass

    # --- reading
    def lookup(self, texts: Iterable[str], conn: sqlite3.Connection | None = None) -> dict[str, np.ndarray]:
        """The stored vectors of those of `texts` the store has (any document's row will do)."""
        by_key = {sentence_key(t): t for t in texts}
        if not by_key:
            return {}
        found: dict[str, np.ndarray] = {}
        try:
            own = conn is None
            conn = self._open(create=False) if own else conn
            if conn is None:
                return {}
            try:
                keys = list(by_key)
                for i in range(0, len(keys), _LOOKUP_CHUNK):
                    part = keys[i : i + _LOOKUP_CHUNK]
                    rows = conn.execute(f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(part))})",
                                        part).fetchall()
                    for key, blob in rows:
                        if len(blob) == 4 * self.dim:
                            found[by_key[bytes(key)]] = np.frombuffer(blob, dtype="<f4")
            finally:
                if own:
                    conn.close()
        except (sqlite3.Error, OSError, ValueError):
            return found  # a broken store: the rest is embedded
        return found

    def versions(self) -> dict[str, str]:
        """The version of every document whose sentences were all stored by an ingest."""
        try:
            conn = self._open(create=False)
            if conn is None:
                return {}
            with closing(conn):
                return dict(conn.execute("SELECT source, version FROM docs").fetchall())
        except (sqlite3.Error, OSError, ValueError):
            return {}

    # --- writing (failures only cost speed: they are swallowed)
    def put_document(self, source: str, version: str, texts: Sequence[str], vectors: np.ndarray,
                     conn: sqlite3.Connection | None = None) -> bool:
        """A document's sentences, replacing every row it had, in one transaction."""
        own = conn is None
        conn = self._writable() if own else conn
        if conn is None:
            return False
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM vectors WHERE source = ?", (source,))
                conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", self._rows(source, texts, vectors))
                conn.execute("INSERT OR REPLACE INTO docs VALUES (?, ?)", (source, version))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return True
        except (sqlite3.Error, OSError):
            return False
        finally:
            if own:
                conn.close()

    def add(self, sources: Sequence[str], texts: Sequence[str], vectors: np.ndarray) -> None:
        """Sentences embedded at answer time, each under the document it came from."""
        if not texts:
            return
        try:
            conn = self._open(create=True)
            with closing(conn):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?, ?)",
                                 [(s, k, v) for s, (_, k, v) in zip(sources, self._rows("", texts, vectors))])
                conn.execute("COMMIT")
        except (sqlite3.Error, OSError, ValueError):
            pass

    def forget(self, sources: Iterable[str]) -> None:
        """Documents out of the knowledge base (or re-indexed without sentence vectors): their rows go."""
        sources = [(s,) for s in sources]
        if not sources or not self.path.is_file():
            return
        try:
            conn = self._open(create=False)
            if conn is None:
                return
            with closing(conn):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("DELETE FROM vectors WHERE source = ?", sources)
                conn.executemany("DELETE FROM docs WHERE source = ?", sources)
                conn.execute("COMMIT")
        except (sqlite3.Error, OSError, ValueError):
            pass

    def _rows(self, source: str, texts: Sequence[str], vectors: np.ndarray):
        vectors = np.asarray(vectors, dtype="<f4").reshape(len(texts), self.dim)
        return [(source, sentence_key(t), v.tobytes()) for t, v in zip(texts, vectors)]


# --- the ingest step ----------------------------------------------------------------------------------
def document_version(content_hash: str, meta_hash: str) -> str:
    from assistant.generation.extractive import SENTENCE_RULES

    return f"{content_hash}|{meta_hash}|{SENTENCE_RULES}"


def after_ingest(settings: Settings, kb: str, embedder, current: dict, written: dict, load) -> tuple[int, float]:
    """Bring the knowledge base's sentence vectors in line with its documents, once their passages are
    written (they are searchable before this runs). `current`: source -> DocRecord of every document now
    indexed; `written`: source -> (document text, passages) of the documents this ingest wrote; `load`:
    source -> (text, passages) or None, for a document indexed earlier whose sentence vectors are
    missing or stale (a crash, the setting turned on, an older version). Documents no longer indexed
    lose their rows. With `sentence_vectors_at_ingest` off, or an LLM answering (`resolved_generator` is
    not `extractive`), only that clean-up runs (and rows of the documents re-written go: they belonged to
    the old version); switching back to the extractive generator, the next ingest fills what is missing.
    Returns (sentences embedded, seconds)."""
    t0 = time.perf_counter()
    store = SentenceStore.of(settings, kb, embedder)
    stored = store.versions()
    gone = [s for s in stored if s not in current]
    if not settings.sentence_vectors_at_ingest or settings.resolved_generator != "extractive":
        # off, or an LLM writes the answers (it reads no sentence vector): only the clean-up
        store.forget(gone + [s for s in written if s in stored])
        return 0, time.perf_counter() - t0
    store.forget(gone)
    from assistant.generation.extractive import document_sentence_texts

    embedded = 0
    batch = max(1, settings.embedding_batch)
    todo = [(source, record) for source, record in sorted(current.items()) if record.complete and (
        source in written or stored.get(source) != document_version(record.content_hash, record.meta_hash))]
    conn = store._writable() if todo else None  # one connection for the whole step
    if conn is None:
        return 0, time.perf_counter() - t0  # nothing to do, or an unwritable store: answers embed what they need
    with closing(conn):
        for source, record in todo:
            found = written.get(source) or load(source)
            if found is None:
                continue
            text, passages = found
            texts = document_sentence_texts(text, passages)
            known = store.lookup(texts, conn)  # sentences shared with another document or the old version
            missing = [t for t in texts if t not in known]
            vectors = dict(known)
            for i in range(0, len(missing), batch):
                part = missing[i : i + batch]
                for t, v in zip(part, np.asarray(embedder.embed_passages(part), dtype=np.float32)):
                    vectors[t] = v
            embedded += len(missing)
            rows = np.asarray([vectors[t] for t in texts], dtype=np.float32).reshape(-1, store.dim)
            if not store.put_document(source, document_version(record.content_hash, record.meta_hash), texts, rows,
                                      conn):
                break  # an unwritable store: answers embed what they need
    return embedded, time.perf_counter() - t0


def forget_documents(settings: Settings, kb: str, embedder_name: str, dim: int, sources: Iterable[str]) -> None:
    SentenceStore(store_path(settings, kb, embedder_name), dim).forget(sources)
