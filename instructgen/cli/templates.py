"""`instructgen templates list | show | validate`: inspect and lint pools, offline."""

from __future__ import annotations

import sys

import click

from ..errors import InstructgenError
from ..templates.pool import PoolSet, builtin_pool_files, load_builtin_pools, load_pool
from ..templates.tasks import get_task, known_tasks
from .common import fail_cleanly


@click.group("templates")
def templates_group():
    """Inspect, show and validate template pools (task_templates/<task>/<lang>.yaml)."""


@templates_group.command("list")
@click.option("--task", type=click.Choice(known_tasks()), help="Only pools of this task.")
@click.option("-v", "--verbose", is_flag=True, help="Also list every template id.")
@fail_cleanly
def list_cmd(task, verbose):
    """List the shipped pools: task, language and number of templates."""
    for pool in load_builtin_pools(task):
        click.echo(
            f"{pool.path}\ttask={pool.task}\tlanguage={pool.language}\ttemplates={len(pool.templates)}"
        )
        if verbose:
            for t in pool.templates:
                click.echo(f"  {t.id}\t{t.spec.instruction[:70]!r}")


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
    """Validate pool FILES (the shipped pools when none is named); exit 1 on any problem."""
    failed = 0
    targets = list(files) or [real for _, real in builtin_pool_files()]
    shown = list(files) or [s for s, _ in builtin_pool_files()]
    pools = []
    for path, name in zip(targets, shown):
        try:
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
