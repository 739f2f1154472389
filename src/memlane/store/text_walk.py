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

A seek takes a step's ranges at once and returns the text-first live namespace of the
first range holding one (SQLite: one statement); a store's seek skips namespaces whose
items have all expired (not yet swept) one by one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence

__all__ = ["Scan", "Seek", "TextOrderWalk", "TextRange"]

TextRange = tuple[str, "str | None"]  # [low, high): high None for no end
# ranges -> the text-first live namespace of the first range that holds one
Seek = Callable[[Sequence[TextRange]], "str | None"]
Scan = Callable[[tuple[str, ...]], Iterable[tuple[str, ...]]]  # see NamespaceWalk.scan

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
        return self._least([(text, _past(text))], text, subtree=False)

    def after(self, namespace: tuple[str, ...], *, subtree: bool) -> tuple[str, ...] | None:
        text = ".".join(namespace)
        return self._least(_ranges_after(text, subtree), text, subtree=subtree)

    def _least(
        self, ranges: Iterable[TextRange], text: str, *, subtree: bool
    ) -> tuple[str, ...] | None:
        """The first namespace (tuple order) in the first range that holds one: ``ranges``
        come in tuple order, and each is ordered alike once its lead is settled."""
        found = self._seek([(low, high) for low, high in ranges if high is None or low < high])
        if found is None:
            return None
        # Whatever follows the shared lead is still to settle; only a namespace's own
        # extensions (not skipped) may end the label right at ``text``'s end.
        shared = _shared_length(found, text)
        if shared < len(text) or subtree:
            shared += 1
        return tuple(self._settle(found, shared).split("."))

    def _settle(self, found: str, start: int) -> str:
        """The tuple-first namespace among those sharing ``found[:start]``, given ``found``
        is the text-first of them: wherever it holds a character below the dot, a namespace
        whose label ends there (a dot in that place) comes first in tuple order."""
        position = start
        while (below := _BELOW_DOT.search(found, position)) is not None:
            position = below.start()
            lead = found[:position]
            ending = self._seek([(lead + ".", lead + "/")])
            if ending is not None:
                found = ending
            position += 1
        return found


def _ranges_after(text: str, subtree: bool) -> Iterator[TextRange]:
    """The text ranges holding every namespace after ``text`` in tuple order, in that order.

    First ``text``'s extensions (with ``subtree``, only those that go on with its last label,
    not through a dot); then, for each position from the last back, the texts that share
    what comes before it and hold a later character there. Above the dot, those ranges of
    neighbouring positions touch and make one; each dot or below-dot character breaks the
    run, as the dot counts lowest there: the below-dot characters come before the dot's
    range, the rest after it. (``x + "\\x00"`` is the least text after ``x``.)"""
    if subtree:
        yield (text + "\x00", text + ".")
        low = text + "/"
    else:
        low = text + "\x00"
    for below in reversed([found.start() for found in _AT_OR_BELOW_DOT.finditer(text)]):
        lead = text[:below]
        if text[below] == ".":
            yield (low, lead + "/")
            yield (lead + "\x00", lead + ".")
        else:
            yield (low, lead + ".")
        low = lead + "/"
    yield (low, None)


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
