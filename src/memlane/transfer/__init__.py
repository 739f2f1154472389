"""Move memories into and out of memlane: JSONL backups and migration from LangGraph stores.

``sources`` reads them, ``export`` writes JSONL backups, ``migrate`` writes a memlane file.
"""

from memlane.transfer.export import export_jsonl
from memlane.transfer.migrate import MigrationReport, Progress, migrate
from memlane.transfer.records import (
    EXPORT_FORMAT,
    MissingDependencyError,
    Record,
    Skipped,
    decode_row,
)
from memlane.transfer.sources import (
    JsonlSource,
    LangGraphPostgresSource,
    LangGraphSqliteSource,
    MemlaneSqliteSource,
    Source,
    open_source,
)

__all__ = [
    "EXPORT_FORMAT",
    "JsonlSource",
    "LangGraphPostgresSource",
    "LangGraphSqliteSource",
    "MemlaneSqliteSource",
    "MigrationReport",
    "MissingDependencyError",
    "Progress",
    "Record",
    "Skipped",
    "Source",
    "decode_row",
    "export_jsonl",
    "migrate",
    "open_source",
]
