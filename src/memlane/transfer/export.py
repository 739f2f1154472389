"""JSONL backups: a versioned header line, then one item per line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import IO

import orjson

from memlane.transfer.records import EXPORT_FORMAT, Skipped
from memlane.transfer.sources import Source

__all__ = ["export_jsonl"]


def export_jsonl(source: Source, out: IO[bytes]) -> list[Skipped]:
    """Write every record of ``source`` to ``out`` as JSONL, after a header line.

    Returns the rows that could not be read. Vectors are not exported: an import re-embeds.
    """
    header = {
        "memlane_export": EXPORT_FORMAT,
        "source": source.description,
        "exported_at": datetime.now(UTC).isoformat(),
    }
    out.write(orjson.dumps(header) + b"\n")
    skipped: list[Skipped] = []
    for record in source.records():
        if isinstance(record, Skipped):
            skipped.append(record)
            continue
        out.write(orjson.dumps(record.to_json()) + b"\n")
    return skipped


# ---- migration ---------------------------------------------------------------------------
