"""Two passes over an input whose conversion needs file-wide facts first, in bounded memory.

NER needs the tag scheme, the label set and the empty quota before the first record, and
classification the option list: facts about the whole file. Holding every parsed sentence for
that made memory grow with the input (4.0 GB at 2M CoNLL sentences). A `TwoPass` source is read
once to plan, then again to convert: a file is simply opened twice, so memory stays flat. Up to
`REPLAY_LIMIT` items are kept from the first pass and replayed instead, because parsing is most
of a small run's time (a CoNLL file of 50,000 sentences parses in about as long as it converts)
and a few tens of megabytes buy that second parse back. A one-shot iterator (a generator handed
to the Python API) cannot be read twice and is held whole, as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from ..errors import InputError

T = TypeVar("T")
P = TypeVar("P")

# Parsed items kept from the first pass for the second. 100,000 CoNLL sentences take about
# 150 MB; a larger input is read again rather than held.
REPLAY_LIMIT = 100_000

Source = Callable[[], Iterable[T]] | Iterable[T]


class TwoPass(Generic[T, P]):
    """`first()` yields every item (the planning pass), `second()` yields them all again.

    `source` is a function that opens the input afresh (what the CLI passes), a re-iterable
    collection (a list, a Dataset), or a one-shot iterator. Both passes yield `prepare(item)`
    (the item itself without `prepare`):
    work the plan needs that the conversion can reuse (classification's checked label) is done
    once for a kept input, and again only when the input is read again. A `prepare` with a
    `restart()` method (one that numbers items in input order) is restarted at the start of each read.
    """

    def __init__(
        self,
        source: Source[T],
        prepare: Callable[[T], P] | None = None,
        *,
        limit: int | None = None,
        shown: str | None = None,
    ) -> None:
        self._prepare = prepare
        self._shown = shown
        self._limit = REPLAY_LIMIT if limit is None else limit
        self._open: Callable[[], Iterable[T]] | None
        if callable(source):
            self._open = source
        elif iter(source) is not source:  # a collection: iterating it again gives it all again
            self._open = lambda: source
        else:
            self._open = None
            self._once = source
        self._held: list[P] | None = None
        self.count = 0

    def first(self) -> Iterator[P]:
        """Every prepared item, counted; keeps them for `second()` while they fit (always, if one-shot)."""
        held: list[P] | None = []
        prepare = self._prepare
        _restart(prepare)
        limit = self._limit if self._open is not None else sys.maxsize  # a one-shot input is kept whole
        items = self._open() if self._open is not None else self._once
        count = 0
        for count, item in enumerate(items, 1):
            ready = item if prepare is None else prepare(item)
            if held is not None:
                held.append(ready)
                if count > limit:
                    held = None  # too many to keep: the second pass reads the input again
            yield ready
        self.count = count
        self._held = held

    def second(self) -> Iterator[P]:
        """The same items again: replayed from memory, or read afresh (and checked to be the same
        number, so a file changed between the passes is an error rather than a silent mismatch)."""
        held, self._held = self._held, None
        if held is not None:
            yield from held
            return
        assert self._open is not None
        prepare = self._prepare
        _restart(prepare)
        count = 0
        for count, item in enumerate(self._open(), 1):  # noqa: B007 - read after the loop
            yield item if prepare is None else prepare(item)
        if count != self.count:
            raise InputError(
                f"the input changed while it was converted: {self.count} items on the first read, "
                f"{count} on the second",
                path=self._shown,
            )


def _restart(prepare: Any) -> None:
    restart = getattr(prepare, "restart", None)
    if restart is not None:
        restart()
