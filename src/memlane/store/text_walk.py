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
from collections.abc import Callable, Iterable, Iterator

__all__ = ["Scan", "Seek", "TextOrderWalk"]

# (low end, low end included, high end or None) -> the first live text in the range
Seek = Callable[[str, bool, "str | None"], "str | None"]
Scan = Callable[[tuple[str, ...]], Iterable[tuple[str, ...]]]  # see NamespaceWalk.scan
_Range = tuple[str, bool, str | None]  # low end, low end included, high end (excluded)

_BELOW_DOT = re.compile(r"[\x00-\x2d]")
_AT_OR_BELOW_DOT = re.compile(r"[\x00-\x2e]")


class TextOrderWalk:
    """A ``NamespaceWalk`` (``namespaces.py``) from a store's ``seek`` over texts (and its
    ``scan``, the fallback for sparse matches)."""

    def __init__(self, seek: Seek, scan: Scan) -> None:
        self._seek = seek
        self.scan = scan

    def first(self, prefix: tuple[str, ...]) -> tuple[str, ...] | None:
        text = ".".join(prefix)
        return self._least([(text, True, _past(text))], text, subtree=False)

    def after(self, namespace: tuple[str, ...], *, subtree: bool) -> tuple[str, ...] | None:
        text = ".".join(namespace)
        return self._least(_ranges_after(text, subtree), text, subtree=subtree)

    def _least(
        self, ranges: Iterable[_Range], text: str, *, subtree: bool
    ) -> tuple[str, ...] | None:
        """The first namespace (tuple order) in the first range that holds one: ``ranges``
        come in tuple order, and each is ordered alike once its lead is settled."""
        for low, included, high in ranges:
            if high is not None and low >= high:
                continue  # empty
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


def _ranges_after(text: str, subtree: bool) -> Iterator[_Range]:
    """The text ranges holding every namespace after ``text`` in tuple order, in that order.

    First ``text``'s extensions (with ``subtree``, only those that go on with its last label,
    not through a dot); then, for each position from the last back, the texts that share
    what comes before it and hold a later character there. Above the dot, those ranges of
    neighbouring positions touch and make one; each dot or below-dot character breaks the
    run, as the dot counts lowest there: the below-dot characters come before the dot's
    range, the rest after it. Lazy: a step's first range usually holds the answer."""
    if subtree:
        yield (text, False, text + ".")
        low, included = text + "/", True
    else:
        low, included = text, False
    for below in reversed([found.start() for found in _AT_OR_BELOW_DOT.finditer(text)]):
        lead = text[:below]
        if text[below] == ".":
            yield (low, included, lead + "/")
            yield (lead, False, lead + ".")
        else:
            yield (low, included, lead + ".")
        low, included = lead + "/", True
    yield (low, included, None)


def _shared_length(one: str, other: str) -> int:
    """How many leading characters the two texts share (by halving: slices compare in C)."""
    if one.startswith(other):
        return len(other)
    low, high = 0, min(len(one), len(other))  # one[:low] == other[:low]; not at high + 1
    while low < high:
        middle = (low + high + 1) // 2
        if one[:middle] == other[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _past(text: str) -> str | None:
    """The least text after every text that starts with ``text`` (``None``: none is)."""
    while text:
        last = ord(text[-1])
        if last < 0x10FFFF:
            following = 0xE000 if last == 0xD7FF else last + 1  # no surrogates in UTF-8
            return text[:-1] + chr(following)
        text = text[:-1]
    return None
