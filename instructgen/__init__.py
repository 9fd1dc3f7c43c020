"""instructgen: instruction-tuning data for LLMs, from corpora to masked training tensors."""

from .api import Result, collect, translate, translation_batch_fn
from .converters.classification import ClassifyBatchFn, classify
from .converters.ner import NerBatchFn, ner
from .errors import ConfigError, InputError, InstructgenError, MisalignedFilesError, TemplateError
from .identity.generate import identity, load_persona
from .io.writers import RecordWriter, record_to_row, write_records
from .mix import mix
from .schema import Example, Persona, Record, Rejected, TemplateSpec, Turn
from .templates.pool import PoolSet, TemplatePool, load_pool

__version__ = "0.1.0"

__all__ = [
    "ClassifyBatchFn",
    "ConfigError",
    "Example",
    "InputError",
    "InstructgenError",
    "MisalignedFilesError",
    "NerBatchFn",
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
    "classify",
    "collect",
    "identity",
    "load_persona",
    "load_pool",
    "mix",
    "ner",
    "record_to_row",
    "translate",
    "translation_batch_fn",
    "write_records",
]
