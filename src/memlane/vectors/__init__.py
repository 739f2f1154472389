"""Embeddings and the FAISS-backed vector index (depends on nothing else of memlane)."""

from memlane.vectors.coalesce import SearchCoalescer
from memlane.vectors.embeddings import (
    EmbeddedTexts,
    Embedder,
    EmbeddingError,
    EmbeddingTimeoutError,
    HashingEmbeddings,
)
from memlane.vectors.index import SearchRequest, VectorIndex

__all__ = [
    "EmbeddedTexts",
    "Embedder",
    "EmbeddingError",
    "EmbeddingTimeoutError",
    "HashingEmbeddings",
    "SearchCoalescer",
    "SearchRequest",
    "VectorIndex",
]
