"""YAML loading with a bound on alias expansion (the "billion laughs" bomb).

`yaml.safe_load` refuses `!!python/object` tags, but not this 300-byte file:

    a: &a ["x","x","x","x","x","x","x","x","x"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    ...
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]

PyYAML builds it quickly (aliases share one object), but anything that walks it afterwards
(`str(labels[k])`, pydantic, json.dumps) visits 9**9 leaves and never returns. Here the
composed node graph is measured first, each node once (memoised), and a document whose
expansion exceeds `MAX_NODES` nodes or `MAX_CHARS` scalar characters (beyond the file's own
length), or that refers to itself, is refused before anything is constructed.

Every YAML file the project reads (pools, identity seeds, personas, format files, label
files) should be read with `safe_load_bounded(text)` or `load_yaml_bounded(path)`. Refusals are
`yaml.YAMLError`s with a mark, so existing `except yaml.YAMLError` handlers report them with the
file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError

MAX_NODES = 1_000_000  # nodes after alias expansion; a 1,000-template pool has about 15,000
MAX_CHARS = 10_000_000  # scalar characters after alias expansion, beyond the document's own length


class AliasBombError(ComposerError):
    """Aliases expand past the bound, or an anchor contains itself."""


class NestingError(ComposerError):
    """Collections nested deeper than PyYAML's recursive composer can follow (`[[[[...]]]]`)."""


def _measure(root: yaml.Node, max_nodes: int, max_chars: int) -> None:
    """Expanded (nodes, chars) of the graph under `root`, each distinct node computed once."""
    done: dict[int, tuple[int, int]] = {}
    active: set[int] = set()
    # iterative post-order walk: deep nesting must not hit Python's recursion limit
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if key in done:
            continue
        if isinstance(node, yaml.ScalarNode):
            done[key] = (1, len(node.value))
            continue
        children: list[yaml.Node] = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else list(node.value)
        )
        if not expanded:
            if key in active:
                raise AliasBombError(
                    None, None, "an anchor refers to itself (recursive alias)", node.start_mark
                )
            active.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in active and id(child) not in done:
                    raise AliasBombError(
                        None, None, "an anchor refers to itself (recursive alias)", child.start_mark
                    )
                stack.append((child, False))
            continue
        nodes, chars = 1, 0
        for child in children:
            n, c = done[id(child)]
            nodes += n
            chars += c
        if nodes > max_nodes:
            raise AliasBombError(
                None,
                None,
                f"aliases expand to more than {max_nodes:,} nodes (an alias bomb?)",
                node.start_mark,
            )
        if chars > max_chars:
            raise AliasBombError(
                None,
                None,
                f"aliases expand to more than {max_chars:,} characters (an alias bomb?)",
                node.start_mark,
            )
        active.discard(key)
        done[key] = (nodes, chars)


def safe_load_bounded(text: str, *, max_nodes: int = MAX_NODES, max_chars: int = MAX_CHARS) -> Any:
    """`yaml.safe_load(text)` that refuses alias bombs and self-referring anchors (raises `yaml.YAMLError`)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, max_nodes, max_chars + len(text))
        return loader.construct_document(node)
    except RecursionError:
        raise NestingError(None, None, "collections nested too deeply", None) from None
    finally:
        loader.dispose()


def load_yaml_bounded(path: str | Path) -> Any:
    """Read a UTF-8 YAML file (BOM allowed) with `safe_load_bounded`.

    Raises what reading and parsing raise (`OSError`, `UnicodeDecodeError`, `yaml.YAMLError`), so
    callers keep their own messages for a missing file or bad YAML.
    """
    return safe_load_bounded(Path(path).read_text(encoding="utf-8-sig"))
