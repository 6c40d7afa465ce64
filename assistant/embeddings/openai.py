"""OpenAI (or OpenAI-compatible) embeddings through `langchain-openai`.

`check_embedding_ctx_length=False` keeps tiktoken (which downloads its BPE files) out of the way.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from assistant.config import Settings
from assistant.embeddings import EmbeddingError, normalise


class OpenAIEmbedder:
    def __init__(self, settings: Settings):
        from langchain_openai import OpenAIEmbeddings

        model = settings.embedding_model or "text-embedding-3-small"
        self.name = f"openai/{model}"
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
        self._client = OpenAIEmbeddings(
            model=model,
            api_key=key,
            base_url=settings.openai_base_url,
            check_embedding_ctx_length=False,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
        )
        self.dim = len(self.embed_query("dimension probe"))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        try:
            return normalise(np.array(self._client.embed_documents(texts)))
        except Exception as exc:
            raise EmbeddingError(f"embedding endpoint failed: {type(exc).__name__}") from exc

    def embed_query(self, text: str) -> np.ndarray:
        try:
            return normalise(np.array(self._client.embed_query(text)))
        except Exception as exc:
            raise EmbeddingError(f"embedding endpoint failed: {type(exc).__name__}") from exc
