"""`instructgen templates list | show | validate`: inspect and lint pools, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml

from ..errors import InstructgenError
from ..identity.seeds import load_seed_pool
from ..templates.pool import PoolSet, builtin_pool_files, load_builtin_pools, load_pool
from ..templates.tasks import get_task, known_tasks
from .common import fail_cleanly


def _is_seed_pool(path: str | Path) -> bool:
    try:
        head = yaml.safe_load(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(head, dict) and head.get("task") == "identity"


@click.group("templates")
def templates_group():
    """Inspect, show and validate template pools (task_templates/<task>/<lang>.yaml)."""


@templates_group.command("list")
@click.option("--task", type=click.Choice([*known_tasks(), "identity"]), help="Only pools of this task.")
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
