"""Template pools (data, not code): `<task>/<lang>.yaml`.

This folder sits at the repository's top level, beside `instructgen/`, and installs as package
`instructgen.task_templates` (setup.py maps it; pyproject.toml ships the YAML as its package data).
The file exists so that it is a regular package: setuptools' editable installs cannot import a
namespace package whose parent (`instructgen`) lives elsewhere. Code finds the pools through
`instructgen.templates.pool.templates_root()`.
"""
