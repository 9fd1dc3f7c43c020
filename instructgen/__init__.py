"""instructgen: instruction-tuning data for LLMs, from corpora to masked training tensors."""

from .api import Result, collect, translate, translation_batch_fn
from .errors import ConfigError, InputError, InstructgenError, MisalignedFilesError, TemplateError
from .identity.generate import identity, load_persona
from .io.writers import RecordWriter, record_to_row, write_records
from .mix import mix
from .schema import Example, Persona, Record, Rejected, TemplateSpec, Turn
from .templates.pool import PoolSet, TemplatePool, load_pool

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Example",
    "InputError",
    "InstructgenError",
    "MisalignedFilesError",
    "Persona",
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
    "identity",
    "load_persona",
    "load_pool",
    "mix",
    "record_to_row",
    "translate",
    "translation_batch_fn",
    "write_records",
]
