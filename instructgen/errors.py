"""Errors a user can act on.

Every error that comes from bad input names where the problem is (file, line, field or
template id), because a data pipeline that says only "KeyError: 'en'" costs an afternoon.
"""

from __future__ import annotations


class InstructgenError(Exception):
    """Base class: the CLI prints these as one clean line instead of a traceback."""


class InputError(InstructgenError):
    """A source record cannot be read (malformed JSON, missing field, bad row)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        reason: str = "bad_input",
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.reason = reason
        self.message = message
        where = []
        if path is not None:
            where.append(f"{path}:{line}" if line is not None else str(path))
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class MisalignedFilesError(InputError):
    """Two line-aligned parallel files do not have the same number of lines."""


class TemplateError(InstructgenError):
    """A template pool is invalid: names the pool file and the template id."""

    def __init__(self, message: str, *, path: str | None = None, template_id: str | None = None) -> None:
        self.path = path
        self.template_id = template_id
        self.message = message
        where = []
        if path is not None:
            where.append(str(path))
        if template_id is not None:
            where.append(f"template '{template_id}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class TemplateLimitError(TemplateError):
    """A template ran past a sandbox bound (CPU time, output size, range, integer size): untrusted code."""


class ConfigError(InstructgenError):
    """Options that cannot work together, or refer to something that does not exist."""
