"""Dataset operations between records and a training run: split, mix, stats, export.

They work on rows as the user's file holds them (every field kept, meta included), check each
row with the record readers so a bad row stops with its file and line, and write atomically.
"""

from .mixing import MixSource, mix_sources, parse_source
from .rows import RowSet, load_rows, write_rows
from .split import SplitResult, parse_ratios, split_rows

__all__ = [
    "MixSource",
    "RowSet",
    "SplitResult",
    "load_rows",
    "mix_sources",
    "parse_ratios",
    "parse_source",
    "split_rows",
    "write_rows",
]
