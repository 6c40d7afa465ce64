"""The lexical side of hybrid retrieval: BM25 over accent-folded, stemmed, stop-word-free tokens, in
tantivy (a Rust search engine: incremental, BM25 with block-max WAND), next to a compact record of
every indexed document in SQLite.

Per knowledge base, in `<data_dir>/kbs/<kb>/lexical/`:
- `tantivy/`: one document per passage: its id, its document's name, its title and text as our own
  tokens (folded, stemmed, stop words removed) joined by spaces; replacing or deleting a document
  deletes its rows by name and adds the new ones, in one commit (time proportional to the document);
- `index.sqlite3` (WAL mode): `docs`, per document, its version (content hash, metadata + chunking
  hash), passage count and ids, status (`complete`, or `pending` while a write is under way);
  `passages`, the ids indexed; `meta`, the generation of the knowledge base this mirror reflects, the
  stemming language, the Chroma collection it was built from.

It is derived state: the truth is in Chroma (the passages, and a small collection of per-document
records, see `assistant.store`). Every write to Chroma bumps the knowledge base's generation; a mirror
whose generation, collection or language differs is brought up to date from Chroma by
`assistant.indexing.sync_lexical` — only the documents whose record changed are read again — and a
missing or broken one is rebuilt from Chroma. tantivy is committed before SQLite records what it
holds, so a crash in between only makes the next sync write those documents again.

Searching is safe from many threads while another thread or process writes: a search reads the
committed tantivy segments (reloaded when the recorded generation changes), SQLite reads see the last
committed transaction, one SQLite connection per thread; writers take tantivy's lock (other processes
wait for it) and SQLite's write lock in turn.
"""
from __future__ import annotations

import json
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from assistant.language import fold

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
SCHEMA_VERSION = "2"
_BUSY_MS = 60_000


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS, STOPWORDS_FRENCH

    extra = {"l", "d", "j", "m", "n", "s", "t", "c", "qu", "a", "y", "est", "ont", "sont", "ete"}
    return frozenset(fold(w) for w in (*STOPWORDS_EN_PLUS, *STOPWORDS_FRENCH, *extra))


@lru_cache(maxsize=4)
def _stemmer(language: str):
    import Stemmer

    return Stemmer.Stemmer(language)


def detect_language(texts: Sequence[str]) -> str:
    """'french' or 'english', from stop-word counts over a sample of the corpus."""
    from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_FRENCH

    fr, en = set(STOPWORDS_FRENCH) - set(STOPWORDS_EN), set(STOPWORDS_EN) - set(STOPWORDS_FRENCH)
    words = [w for t in texts[:500] for w in _WORD.findall(t.lower())[:200]]
    return "english" if sum(w in en for w in words) > sum(w in fr for w in words) else "french"


def tokenize(text: str, language: str = "french") -> list[str]:
    stem = _stemmer(language).stemWord
    stop = stopwords()
    return [stem(w) for w in _WORD.findall(fold(text)) if w not in stop and (len(w) > 1 or w.isdigit())]


def fingerprint(ids: Sequence[str]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for i in sorted(ids):
        digest.update(i.encode())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass
class DocRecord:
    """What the index knows of one document: the source of truth for "is this document up to date"."""

    source: str
    content_hash: str
    meta_hash: str
    n_chunks: int
    ids: list[str] = field(default_factory=list)
    status: str = "complete"  # or "pending": passages being written (ids = old ∪ new)
    title: str = ""
    size: int = 0
    indexed_at: str = ""

    @property
    def version(self) -> tuple[str, str]:
        return (self.content_hash, self.meta_hash)

    @property
    def complete(self) -> bool:
        return self.status == "complete" and len(self.ids) == self.n_chunks

    def to_meta(self) -> dict:
        return {"source": self.source, "content_hash": self.content_hash, "meta_hash": self.meta_hash,
                "n_chunks": int(self.n_chunks), "ids": json.dumps(self.ids), "status": self.status,
                "title": self.title or "", "size": int(self.size or 0), "indexed_at": self.indexed_at or ""}

    @classmethod
    def from_meta(cls, meta: dict) -> "DocRecord":
        return cls(source=meta["source"], content_hash=meta.get("content_hash", ""),
                   meta_hash=meta.get("meta_hash", ""), n_chunks=int(meta.get("n_chunks", 0)),
                   ids=list(json.loads(meta.get("ids") or "[]")), status=meta.get("status", "complete"),
                   title=meta.get("title", "") or "", size=int(meta.get("size") or 0),
                   indexed_at=meta.get("indexed_at", "") or "")

    def same_as(self, other: "DocRecord | None") -> bool:
        return other is not None and self.to_meta() == other.to_meta()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (source TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passages (rowid INTEGER PRIMARY KEY, pid TEXT NOT NULL UNIQUE, source TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS passages_source ON passages(source);
CREATE TABLE IF NOT EXISTS records (source TEXT PRIMARY KEY, meta TEXT NOT NULL);
"""
_WRITER_HEAP = 32_000_000  # bytes of tantivy's indexing buffer (its minimum is 15 MB)
_LOCK_WAIT_S = 120.0  # how long a writer waits for another process's writer


def _schema():
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("pid", stored=True, tokenizer_name="raw")
    builder.add_text_field("source", stored=False, tokenizer_name="raw")
    builder.add_text_field("body", stored=False, tokenizer_name="whitespace")
    return builder.build()


class LexicalIndex:
    """The SQLite mirror of one knowledge base: BM25 search, per-document records, generation."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.text_dir = self.path.parent / "tantivy"
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one tantivy writer per process
        self._reload_lock = threading.Lock()
        conn = self._conn()
        try:
            ok = self._meta(conn).get("schema") in (None, SCHEMA_VERSION)
            conn.executescript(_SCHEMA) if ok else None
        except sqlite3.DatabaseError:
            ok = False
        if not ok:  # a broken or foreign file: it is derived state, start again
            self.close()
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            shutil.rmtree(self.text_dir, ignore_errors=True)
            self._local = threading.local()
            self._conn().executescript(_SCHEMA)
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        self._text = self._open_text()
        self._loaded = None  # the generation the tantivy searcher was last reloaded for

    def _open_text(self):
        import tantivy

        self.text_dir.mkdir(parents=True, exist_ok=True)
        schema = _schema()
        self._schema = schema
        try:
            return tantivy.Index(schema, path=str(self.text_dir), reuse=True)
        except ValueError:  # another schema, or broken: derived state, start again (and resync)
            shutil.rmtree(self.text_dir, ignore_errors=True)
            self.text_dir.mkdir(parents=True)
            with self._write() as c:
                c.execute("DELETE FROM meta WHERE key = 'generation'")
            return tantivy.Index(schema, path=str(self.text_dir), reuse=True)

    def _writer(self):
        """tantivy's writer; another process holding it is waited for."""
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                return self._text.writer(heap_size=_WRITER_HEAP, num_threads=1)
            except ValueError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # --- connections: one per thread, WAL, waiting for a writer rather than failing
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=_BUSY_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()

    class _Tx:
        def __init__(self, conn):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, kind, *_):
            self.conn.execute("COMMIT" if kind is None else "ROLLBACK")

    def _write(self) -> "LexicalIndex._Tx":
        """One write transaction (taken at once: writers queue, readers go on)."""
        return self._Tx(self._conn())

    @staticmethod
    def _meta(conn) -> dict[str, str]:
        try:
            return dict(conn.execute("SELECT key, value FROM meta"))
        except sqlite3.OperationalError:
            return {}

    # --- what the mirror reflects
    @property
    def generation(self) -> str:
        return self._meta(self._conn()).get("generation", "")

    @property
    def language(self) -> str:
        return self._meta(self._conn()).get("language", "")

    @property
    def collection(self) -> str:
        return self._meta(self._conn()).get("collection", "")

    def documents(self) -> dict[str, DocRecord]:
        rows = self._conn().execute("SELECT record FROM docs").fetchall()
        return {r.source: r for r in (DocRecord.from_meta(json.loads(row[0])) for row in rows)}

    @property
    def ids(self) -> list[str]:
        return [row[0] for row in self._conn().execute("SELECT pid FROM passages")]

    def count(self) -> int:
        return self._conn().execute("SELECT count(*) FROM passages").fetchone()[0]

    # --- writing
    def reset(self, language: str, collection: str) -> None:
        """Empty the mirror (before a rebuild from Chroma); generation unset until the rebuild ends."""
        with self._write_lock:
            writer = self._writer()
            writer.delete_all_documents()
            writer.commit()
            writer.wait_merging_threads()
        with self._write() as c:
            for table in ("docs", "passages"):
                c.execute(f"DELETE FROM {table}")
            c.execute("DELETE FROM meta WHERE key IN ('generation', 'language', 'collection')")
            c.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                          [("language", language), ("collection", collection)])

    def apply(
        self,
        records: Iterable[DocRecord] = (),
        passages: dict[str, list[tuple[str, str]]] | None = None,
        removed: Iterable[str] = (),
        generation: str | None = None,
    ) -> None:
        """Write these records; replace the passages of the documents in `passages` (source ->
        [(passage id, title + text)]); remove the documents `removed` with their passages; record the
        generation now reflected. tantivy in one commit, then SQLite in one transaction."""
        import tantivy

        language = self.language or "french"
        passages, removed, records = passages or {}, list(removed), list(records)
        with self._write_lock:
            if passages or removed:
                writer = self._writer()
                for source in [*removed, *passages]:
                    writer.delete_documents_by_term("source", source)
                for source, items in passages.items():
                    for pid, body in items:
                        writer.delete_documents_by_term("pid", pid)  # an id another document held (a rename)
                        writer.add_document(tantivy.Document(pid=pid, source=source,
                                                             body=" ".join(tokenize(body, language))))
                writer.commit()
                writer.wait_merging_threads()  # releases the writer's lock for other processes
            with self._write() as c:
                for source in [*removed, *passages]:
                    c.execute("DELETE FROM passages WHERE source = ?", (source,))
                for source in removed:
                    c.execute("DELETE FROM docs WHERE source = ?", (source,))
                for source, items in passages.items():
                    c.executemany("INSERT OR REPLACE INTO passages (pid, source) VALUES (?, ?)",
                                  [(pid, source) for pid, _ in items])
                c.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?)",
                              [(r.source, json.dumps(r.to_meta(), ensure_ascii=False)) for r in records])
                if generation is not None:
                    c.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (generation,))

    # --- reading
    def _searcher(self):
        """tantivy's searcher, reloaded when the recorded generation changed (a write here or in another
        process: tantivy is committed before the generation is recorded)."""
        generation = self.generation
        if generation != self._loaded:
            with self._reload_lock:
                self._text.reload()
                self._loaded = generation
        return self._text.searcher()

    def search(self, query: str, n: int) -> list[tuple[str, float]]:
        """(passage id, BM25 score) of the best n passages with a positive score."""
        import tantivy

        terms = list(dict.fromkeys(tokenize(query, self.language or "french")))
        if not terms or n <= 0:
            return []
        q = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "body", t)) for t in terms])
        searcher = self._searcher()
        hits = searcher.search(q, int(n)).hits
        return [(searcher.doc(address)["pid"][0], float(score)) for score, address in hits if score > 0]


class LocalRecords:
    """The per-document records of an embedded knowledge base, in its SQLite file (the `records`
    table, beside the mirror's own `docs`): with the store on this disk, a local transaction is as true
    as a Chroma write, at a fraction of its cost. Same interface as `VectorStore`'s records (in Chroma,
    for server mode). Lost with the file, they are derived again from the passages' metadata."""

    def __init__(self, index: LexicalIndex):
        self.index = index

    def kb_record(self) -> dict | None:
        from assistant.store import KB_RECORD

        row = self.index._conn().execute("SELECT meta FROM records WHERE source = ?", (KB_RECORD,)).fetchone()
        return json.loads(row[0]) if row else None

    def state_records(self) -> list[dict]:
        return [json.loads(r[0]) for r in self.index._conn().execute("SELECT meta FROM records")]

    def put_state(self, records) -> None:
        with self.index._write() as c:
            c.executemany("INSERT OR REPLACE INTO records VALUES (?, ?)",
                          [(r["source"], json.dumps(r, ensure_ascii=False)) for r in records])

    def delete_state(self, sources) -> None:
        with self.index._write() as c:
            c.executemany("DELETE FROM records WHERE source = ?", [(s,) for s in sources])
