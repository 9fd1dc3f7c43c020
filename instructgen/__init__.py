"""instructgen: instruction-tuning data for LLMs, from corpora to masked training tensors."""

from .api import Result, collect, translate, translation_batch_fn
from .errors import ConfigError, InputError, InstructgenError, MisalignedFilesError, TemplateError
from .io.writers import RecordWriter, record_to_row, write_records
from .schema import Example, Record, Rejected, TemplateSpec, Turn
from .templates.pool import PoolSet, TemplatePool, load_pool

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Example",
    "InputError",
    "InstructgenError",
    "MisalignedFilesError",
    "PoolSet",
    "Record",
    "RecordWriter",
    "Rejected",
    "Result",
    "TemplateError",
    "TemplatePool",
    "TemplateSpec",
    "Turn",
    "__version__",
    "collect",
    "load_pool",
    "record_to_row",
    "translate",
    "translation_batch_fn",
    "write_records",
]
