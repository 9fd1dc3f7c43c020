"""`instructgen identity` and `instructgen scan` (`mix` lives in cli/dataops.py)."""

from __future__ import annotations

import sys

import click

from ..identity.generate import DEFAULT_MIX, IdentityGenerator, IdentityOptions, load_persona, parse_mix
from ..identity.scan import CATEGORIES, ScanReport, scan_record
from ..io.records import read_records
from ..io.writers import JsonlSink, RecordWriter
from ..schema import Persona
from .common import fail_cleanly, output_options, parse_columns

IDENTITY_EPILOG = """\b
Examples:
  instructgen identity --name 雁栖-7B --developer 助教 --capability all_language_tasks \\
      --strength 翻译 --languages zh,en,ja -n 300 -o identity.jsonl
  instructgen identity --persona persona.yaml -n 600 --system-ratio 0.3 --multi-turn-ratio 0.2 \\
      --format query-response -o identity.jsonl
"""


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@click.command("identity", epilog=IDENTITY_EPILOG)
@click.option(
    "--persona", "persona_file", type=click.Path(), help="Persona YAML/JSON (name, developer, ...)."
)
@click.option("--name", help="The model's name (overrides the persona file).")
@click.option("--developer", help="Who developed it (overrides the persona file).")
@click.option(
    "--capability",
    "capabilities",
    multiple=True,
    help="What it can do (repeatable or comma-separated): translation, coding, writing, math, ... "
    "or their names in any pool language (翻译).",
)
@click.option(
    "--strength", "strengths", multiple=True, help="What it is especially good at, as --capability."
)
@click.option(
    "--speaks",
    default=None,
    help="Languages the model says it speaks, comma-separated (the persona's `languages`). "
    "Without it, no record claims any language list.",
)
@click.option(
    "--base-model",
    default=None,
    help="The model this one is fine-tuned from: answers say 'built on top of X' and never deny it.",
)
@click.option(
    "--hide-base-model",
    is_flag=True,
    help="With a base model: answers decline to name it (and still never deny it).",
)
@click.option(
    "--languages",
    default=None,
    help="Languages to write records in, comma-separated (default: the "
    "persona's languages, else zh,en). Pools ship for zh, en, ja, ko, de, fr, es.",
)
@click.option(
    "--mix",
    "mix_text",
    default=None,
    metavar="CATEGORY=WEIGHT,...",
    help="Change the target category mix (weights, renormalized; 0 drops a category). Default: "
    + ", ".join(f"{c}={w:g}" for c, w in DEFAULT_MIX.items())
    + ".",
)
@click.option(
    "-n",
    "count",
    type=int,
    default=300,
    show_default=True,
    help="Records in total, split evenly by language.",
)
@click.option(
    "--system-ratio",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of records that carry a system prompt.",
)
@click.option(
    "--multi-turn-ratio",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of records that start with a greeting turn before the identity question.",
)
@click.option(
    "--seeds",
    "seed_files",
    multiple=True,
    type=click.Path(),
    help="Your own identity pool (replaces the shipped pool of its language; repeatable).",
)
@click.option(
    "--langid",
    type=click.Choice(["fasttext", "langdetect", "none"]),
    default="fasttext",
    show_default=True,
    help="Checks that each question and answer is in the record's language.",
)
@click.option(
    "--llm",
    "llm_model",
    default=None,
    metavar="MODEL",
    help="Paraphrase records with this model (any OpenAI-compatible endpoint); failures keep the seed.",
)
@click.option(
    "--llm-ratio", type=float, default=1.0, show_default=True, help="Share of records to paraphrase."
)
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint for --llm (default: OpenAI).")
@click.option(
    "--api-key-env", default="OPENAI_API_KEY", show_default=True, help="Variable holding the API key."
)
@click.option("--concurrency", type=int, default=4, show_default=True, help="LLM requests in flight at most.")
@click.option("--cache-dir", default=None, help="LLM response cache (default: $XDG_CACHE_HOME/instructgen).")
@click.option("--offline", is_flag=True, help="Replay LLM answers from the cache only.")
@click.option(
    "--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for one LLM answer."
)
@click.option("--max-retries", type=int, default=5, show_default=True, help="Retries per LLM request.")
@output_options
@fail_cleanly
def identity_cmd(
    persona_file,
    name,
    developer,
    capabilities,
    strengths,
    speaks,
    base_model,
    hide_base_model,
    languages,
    mix_text,
    count,
    system_ratio,
    multi_turn_ratio,
    seed_files,
    langid,
    llm_model,
    llm_ratio,
    base_url,
    api_key_env,
    concurrency,
    cache_dir,
    offline,
    timeout,
    max_retries,
    output,
    fmt,
    columns,
    meta,
    rejects,
    seed,
    quiet,
):
    """Write "who are you / who made you / what can you do" records for a persona.

    Records are split evenly across languages and follow a target category mix (who the model
    is, who built it and what it can do are the majority; "are you X?" denials and adversarial
    insistence about 12%; see --mix). Each answer states what its question asks, records never
    repeat an instruction/answer pair, always name the persona, and are checked for language
    agreement and leftover placeholders. The report prints the mix written.
    """
    data = load_persona(persona_file).model_dump(exclude_unset=True) if persona_file else {}
    for key, value in (("name", name), ("developer", developer)):
        if value:
            data[key] = value
    if capabilities:
        data["capabilities"] = _split(capabilities)
    if strengths:
        data["strengths"] = _split(strengths)
    if speaks:
        data["languages"] = _split((speaks,))
    if base_model:
        data["base_model"] = base_model
    if hide_base_model:
        data["disclose_base_model"] = False
    missing = [f"--{k}" for k in ("name", "developer") if not data.get(k)]
    if missing:
        raise click.UsageError(f"give {' and '.join(missing)}, or a --persona file that sets them")
    persona = Persona.model_validate(data)
    langs = tuple(_split((languages,))) if languages else ()
    options = IdentityOptions(
        n=count,
        languages=langs,
        seed=seed,
        system_ratio=system_ratio,
        multi_turn_ratio=multi_turn_ratio,
        seed_files=tuple(seed_files),
        langid=langid,
        mix=parse_mix(mix_text) if mix_text else (),
    )
    gen = IdentityGenerator(persona, options)
    records, rejected, report = gen.generate()
    if llm_model:
        from ..llm.client import LLMClient, LLMConfig
        from ..llm.paraphrase import paraphrase

        client = LLMClient(
            LLMConfig(
                model=llm_model,
                base_url=base_url,
                api_key_env=api_key_env,
                concurrency=concurrency,
                cache_dir=cache_dir,
                offline=offline,
                timeout=timeout,
                max_retries=max_retries,
            )
        )
        try:
            records, refused = paraphrase(client, gen, records, ratio=llm_ratio, seed=seed)
        finally:
            client.close()
        rejected += refused
        for r in refused:
            report.reject(r)
        done = sum(1 for r in records if str(r.meta.get("source", "")).startswith("llm:"))
        failed = sum(1 for r in refused if r.reason == "llm_request_failed")
        report.notes.insert(
            0,
            f"llm: {done} records paraphrased, {len(refused) - failed} paraphrases refused (their seed records kept)"
            + (f", {failed} requests failed (their seed records kept unparaphrased)" if failed else ""),
        )
        report.notes.insert(1, client.usage.summary())
    with RecordWriter(output, fmt, columns=parse_columns(columns), with_meta=meta) as writer:
        for r in records:
            writer.write(r)
    with JsonlSink(rejects) as sink:
        for r in rejected:
            sink.write(r.model_dump())
    click.echo(report.summary(), err=True)


@click.command("scan")
@click.argument("path", type=click.Path())
@click.option(
    "-o", "--output", default=None, help="Write flagged records (with their hits) to this JSONL file."
)
@click.option("--allow", multiple=True, help="A name that is not contamination (your own model's name).")
@click.option(
    "--category",
    "categories",
    multiple=True,
    type=click.Choice(CATEGORIES),
    help="Only these categories (repeatable; default all): other_assistant (claims another named "
    "assistant or its maker), ai_self_reference ('As an AI language model, I...'), refusal (answers "
    "that open by declining).",
)
@click.option("--fail-on-hit", is_flag=True, help="Exit 1 when anything is flagged (for CI).")
@fail_cleanly
def scan_cmd(path, output, allow, categories, fail_on_hit):
    """Flag assistant answers that would teach a persona model to be someone else: claims of another
    assistant, anonymous "as an AI language model" self-references, and refusals (any
    Alpaca/ShareGPT/messages file). Counts are records per category."""
    report = ScanReport()
    chosen = tuple(categories) or CATEGORIES
    with JsonlSink(output) as sink:
        for line, record in read_records(path):
            hits = scan_record(record, tuple(allow), chosen)
            report.add(hits)
            if hits:
                sink.write(
                    {
                        "line": line,
                        "hits": [
                            {"category": h.category, "pattern": h.pattern, "text": h.text} for h in hits
                        ],
                        "output": record.output,
                    }
                )
    click.echo(report.summary(), err=True)
    if fail_on_hit and report.flagged:
        sys.exit(1)

