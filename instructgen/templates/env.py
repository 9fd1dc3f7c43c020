"""The one Jinja environment every template is rendered in, with bounds on what a render may cost.

Templates come from users, LLMs, pools, identity seeds, format files and tokenizers' chat
templates, so they are untrusted code. Jinja's sandbox blocks attribute tricks, but not cost:
`{% for i in range(100000) %}{% for j in range(100000) %}` runs for hours, `{{ 9**(9**9) }}`
never finishes, `{{ 'a'*100000000 }}` returns 100 MB per record. This environment adds:

- a CPU-time budget per render (`time.thread_time`, so it works in threads and worker
  processes, where SIGALRM does not), checked in every loop iteration, call, attribute
  access and intercepted operator;
- `range()` at most `MAX_RANGE` items; `lipsum()` removed;
- `**` and `*` on integers refused past `MAX_INT_BITS`; `*`, `+`, `%`, `~`, `{% set %}` blocks,
  filters and calls refused when they would build a value over the size budget, estimated
  *before* the big allocation for the amplifiers (repetition, padding widths, `replace`, `join`,
  `indent`, `wordwrap`, `expandtabs`, printf and `str.format` widths);
- the rendered output capped at the same size budget.

The size budget is `MAX_CHARS` plus four times the characters the render was given, so long
documents still render. StrictUndefined turns a misspelt variable into an error instead of an
empty string that silently ships as training data.

Exceeding a bound raises `TemplateLimitError`; `render_bounded` and the pool's `Template.render`
add the file and template id. Tokenizers' chat templates go through `render_chat_template`.
"""

from __future__ import annotations

import functools
import json
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import StrictUndefined, nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from ..errors import TemplateError, TemplateLimitError

MAX_RANGE = 10_000  # items one range() may produce
MAX_CHARS = 1_000_000  # characters (or items) any value or the output may hold, plus 4x the input
MAX_INT_BITS = 10_000  # about 3,000 decimal digits: below Python's int-to-str limit
RENDER_SECONDS = 2.0  # CPU seconds one render may use; legitimate templates take microseconds
_CHECK_EVERY = 64  # clock reads are cheap, but not free: read it every N ticks

_ITER_FILTER = "_ig_bounded_iter"
_SIZE_FILTER = "_ig_bounded_size"
_NUM = re.compile(r"\d+")
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d*)(?:\.(\d*))?")


@dataclass
class Budget:
    """What one render may still spend; one per top-level render, shared by its macros and filters."""

    max_chars: int = MAX_CHARS
    deadline: float = float("inf")  # in time.thread_time() seconds
    seconds: float = RENDER_SECONDS
    ticks: int = 0

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks % _CHECK_EVERY == 0 and time.thread_time() > self.deadline:
            raise TemplateLimitError(f"render took more than {self.seconds:g} s of CPU time")

    def size(self, n: int, what: str) -> None:
        if n > self.max_chars:
            raise TemplateLimitError(f"{what} would be {n:,} long, over the bound of {self.max_chars:,}")


# Budgets of renders in progress. A render outside `BoundedTemplate.render` (Jinja folding a
# constant at compile time) gets the size bounds without a deadline.
_BUDGET: ContextVar[Budget | None] = ContextVar("instructgen_render_budget", default=None)
_STATIC = Budget()


def _budget() -> Budget:
    return _BUDGET.get() or _STATIC


def _input_chars(value: Any, depth: int = 0) -> int:
    """Characters of text a render is given (strings in dicts and lists, a few levels deep)."""
    if type(value) is str:
        return len(value)
    if depth > 4:
        return 0
    if isinstance(value, Mapping):
        return sum(_input_chars(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_input_chars(v, depth + 1) for v in value)
    return 0


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 0


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(
            f"{what} is an integer of {value.bit_length():,} bits, over {MAX_INT_BITS:,}"
        )


def _check_width(digits: str, budget: Budget) -> None:
    if digits and (len(digits) > 7 or int(digits) > budget.max_chars):
        raise TemplateLimitError(f"format width {digits[:20]} is over the bound of {budget.max_chars:,}")


def _check_printf_widths(fmt: str, budget: Budget) -> None:
    """printf widths and precisions (`%100000000s`) allocate that much; other digits are text."""
    for m in _PRINTF.finditer(fmt):
        _check_width(m.group(1), budget)
        _check_width(m.group(2) or "", budget)


def _check_format_widths(fmt: str, budget: Budget) -> None:
    """str.format widths and precisions (`{:>100000000}`); digits outside the specs are text."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # the call itself fails on this format string
    for _literal, _field, spec, _conv in parsed:
        for m in _NUM.finditer(spec or ""):
            _check_width(m.group(), budget)


def _check_args(args: Iterable[Any], budget: Budget) -> None:
    """Integer arguments are widths, counts and repeats: none may exceed the size budget."""
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > budget.max_chars:
            raise TemplateLimitError(
                f"argument {a if a.bit_length() < 64 else 'of ' + str(a.bit_length()) + ' bits'} is over the bound of {budget.max_chars:,}"
            )


def _estimate(name: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Size of the result of a known amplifier, computed before running it (0 when unknown)."""
    if not isinstance(target, str):
        return 0
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        hits = target.count(args[0]) if args[0] else len(target) + 1
        return len(target) + hits * len(args[1])
    if name == "join" and args and isinstance(args[0], (list, tuple, str)):
        return len(target) * len(args[0]) + sum(_sized(x) for x in args[0])
    if name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        return len(target) + target.count("\t") * (size if isinstance(size, int) else 8)
    if name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        width = len(width) if isinstance(width, str) else width if isinstance(width, int) else 4
        return len(target) + (target.count("\n") + 1) * width
    if name == "wordwrap":
        wrap = kwargs.get("wrapstring") or (args[3] if len(args) > 3 else None)
        width = args[0] if args else kwargs.get("width", 79)
        if isinstance(wrap, str) and isinstance(width, int) and width > 0:
            return len(target) + (len(target) // width + 1) * len(wrap)
    return 0


def _check_result(value: Any, budget: Budget, what: str) -> Any:
    budget.size(_sized(value), what)
    _check_int(value, what)
    return value


class _BoundTree(NodeTransformer):
    """Rewrites a parsed template so loops and string building pass through the bounds.

    Every `{% for %}` iterates through a filter that ticks the budget (nested loops over
    `range` or over data never call anything else); every `~` concatenation and `{% set %}`
    block result goes through a filter that checks its size.
    """

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _ITER_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, _SIZE_FILTER, [], [], None, None, lineno=node.lineno)

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.Node:
        self.generic_visit(node)
        node.filter = nodes.Filter(node.filter, _SIZE_FILTER, [], [], None, None, lineno=node.lineno)
        return node


def _bounded_iter(value: Any) -> Iterator[Any]:
    budget = _budget()
    for item in value:
        budget.tick()
        yield item


def _bounded_size(value: Any) -> Any:
    return _check_result(value, _budget(), "a concatenated string")


def _bounded_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise TemplateLimitError(f"range() of {len(rng):,} items, over the bound of {MAX_RANGE:,}")
    return rng


def _materialize(value: Any, budget: Budget) -> Any:
    """A list of what a join will consume (ranges and generators have no size to estimate from)."""
    if isinstance(value, (str, list, tuple)):
        return value
    out = []
    for item in value:
        budget.tick()
        out.append(item)
        budget.size(len(out), "the joined sequence")
    return out


def _wrap_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that checks its arguments before and its result after running."""
    skip = 2 if getattr(func, "jinja_pass_arg", None) is not None else 1  # (context,) value

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        value = args[skip - 1] if len(args) >= skip else None
        if not (name == "format" and isinstance(value, str) and "*" not in value):  # values, not widths
            _check_args(args[skip:], budget)
            _check_args(kwargs.values(), budget)
        if name == "format" and isinstance(value, str):
            _check_printf_widths(value, budget)
        elif name == "join" and len(args) >= skip:
            args = (*args[: skip - 1], _materialize(value, budget), *args[skip:])
            sep = args[skip] if len(args) > skip else kwargs.get("d", "")
            if isinstance(sep, str):
                budget.size(
                    len(sep) * len(args[skip - 1]) + sum(_sized(x) for x in args[skip - 1]),
                    "the joined string",
                )
        elif isinstance(value, str):
            budget.size(_estimate(name, value, args[skip:], kwargs), f"the result of |{name}")
        return _check_result(func(*args, **kwargs), budget, f"the result of |{name}")

    return bounded


class _GenerationBlock(Extension):
    """`{% generation %}...{% endgeneration %}` (HF's assistant-mask marker): renders its body."""

    tags = frozenset({"generation"})

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Callable[[], str]) -> str:
        return caller()


class BoundedTemplate(jinja2.Template):
    """A template whose every render runs under a fresh `Budget` (see the module docstring)."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        values = dict(*args, **kwargs)
        if _BUDGET.get() is not None:  # nested render: the outer budget applies
            return super().render(values)
        env = self.environment
        seconds = getattr(env, "render_seconds", RENDER_SECONDS)
        budget = Budget(
            max_chars=getattr(env, "max_chars", MAX_CHARS) + 4 * _input_chars(values),
            deadline=time.thread_time() + seconds,
            seconds=seconds,
        )
        token = _BUDGET.set(budget)
        try:
            parts: list[str] = []
            total = 0
            for piece in self.generate(values):
                total += len(piece)
                budget.size(total, "the rendered text")
                budget.tick()
                parts.append(piece)
            return "".join(parts)
        except RecursionError:
            raise TemplateLimitError("recursion too deep (a macro or loop that calls itself?)") from None
        except MemoryError:
            raise TemplateLimitError("out of memory while rendering") from None
        finally:
            _BUDGET.reset(token)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox plus the bounds above (lists and dicts cannot be grown in place)."""

    template_class = BoundedTemplate
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    max_chars = MAX_CHARS
    render_seconds = RENDER_SECONDS

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _wrap_filter(name, f) for name, f in self.filters.items()}
        self.filters[_ITER_FILTER] = _bounded_iter
        self.filters[_SIZE_FILTER] = _bounded_size
        self.globals["range"] = _bounded_range
        self.globals.pop("lipsum", None)  # lipsum(10**8) builds paragraphs without calling back

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        return _BoundTree().visit(tree)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.tick()
        if operator == "+" and type(left) is str and type(right) is str:  # chat templates' hot path
            budget.size(len(left) + len(right), "the concatenated value")
            return left + right
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and (abs(left).bit_length() - 1) * right > MAX_INT_BITS:
                raise TemplateLimitError(f"{left} ** {right} would be over {MAX_INT_BITS:,} bits")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    budget.size(len(seq) * n, "the repeated value")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > MAX_INT_BITS + 1
            ):
                raise TemplateLimitError(f"a product would be over {MAX_INT_BITS:,} bits")
        elif (
            operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple))
        ):
            budget.size(len(left) + len(right), "the concatenated value")
        elif operator == "%" and isinstance(left, str):
            _check_printf_widths(left, budget)
            if "*" in left:  # `%*s`: an argument is a width
                _check_args(right if isinstance(right, tuple) else (right,), budget)
        return _check_result(self.binop_table[operator](left, right), budget, f"the result of '{operator}'")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        wrapped = getattr(__obj, "__wrapped__", None)  # the sandbox's str.format wrapper
        target = getattr(wrapped if wrapped is not None else __obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        formatting = isinstance(target, str) and name in ("format", "format_map")
        # integer arguments are widths and counts, except the values str.format formats (unless
        # a spec takes its width from an argument: `{:{}}`)
        if __obj is not _bounded_range and not (formatting and not re.search(r"\{[^{}]*:[^{}]*\{", target)):
            _check_args(args, budget)
            _check_args(kwargs.values(), budget)
        if isinstance(target, str):
            if name in ("format", "format_map"):
                _check_format_widths(target, budget)
            else:
                if name == "join" and args:
                    args = (_materialize(args[0], budget), *args[1:])
                budget.size(_estimate(name, target, args, kwargs), f"the result of .{name}()")
        result = super().call(__context, __obj, *args, **kwargs)
        return _check_result(result, budget, f"the result of {name or 'a call'}()")

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget().tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget().tick()
        return super().getitem(obj, argument)


@lru_cache(maxsize=1)
def template_env() -> BoundedSandbox:
    """The environment of pool templates and identity seeds."""
    return BoundedSandbox(undefined=StrictUndefined, autoescape=False)


def render_bounded(
    template: jinja2.Template | str,
    values: Mapping[str, Any],
    *,
    path: str | None = None,
    template_id: str | None = None,
) -> str:
    """Render under the bounds; any failure is a `TemplateError` naming the file and template id.

    `template` is a compiled template of a `BoundedSandbox` or source text (compiled in
    `template_env()`). A bound exceeded is a `TemplateLimitError`; any other render failure
    (undefined variable, sandbox refusal, TypeError in the template) a `TemplateError`.
    """
    if not isinstance(template, str) and not isinstance(template.environment, BoundedSandbox):
        raise TypeError("render_bounded needs a template compiled by a BoundedSandbox")
    try:
        if isinstance(template, str):
            template = template_env().from_string(template)
        return template.render(values)
    except TemplateLimitError as exc:
        raise TemplateLimitError(exc.message, path=path, template_id=template_id) from None
    except TemplateError as exc:
        raise TemplateError(exc.message, path=path, template_id=template_id) from None
    except RecursionError:
        raise TemplateLimitError("recursion too deep", path=path, template_id=template_id) from None
    except Exception as exc:  # the sandbox raises SecurityError, TypeError, UndefinedError...
        raise TemplateError(f"render failed: {exc}", path=path, template_id=template_id) from None


# --- tokenizers' chat templates ---------------------------------------------------------------


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _TemplateDict:
    """`dict(...)` in chat templates without exposing the dict type itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return dict.fromkeys(*args, **kwargs)


class _Namespace(jinja2.utils.Namespace):
    """`namespace(...)` refusing underscore names, as transformers does."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # Jinja's signature trick: `self` may be a key
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} starts with an underscore")


@lru_cache(maxsize=1)
def chat_template_env() -> BoundedSandbox:
    """The environment transformers renders chat templates in (`transformers.utils.chat_template_utils
    ._cached_compile_jinja_template`: trim_blocks, lstrip_blocks, loopcontrols, its `tojson`,
    `raise_exception`, `strftime_now`, `dict`, `namespace`, `{% generation %}`), with our bounds."""
    env = BoundedSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, "jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _wrap_filter("tojson", _tojson)
    env.globals.update(
        raise_exception=_raise_exception,
        strftime_now=_strftime_now,
        dict=_TemplateDict(),
        namespace=_Namespace,
    )
    return env


_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def _plain(value: Any) -> Any:
    """A copy made of JSON types only: the template sees no methods of the caller's objects."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _chat_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """As transformers passes a message: keys whose value is None dropped, reasoning aliased."""
    msg = {k: _plain(v) for k, v in message.items() if v is not None}
    reasoning = next((msg[k] for k in _REASONING_FIELDS if msg.get(k) is not None), None)
    if reasoning is not None:
        msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
    return msg


@lru_cache(maxsize=16)
def _compile_chat_template(source: str) -> jinja2.Template:
    return chat_template_env().from_string(source)


def render_chat_template(
    hf_tokenizer: Any,
    messages: list[dict[str, Any]],
    *,
    add_generation_prompt: bool = False,
    chat_template: str | None = None,
    path: str | None = None,
    **kwargs: Any,
) -> str:
    """`hf_tokenizer.apply_chat_template(messages, tokenize=False, ...)`, rendered under our bounds.

    The same variables as transformers 5 (`PreTrainedTokenizerBase.apply_chat_template` and
    `chat_template_utils.render_jinja_template`): `messages` (None-valued keys dropped, reasoning
    fields aliased), `tools`, `documents`, `add_generation_prompt`, the tokenizer's special tokens
    such as `bos_token`, and `kwargs`; the same environment (see `chat_template_env`). A template
    that hangs, builds huge strings or fails is a `TemplateError` (`TemplateLimitError` for a
    bound) naming `path` (the tokenizer directory) and 'chat_template'.
    """
    source = chat_template or getattr(hf_tokenizer, "chat_template", None)
    if isinstance(source, dict):  # named templates: transformers uses 'default'
        source = source.get("default")
    if not isinstance(source, str) or not source:
        raise TemplateError("the tokenizer has no chat_template", path=path, template_id="chat_template")
    try:
        template = _compile_chat_template(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"Jinja syntax error (line {exc.lineno}): {exc.message}", path=path, template_id="chat_template"
        ) from None
    except RecursionError:
        raise TemplateLimitError(
            "template nested too deeply", path=path, template_id="chat_template"
        ) from None
    specials = {
        k: v
        for k, v in (getattr(hf_tokenizer, "special_tokens_map", None) or {}).items()
        if isinstance(v, str)
    }
    values = {
        **specials,
        "messages": [_chat_message(m) for m in messages],
        "tools": None,
        "documents": None,
        "add_generation_prompt": add_generation_prompt,
        **kwargs,
    }
    return render_bounded(template, values, path=path, template_id="chat_template")
