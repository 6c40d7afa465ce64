"""A sentence-transformers model from a local folder (no hub download: HF_HUB_OFFLINE is forced)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from assistant.embeddings import EmbeddingError, normalise


class SentenceTransformersEmbedder:
    def __init__(self, model_path: str | None):
        if not model_path or not Path(model_path).exists():
            raise EmbeddingError(
                "ASSISTANT_EMBEDDINGS=sentence-transformers needs ASSISTANT_EMBEDDING_MODEL set to a local model folder"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError("pip install sentence-transformers to use this provider") from exc
        self._model = SentenceTransformer(model_path, device="cpu")
        self.name = f"sentence-transformers/{Path(model_path).name}"
        self.dim = int(self._model.get_sentence_embedding_dimension())

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return normalise(self._model.encode(list(texts), convert_to_numpy=True))

    def embed_query(self, text: str) -> np.ndarray:
        return normalise(self._model.encode([text], convert_to_numpy=True)[0])
