"""Pausing Python's cycle collector while a whole input file is read into memory.

The NER and classification converters need the whole file before the first record (the tag
scheme, the label set and the option list are file-wide), so they hold every parsed sentence or
row. CPython's collector runs each time 700 more containers exist than were freed, and every
full pass walks all of them again: on a 50,000-sentence file that was a quarter of the run time.
Parsing makes lists, dicts and small objects that cannot form reference cycles, so reference
counting alone frees them; the collector is paused for the read and restored after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cycle collector inside the block; leave it as it was found afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
