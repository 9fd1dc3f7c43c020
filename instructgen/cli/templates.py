"""`instructgen templates list | show | validate`: inspect and lint pools, offline."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import click
import yaml

from ..errors import InstructgenError
from ..identity.seeds import load_seed_pool
from ..templates.pool import PoolSet, builtin_pool_files, load_builtin_pools, load_pool
from ..templates.safe_yaml import load_yaml_bounded
from ..templates.tasks import get_task, known_tasks
from .common import fail_cleanly


def _is_seed_pool(path: str | Path) -> bool:
    try:
        head = load_yaml_bounded(path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(head, dict) and head.get("task") == "identity"


class RegisteredTasks(click.Choice):
    """A `--task` choice read from the task registry each time it is used (parsing, `--help`), so a
    task registered after this module was imported (a plugin, a test module) is offered too."""

    def __init__(self, names: Callable[[], Sequence[str]]) -> None:
        self._names = names
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._names())

    @choices.setter
    def choices(self, _value: Sequence[str]) -> None:  # click.Choice.__init__ assigns it
        pass


def _listable() -> list[str]:
    return [*known_tasks(), "identity"]


def _generatable() -> list[str]:
    from ..llm.template_gen import generatable  # imported when used: the LLM layer loads on demand

    return generatable()


@click.group("templates")
def templates_group():
    """Inspect, show and validate template pools (task_templates/<task>/<lang>.yaml)."""


@templates_group.command("list")
@click.option("--task", type=RegisteredTasks(_listable), help="Only pools of this task.")
@click.option("-v", "--verbose", is_flag=True, help="Also list every template id.")
@fail_cleanly
def list_cmd(task, verbose):
    """List the shipped pools: task, language and number of templates."""
    if task != "identity":
        for pool in load_builtin_pools(task):
            click.echo(
                f"{pool.path}\ttask={pool.task}\tlanguage={pool.language}\ttemplates={len(pool.templates)}"
            )
            if verbose:
                for t in pool.templates:
                    click.echo(f"  {t.id}\t{t.spec.instruction[:70]!r}")
    if task in (None, "identity"):
        for shown, real in builtin_pool_files(seed_pools=True):
            pool = load_seed_pool(real, display_path=shown)
            n_q = sum(len(v) for v in pool.questions.values())
            n_a = sum(len(v) for v in pool.answers.values())
            click.echo(f"{shown}\ttask=identity\tlanguage={pool.language}\tquestions={n_q}\tanswers={n_a}")


@templates_group.command("show")
@click.argument("template_id")
@click.option(
    "--templates", "template_files", multiple=True, type=click.Path(), help="Also search these pools."
)
@fail_cleanly
def show_cmd(template_id, template_files):
    """Show one template: its fields, pool, variables and a sample rendering."""
    pools = load_builtin_pools() + [load_pool(p) for p in template_files]
    for pool in pools:
        for t in pool.templates:
            if t.id != template_id:
                continue
            task = get_task(pool.task)
            click.echo(f"id: {t.id}\npool: {pool.path}" + (f":{t.line}" if t.line else ""))
            click.echo(
                f"task: {pool.task}\nlanguage: {pool.language}\nhash: {t.text_hash}\nsource: {t.spec.source}"
            )
            for field in ("system", "instruction", "input", "output"):
                value = getattr(t.spec, field)
                if value:
                    click.echo(f"{field}: {value!r}")
            click.echo("variables: " + ", ".join(f"{k} ({v})" for k, v in task.variables.items()))
            sample = t.render(task.sample)
            click.echo("sample:")
            for field in ("instruction", "input", "output"):
                if sample[field]:
                    click.echo(f"  {field}: {sample[field]}")
            return
    click.echo(f"error: no template with id '{template_id}'", err=True)
    sys.exit(2)


@templates_group.command("validate")
@click.argument("files", nargs=-1, type=click.Path())
def validate_cmd(files):
    """Validate pool FILES (every shipped pool when none is named); exit 1 on any problem."""
    failed = 0
    if files:
        targets = [(f, f) for f in files]
    else:
        targets = [*builtin_pool_files(), *builtin_pool_files(seed_pools=True)]
    pools = []
    for name, path in targets:
        try:
            if _is_seed_pool(path):
                seed = load_seed_pool(path, display_path=name)
                n = sum(len(v) for v in seed.questions.values())
                click.echo(f"ok   {name} (identity, {seed.language}, {n} questions)")
                continue
            pool = load_pool(path, display_path=name)
        except InstructgenError as exc:
            failed += 1
            click.echo(f"FAIL {exc}")
            continue
        pools.append(pool)
        click.echo(f"ok   {name} ({pool.task}, {pool.language}, {len(pool.templates)} templates)")
    for task in sorted({p.task for p in pools}):
        try:
            PoolSet(task, [p for p in pools if p.task == task])  # ids must be unique across pools too
        except InstructgenError as exc:
            failed += 1
            click.echo(f"FAIL {exc}")
    sys.exit(1 if failed else 0)


GENERATE_EPILOG = """\b
Examples (any OpenAI-compatible endpoint; the key is read from $OPENAI_API_KEY or --api-key-env):
  instructgen templates generate --task translation --lang en -n 20 --model gpt-4o-mini -o my_pool.yaml
  instructgen templates generate --task translation --lang zh -n 20 --model qwen2.5 \\
      --base-url http://localhost:8000/v1 -o zh_pool.yaml      # vLLM / Ollama / DeepSeek
"""


@templates_group.command("generate", epilog=GENERATE_EPILOG)
@click.option("--task", type=RegisteredTasks(_generatable), required=True)
@click.option(
    "--category", default=None, help="identity: the question category (name, developer, denial, ...)."
)
@click.option("--lang", required=True, help="Language the new templates are written in.")
@click.option("-n", "count", type=int, default=20, show_default=True, help="Templates to accept.")
@click.option("--model", required=True, help="Model name at the endpoint.")
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint (default: OpenAI).")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="Environment variable holding the API key (never printed).",
)
@click.option("--concurrency", type=int, default=4, show_default=True, help="Requests in flight at most.")
@click.option("--rpm", type=float, default=None, help="Requests per minute at most.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds to wait for one answer before retrying.",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Retries per request (timeouts, resets, 5xx, malformed answers) before it counts as failed.",
)
@click.option("--cache-dir", default=None, help="Response cache (default: $XDG_CACHE_HOME/instructgen).")
@click.option("--offline", is_flag=True, help="Replay from the cache only; a miss is an error.")
@click.option("--refresh", is_flag=True, help="Ignore cached responses.")
@click.option("--dry-run", is_flag=True, help="Print the first prompt and a token estimate; call nothing.")
@click.option("--max-requests", type=int, default=None, help="Hard stop after this many requests.")
@click.option(
    "--similarity",
    type=float,
    default=0.7,
    show_default=True,
    help="ROUGE-L above which a template is a near-duplicate.",
)
@click.option(
    "--stall-rounds",
    type=int,
    default=3,
    show_default=True,
    help="Stop after this many rounds without a new template.",
)
@click.option(
    "--templates", "pool_files", multiple=True, type=click.Path(), help="Also dedup against these pools."
)
@click.option("--rejects", default=None, help="Write refused and unparseable answers here (JSONL).")
@click.option("-o", "--output", required=True, help="The new pool file (YAML).")
@fail_cleanly
def generate_cmd(
    task,
    category,
    lang,
    count,
    model,
    base_url,
    api_key_env,
    concurrency,
    rpm,
    timeout,
    max_retries,
    cache_dir,
    offline,
    refresh,
    dry_run,
    max_requests,
    similarity,
    stall_rounds,
    pool_files,
    rejects,
    output,
):
    """Ask an LLM for new templates; keep those that pass the pool linter and are not near-duplicates.

    Exits 2 without writing the pool when no template is accepted.
    """
    from ..io.writers import JsonlSink
    from ..llm.client import LLMClient, LLMConfig
    from ..llm.template_gen import GenOptions, TemplateGenerator, generate_pool, identity_pool_yaml, pool_yaml

    config = LLMConfig(
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
        concurrency=concurrency,
        rpm=rpm,
        timeout=timeout,
        max_retries=max_retries,
        cache_dir=cache_dir,
        offline=offline,
        refresh=refresh,
        max_requests=max_requests,
    )
    options = GenOptions(
        task=task,
        language=lang,
        n=count,
        similarity=similarity,
        stall_rounds=stall_rounds,
        parallel=min(concurrency, 4),
        category=category,
    )
    client = LLMClient(config)
    try:
        if dry_run:
            messages = TemplateGenerator(client, options, tuple(pool_files)).prompt([], options.per_request)
            text = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
            click.echo(text)
            est = len(text) // 3
            click.echo(
                f"\ndry run: ~{est} prompt tokens per request, {options.parallel} requests per round, "
                f"at most {options.max_rounds} rounds",
                err=True,
            )
            return
        result = generate_pool(client, options, tuple(pool_files))
    finally:
        client.close()
    if result.accepted:
        if task == "identity":
            text = identity_pool_yaml(lang, category, [a["instruction"] for a in result.accepted], model)
        else:
            text = pool_yaml(task, lang, result.accepted, model)
        Path(output).write_text(text, encoding="utf-8")
    with JsonlSink(rejects) as sink:
        for r in result.rejected:
            sink.write(r)
        for cause in result.failed:
            sink.write({"reason": "request_failed", "cause": cause})
    reasons: dict[str, int] = {}
    for r in result.rejected:
        key = r["reason"].split(" (")[0].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    click.echo(
        f"templates generate: {len(result.accepted)} accepted of {count} asked in {result.rounds} rounds, "
        f"{len(result.rejected)} refused",
        err=True,
    )
    for k, v in sorted(reasons.items()):
        click.echo(f"  refused {k}: {v}", err=True)
    click.echo("  " + client.usage.summary(), err=True)
    if not result.accepted:
        why = f"the last request failed: {result.failed[-1]}" if result.failed else "see --rejects"
        raise InstructgenError(f"no template was accepted, {output} was not written ({why})")
    if len(result.accepted) < count:
        click.echo(f"  note: stopped after {options.stall_rounds} rounds without a new template", err=True)
