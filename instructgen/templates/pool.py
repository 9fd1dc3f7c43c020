"""Loading, validating and sampling template pools (`task_templates/<task>/<lang>.yaml`).

A pool is data, so everything that can go wrong with it is checked on load, with the file
and template id in the message: YAML errors, unknown keys, duplicate ids, Jinja syntax,
variables outside the task's contract, required variables missing, and a trial render.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError, meta, nodes
from pydantic import ValidationError

from ..determinism import choose_index
from ..errors import ConfigError, TemplateError, TemplateLimitError
from ..schema import TemplateSpec
from .env import template_env
from .languages import normalize_code
from .safe_yaml import safe_load_bounded
from .tasks import TaskSpec, get_task, known_tasks

FIELDS = ("instruction", "input", "output", "system")


class _Renderer:
    """Renders one template field.

    Most fields are plain text with `{{ var }}` slots; those are joined directly, which is
    several times faster than a Jinja render and gives the same string (checked in tests).
    Anything else (filters, conditionals) goes through the sandboxed Jinja template, whose
    renders are bounded in CPU time and size (see `env.py`); any failure is a `TemplateError`
    naming `path` and `template_id` when the caller gave them.
    """

    __slots__ = ("_parts", "_template", "_variables", "path", "source", "template_id")

    def __init__(self, source: str, *, path: str | None = None, template_id: str | None = None) -> None:
        env = template_env()
        self.source = source
        self.path = path
        self.template_id = template_id
        ast = env.parse(source)
        self._parts = _simple_parts(ast)
        self._template = None if self._parts is not None else env.from_string(source)
        self._variables = frozenset(meta.find_undeclared_variables(ast))  # parsed once, asked per record

    def variables(self) -> set[str]:
        return set(self._variables)

    def __call__(self, values: dict[str, Any]) -> str:
        if self._parts is None:
            try:
                return self._template.render(values)  # type: ignore[union-attr]
            except TemplateError as exc:
                if exc.path is None and self.path is not None:
                    raise type(exc)(exc.message, path=self.path, template_id=self.template_id) from None
                raise
            except Exception as exc:  # the sandbox raises SecurityError, TypeError, UndefinedError...
                raise TemplateError(str(exc), path=self.path, template_id=self.template_id) from None
        out = []
        for is_var, text in self._parts:
            if is_var:
                if text not in values:
                    from jinja2 import UndefinedError

                    raise UndefinedError(f"'{text}' is undefined")
                out.append(str(values[text]))
            else:
                out.append(text)
        return "".join(out)


Renderer = _Renderer  # the public name: identity seed pools render their entries with it too


def _simple_parts(ast: nodes.Template) -> list[tuple[bool, str]] | None:
    """[(is_variable, text)] when the template is only text and bare `{{ name }}` slots."""
    parts: list[tuple[bool, str]] = []
    for node in ast.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append((False, child.data))
            elif isinstance(child, nodes.Name) and child.ctx == "load":
                parts.append((True, child.name))
            else:
                return None
    return parts


@dataclass
class Template:
    """A validated, compiled template, ready to render."""

    spec: TemplateSpec
    language: str
    task: str
    path: str
    line: int | None
    text_hash: str
    _renderers: dict[str, _Renderer] = field(repr=False, default_factory=dict)

    @property
    def id(self) -> str:
        return self.spec.id

    def variables(self) -> frozenset[str]:
        """Every variable any field of the template uses (computed once)."""
        cached = self.__dict__.get("_all_variables")
        if cached is None:
            cached = frozenset().union(*(r.variables() for r in self._renderers.values()))
            self.__dict__["_all_variables"] = cached
        return cached

    def render(self, values: dict[str, Any]) -> dict[str, str | None]:
        """The four fields rendered; a field that fails or exceeds a bound is a `TemplateError`
        naming the pool file, line and template id."""
        out: dict[str, str | None] = {}
        for name in FIELDS:
            renderer = self._renderers.get(name)
            try:
                out[name] = renderer(values) if renderer is not None else None
            except TemplateError as exc:
                if exc.path is not None:
                    raise
                where = f"{self.path}:{self.line}" if self.line else self.path
                raise type(exc)(exc.message, path=where, template_id=self.id) from None
        if out["input"] is None:
            out["input"] = ""
        return out


@dataclass
class TemplatePool:
    task: str
    language: str
    path: str
    templates: list[Template]
    labels: dict[str, str] = field(default_factory=dict)  # verbalisers: dataset label -> words
    tables: dict[str, Any] = field(default_factory=dict)  # the task's declared tables (TaskSpec.tables)


def _text_hash(spec: TemplateSpec) -> str:
    text = "\x1f".join(getattr(spec, f) or "" for f in FIELDS)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _top_level(text: str, name: str) -> tuple[yaml.Node, yaml.Node] | None:
    """The (key, value) nodes of top-level key `name`, whose marks give lines for errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    for key, value in root.value:
        if getattr(key, "value", None) == name:
            return key, value
    return None


def _template_lines(text: str) -> list[int | None]:
    """The 1-based line of each entry under `templates:`, so errors can point into the file."""
    found = _top_level(text, "templates")
    if found is None or not isinstance(found[1], yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in found[1].value]


def _parse_tables(data: dict[str, Any], spec: TaskSpec, *, text: str, path: str) -> dict[str, Any]:
    """The task's declared tables present in the file, each checked strictly against its type;
    an error names the file, the key's line and the offending entry."""
    tables: dict[str, Any] = {}
    for name, table in spec.tables.items():
        if name not in data:
            continue
        try:
            tables[name] = table.adapter.validate_python(data[name], strict=True)
        except ValidationError as exc:
            problems = "; ".join(
                ".".join([name, *(str(p) for p in err["loc"])]) + f": {err['msg']}" for err in exc.errors()
            )
            found = _top_level(text, name)
            where = f"{path}:{found[0].start_mark.line + 1}" if found else path
            raise TemplateError(f"'{name}' ({table.doc}): {problems}", path=where) from None
    return tables


def compile_template(
    entry: Any, *, task: TaskSpec, language: str, path: str, line: int | None = None
) -> Template:
    """Validate one pool entry against the task contract and compile it."""
    where = f"{path}:{line}" if line else path
    tid = entry.get("id") if isinstance(entry, dict) else None
    if not isinstance(entry, dict):
        raise TemplateError("each template must be a mapping with id, instruction, output", path=where)
    allowed = sorted(TemplateSpec.model_fields)
    for key in entry:
        if key not in TemplateSpec.model_fields:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
            raise TemplateError(f"unknown key '{key}'{hint}", path=where, template_id=tid)
    try:
        spec = TemplateSpec.model_validate(entry)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors()
        )
        raise TemplateError(problems, path=where, template_id=tid) from None

    renderers: dict[str, _Renderer] = {}
    used: dict[str, set[str]] = {}
    for name in FIELDS:
        source = getattr(spec, name)
        if source is None or (name == "input" and source == ""):
            continue
        try:
            renderers[name] = _Renderer(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"Jinja syntax error in '{name}' (line {exc.lineno} of the field): {exc.message}",
                path=where,
                template_id=spec.id,
            ) from None
        except RecursionError:
            raise TemplateLimitError(
                f"'{name}' is nested too deeply", path=where, template_id=spec.id
            ) from None
        used[name] = renderers[name].variables()

    known = set(task.variables)
    for name, variables in used.items():
        unknown = sorted(variables - known)
        if unknown:
            hints = []
            for var in unknown:
                close = difflib.get_close_matches(var, sorted(known), n=1)
                hints.append(f"'{var}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise TemplateError(
                f"unknown variable {', '.join(hints)} in '{name}'; task '{task.name}' has: "
                + ", ".join(sorted(known)),
                path=where,
                template_id=spec.id,
            )
    for req in task.requirements:
        if req.kinds and spec.kind not in req.kinds:
            continue
        if not any(v in used.get(f, set()) for v in req.variables for f in req.fields):
            raise TemplateError(
                f"{req.why}: use {' or '.join('{{ ' + v + ' }}' for v in req.variables)} "
                f"in {' or '.join(req.fields)}",
                path=where,
                template_id=spec.id,
            )

    template = Template(
        spec=spec,
        language=language,
        task=task.name,
        path=path,
        line=line,
        text_hash=_text_hash(spec),
        _renderers=renderers,
    )
    try:
        rendered = template.render(task.sample)
    except TemplateError as exc:  # already names file and id; a bound exceeded stays a TemplateLimitError
        raise type(exc)(f"trial render failed: {exc.message}", path=where, template_id=spec.id) from None
    if not (rendered["instruction"] or "").strip():
        raise TemplateError("instruction renders to empty text", path=where, template_id=spec.id)
    return template


def load_pool(path: str | Path, *, task: str | None = None, display_path: str | None = None) -> TemplatePool:
    """Read and validate one pool file; `task` (when given) must match the file's `task:`."""
    path = Path(path)
    shown = display_path or str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TemplateError("pool file not found", path=shown) from None
    except UnicodeDecodeError as exc:
        raise TemplateError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=shown) from None
    return parse_pool(text, path=shown, task=task)


# Top-level keys of every pool file; a task adds its tables (TaskSpec.tables).
POOL_KEYS = ("task", "language", "templates", "description", "version", "labels")


def parse_pool(text: str, *, path: str, task: str | None = None) -> TemplatePool:
    try:
        data = safe_load_bounded(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise TemplateError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", path=where) from None
    if not isinstance(data, dict):
        raise TemplateError("a pool file must be a mapping with task, language and templates", path=path)
    known = set(POOL_KEYS)
    if data.get("task") in known_tasks():  # the task's declared tables are keys too
        known.update(get_task(data["task"]).tables)
    unknown_keys = sorted(str(k) for k in data if k not in known)
    if unknown_keys:
        raise TemplateError(
            f"unknown top-level key(s): {', '.join(unknown_keys)} (known: {', '.join(sorted(known))})",
            path=path,
        )
    for key in ("task", "language", "templates"):
        if key not in data:
            raise TemplateError(f"missing top-level key '{key}'", path=path)
    if task is not None and data["task"] != task:
        raise TemplateError(f"pool is for task '{data['task']}', expected '{task}'", path=path)
    try:
        spec = get_task(str(data["task"]))
        language = normalize_code(str(data["language"]))
    except ConfigError as exc:
        raise TemplateError(str(exc), path=path) from None
    entries = data["templates"]
    if not isinstance(entries, list) or not entries:
        raise TemplateError("'templates' must be a non-empty list", path=path)
    lines = _template_lines(text)
    templates: list[Template] = []
    seen: dict[str, int | None] = {}
    for i, entry in enumerate(entries):
        line = lines[i] if i < len(lines) else None
        template = compile_template(entry, task=spec, language=language, path=path, line=line)
        if template.id in seen:
            first = seen[template.id]
            raise TemplateError(
                f"duplicate template id (first defined at line {first})",
                path=f"{path}:{line}" if line else path,
                template_id=template.id,
            )
        seen[template.id] = line
        templates.append(template)
    labels = data.get("labels") or {}
    if not isinstance(labels, dict):
        raise TemplateError("'labels' must map dataset labels to words", path=path)
    return TemplatePool(
        task=spec.name,
        language=language,
        path=path,
        templates=templates,
        labels={str(k): str(v) for k, v in labels.items()},
        tables=_parse_tables(data, spec, text=text, path=path),
    )


# Tasks whose pools are not instruction/input/output templates (see identity/seeds.py).
SEED_POOL_TASKS = frozenset({"identity"})

POOLS_PACKAGE = "instructgen.task_templates"


def templates_root() -> Path:
    """The shipped pools folder: the repository's top-level `task_templates/`.

    The build installs that folder as package `instructgen.task_templates` (setup.py maps it), so the
    import system finds it the same way in a wheel, in an editable install and in CI's fresh venv.
    """
    missing = f"the shipped template pools ({POOLS_PACKAGE}) are not installed: reinstall instructgen"
    try:
        root = resources.files(POOLS_PACKAGE)
    except ModuleNotFoundError:
        raise ConfigError(missing) from None
    if not isinstance(root, Path):  # a zipped install: pools are read as files
        raise ConfigError(f"{missing} as files (not zipped)")
    return root


def builtin_pool_files(task: str | None = None, *, seed_pools: bool = False) -> Iterator[tuple[str, Path]]:
    """(display path, real path) of each pool shipped inside the package, sorted.

    Seed pools (identity) have their own shape and are listed only with `seed_pools=True`.
    """
    base = templates_root()
    pattern = f"{task}/*.yaml" if task else "*/*.yaml"
    for file in sorted(base.glob(pattern)):
        if (file.parent.name in SEED_POOL_TASKS) != seed_pools and task is None:
            continue
        yield f"builtin:{file.parent.name}/{file.name}", file


def load_builtin_pools(task: str | None = None) -> list[TemplatePool]:
    return [load_pool(real, display_path=shown) for shown, real in builtin_pool_files(task)]


class PoolSet:
    """All pools usable for one task, grouped by the language the instructions are written in.

    Besides templates, pools carry per-language data: `labels` and the task's tables (`table`).
    `defaults` are pools whose data is used beneath that of `pools` but whose templates are not: the
    shipped pools, when a run leaves out their templates, still say how English writes an answer.
    """

    def __init__(
        self, task: str, pools: Iterable[TemplatePool], *, defaults: Iterable[TemplatePool] = ()
    ) -> None:
        self.task = task
        self.by_language: dict[str, list[Template]] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.tables: dict[str, dict[str, Any]] = {}  # language -> table name -> value
        for pool in defaults:
            self._add_data(pool)
        owner: dict[str, str] = {}
        for pool in pools:
            self._add_data(pool)
            for template in pool.templates:
                if template.id in owner:
                    raise TemplateError(
                        f"duplicate template id, also defined in {owner[template.id]}",
                        path=pool.path,
                        template_id=template.id,
                    )
                owner[template.id] = pool.path
                self.by_language.setdefault(pool.language, []).append(template)

    def _add_data(self, pool: TemplatePool) -> None:
        """A pool's labels and tables, over those of earlier pools of its language."""
        self.labels.setdefault(pool.language, {}).update(pool.labels)
        if pool.task != self.task:
            raise TemplateError(f"pool is for task '{pool.task}', expected '{self.task}'", path=pool.path)
        self.tables.setdefault(pool.language, {}).update(pool.tables)

    @classmethod
    def load(
        cls, task: str, extra_files: Iterable[str | Path] = (), *, include_builtin: bool = True
    ) -> PoolSet:
        builtin = load_builtin_pools(task)
        pools = builtin if include_builtin else []
        pools += [load_pool(p, task=task) for p in extra_files]
        if not pools:
            raise ConfigError(f"no template pool for task '{task}'")
        return cls(task, pools, defaults=() if include_builtin else builtin)

    def _fallbacks(self, language: str, english: bool) -> list[str]:
        """The pool language, its base language (`zh` for `zh-TW`), then English when `english`."""
        return list(dict.fromkeys([language, language.split("-")[0], *(["en"] if english else [])]))

    def table(self, name: str, language: str) -> Any:
        """Table `name` (declared in the task's `TaskSpec.tables`) for the pools written in `language`:
        that language's, else its base language's, else English's (unless the table says a
        language without it has none); None when no pool carries it."""
        try:
            spec = get_task(self.task).tables[name]
        except KeyError:
            raise ConfigError(f"task '{self.task}' declares no pool table '{name}'") from None
        for lang in self._fallbacks(language, spec.english_fallback):
            value = self.tables.get(lang, {}).get(name)
            if value is not None:
                return value
        return None

    def labels_for(self, language: str) -> dict[str, str]:
        """Label words for `language`: English's, overlaid by its base language's, then its own, so a
        pool that names a few labels keeps the words of the others."""
        words: dict[str, str] = {}
        for lang in reversed(self._fallbacks(language, True)):
            words.update(self.labels.get(lang, {}))
        return words

    @property
    def languages(self) -> list[str]:
        return sorted(self.by_language)

    def resolve_language(self, code: str) -> str:
        """The pool language for `code`: exact tag, else the same base language (`zh-CN` -> `zh`)."""
        tag = normalize_code(code)
        if tag in self.by_language:
            return tag
        base = tag.split("-")[0]
        for lang in self.languages:
            if lang.split("-")[0] == base:
                return lang
        raise ConfigError(
            f"no '{self.task}' template pool written in '{code}' (pools exist for: "
            f"{', '.join(self.languages)}); add one with --templates FILE"
        )

    def choose(self, language: str, seed: int, key: str) -> Template:
        templates = self.by_language[language]
        return templates[choose_index(len(templates), seed, self.task, key, "template")]

    def all_templates(self) -> list[Template]:
        return [t for lang in self.languages for t in self.by_language[lang]]
