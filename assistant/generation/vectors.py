"""Embeddings of source sentences, cached in memory and on disk (sentences repeat across questions).

The disk cache lives in `<data_dir>/cache/`, one append-only file per embedding model,
`sentences-<tag>.bin`: records of (key length, the sentence in UTF-8, its float32 vector). A new
sentence costs one append, whatever the size of the cache (rewriting the whole cache after each new
sentence cost 3 / 24 / 99 ms at 1k / 10k / 50k entries). Each batch of records is one write under an
exclusive lock, so several processes (UI, API, CLI) appending to one cache never interleave a key with
another's vector. When the file holds more than twice `_MAX_ENTRIES` records it is compacted to the
newest `_MAX_ENTRIES`. The cache is only an accelerator: a missing or broken cache is read up to its
last whole record (a torn last record is dropped), or rebuilt silently.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

_MAX_ENTRIES = 50_000
_HEADER = struct.Struct("<I")


class SentenceVectors:
    def __init__(self, embedder, cache_dir: Path | None = None):
        self.embedder = embedder
        self.dim = int(embedder.dim)
        self._rows: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._on_disk = 0  # records in the file
        if cache_dir is not None:
            tag = hashlib.sha1(embedder.name.encode()).hexdigest()[:12]
            self._path = Path(cache_dir) / f"sentences-{tag}.bin"
            self._load()

    def _records(self, texts: Sequence[str], vectors: np.ndarray) -> bytes:
        out = bytearray()
        for t, v in zip(texts, vectors):
            key = t.encode("utf-8")
            out += _HEADER.pack(len(key)) + key + np.asarray(v, dtype="<f4").tobytes()
        return bytes(out)

    def _load(self) -> None:
        try:
            data = self._path.read_bytes()
        except OSError:
            return
        rows, pos, width = {}, 0, 4 * self.dim
        while pos + _HEADER.size <= len(data):
            (n,) = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + n + width
            if end > len(data):
                break  # a torn last record
            try:
                key = data[pos + _HEADER.size : pos + _HEADER.size + n].decode("utf-8")
            except UnicodeDecodeError:
                break
            rows[key] = np.frombuffer(data, dtype="<f4", count=self.dim, offset=pos + _HEADER.size + n)
            pos = end
        self._rows = rows
        self._on_disk = len(rows)
        if pos != len(data) or len(rows) > 2 * _MAX_ENTRIES:
            self._rewrite()

    def _rewrite(self) -> None:
        """Write the newest `_MAX_ENTRIES` records to a fresh file, then swap it in."""
        keys = list(self._rows)[-_MAX_ENTRIES:]
        self._rows = {k: self._rows[k] for k in keys}
        tmp = self._path.with_name(self._path.name + f".tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(self._records(keys, [self._rows[k] for k in keys]))
            os.replace(tmp, self._path)
            self._on_disk = len(keys)
        except OSError:
            pass  # a read-only data dir only costs speed

    def _append(self, texts: list[str], vectors: np.ndarray) -> None:
        if self._path is None:
            return
        if self._on_disk + len(texts) > 2 * _MAX_ENTRIES:
            self._rewrite()
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._path, "ab") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    f.write(self._records(texts, vectors))
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
            self._on_disk += len(texts)
        except OSError:
            pass

    def get(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) normalised vectors, computing only the sentences never seen before."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._rows))
            if missing:
                vectors = np.asarray(self.embedder.embed_passages(missing), dtype=np.float32)
                for t, v in zip(missing, vectors):
                    self._rows[t] = v
                self._append(missing, vectors)
            if not texts:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.vstack([self._rows[t] for t in texts])
