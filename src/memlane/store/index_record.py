"""The index a store was written with, and whether an open's index config may use it.

A store written with an index keeps vectors: opening it with other dims or fields would mix
meanings, another distance would score vectors kept for a different one (unit vectors for
``cosine``, raw ones otherwise), and opening it without an index would ignore ``query=``
and leave new items without vectors. ``disabled`` (``index=False``) opens it anyway,
deliberately. Shared by every durable store; ``where`` names the store in the errors.
"""

from __future__ import annotations

from typing import Any

from memlane.store.types import IndexConfig, IndexConfigError

__all__ = ["compare_index", "describe_index"]


def compare_index(
    recorded: dict[str, Any] | None,
    config: IndexConfig | None,
    *,
    disabled: bool,
    where: str,
) -> dict[str, Any] | None:
    """Raise ``IndexConfigError`` if the open would lose meaning; else the record to write
    (``{"dims", "fields", "distance"}``), or None when nothing is to be recorded."""
    if config is None:
        if recorded is not None and not disabled:
            raise IndexConfigError(
                f"{where} was written with an index ({describe_index(recorded)}): without one, "
                f"query= would be ignored and new items would get no vectors. Open it with "
                f"index=IndexConfig({describe_index(recorded)}, embed=<the same model>), or with "
                f"index=False to use it without semantic search (query= then raises, and "
                f"what is written is embedded at the next open with the index)"
            )
        return None
    wanted = {"dims": config.dims, "fields": list(config.fields), "distance": config.distance}
    if recorded is not None:
        if recorded["dims"] != config.dims:
            raise IndexConfigError(
                f"{where} holds {recorded['dims']}-dimensional vectors but the index config "
                f"says dims={config.dims}; open it with dims={recorded['dims']} or use a new file"
            )
        if recorded.get("fields", wanted["fields"]) != wanted["fields"]:
            raise IndexConfigError(
                f"{where} was indexed with fields={recorded['fields']!r}, not "
                f"{wanted['fields']!r}: its vectors would mix two meanings. Open it with "
                f"fields={recorded['fields']!r}, or export it and import into a new file "
                f"with the new fields (memlane export / memlane import)"
            )
        distance = recorded.get("distance", "cosine")  # files recorded before it: cosine
        if distance != config.distance:
            raise IndexConfigError(
                f"{where} was indexed with distance={distance!r}, not {config.distance!r}: its "
                f"vectors were kept for that distance. Open it with distance={distance!r}, or "
                f"export it and import into a new file (memlane export / memlane import)"
            )
        if recorded == wanted:
            return None
    return wanted


def describe_index(recorded: dict[str, Any]) -> str:
    text = f"dims={recorded['dims']}"
    if "fields" in recorded:
        text += f", fields={recorded['fields']!r}"
    if recorded.get("distance", "cosine") != "cosine":
        text += f", distance={recorded['distance']!r}"
    return text
