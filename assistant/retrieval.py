"""Hybrid retrieval: dense (Chroma) and lexical (BM25) candidates fused by reciprocal rank fusion.

Exposed as a LangChain `BaseRetriever`; `search()` returns typed `ScoredPassage`s for our own code.
"""
from __future__ import annotations

import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import assistant.lazy  # noqa: F401 — before LangChain: defers what a question does not use (see lazy.py)
import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr

from assistant import documents
from assistant.config import Settings
from assistant.embeddings import get_embedder
from assistant.folders import document_file
from assistant.indexing import open_store, sync_lexical
from assistant.lexical import LexicalIndex
from assistant.models import ScoredPassage
from assistant.store import VectorStore


def rrf(rankings: list[list[str]], k: int = 60) -> dict[str, float]:
    """Reciprocal rank fusion of several rankings of ids (best first)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, pid in enumerate(ranking, start=1):
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (k + rank)
    return scores


class HybridRetriever(BaseRetriever):
    """Dense + BM25 over one knowledge base."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: Settings
    kb: str
    k: int = 5
    _store: VectorStore = PrivateAttr()
    _lexical: LexicalIndex | None = PrivateAttr(default=None)
    _lexical_checked: float = PrivateAttr(default=-1.0)
    _lexical_lock: Any = PrivateAttr(default_factory=threading.Lock)
    last_timings: dict[str, float] = {}

    def model_post_init(self, __context: Any) -> None:
        self._store = open_store(self.settings, self.kb, create=False)

    @property
    def store(self) -> VectorStore:
        return self._store

    # --- lexical index: SQLite (one connection per thread), updated in place by every ingest or delete
    # made in this data dir; checked against the knowledge base's generation in Chroma at most every
    # `lexical_sync_seconds`, which brings in what another process (another machine) wrote
    def _lexical_index(self) -> LexicalIndex:
        index = self._lexical
        due = time.monotonic() - self._lexical_checked >= self.settings.lexical_sync_seconds
        if index is not None and not due and index.path.exists():
            return index
        # one thread brings it up to date; the others search what is committed meanwhile
        if not self._lexical_lock.acquire(blocking=index is None):
            return index
        try:
            self._lexical = sync_lexical(self.settings, self.kb, self._store)
            self._lexical_checked = time.monotonic()
        finally:
            self._lexical_lock.release()
        return self._lexical

    def search(self, query: str, k: int | None = None, query_vector: np.ndarray | None = None) -> list[ScoredPassage]:
        k = k or self.k
        n = max(self.settings.candidates, k)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if query_vector is None:
            query_vector = get_embedder(self.settings).embed_query(query)
            timings["embed"] = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        dense = self._store.query(query_vector, n)
        lexical = self._lexical_index().search(query, n)
        fused = rrf([[pid for pid, _ in dense], [pid for pid, _ in lexical]], self.settings.rrf_k)
        top = sorted(fused, key=lambda pid: -fused[pid])[:k]
        rows = self._store.get(top)  # texts and metadata of the passages kept, only
        dense_rank = {pid: (r, s) for r, (pid, s) in enumerate(dense, start=1)}
        lex_rank = {pid: (r, s) for r, (pid, s) in enumerate(lexical, start=1)}
        out = []
        for rank, pid in enumerate(top, start=1):
            if pid not in rows:  # deleted between the two look-ups
                continue
            text, meta = rows[pid]
            out.append(
                ScoredPassage(
                    chunk_id=meta["chunk_id"],
                    source=meta["source"],
                    title=meta.get("title") or meta["source"],
                    text=text,
                    start=int(meta["start"]),
                    end=int(meta["end"]),
                    index=int(meta.get("index", 0)),
                    page=meta.get("page"),
                    content_hash=meta.get("content_hash", ""),
                    score=fused[pid],
                    dense_score=dense_rank.get(pid, (None, None))[1],
                    dense_rank=dense_rank.get(pid, (None, None))[0],
                    lexical_score=lex_rank.get(pid, (None, None))[1],
                    lexical_rank=lex_rank.get(pid, (None, None))[0],
                    rank=rank,
                )
            )
        timings["retrieve"] = (time.perf_counter() - t1) * 1000
        self.last_timings = timings
        return out

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        return [
            LCDocument(page_content=p.text, metadata=p.model_dump(exclude={"text"}), id=f"{p.source}::{p.chunk_id}")
            for p in self.search(query)
        ]

    def document_text(self, source: str) -> str | None:
        """The full text of a source document (offsets of passages and citations index into it)."""
        found = document_file(self.settings, self.kb, source)  # knowledge/ or the uploads folder
        return _document_text(str(found[0]), str(found[1])) if found else None


@lru_cache(maxsize=64)
def _cached_text(path: str, root: str, mtime: float) -> str | None:
    try:
        return documents.load(Path(path), root=Path(root)).text
    except (documents.UnsupportedDocument, OSError):
        return None


def _document_text(path: str, root: str) -> str | None:
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        return None
    return _cached_text(path, root, mtime)


def open_retriever(settings: Settings, kb: str | None = None, k: int | None = None) -> HybridRetriever:
    return HybridRetriever(settings=settings, kb=kb or settings.kb, k=k or settings.top_k)
