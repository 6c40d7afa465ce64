"""Embeddings of source sentences, cached in memory and on disk (sentences repeat across questions).

The disk cache lives in `<data_dir>/cache/`, one file pair per embedding model; it is only an
accelerator: a missing or broken cache is rebuilt silently.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

_MAX_ENTRIES = 50_000


class SentenceVectors:
    def __init__(self, embedder, cache_dir: Path | None = None):
        self.embedder = embedder
        self.dim = int(embedder.dim)
        self._rows: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._path = None
        if cache_dir is not None:
            tag = hashlib.sha1(embedder.name.encode()).hexdigest()[:12]
            self._path = Path(cache_dir) / f"sentences-{tag}"
            self._load()

    def _load(self) -> None:
        try:
            keys = json.loads(self._path.with_suffix(".json").read_text(encoding="utf-8"))
            matrix = np.load(self._path.with_suffix(".npy"))
            if matrix.shape == (len(keys), self.dim):
                self._rows = {k: matrix[i] for i, k in enumerate(keys)}
        except (OSError, ValueError):
            self._rows = {}

    def _save(self) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            keys = list(self._rows)[-_MAX_ENTRIES:]
            matrix = np.vstack([self._rows[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)
            tmp = f".tmp-{os.getpid()}-{threading.get_ident()}"
            npy, js = self._path.with_suffix(".npy"), self._path.with_suffix(".json")
            np.save(str(npy) + tmp + ".npy", matrix)
            Path(str(js) + tmp).write_text(json.dumps(keys, ensure_ascii=False), encoding="utf-8")
            os.replace(str(npy) + tmp + ".npy", npy)
            os.replace(str(js) + tmp, js)
        except OSError:
            pass  # a read-only data dir only costs speed

    def get(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) normalised vectors, computing only the sentences never seen before."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._rows))
            if missing:
                vectors = self.embedder.embed_passages(missing)
                for t, v in zip(missing, vectors):
                    self._rows[t] = np.asarray(v, dtype=np.float32)
                self._save()
            if not texts:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.vstack([self._rows[t] for t in texts])
