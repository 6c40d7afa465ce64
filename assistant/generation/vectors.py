"""Embeddings of source sentences for the extractive generator: memory, then the knowledge base's store.

A sentence's vector is looked up in this process's memory (the most recent `_MEMORY_ENTRIES`
sentences), then in the knowledge base's sentence store (`sentence_store.py`: filled at ingest, so a
question nobody asked before embeds nothing), and only then embedded; a sentence embedded here is
added to the store under its document, so the next process finds it too. Nothing is loaded into
memory beyond what answers asked for.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np

_MEMORY_ENTRIES = 20_000  # ~30 MB of 384-dimension vectors


class SentenceVectors:
    def __init__(self, embedder, store=None, memory: int = _MEMORY_ENTRIES):
        self.embedder = embedder
        self.store = store  # a SentenceStore, or None (memory only)
        self.dim = int(embedder.dim)
        self.memory = memory
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.embedded = 0  # sentences this object had to embed (for tests and benchmarks)

    def get(self, texts: Sequence[str], sources: Sequence[str] | None = None) -> np.ndarray:
        """(n, dim) normalised vectors; `sources[i]`: the document `texts[i]` comes from."""
        with self._lock:
            wanted = list(dict.fromkeys(t for t in texts if t not in self._rows))
            found = self.store.lookup(wanted) if (wanted and self.store is not None) else {}
            missing = [t for t in wanted if t not in found]
            if missing:
                vectors = np.asarray(self.embedder.embed_passages(missing), dtype=np.float32)
                self.embedded += len(missing)
                found.update(zip(missing, vectors))
                if self.store is not None and sources is not None:
                    source_of = dict(zip(texts, sources))
                    self.store.add([source_of[t] for t in missing], missing, vectors)
            for t in wanted:
                self._rows[t] = found[t]
            for t in texts:
                self._rows.move_to_end(t)
            out = np.vstack([self._rows[t] for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)
            while len(self._rows) > self.memory:
                self._rows.popitem(last=False)
            return out
