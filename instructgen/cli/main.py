"""The `instructgen` command group."""

from __future__ import annotations

import click

from .. import __version__
from .convert import convert_cmd
from .dataops import export_cmd, mix_cmd, split_cmd, stats_cmd
from .identity import identity_cmd, scan_cmd
from .tasks import classify_cmd, ner_cmd
from .templates import templates_group
from .tokenize import formats_cmd, inspect_cmd, tokenize_cmd
from .translate import translate_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="instructgen")
def cli():
    """Build instruction-tuning data for LLMs.

    Converters turn corpora into <instruction, input, output> records phrased from
    template pools; every run ends with a summary of what was read, written and rejected.
    """


cli.add_command(translate_cmd)
cli.add_command(ner_cmd)
cli.add_command(classify_cmd)
cli.add_command(templates_group)
cli.add_command(identity_cmd)
cli.add_command(scan_cmd)
cli.add_command(mix_cmd)  # N sources; the two-file --ratio form still works
cli.add_command(split_cmd)
cli.add_command(stats_cmd)
cli.add_command(export_cmd)
cli.add_command(convert_cmd)
cli.add_command(tokenize_cmd)
cli.add_command(inspect_cmd)
cli.add_command(formats_cmd)


def main() -> None:
    cli()
