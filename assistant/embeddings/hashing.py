"""A cheap deterministic embedder (hashed word and character n-grams).

Not semantic: it exists for benchmarks at 100k passages and for fast tests of the plumbing.
"""
from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

from assistant.embeddings import normalise

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    name = "hashing/ngrams-384"

    def __init__(self, dim: int = 384):
        self.dim = dim

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        words = _WORD.findall(text.lower())
        feats = words + [w[i : i + 4] for w in words for i in range(max(1, len(w) - 3))]
        for feat in feats:
            h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "little")
            vec[h % self.dim] += 1.0 if (h >> 63) else -1.0
        return vec

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(np.stack([self._vector(t) for t in texts]))

    def embed_query(self, text: str) -> np.ndarray:
        return normalise(self._vector(text))
