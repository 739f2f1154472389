"""Vectors between numpy and pgvector, in PostgreSQL's binary formats (no text parsing).

Writes send a batch's vectors as ONE ``vector[]`` parameter built by numpy (a binary array
of pgvector's binary values): 3.2-3.6x the rows/s of vectors as text, and lists of floats
as array parameters cost ~640 us a row in psycopg (benchmarks/README.md, "PostgreSQL write
statements"). Reads fetch ``embedding`` in binary and decode each value with numpy.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

__all__ = ["VectorArray", "decode_vectors", "encode_vectors", "register_vector_types"]

class VectorArray(bytes):
    """A ``vector[]`` parameter, already in PostgreSQL's binary array format."""


def encode_vectors(vectors: np.ndarray, vector_oid: int) -> VectorArray:
    """``vectors`` (n x d float32) as one binary ``vector[]``: the array header (1 dim, no
    nulls, element oid, n, lower bound 1), then per element its length and value."""
    n, dims = vectors.shape
    elements = np.empty(
        n, dtype=[("len", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("v", ">f4", (dims,))]
    )
    elements["len"] = 4 + 4 * dims
    elements["dim"] = dims
    elements["unused"] = 0
    elements["v"] = vectors
    return VectorArray(struct.pack(">iiIii", 1, 0, vector_oid, n, 1) + elements.tobytes())


def decode_vectors(values: list[bytes], dims: int) -> np.ndarray:
    """pgvector values in binary form (each int16 dims, int16 unused, dims big-endian
    float4) as one (n, dims) float32 array: one numpy pass, not a Python call each."""
    layout = np.dtype([("dim", ">i2"), ("unused", ">i2"), ("v", ">f4", (dims,))])
    if not values:
        return np.empty((0, dims), dtype=np.float32)
    rows = np.frombuffer(b"".join(values), dtype=layout)
    if len(rows) != len(values) or (rows["dim"] != dims).any():
        raise ValueError(f"stored vectors are not all {dims}-dimensional")
    return rows["v"].astype(np.float32)


async def register_vector_types(conn: psycopg.AsyncConnection[Any]) -> int:
    """Teach ``conn`` to send :class:`VectorArray` parameters; return ``vector``'s oid."""
    cursor = await conn.execute(
        "SELECT 'vector'::regtype::oid::int, 'vector[]'::regtype::oid::int"
    )
    row = await cursor.fetchone()
    assert row is not None
    vector_oid, array_oid = int(row[0]), int(row[1])

    class VectorArrayDumper(Dumper):
        oid = array_oid
        format = Format.BINARY

        def dump(self, obj: Any) -> bytes:
            return bytes(obj)

    conn.adapters.register_dumper(VectorArray, VectorArrayDumper)
    return vector_oid
