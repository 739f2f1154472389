"""Items written without vectors (before the store had an index, or by a process that
opened it with ``index=False``), embedded by the next open with the index before that
open returns, so that nothing written meanwhile is missing from a query."""

from __future__ import annotations

import logging

import numpy as np
import orjson
from psycopg import sql

from memlane.store.indexing import Indexer, decode_fields
from memlane.store.postgres.connections import Connection
from memlane.store.postgres.vectors import encode_vectors

__all__ = ["embed_pending"]

log = logging.getLogger(__name__)

_CHUNK = 256


async def embed_pending(
    conn: Connection, schema: str, indexer: Indexer, *, vector_oid: int, writer: str, now: float
) -> int:
    """Give vectors to every marked item, ``_CHUNK`` at a time; return how many. An item
    rewritten meanwhile keeps its mark (its own write has the right vectors, or a mark)."""
    name = sql.Identifier(schema)
    select = sql.SQL(
        "SELECT p.item_id, p.fields::text, i.value::text, i.updated_at"
        " FROM {schema}.pending_vectors p JOIN {schema}.items i ON i.id = p.item_id"
        " WHERE p.item_id > %s ORDER BY p.item_id LIMIT %s"
    ).format(schema=name)
    done, after = 0, -1
    while True:
        async with conn.transaction():
            cursor = await conn.execute(select, [after, _CHUNK])
            rows = await cursor.fetchall()
        if not rows:
            return done
        after = int(rows[-1][0])
        values = [orjson.loads(row[2]) for row in rows]
        paths = [decode_fields(row[1]) for row in rows]
        plan = indexer.plan_values(list(zip(paths, values, strict=True)))
        embedded = await indexer.embedder.aembed_texts(plan.texts) if plan.texts else None
        owners: list[int] = []
        numbers: list[int] = []
        blocks: list[np.ndarray] = []
        for row, outcome in zip(rows, plan.split(embedded, indexer.dims), strict=True):
            if outcome.vectors is None:
                log.warning("memlane: item %d written without an index cannot be embedded: %s",
                            row[0], outcome.error)
                continue
            owners.extend([int(row[0])] * len(outcome.vectors))
            numbers.extend(range(len(outcome.vectors)))
            blocks.append(outcome.vectors)
        stamps = {int(row[0]): int(row[3]) for row in rows}
        async with conn.transaction():
            cursor = await conn.execute(
                sql.SQL(
                    "SELECT id, updated_at FROM {schema}.items WHERE id = ANY(%b) FOR UPDATE"
                ).format(schema=name),
                [list(stamps)],
            )
            unchanged = {
                int(item_id) for item_id, stamp in await cursor.fetchall()
                if stamps.get(int(item_id)) == int(stamp)
            }
            ids = sorted(unchanged)
            await conn.execute(
                sql.SQL("DELETE FROM {}.vectors WHERE item_id = ANY(%b)").format(name), [ids]
            )
            keep = [n for n, owner in enumerate(owners) if owner in unchanged]
            if keep and blocks:
                stacked = np.concatenate(blocks).astype(np.float32, copy=False)[keep]
                await conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.vectors (item_id, n, embedding)"
                        " SELECT * FROM unnest(%b::bigint[], %b::smallint[], %b::vector[])"
                    ).format(name),
                    [[owners[n] for n in keep], [numbers[n] for n in keep],
                     encode_vectors(stacked, vector_oid)],
                )
            await conn.execute(
                sql.SQL("DELETE FROM {}.pending_vectors WHERE item_id = ANY(%b)").format(name),
                [ids],
            )
            if ids:
                await conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.changes (at, writer, item_ids) VALUES (%s, %s, %b)"
                    ).format(name),
                    [now, writer, ids],
                )
        done += len(ids)
