"""The built-in tasks, registered with the pipeline registry on import (see pipeline/registry.py).

Each module here is one task: how its items are read from dataset rows, its plan (if it needs a
first read of the whole input), its convert step, its checks and its sequential steps. The task's
semantics (template choice, rendering) stay in `converters/<task>.py`; this is the wiring.
"""

from . import classification, convert, ner, translation  # noqa: F401
