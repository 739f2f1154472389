"""Embeddings and the FAISS-backed vector index (depends on nothing else of memlane)."""
