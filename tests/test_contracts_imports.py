"""Package boundaries, checked on the source: no module uses another package's private names, and the
LLM layer builds on identity, never the reverse (DESIGN.md "Package layout": llm/ holds template
generation and paraphrase; identity/ is a source of records).

"Package" is the first level under instructgen/ (`identity`, `llm`, `quality`...; a top-level module
such as `api.py` is its own). A `_name` may be imported or used only inside its own package: a name
another package needs is given a public name by its owner (issue 12 item 3).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import instructgen

ROOT = Path(instructgen.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""  # "" is instructgen/__init__.py itself


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _imports(path: Path, tree: ast.AST) -> list[tuple[int, str, str | None, str]]:
    """(line, imported module, imported name or None, name bound here) for every instructgen import
    of the module at `path`, including those inside functions."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "instructgen":
                out.extend((node.lineno, target, a.name, a.asname or a.name) for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "instructgen":
                    out.append((node.lineno, a.name, None, a.asname or a.name.split(".")[0]))
    return out


def private_uses(path: Path, source: str | None = None) -> list[str]:
    """Private names of another package that the module at `path` (its text, or `source`) imports,
    imports from, or reads off a module it imported."""
    tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source, filename=str(path))
    own = _package(_module_name(path))
    found = []
    foreign_modules: dict[str, str] = {}  # local name -> module of another package bound to it
    for line, target, name, bound in _imports(path, tree):
        full = f"{target}.{name}" if name else target
        if _package(full if name and _is_module(full) else target) == own:
            continue
        where = f"{path.relative_to(ROOT.parent)}:{line}"
        if any(_private(p) for p in target.split(".")):
            found.append(f"{where}: imports from the private module {target}")
        if name and _private(name):
            found.append(f"{where}: imports {target}.{name}")
        if (name and _is_module(full)) or (name is None and bound != "instructgen"):
            foreign_modules[bound] = full
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in foreign_modules
            and _private(node.attr)
        ):
            found.append(
                f"{path.relative_to(ROOT.parent)}:{node.lineno}: reads {foreign_modules[node.value.id]}.{node.attr}"
            )
    return found


# Uses that exist in code owned by someone else, reported to its owner for a public name. Entries
# stop mattering once fixed; nothing new may be added here.
REPORTED: frozenset[str] = frozenset()


def test_no_module_uses_a_private_name_of_another_package():
    problems = [p for path in sorted(ROOT.rglob("*.py")) for p in private_uses(path)]
    assert [p for p in problems if re.sub(r":\d+:", ":", p) not in REPORTED] == []


def test_the_checker_sees_each_kind_of_private_use():
    """The walker above must flag what it is meant to (else the test above could never fail)."""
    probe = ROOT / "identity" / "probe.py"  # not a real file: its source is given below
    source = (
        "from ..templates.pool import _Renderer, PoolSet\n"
        "from ..quality import langid\n"
        "from ..io._secret import thing\n"
        "from .seeds import _entry\n"  # same package: allowed
        "def f():\n"
        "    from ..quality.langid import COMPATIBLE\n"
        "    return langid._DISTINCTIVE, COMPATIBLE\n"
    )
    assert private_uses(probe, source) == [
        "instructgen/identity/probe.py:1: imports instructgen.templates.pool._Renderer",
        "instructgen/identity/probe.py:3: imports from the private module instructgen.io._secret",
        "instructgen/identity/probe.py:7: reads instructgen.quality.langid._DISTINCTIVE",
    ]


def test_identity_does_not_import_the_llm_layer():
    """llm/ (template generation, paraphrase) uses identity's seed pools and checks; identity must not
    import llm/, even lazily, or the two packages form a cycle again."""
    offenders = [
        f"{path.relative_to(ROOT.parent)}:{line}: {target}"
        for path in sorted((ROOT / "identity").rglob("*.py"))
        for line, target, name, _ in _imports(path, ast.parse(path.read_text(encoding="utf-8")))
        if _package(target) == "llm" or (target == "instructgen" and name == "llm")
    ]
    assert offenders == []
    assert not (ROOT / "identity" / "paraphrase.py").exists()  # it lives in llm/paraphrase.py
