"""--engine ray (issue 15): the same pipeline on a local Ray (2 CPUs), sharded, resumable, deterministic.

What is pinned: concatenating `part-*.jsonl` gives the in-process output byte for byte (and the same
--rejects file and summary counts), whatever order Ray finished the shards in; exact dedup across
shards keeps the in-process set; `--max-shards` stops after that many shards and a re-run converts
only the missing ones (markers and the report say so) and ends with the uninterrupted bytes; a
folder of another configuration is refused. The output-shard naming `part-00000-of-00012` follows
Spark/HF datasets (`datasets/arrow_dataset.py` `_push_parquet_shards_to_hub`: `{split}-{index:05d}-of-{num_shards:05d}`).

One Ray session serves every Ray test (conftest.py `ray_local`: start-up costs seconds); the engine
joins it and leaves it running, as it would a user's `ray.init()`; one test runs the CLI in a fresh
process, where the engine starts its own local Ray and shuts it down.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "zh_en.tsv"


def counts(stderr: str) -> list[str]:
    """The summary (-v: with per-step counts) without notes (file names, the engine's shard note) and
    step seconds, which differ between runs; Ray's own log lines are left out."""
    lines = [
        ln
        for ln in stderr.splitlines()
        if (ln.startswith("  ") or re.match(r"[\w-]+: read \d+", ln)) and "note:" not in ln
    ]
    return [re.sub(r", \d+\.\d\d s", "", ln) for ln in lines]


def shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.jsonl"))


def concatenated(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in shards(folder))


def local_and_ray(run_cli, tmp_path: Path, args: list[str], *extra: str, cmd: str = "translate"):
    """Run `cmd args` in-process and on Ray; returns (local result, ray result, ray folder)."""
    local = run_cli(
        cmd, *args, "-o", tmp_path / "local.jsonl", "--rejects", tmp_path / "local_rej.jsonl", "-v"
    )
    assert local.exit_code == 0, local.stderr
    folder = tmp_path / "shards"
    on_ray = run_cli(
        cmd,
        *args,
        "-o",
        folder,
        "--rejects",
        tmp_path / "ray_rej.jsonl",
        "-v",
        "--engine",
        "ray",
        *extra,
    )
    assert on_ray.exit_code == 0, on_ray.stderr
    return local, on_ray, folder


def test_example_shards_concatenate_to_in_process_bytes(ray_local, run_cli, tmp_path):
    args = [
        EXAMPLE,
        "--src-lang",
        "zh",
        "--tgt-lang",
        "en",
        "--direction",
        "both",
        "--instruction-lang",
        "mix",
    ]
    local, on_ray, folder = local_and_ray(run_cli, tmp_path, args, "--shard-rows", "7")
    names = [p.name for p in shards(folder)]
    assert names == [f"part-0000{i}-of-00004.jsonl" for i in range(4)]  # 25 pairs in shards of 7
    assert [len(p.read_text().splitlines()) for p in shards(folder)] == [14, 14, 14, 8]  # both directions
    assert concatenated(folder) == (tmp_path / "local.jsonl").read_bytes()
    assert (tmp_path / "ray_rej.jsonl").read_bytes() == (tmp_path / "local_rej.jsonl").read_bytes()
    assert counts(on_ray.stderr) == counts(local.stderr)
    assert (
        "note: ray: 4 shard(s) of up to 7 items" in on_ray.stderr
        and "4 converted now, 0 complete" in on_ray.stderr
    )
    # it joined the session's Ray (no start-up of its own in the note) and left it running
    assert "Ray start-up" not in on_ray.stderr and ray_local.is_initialized()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["task"] == "translation" and manifest["items"] == 25 and manifest["shards"] == 4
    assert manifest["options"]["direction"] == "both" and manifest["output"]["format"] == "alpaca"
    assert manifest["inputs"] == [
        {
            "path": str(EXAMPLE),
            "bytes": EXAMPLE.stat().st_size,
            "sha256": hashlib.sha256(EXAMPLE.read_bytes()).hexdigest(),
        }
    ]
    per_shard = manifest["per_shard"]
    assert [s["items"] for s in per_shard] == [7, 7, 7, 4]
    assert (
        sum(s["written"] for s in per_shard) == 50 == len((tmp_path / "local.jsonl").read_text().splitlines())
    )


@pytest.mark.shared
def test_wmt21_shards_equal_in_process_with_rejections(ray_local, run_cli, shared_data, tmp_path):
    d = shared_data / "wmt21_newstest_zh_en"
    args = [
        "--src-file", d / "newstest2021.zh-en.src.zh", "--tgt-file", d / "newstest2021.zh-en.ref.A.en",
        "--src-lang", "zh", "--tgt-lang", "en", "--meta",
    ]  # fmt: skip
    local, on_ray, folder = local_and_ray(run_cli, tmp_path, args, "--shard-rows", "500")
    assert len(shards(folder)) == 4  # 1,948 pairs
    assert concatenated(folder) == (tmp_path / "local.jsonl").read_bytes()
    rejects = (tmp_path / "ray_rej.jsonl").read_bytes()
    assert (
        rejects == (tmp_path / "local_rej.jsonl").read_bytes() and rejects.count(b"\n") == 2
    )  # wrong_language_target
    assert counts(on_ray.stderr) == counts(local.stderr)
    assert "translation: read 1948, wrote 1946, rejected 2" in on_ray.stderr


_OWN_RAY = """
import sys

import ray
from click.testing import CliRunner

from instructgen.cli.main import cli

assert not ray.is_initialized()
result = CliRunner().invoke(cli, sys.argv[1:], catch_exceptions=False)
sys.stderr.write(result.stderr)
print(result.exit_code, ray.is_initialized())
"""


def test_dedup_across_shards_keeps_the_in_process_records(run_cli, tmp_path):
    """Run as the CLI runs it, in a fresh process with no Ray running and no RAY_ADDRESS: the engine
    starts its own local Ray (the note gives its start-up seconds) and shuts it down after the run."""
    import os
    import subprocess

    pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    rows = EXAMPLE.read_text(encoding="utf-8").splitlines()
    header, pairs = rows[0], rows[1:]
    # each of pairs 3, 9 and 17 again in later shards (shards of 10 rows), and pair 17 twice in one shard
    data = [header, *pairs, pairs[3], pairs[17], pairs[9], pairs[17], pairs[3]]
    src = tmp_path / "dups.tsv"
    src.write_text("\n".join(data) + "\n", encoding="utf-8")
    args = [src, "--src-lang", "zh", "--tgt-lang", "en"]
    local = run_cli(
        "translate", *args, "-o", tmp_path / "local.jsonl", "--rejects", tmp_path / "local_rej.jsonl", "-v"
    )
    assert local.exit_code == 0, local.stderr
    folder = tmp_path / "shards"
    cmd = ["translate", *args, "-o", folder, "--rejects", tmp_path / "ray_rej.jsonl", "-v"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    on_ray = subprocess.run(
        [sys.executable, "-c", _OWN_RAY, *map(str, cmd), "--engine", "ray", "--shard-rows", "10"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert on_ray.returncode == 0, on_ray.stderr
    assert on_ray.stdout.split() == ["0", "False"], on_ray.stderr  # exit 0; Ray shut down after the run
    assert re.search(
        r"3 converted now, 0 complete from an earlier run; Ray start-up \d+\.\d s", on_ray.stderr
    )
    assert len(shards(folder)) == 3
    assert concatenated(folder) == (tmp_path / "local.jsonl").read_bytes()
    rejected = [json.loads(x) for x in (tmp_path / "ray_rej.jsonl").read_text().splitlines()]
    assert [(r["reason"], r["line"], r["detail"]) for r in rejected] == [
        ("duplicate_pair", 27, "exact duplicate of an earlier pair (line 5)"),
        ("duplicate_pair", 28, "exact duplicate of an earlier pair (line 19)"),
        ("duplicate_pair", 29, "exact duplicate of an earlier pair (line 11)"),
        ("duplicate_pair", 30, "exact duplicate of an earlier pair (line 19)"),
        ("duplicate_pair", 31, "exact duplicate of an earlier pair (line 5)"),
    ]
    assert (tmp_path / "ray_rej.jsonl").read_bytes() == (tmp_path / "local_rej.jsonl").read_bytes()
    assert counts(on_ray.stderr) == counts(local.stderr)


def test_resume_converts_only_missing_shards(ray_local, run_cli, tmp_path):
    rows = EXAMPLE.read_text(encoding="utf-8").splitlines()
    src = tmp_path / "dups.tsv"  # a duplicate in the last shard of an earlier shard's pair: the resumed
    src.write_text("\n".join([*rows, rows[2]]) + "\n", encoding="utf-8")  # run must know shard 0's keys
    common = [src, "--src-lang", "zh", "--tgt-lang", "en"]
    args = [*common, "--shard-rows", "6", "--engine", "ray"]
    # the uninterrupted run: in-process (the first test shows a whole Ray run gives these bytes)
    whole = run_cli(
        "translate", *common, "-o", tmp_path / "whole.jsonl", "--rejects", tmp_path / "whole_rej.jsonl", "-v"
    )
    assert whole.exit_code == 0, whole.stderr

    out = tmp_path / "resumed"
    first = run_cli("translate", *args, "-o", out, "--max-shards", "2")
    assert first.exit_code == 0, first.stderr
    work = out / "_work"
    assert sorted(p.name for p in work.glob("*.done")) == [
        "part-00000-of-00005.done",
        "part-00001-of-00005.done",
    ]
    assert [p.name for p in shards(out)] == ["part-00000-of-00005.jsonl", "part-00001-of-00005.jsonl"]
    assert "2 converted now, 0 complete from an earlier run" in first.stderr
    assert "stopped after --max-shards 2: 3 shard(s) left" in first.stderr
    assert "translation: read 12, wrote 12, rejected 0" in first.stderr  # what it got through
    before = {p.name: p.stat().st_mtime_ns for p in [*shards(out), *work.iterdir()]}

    second = run_cli("translate", *args, "-o", out, "--rejects", tmp_path / "resumed_rej.jsonl", "-v")
    assert second.exit_code == 0, second.stderr
    assert "3 converted now, 2 complete from an earlier run" in second.stderr
    after = {p.name: p.stat().st_mtime_ns for p in [*shards(out), *work.iterdir()]}
    assert {k: after[k] for k in before} == before  # shards 0-1 and all their files untouched
    # per shard: the output, and under _work/ the marker, outcomes, keys, repeats, rejects, counts
    assert len(before) == 2 * 7 and len(after) == 5 * 7
    assert concatenated(out) == (tmp_path / "whole.jsonl").read_bytes()
    assert (tmp_path / "resumed_rej.jsonl").read_bytes() == (tmp_path / "whole_rej.jsonl").read_bytes()
    assert b"exact duplicate of an earlier pair (line 3)" in (tmp_path / "resumed_rej.jsonl").read_bytes()
    assert counts(second.stderr) == counts(whole.stderr)

    third = run_cli("translate", *args, "-o", out)  # all complete: nothing converted, Ray not needed
    assert third.exit_code == 0 and "0 converted now, 5 complete from an earlier run" in third.stderr
    assert concatenated(out) == (tmp_path / "whole.jsonl").read_bytes()


def test_other_configuration_is_refused_then_overwritten(ray_local, run_cli, tmp_path):
    common = [EXAMPLE, "--src-lang", "zh", "--tgt-lang", "en"]
    args = [*common, "--shard-rows", "10", "--engine", "ray", "-o", tmp_path / "o"]
    first = run_cli("translate", *args, "--max-shards", "1")
    assert first.exit_code == 0 and "1 converted now, 0 complete" in first.stderr
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["options"]["seed"] == 0
    other = run_cli("translate", *args, "--seed", "7")
    assert other.exit_code == 2
    assert other.stderr.strip().endswith(
        f"error: {tmp_path / 'o'} holds shards of another configuration (changed: options.seed); refusing to mix "
        "them: use --overwrite to start over, or another folder"
    )
    # the same file read another way is another configuration too (the reader and its arguments)
    header = run_cli("translate", *args, "--header", "yes")
    assert header.exit_code == 2 and "(changed: readers)" in header.stderr
    again = run_cli("translate", *args, "--seed", "7", "--overwrite")
    assert again.exit_code == 0 and "3 converted now, 0 complete" in again.stderr
    assert run_cli("translate", *common, "--seed", "7", "-o", tmp_path / "local.jsonl").exit_code == 0
    assert concatenated(tmp_path / "o") == (tmp_path / "local.jsonl").read_bytes()


def test_a_running_ray_is_joined_and_left_running(ray_local):
    """A user's `ray.init()` (here the session's): the engine's session uses it, reports no start-up
    of its own, keeps the cluster's CPUs (not the `num_cpus` it would start with) and does not shut it
    down."""
    from instructgen.pipeline.ray_engine import RaySession, ray_session

    cpus = ray_local.cluster_resources()["CPU"]
    with ray_session(num_cpus=1) as startup:
        assert startup == 0.0 and ray_local.cluster_resources()["CPU"] == cpus
    assert ray_local.is_initialized()
    session = RaySession(None, 1)
    session.start()
    session.close()
    assert session.startup == 0.0 and ray_local.is_initialized()


def test_unsplittable_format_and_stdout_are_refused(run_cli, tmp_path):
    pytest.importorskip("ray")
    args = [EXAMPLE, "--src-lang", "zh", "--tgt-lang", "en", "--engine", "ray"]
    r = run_cli("translate", *args, "--format", "alpaca-json", "-o", tmp_path / "o")
    assert r.exit_code == 2
    assert "error: --engine ray writes JSONL shards: --format alpaca-json cannot be split" in r.stderr
    r = run_cli("translate", *args)
    assert (
        r.exit_code == 2
        and "error: --engine ray writes shards to a folder: give -o FOLDER, not stdout" in r.stderr
    )


def test_without_ray_the_engine_says_how_to_install(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when it is not installed
    r = run_cli(
        "translate", EXAMPLE, "--src-lang", "zh", "--tgt-lang", "en", "--engine", "ray", "-o", tmp_path / "o"
    )
    assert r.exit_code == 2
    assert (
        r.stderr
        == "error: --engine ray needs Ray Data: pip install 'instructgen[ray]' (it pins ray[data]==2.60.0)\n"
    )
    assert not (tmp_path / "o").exists()


def local_and_sharded(task: str, options, opener, tmp_path: Path, shard_rows: int, **read):
    """The task in-process (registry.start + the CLI's sink) and through `run_sharded` on the same
    picklable opener; returns (local result, sharded run)."""
    from instructgen.cli.common import write_outcomes
    from instructgen.pipeline import registry
    from instructgen.pipeline.ray_engine import run_sharded

    run = registry.start(task, options, opener)
    write_outcomes(
        run, str(tmp_path / "local.jsonl"), "alpaca", None, False, str(tmp_path / "local_rej.jsonl")
    )
    local = registry.finished(task, options, run)
    sharded = run_sharded(
        task,
        options,
        opener,
        tmp_path / "shards",
        shard_rows=shard_rows,
        rejects=str(tmp_path / "ray_rej.jsonl"),
    )
    return local, sharded


def summary_counts(result) -> list[str]:
    return counts(result.report.summary(True))


@pytest.mark.shared
def test_ner_conll_shards_equal_in_process(ray_local, shared_data, tmp_path):
    """NER has a plan (scheme, labels, the empty quota): read in the driver, broadcast to the actors."""
    import functools

    from instructgen.converters.ner import NerOptions
    from instructgen.io.tagged import read_tagged

    text = (shared_data / "conll2003_en" / "eng.testb").read_text(encoding="utf-8")
    conll = tmp_path / "head.conll"  # the first 900 sentences (CI time), in 3 shards
    conll.write_text("\n\n".join(text.split("\n\n")[:901]) + "\n", encoding="utf-8")
    opener = functools.partial(read_tagged, str(conll))
    options = NerOptions(seed=3, target="json", max_empty_ratio=0.1)
    local, sharded = local_and_sharded("ner", options, opener, tmp_path, 300)
    assert sharded.shards == 3 and sharded.converted == 3
    assert local.report.read == 854  # 900 blocks less the -DOCSTART- lines
    assert concatenated(tmp_path / "shards") == (tmp_path / "local.jsonl").read_bytes()
    assert (tmp_path / "ray_rej.jsonl").read_bytes() == (tmp_path / "local_rej.jsonl").read_bytes()
    assert summary_counts(sharded.result) == summary_counts(local)
    # the quota and dedup are sequential steps: they ran in the driver across shards, as in-process
    assert sharded.result.report.rejected["too_many_empty"] == local.report.rejected["too_many_empty"] > 0
    assert sharded.result.report.rejected["duplicate_record"] == local.report.rejected["duplicate_record"] > 0
    assert sharded.result.scheme == local.scheme and sharded.result.repairs == local.repairs


def test_several_files_are_sharded_each_and_dedup_spans_them(ray_local, tmp_path):
    """A list of openers (one per file) reads as their concatenation; no shard spans two files, and a
    pair repeated in the second file is rejected against the first, as in-process over both."""
    import functools
    import itertools

    from instructgen.cli.common import write_outcomes
    from instructgen.converters.translation import TranslationOptions
    from instructgen.io.readers import read_parallel
    from instructgen.pipeline import registry
    from instructgen.pipeline.ray_engine import run_sharded

    rows = EXAMPLE.read_text(encoding="utf-8").splitlines()
    first, second = tmp_path / "a.tsv", tmp_path / "b.tsv"
    first.write_text("\n".join(rows[:11]) + "\n", encoding="utf-8")  # header + 10 pairs
    second.write_text(
        "\n".join([rows[0], *rows[11:], rows[4]]) + "\n", encoding="utf-8"
    )  # 15 more + a repeat
    opts = TranslationOptions(src_lang="zh", tgt_lang="en", seed=2)
    openers = [
        functools.partial(read_parallel, str(p), src_lang="zh", tgt_lang="en") for p in (first, second)
    ]
    run = registry.start("translation", opts, lambda: itertools.chain(*(op() for op in openers)))
    write_outcomes(
        run, str(tmp_path / "local.jsonl"), "alpaca", None, False, str(tmp_path / "local_rej.jsonl")
    )
    done = run_sharded(
        "translation", opts, openers, tmp_path / "o", shard_rows=6, rejects=str(tmp_path / "rej.jsonl")
    )
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert [(s["source"], s["start"], s["stop"]) for s in manifest["per_shard"]] == [
        (0, 0, 6), (0, 6, 10), (1, 0, 6), (1, 6, 12), (1, 12, 16)
    ]  # fmt: skip
    assert done.shards == 5 and done.result.report.read == 26
    assert concatenated(tmp_path / "o") == (tmp_path / "local.jsonl").read_bytes()
    rejected = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [(r["source_file"], r["line"], r["detail"]) for r in rejected] == [
        (str(second), 17, "exact duplicate of an earlier pair (line 5)")
    ]
    assert (tmp_path / "rej.jsonl").read_bytes() == (tmp_path / "local_rej.jsonl").read_bytes()


@pytest.mark.shared
def test_ordered_path_resume_replays_the_quota(ray_local, shared_data, tmp_path):
    """NER with an empty quota takes the ordered path (the driver runs the quota over every outcome in
    shard order). Stopped after one shard and resumed, the quota's state comes from replaying the
    first shard's stored outcomes: the result equals the in-process run's."""
    import functools

    from instructgen.converters.ner import NerOptions
    from instructgen.io.tagged import read_tagged
    from instructgen.pipeline.ray_engine import keyed, run_sharded
    from instructgen.pipeline.registry import get

    text = (shared_data / "conll2003_en" / "eng.testa").read_text(encoding="utf-8")
    conll = tmp_path / "head.conll"
    conll.write_text("\n\n".join(text.split("\n\n")[:601]) + "\n", encoding="utf-8")
    opener = functools.partial(read_tagged, str(conll))
    options = NerOptions(seed=1, target="list", max_empty_ratio=0.05)
    local, _ = local_and_sharded("ner", options, opener, tmp_path, 200)
    plan = get("ner").plan(options, opener())
    assert not keyed(get("ner").build(options, plan))  # the quota: ordered path
    out = tmp_path / "resumed"
    first = run_sharded("ner", options, opener, out, shard_rows=200, max_shards=1)
    assert (first.converted, first.skipped, first.remaining) == (1, 0, 2)
    second = run_sharded(
        "ner", options, opener, out, shard_rows=200, rejects=str(tmp_path / "resumed_rej.jsonl")
    )
    assert (second.converted, second.skipped, second.remaining) == (2, 1, 0)
    assert concatenated(out) == (tmp_path / "local.jsonl").read_bytes()
    assert (tmp_path / "resumed_rej.jsonl").read_bytes() == (tmp_path / "local_rej.jsonl").read_bytes()
    assert second.result.report.rejected["too_many_empty"] == local.report.rejected["too_many_empty"] > 0
    assert summary_counts(second.result) == summary_counts(local)


@pytest.mark.shared
def test_ner_and_classify_commands_take_engine_ray(ray_local, run_cli, shared_data, tmp_path):
    """The commands' own wiring (cli/tasks.py hands run_options' engine to common.run_sharded).
    Classification has a plan pass (label names, options) read in the driver and broadcast to the
    actors: SST-2's 872 rows in 3 shards give the in-process bytes, rejects and label counts."""
    text = (shared_data / "conll2003_en" / "eng.testb").read_text(encoding="utf-8")
    conll = tmp_path / "head.conll"
    conll.write_text("\n\n".join(text.split("\n\n")[:401]) + "\n", encoding="utf-8")
    sst2 = shared_data / "sst2" / "glue_sst2_dev.tsv"
    for cmd, args, n_shards in (
        ("ner", [conll, "--target", "inline"], 2),
        (
            "classify",
            [sst2, "--text-col", "sentence", "--label-names", "negative,positive", "--seed", "5"],
            3,
        ),
    ):
        local_rej, ray_rej = tmp_path / f"{cmd}_rej.jsonl", tmp_path / f"{cmd}_ray_rej.jsonl"
        local = run_cli(cmd, *args, "-o", tmp_path / f"{cmd}.jsonl", "--rejects", local_rej, "-v")
        assert local.exit_code == 0, local.stderr
        on_ray = run_cli(
            cmd,
            *args,
            "--engine",
            "ray",
            "--shard-rows",
            "300",
            "-o",
            tmp_path / cmd,
            "--rejects",
            ray_rej,
            "-v",
        )
        assert on_ray.exit_code == 0, on_ray.stderr
        assert len(shards(tmp_path / cmd)) == n_shards
        assert concatenated(tmp_path / cmd) == (tmp_path / f"{cmd}.jsonl").read_bytes()
        assert ray_rej.read_bytes() == local_rej.read_bytes()
        assert counts(on_ray.stderr) == counts(local.stderr) and ": read " in counts(local.stderr)[0]
    # the label counts (a note, which counts() leaves out) are the in-process ones
    labels = [ln for ln in local.stderr.splitlines() if "note: labels written:" in ln]
    assert labels == ["  note: labels written: negative 428, positive 444"]  # all 872 rows
    assert labels == [ln for ln in on_ray.stderr.splitlines() if "note: labels written:" in ln]


def _convert_input(tmp_path: Path) -> Path:
    """The project's example pairs as instruction data in mixed layouts (Alpaca, ShareGPT, messages,
    recognised per row), then rows that every reject path meets: exact repeats of earlier rows in
    later shards and within one shard, a broken JSON line, an empty prompt, a placeholder, a
    conversation without an answer. 33 lines: shards of 10 put lines 26-30 in shard 2, 31-33 in 3."""
    pairs = [ln.split("\t") for ln in EXAMPLE.read_text(encoding="utf-8").splitlines()[1:]]
    assert len(pairs) == 25
    lines = []
    for i, (zh, en) in enumerate(pairs):
        if i % 3 == 0:
            row = {"instruction": "Translate into English.", "input": zh, "output": en}
        elif i % 3 == 1:
            row = {
                "conversations": [
                    {"from": "human", "value": f"English please: {zh}"},
                    {"from": "gpt", "value": en},
                ]
            }
        else:
            row = {"messages": [{"role": "user", "content": zh}, {"role": "assistant", "content": en}]}
        lines.append(json.dumps(row, ensure_ascii=False))
    lines += [
        lines[3],  # 26: line 4 again (shard 2 repeats shard 0)
        "{not json",  # 27
        json.dumps({"instruction": "  ", "input": "", "output": "x"}),  # 28
        lines[14],  # 29: line 15 again (shard 2 repeats shard 1)
        json.dumps({"instruction": "Fill {{ name }} in.", "output": "ok"}),  # 30
        lines[3],  # 31: line 4 a third time (shard 3)
        json.dumps({"conversations": [{"from": "human", "value": "hi"}]}),  # 32: no answer
        lines[14],  # 33: line 15 a third time
    ]
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


def test_convert_command_takes_engine_ray_with_dedup_across_shards(ray_local, run_cli, tmp_path):
    """`convert --engine ray` (its opener a partial of tasks.convert.read_items): the shards concatenate
    to the in-process bytes, with the same rejects and counts; repeats in later shards (and twice in
    one shard) are rejected against their first occurrence, as the in-process dedup words it."""
    src = _convert_input(tmp_path)
    args = [src, "--on-error", "skip", "--check-placeholders", "--format", "sharegpt"]
    local, on_ray, folder = local_and_ray(run_cli, tmp_path, args, "--shard-rows", "10", cmd="convert")
    assert [p.name for p in shards(folder)] == [f"part-0000{i}-of-00004.jsonl" for i in range(4)]
    assert [len(p.read_text().splitlines()) for p in shards(folder)] == [10, 10, 5, 0]
    assert concatenated(folder) == (tmp_path / "local.jsonl").read_bytes()
    assert (tmp_path / "ray_rej.jsonl").read_bytes() == (tmp_path / "local_rej.jsonl").read_bytes()
    rejected = [json.loads(x) for x in (tmp_path / "ray_rej.jsonl").read_text().splitlines()]
    assert [
        (r["line"], r["reason"], r["detail"] if r["reason"] == "duplicate_record" else "") for r in rejected
    ] == [
        (26, "duplicate_record", "same conversation as line 4"),
        (27, "malformed_json", ""),
        (28, "empty_prompt", ""),
        (29, "duplicate_record", "same conversation as line 15"),
        (30, "unrendered_placeholder", ""),
        (31, "duplicate_record", "same conversation as line 4"),
        (32, "malformed_row", ""),
        (33, "duplicate_record", "same conversation as line 15"),
    ]
    assert {r["source_file"] for r in rejected} == {str(src)}
    assert counts(on_ray.stderr) == counts(local.stderr)
    assert counts(on_ray.stderr)[:2] == [
        "convert: read 33, wrote 25, rejected 8",
        "  rejected duplicate_record: 4",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["task"] == "convert" and manifest["items"] == 33
    assert manifest["options"] == {"dedup": True, "placeholders": True}
    assert manifest["readers"] == [
        {"reader": "instructgen.tasks.convert.read_items", "args": [str(src)], "kwargs": {"on_error": "skip"}}
    ]
    # malformed input stops a Ray run before any shard, with the in-process error (exit 2)
    strict = [src, "--format", "sharegpt", "-o"]
    stopped = run_cli("convert", *strict, tmp_path / "strict", "--engine", "ray")
    assert stopped.exit_code == 2 and not shards(tmp_path / "strict")
    assert stopped.stderr == run_cli("convert", *strict, tmp_path / "strict.jsonl").stderr
    assert stopped.stderr.startswith(f"error: {src}:27: invalid JSON")


@pytest.mark.shared
def test_convert_alpaca_demo_shards_equal_in_process(ray_local, run_cli, shared_data, tmp_path):
    """LLaMA-Factory's alpaca_zh_demo.json (a JSON array: every actor parses it and takes its range):
    its 8 repeats (test_convert pins the count) sit in 4 shards of 250, 6 of them after a first
    occurrence in an earlier shard (517 of 141, 612 of 116, 780 of 175, 782 of 182, 880 of 393, 908 of
    267) and 2 within one shard (598 of 576, 997 of 987).
    """
    args = [shared_data / "alpaca_zh_demo.json", "--format", "messages", "--meta"]
    local, on_ray, folder = local_and_ray(run_cli, tmp_path, args, "--shard-rows", "250", cmd="convert")
    assert len(shards(folder)) == 4
    assert concatenated(folder) == (tmp_path / "local.jsonl").read_bytes()
    assert (tmp_path / "ray_rej.jsonl").read_bytes() == (tmp_path / "local_rej.jsonl").read_bytes()
    rejected = [json.loads(x) for x in (tmp_path / "ray_rej.jsonl").read_text().splitlines()]
    assert [(r["line"], r["detail"]) for r in rejected][:5] == [
        (517, "same conversation as line 141"),
        (598, "same conversation as line 576"),
        (612, "same conversation as line 116"),
        (780, "same conversation as line 175"),
        (782, "same conversation as line 182"),
    ]
    assert counts(on_ray.stderr) == counts(local.stderr)
    assert "convert: read 1000, wrote 992, rejected 8" in on_ray.stderr


class _Built:
    """A shard callable that says which instance answered (for `_serve`)."""

    made = 0

    def __init__(self, label: str) -> None:
        _Built.made += 1
        self.label, self.n = label, _Built.made

    def __call__(self, batch):
        return {"index": list(batch["index"]), "made": [self.n] * len(batch["index"]), "label": [self.label]}


def test_a_worker_builds_the_shard_callable_once_per_run():
    """Shard tasks (`map_shards`) keep their callable for the rest of the run in that worker
    process, as an actor would, and build it afresh for another run (a later run may find other
    files at the same paths)."""
    from ray import cloudpickle

    from instructgen.pipeline import ray_engine

    spec = cloudpickle.dumps((_Built, ("x",)))
    first = ray_engine._serve({"index": [0]}, "run-1", spec)
    again = ray_engine._serve({"index": [1]}, "run-1", spec)
    other = ray_engine._serve({"index": [0]}, "run-2", spec)
    assert first["made"] == again["made"] and first["label"] == ["x"]
    assert other["made"] == [first["made"][0] + 1]
    assert list(ray_engine._BUILT) == ["run-2"]  # only the last run's callable is kept
