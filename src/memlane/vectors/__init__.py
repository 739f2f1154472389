"""Embeddings and the FAISS-backed vector index (depends on nothing else of memlane)."""

from memlane.vectors.embeddings import EmbeddedTexts, Embedder, EmbeddingError, HashingEmbeddings
from memlane.vectors.index import VectorIndex

__all__ = ["EmbeddedTexts", "Embedder", "EmbeddingError", "HashingEmbeddings", "VectorIndex"]
