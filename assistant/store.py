"""The vector store: Chroma, embedded on disk by default or a Chroma server when CHROMA_HOST is set.

One collection per knowledge base. Vectors are always computed by our embedder and handed to
Chroma (the collection has no embedding function, so Chroma never downloads its default model).
The collection records the embedding model's name and dimension; opening it with another model is
refused with a message that tells how to rebuild.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Iterable, Sequence

import numpy as np

from assistant.config import Settings
from assistant.models import Passage

log = logging.getLogger(__name__)
KB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,48}[a-z0-9]$|^[a-z0-9]$")
_PREFIX = "kb_"
_STATE_PREFIX = "kbdocs_"  # one small collection per knowledge base: a record per document (see below)
KB_RECORD = "__kb__"  # the knowledge base's own record there: generation, stemming language
_BATCH = 1000  # page size of reads; writes go in batches of Chroma's maximum (`max_batch_size`)


class StoreError(RuntimeError):
    """The store cannot be reached or a collection cannot be used; the message is for the user."""


class EmbeddingMismatch(StoreError):
    """The collection was built with another embedding model."""


class KnowledgeBaseMissing(StoreError):
    """No collection of that name (nothing indexed yet)."""


def check_kb_name(kb: str) -> str:
    if not KB_NAME.match(kb or ""):
        raise StoreError(
            f"invalid knowledge-base name {kb!r}: use 1-50 lower-case letters, digits, '-' or '_'"
        )
    return kb


def connect(settings: Settings):
    """A Chroma client: HTTP when CHROMA_HOST is set, else embedded on disk under the data dir."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    try:
        if settings.chroma_host:
            client = chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
            client.heartbeat()
            return client
        settings.chroma_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)
    except Exception as exc:  # connection refused, bad port, unwritable directory…
        raise StoreError(unavailable_message(settings, exc)) from exc


def unavailable_message(settings: Settings, exc: BaseException) -> str:
    """What is down and how to bring it up: the one message for an unreachable store (CLI, UI, API)."""
    if settings.chroma_host:
        host, port = settings.chroma_host, settings.chroma_port
        return (
            f"cannot open the Chroma server at {host}:{port} ({_short(exc)}). Start it with "
            f"`.venv/bin/chroma run --path <folder> --host {host} --port {port}`, "
            "or unset CHROMA_HOST to use the embedded Chroma."
        )
    return f"cannot open the embedded Chroma at {settings.chroma_dir}: {_short(exc)}"


def _unreachable(exc: BaseException) -> bool:
    """A lost connection to a Chroma server (it stopped after the client was made)."""
    try:
        import httpx

        transport = (httpx.TransportError,)
    except ImportError:  # pragma: no cover - httpx comes with chromadb
        transport = ()
    return isinstance(exc, (ConnectionError, *transport))


def _reachable(method):
    """Turn a lost connection to the Chroma server, in any call of a VectorStore method, into the StoreError
    that says how to start it (instead of an `Internal error (ConnectError)`)."""
    import functools

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            if self._settings.chroma_host and _unreachable(exc):
                raise StoreError(unavailable_message(self._settings, exc)) from exc
            raise

    return call


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


class VectorStore:
    """One knowledge base's collection: passages with their vectors and metadata."""

    def __init__(self, settings: Settings, kb: str, model: str | None, dim: int | None, create: bool = True):
        """`model`/`dim` None (with create=False): opened to read its records, whatever model built it."""
        self.kb = check_kb_name(kb)
        self.model, self.dim = model, dim
        self.search_ef = settings.hnsw_search_ef
        self._settings = settings
        self._client = connect(settings)
        name = _PREFIX + kb
        try:
            if create:
                self._col = self._client.get_or_create_collection(
                    name,
                    embedding_function=None,
                    metadata={
                        "hnsw:space": "cosine",
                        "hnsw:search_ef": self.search_ef,
                        "embedding_model": model,
                        "dim": dim,
                        "kb": kb,
                    },
                )
            else:
                self._col = self._client.get_collection(name, embedding_function=None)
        except Exception as exc:
            if not create:
                raise KnowledgeBaseMissing(f"knowledge base {kb!r} does not exist: run `assistant ingest --kb {kb}`") from exc
            raise StoreError(f"cannot open knowledge base {kb!r}: {_short(exc)}") from exc
        meta = self._col.metadata or {}
        if model is None:  # reading records only: no vector is compared, any model will do
            self._max_batch, self._state = None, None
            return
        if meta.get("embedding_model") != model or int(meta.get("dim", dim)) != dim:
            raise EmbeddingMismatch(
                f"knowledge base {kb!r} was built with embeddings {meta.get('embedding_model')!r} "
                f"(dim {meta.get('dim')}), but the configured model is {model!r} (dim {dim}). "
                f"Rebuild it with `assistant ingest --kb {kb} --rebuild`, or set ASSISTANT_EMBEDDINGS back."
            )
        self._apply_search_ef()
        self._max_batch: int | None = None
        self._state = None  # the per-document records' collection, opened on first use

    @property
    def collection_id(self) -> str:
        """Changes when the collection is dropped and made again (a rebuild)."""
        return str(self._col.id)

    @property
    def max_batch_size(self) -> int:
        """The most records Chroma takes in one call (5,461 for the embedded store)."""
        if self._max_batch is None:
            try:
                self._max_batch = max(1, int(self._client.get_max_batch_size()))
            except Exception:  # an older server without the call
                self._max_batch = _BATCH
        return self._max_batch

    def _apply_search_ef(self) -> None:
        """Bring an existing collection's HNSW ef_search in line with the settings (a collection made
        before the setting existed, or with another value). Chroma persists it in the collection's
        configuration; a process that already loaded the index keeps the old value."""
        if self.effective_search_ef == self.search_ef:
            return
        try:
            self._col.modify(configuration={"hnsw": {"ef_search": self.search_ef}})
        except Exception as exc:  # e.g. a read-only store: searching still works, with the old breadth
            log.warning("knowledge base %r keeps ef_search=%s (cannot set %s: %s)",
                        self.kb, self.effective_search_ef, self.search_ef, _short(exc))

    @property
    def effective_search_ef(self) -> int | None:
        """The ef_search the collection's configuration holds (the raw JSON: reading `.configuration`
        makes Chroma warn about the absent embedding function)."""
        return ((self._col.configuration_json or {}).get("hnsw") or {}).get("ef_search")

    # --- writing
    @_reachable
    def upsert(self, passages: Sequence[Passage], vectors: np.ndarray,
               extra: dict[str, Any] | Sequence[dict[str, Any]]) -> None:
        """Write passages with their vectors; `extra` is the metadata added to every passage, or one
        dict per passage. In batches of Chroma's maximum."""
        extras = [extra] * len(passages) if isinstance(extra, dict) else list(extra)
        step = self.max_batch_size
        for i in range(0, len(passages), step):
            part = passages[i : i + step]
            self._col.upsert(
                ids=[passage_key(p) for p in part],
                embeddings=np.asarray(vectors[i : i + step], dtype=np.float32),
                documents=[p.text for p in part],
                metadatas=[_metadata(p, e) for p, e in zip(part, extras[i : i + step])],
            )

    @_reachable
    def delete_ids(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        step = self.max_batch_size
        for i in range(0, len(ids), step):
            self._col.delete(ids=ids[i : i + step])

    # --- per-document records: the index state, without reading every passage
    # A second collection, `kbdocs_<kb>`, beside the passages (so in the same place: on disk, or on the
    # Chroma server every process shares): one record per document (version hashes, passage count and
    # ids, pending/complete) and the knowledge base's record (generation, stemming language). Records
    # carry a placeholder 1-dimension vector (Chroma requires one); they are read by id, never searched.
    def _state_col(self):
        if self._state is None:
            try:
                self._state = self._client.get_or_create_collection(
                    _STATE_PREFIX + self.kb, embedding_function=None, metadata={"kb": self.kb, "kind": "documents"})
            except Exception as exc:
                raise StoreError(f"cannot open the document records of {self.kb!r}: {_short(exc)}") from exc
        return self._state

    def state_records(self) -> list[dict]:
        """The metadata of every record (documents and the knowledge base's own), in pages."""
        col, out = self._state_col(), []
        total = col.count()
        for offset in range(0, total, _BATCH * 5):
            out.extend(col.get(include=["metadatas"], limit=_BATCH * 5, offset=offset)["metadatas"])
        return out

    def kb_record(self) -> dict | None:
        got = self._state_col().get(ids=[KB_RECORD], include=["metadatas"])
        return got["metadatas"][0] if got["ids"] else None

    def put_state(self, records: Sequence[dict]) -> None:
        """Upsert records (each a metadata dict with `source`; the knowledge base's with source KB_RECORD)."""
        col, step = self._state_col(), self.max_batch_size
        for i in range(0, len(records), step):
            part = records[i : i + step]
            col.upsert(ids=[r["source"] for r in part], embeddings=[[1.0]] * len(part),
                       documents=[""] * len(part), metadatas=list(part))

    def delete_state(self, sources: Iterable[str]) -> None:
        sources, col, step = list(sources), self._state_col(), self.max_batch_size
        for i in range(0, len(sources), step):
            col.delete(ids=sources[i : i + step])

    # --- reading
    @_reachable
    def count(self) -> int:
        return self._col.count()

    def _pages(self, include: list[str]):
        """Every passage, read in pages of 5,000: Chroma's `get` results, one page at a time."""
        for offset in range(0, self._col.count(), _BATCH * 5):
            yield self._col.get(include=include, limit=_BATCH * 5, offset=offset)

    @_reachable
    def all_metadata(self) -> list[tuple[str, dict]]:
        """(id, metadata) of every passage."""
        return [row for got in self._pages(["metadatas"]) for row in zip(got["ids"], got["metadatas"])]

    @_reachable
    def ids(self) -> list[str]:
        """The id of every passage (no text, no metadata: cheap even at 100k passages)."""
        return [pid for got in self._pages([]) for pid in got["ids"]]

    @_reachable
    def all_passages(self) -> list[tuple[str, str, dict]]:
        """(id, text, metadata) of every passage — for building the lexical index."""
        return [
            row
            for got in self._pages(["documents", "metadatas"])
            for row in zip(got["ids"], got["documents"], got["metadatas"])
        ]

    @_reachable
    def sample_texts(self, n: int) -> list[str]:
        """The texts of up to n passages (a sample: which ones is Chroma's choice)."""
        return list(self._col.get(include=["documents"], limit=max(1, n))["documents"]) if n > 0 else []

    @_reachable
    def get(self, ids: Sequence[str]) -> dict[str, tuple[str, dict]]:
        if not ids:
            return {}
        ids, out = list(ids), {}
        for i in range(0, len(ids), self.max_batch_size):
            got = self._col.get(ids=ids[i : i + self.max_batch_size], include=["documents", "metadatas"])
            out.update({k: (d, m) for k, d, m in zip(got["ids"], got["documents"], got["metadatas"])})
        return out

    @_reachable
    def query(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """Nearest passages as (id, cosine similarity), best first. Ids only: the caller fetches the
        rows it keeps with `get()` (asking Chroma for 30 texts and metadata costs ~10× the search).
        Chroma returns fewer results when the collection is smaller than `n`; no count() first: it
        scans the collection (~7 ms at 100k passages)."""
        if n <= 0:
            return []
        got = self._col.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=n,
            include=["distances"],
        )
        return [(i, 1.0 - float(dist)) for i, dist in zip(got["ids"][0], got["distances"][0])]


def passage_key(p: Passage) -> str:
    """The id a passage has in the store (chunk ids are unique within a document)."""
    return f"{p.source}::{p.chunk_id}"


def _metadata(p: Passage, extra: dict[str, Any]) -> dict[str, Any]:
    meta = {
        "source": p.source,
        "title": p.title,
        "chunk_id": p.chunk_id,
        "start": p.start,
        "end": p.end,
        "index": p.index,
        "content_hash": p.content_hash,
    }
    if p.page is not None:
        meta["page"] = p.page
    meta.update({k: v for k, v in extra.items() if v is not None})
    return meta


def list_kbs(settings: Settings) -> list[str]:
    client = connect(settings)
    names = [c if isinstance(c, str) else c.name for c in client.list_collections()]
    return sorted(n[len(_PREFIX) :] for n in names if n.startswith(_PREFIX))


def drop_kb(settings: Settings, kb: str) -> bool:
    client = connect(settings)
    try:
        client.delete_collection(_STATE_PREFIX + check_kb_name(kb))
    except Exception:
        pass
    try:
        client.delete_collection(_PREFIX + check_kb_name(kb))
        return True
    except Exception:
        return False
