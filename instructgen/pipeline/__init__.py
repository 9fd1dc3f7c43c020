"""The pipeline core: steps with per-step stats, one run loop, executors, and the task registry.

See `run.py` (the loop and the one `Result` type), `steps.py` (the step protocol and the checks
every task shares), `outcome.py` (what a step answers, and the column contract between processes),
`executors.py` (in-process, process pool, `Dataset.map`; the one batched adapter `BatchFn`) and
`registry.py` (tasks as entries: `register`, `start`, `run_task`, `batch_fn`, `collect`).
"""

from .outcome import Outcome
from .registry import Task, batch_fn, collect, register, run_task, start
from .run import Pipeline, Result, Run
from .steps import EmptyFields, ExactDedup, Placeholders, StepStats, record_digest

__all__ = [
    "EmptyFields",
    "ExactDedup",
    "Outcome",
    "Pipeline",
    "Placeholders",
    "Result",
    "Run",
    "StepStats",
    "Task",
    "batch_fn",
    "collect",
    "record_digest",
    "register",
    "run_task",
    "start",
]
