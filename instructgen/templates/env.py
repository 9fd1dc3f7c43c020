"""The one Jinja environment every template is rendered in.

Templates come from users and from LLMs, so they are untrusted code: the sandbox blocks
attribute tricks, and StrictUndefined turns a misspelt variable into an error instead of an
empty string that silently ships as training data.
"""

from __future__ import annotations

from functools import lru_cache

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment


@lru_cache(maxsize=1)
def template_env() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
