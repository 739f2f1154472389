"""Live namespaces in sorted order, one seek at a time, over their texts (``list_namespaces``).

Both stores keep a namespace's text, its labels joined with ``"."`` (labels hold no dot),
in text order: SQLite in the ``UNIQUE (namespace, key)`` index, InMemoryStore in a sorted
set, whose string comparisons are a memcmp where tuples compare label by label. Text order
is not tuple order: characters below ``"."`` (``"-"``, ``" "``, ``"!"`` ...) sort before
the dot, yet a label that ends sorts before any that goes on (``("a", "b") < ("a-b",)``
but ``"a-b" < "a.b"``). Tuple order is text order with the dot counted lowest. So each
step seeks, in tuple order, the ranges of text that follow a namespace, and settles the
text it finds only where it holds a character below the dot (one more seek each: is there
a namespace whose label ends there?). Without such characters a step costs a seek or two.

A seek returns the text-first live namespace of a range; a store's seek skips namespaces
whose items have all expired (not yet swept) one by one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["Seek", "TextOrderWalk"]

# (low end, low end included, high end or None) -> the first live text in the range
Seek = Callable[[str, bool, "str | None"], "str | None"]
_Range = tuple[str, bool, str | None]  # low end, low end included, high end (excluded)

_BELOW_DOT = re.compile(r"[\x00-\x2d]")


class TextOrderWalk:
    """A ``NamespaceWalk`` (``namespaces.py``) from a store's ``seek`` over texts."""

    def __init__(self, seek: Seek) -> None:
        self._seek = seek

    def first(self, prefix: tuple[str, ...]) -> tuple[str, ...] | None:
        text = ".".join(prefix)
        return self._least([(text, True, _past(text))], text, subtree=False)

    def after(self, namespace: tuple[str, ...], *, subtree: bool) -> tuple[str, ...] | None:
        text = ".".join(namespace)
        return self._least(_ranges_after(text, subtree), text, subtree=subtree)

    def _least(self, ranges: list[_Range], text: str, *, subtree: bool) -> tuple[str, ...] | None:
        """The first namespace (tuple order) in the first range that holds one: ``ranges``
        come in tuple order, and each is ordered alike once its lead is settled."""
        for low, included, high in ranges:
            found = self._seek(low, included, high)
            if found is not None:
                # Whatever follows the shared lead is still to settle; only a namespace's
                # own extensions (not skipped) may end the label right at ``text``'s end.
                shared = _shared_length(found, text)
                if shared < len(text) or subtree:
                    shared += 1
                return tuple(self._settle(found, shared).split("."))
        return None

    def _settle(self, found: str, start: int) -> str:
        """The tuple-first namespace among those sharing ``found[:start]``, given ``found``
        is the text-first of them: wherever it holds a character below the dot, a namespace
        whose label ends there (a dot in that place) comes first in tuple order."""
        position = start
        while (below := _BELOW_DOT.search(found, position)) is not None:
            position = below.start()
            lead = found[:position]
            ending = self._seek(lead + ".", True, lead + "/")
            if ending is not None:
                found = ending
            position += 1
        return found


def _ranges_after(text: str, subtree: bool) -> list[_Range]:
    """The text ranges holding every namespace after ``text`` in tuple order, in that order.

    First ``text``'s extensions (with ``subtree``, only those that go on with its last label,
    not through a dot); then, for each position from the last back, the texts that share
    what comes before it and hold a later character there, in tuple order: the dot is the
    lowest, so below-dot characters come before the dot's range and the rest after it."""
    ranges: list[tuple[str | None, bool, str | None]]
    if subtree:
        ranges = [(text, False, text + "."), (text + "/", True, _past(text))]
    else:
        ranges = [(text, False, _past(text))]
    for position in range(len(text) - 1, -1, -1):
        lead, char = text[:position], text[position]
        if char == ".":
            ranges += [(lead, False, lead + "."), (lead + "/", True, _past(lead))]
        elif char < ".":
            ranges += [(_past(lead + char), True, lead + "."), (lead + "/", True, _past(lead))]
        else:
            ranges.append((_past(lead + char), True, _past(lead)))
    return _merged(ranges)


def _merged(ranges: list[tuple[str | None, bool, str | None]]) -> list[_Range]:
    """Drop empty ranges (``None`` low: after the last possible text) and join each to the
    next where one ends as the next begins."""
    joined: list[_Range] = []
    for low, included, high in ranges:
        if low is None or (high is not None and low >= high):
            continue
        if joined and included and joined[-1][2] == low:
            joined[-1] = (joined[-1][0], joined[-1][1], high)
        else:
            joined.append((low, included, high))
    return joined


def _shared_length(one: str, other: str) -> int:
    """How many leading characters the two texts share."""
    for index, (a, b) in enumerate(zip(one, other, strict=False)):
        if a != b:
            return index
    return min(len(one), len(other))


def _past(text: str) -> str | None:
    """The least text after every text that starts with ``text`` (``None``: none is)."""
    while text:
        last = ord(text[-1])
        if last < 0x10FFFF:
            following = 0xE000 if last == 0xD7FF else last + 1  # no surrogates in UTF-8
            return text[:-1] + chr(following)
        text = text[:-1]
    return None
