"""`instructgen convert`: existing instruction data into any layout, through checks and dedup."""

from __future__ import annotations

import functools
import json
import pickle
import re

import pytest
from pydantic import BaseModel, ConfigDict

from instructgen.convert import convert, record_digest, start
from instructgen.io.records import read_records
from instructgen.schema import Record, Turn

ROWS = [
    {"instruction": "Translate to German.", "input": "Good morning", "output": "Guten Morgen"},
    {
        "instruction": "And in French?",
        "input": "",
        "output": "Bonjour",
        "system": "You are a careful translator.",
        "history": [["Translate to Spanish: Good morning", "Buenos días"]],
    },
    {"instruction": "Name a prime.", "input": "", "output": "7"},
]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _records(path) -> list[Record]:
    return [r for _, r in read_records(path)]


@pytest.mark.parametrize("layout", ["alpaca", "alpaca-json", "sharegpt", "messages", "query-response"])
def test_round_trip_through_each_layout(tmp_path, run_cli, layout):
    src = _write_jsonl(tmp_path / "in.jsonl", ROWS)
    mid = tmp_path / ("mid.json" if layout == "alpaca-json" else "mid.jsonl")
    back = tmp_path / "back.jsonl"
    first = run_cli("convert", src, "--format", layout, "-o", mid)
    assert first.exit_code == 0, first.stderr
    assert first.stderr == "convert: read 3, wrote 3, rejected 0\n"
    again = run_cli("convert", mid, "--format", "alpaca", "-o", back)
    assert again.exit_code == 0, again.stderr
    original, returned = _records(src), _records(back)
    if layout in ("alpaca", "alpaca-json"):
        assert returned == original
    else:
        # chat layouts hold one user turn: instruction and input come back joined, as chat formats show them
        for o, r in zip(original, returned, strict=True):
            assert (r.instruction, r.input) == (o.prompt_text(), "")
            assert (r.output, r.system, r.history) == (o.output, o.system, o.history)


def test_sharegpt_layout_is_exact(tmp_path, run_cli):
    src = _write_jsonl(tmp_path / "in.jsonl", ROWS[1:2])
    out = tmp_path / "out.jsonl"
    assert run_cli("convert", src, "--format", "sharegpt", "-o", out).exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8")) == {
        "conversations": [
            {"from": "human", "value": "Translate to Spanish: Good morning"},
            {"from": "gpt", "value": "Buenos días"},
            {"from": "human", "value": "And in French?"},
            {"from": "gpt", "value": "Bonjour"},
        ],
        "system": "You are a careful translator.",
    }


def test_bad_rows_are_rejected_by_reason(tmp_path, run_cli):
    rows = [
        *ROWS,
        ROWS[0],  # exact duplicate
        {"instruction": "  ", "input": "", "output": "x"},
        {"instruction": "Say hi", "input": "", "output": " "},
        {"conversations": [{"from": "human", "value": "hi"}]},  # no assistant turn
    ]
    src = tmp_path / "in.jsonl"
    _write_jsonl(src, rows)
    with src.open("a", encoding="utf-8") as f:
        f.write("{not json\n")
    out, rejects = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    res = run_cli(
        "convert", src, "--on-error", "skip", "--rejects", rejects, "-o", out, "--max-reject-ratio", "0.7"
    )
    assert res.exit_code == 0, res.stderr
    assert res.stderr.splitlines()[:6] == [
        "convert: read 8, wrote 3, rejected 5",
        "  rejected duplicate_record: 1",
        "  rejected empty_output: 1",
        "  rejected empty_prompt: 1",
        "  rejected malformed_json: 1",
        "  rejected malformed_row: 1",
    ]
    reasons = [json.loads(line)["reason"] for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert reasons == ["duplicate_record", "empty_prompt", "empty_output", "malformed_row", "malformed_json"]
    dup = json.loads(rejects.read_text(encoding="utf-8").splitlines()[0])
    assert (dup["line"], dup["detail"]) == (4, "same conversation as line 1")
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3


def test_malformed_row_stops_with_file_and_line_by_default(tmp_path, run_cli):
    src = _write_jsonl(
        tmp_path / "in.jsonl", [ROWS[0], {"conversations": [{"from": "human", "value": "hi"}]}]
    )
    res = run_cli("convert", src, "-o", tmp_path / "out.jsonl")
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: {src}:2")
    assert not (tmp_path / "out.jsonl").exists()


def test_placeholders_only_when_asked(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Fill {{ name }} in.", "output": "ok"}])
    items, _ = convert(src)
    assert [type(i).__name__ for i in items] == ["Record"]
    items, _ = convert(src, placeholders=True)
    assert [getattr(i, "reason", None) for i in items] == ["unrendered_placeholder"]


def test_dedup_key_is_unambiguous():
    a = Record(instruction="ab", input="c", output="d")
    b = Record(instruction="a", input="bc", output="d")
    assert record_digest(a) != record_digest(b)
    with_history = Record(instruction="x", output="y", history=[Turn(user="u", assistant="v")])
    assert record_digest(with_history) != record_digest(Record(instruction="x", output="y"))


@pytest.mark.shared
def test_alpaca_demo_duplicates_counted(shared_data, tmp_path, run_cli):
    res = run_cli(
        "convert", shared_data / "alpaca_zh_demo.json", "--format", "messages", "-o", tmp_path / "m.jsonl"
    )
    assert res.exit_code == 0
    assert res.stderr.splitlines()[:2] == [
        "convert: read 1000, wrote 992, rejected 8",
        "  rejected duplicate_record: 8",
    ]


def test_a_run_that_writes_nothing_exits_non_zero(tmp_path, run_cli):
    src = _write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Say hi", "input": "", "output": " "}] * 3)
    res = run_cli("convert", src, "-o", tmp_path / "out.jsonl")
    assert res.exit_code == 3
    assert res.stderr.splitlines()[-1] == (
        "error: wrote nothing: all 3 outcomes were rejected; top reasons: empty_output 3"
    )


# --- convert on the pipeline core (issue 12 item 1): --num-proc, -v, Dataset rows -------------------


def _bad_rows_file(tmp_path):
    rows = [
        *ROWS,
        ROWS[0],  # exact duplicate
        {"instruction": "  ", "input": "", "output": "x"},
        {"instruction": "Fill {{ name }} in.", "output": "ok"},
        {"conversations": [{"from": "human", "value": "hi"}]},  # no assistant turn
    ]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    with src.open("a", encoding="utf-8") as f:
        f.write("{not json\n")
    return src


def test_num_proc_2_writes_the_same_bytes(tmp_path, run_cli):
    src = _bad_rows_file(tmp_path)
    runs = {}
    for n in (1, 2):
        out, rej = tmp_path / f"out{n}.jsonl", tmp_path / f"rej{n}.jsonl"
        args = ["convert", src, "-q", "--on-error", "skip", "--check-placeholders", "--format", "sharegpt"]
        res = run_cli(*args, "--num-proc", n, "--rejects", rej, "-o", out, "--max-reject-ratio", "1")
        assert res.exit_code == 0, res.stderr
        runs[n] = (out.read_bytes(), rej.read_bytes(), res.stderr.replace(str(rej), "REJECTS"))
    assert runs[2] == runs[1]
    assert runs[1][2].splitlines()[0] == "convert: read 8, wrote 3, rejected 5"


def test_verbose_prints_one_line_per_step(tmp_path, run_cli):
    src = _bad_rows_file(tmp_path)
    args = ["convert", src, "--on-error", "skip", "--check-placeholders", "--max-reject-ratio", "1"]
    res = run_cli(*args, "-v", "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 0, res.stderr
    lines = [re.sub(r", \d+\.\d\d s", "", line) for line in res.stderr.splitlines()]
    assert lines == [
        "convert: read 8, wrote 3, rejected 5",
        "  rejected duplicate_record: 1",
        "  rejected empty_prompt: 1",
        "  rejected malformed_json: 1",
        "  rejected malformed_row: 1",
        "  rejected unrendered_placeholder: 1",
        "  step read (read): in 8, kept 6, rejected 2 (malformed_json 1, malformed_row 1)",
        "  step convert (convert): in 6, kept 6, rejected 0",
        "  step empty_fields (check): in 6, kept 5, rejected 1 (empty_prompt 1)",
        "  step placeholders (check): in 5, kept 4, rejected 1 (unrendered_placeholder 1)",
        "  step dedup (sequential): in 4, kept 3, rejected 1 (duplicate_record 1)",
    ]
    # without -v the summary is the one the command always printed
    plain = run_cli(*args, "-o", tmp_path / "o.jsonl")
    assert plain.stderr.splitlines() == lines[:6]


def test_the_api_run_is_the_registered_task(tmp_path):
    src = _bad_rows_file(tmp_path)
    run = start(src, on_error="skip", placeholders=True)
    assert run.task == "convert"
    assert [s.name for s in run.stats] == ["read", "convert", "empty_fields", "placeholders", "dedup"]
    items = list(run)
    assert [getattr(i, "reason", "record") for i in items] == [
        "record",
        "record",
        "record",
        "duplicate_record",
        "empty_prompt",
        "unrendered_placeholder",
        "malformed_row",
        "malformed_json",
    ]
    # a check's rejection shows the record as read (defaults left out), with its file and line
    assert items[4].model_dump() == {
        "reason": "empty_prompt",
        "detail": "the user turn is empty",
        "source_file": str(src),
        "line": 5,
        "example": {"instruction": "  ", "output": "x"},
    }
    assert [s.name for s in start(src, on_error="skip", dedup=False).stats] == [
        "read",
        "convert",
        "empty_fields",
    ]


def test_dataset_rows_convert_like_a_file(tmp_path):
    datasets = pytest.importorskip("datasets")
    from instructgen.pipeline import registry
    from instructgen.tasks.convert import ConvertOptions

    rows = {"instruction": ["a", "a", " ", "q"], "input": ["", "", "", None], "output": ["b", "b", "c", "r"]}
    result = registry.run_task("convert", ConvertOptions(), datasets.Dataset.from_dict(rows), num_proc=2)
    assert result.report.summary() == "\n".join(
        [
            "convert: read 4, wrote 2, rejected 2",
            "  rejected duplicate_record: 1",
            "  rejected empty_prompt: 1",
        ]
    )
    assert [(r.line, r.detail) for r in result.rejected] == [
        (2, "same conversation as line 1"),
        (3, "the user turn is empty"),
    ]
    assert result.records == [Record(instruction="a", output="b"), Record(instruction="q", output="r")]


# --- the process pool behind --num-proc: items and outcomes as (class, state) tuples ---------------


class _Loose(BaseModel):
    """A model that keeps extra fields: the pool sends it as itself (pickle), not as its state."""

    model_config = ConfigDict(extra="allow")
    a: int = 0


def test_the_pool_hands_back_the_records_its_workers_made(tmp_path):
    """`ProcessPool` sends a model as (class, __dict__, fields set) and rebuilds it as pickle does
    (`BaseModel.__setstate__`), without validation. The records (history, system) and rejections come
    back equal to the in-process run's, with the same set fields: `model_dump(exclude_defaults=...)`
    and the layouts read them, so a lost or extra field would change the output bytes."""
    from instructgen.pipeline import registry
    from instructgen.pipeline.executors import ProcessPool
    from instructgen.tasks.convert import ConvertOptions, read_items

    src = _bad_rows_file(tmp_path)
    opener = functools.partial(read_items, src, on_error="skip")
    here = registry.run_task("convert", ConvertOptions(placeholders=True), opener)
    pooled = registry.run_task(
        "convert", ConvertOptions(placeholders=True), opener, executor=ProcessPool(2, chunk_items=2)
    )
    assert pooled.records == here.records and len(here.records) == 3
    assert here.records[1].history and here.records[1].system  # nested Turn models crossed the pipe
    assert [r.model_fields_set for r in pooled.records] == [r.model_fields_set for r in here.records]
    assert pooled.rejected == here.rejected and len(here.rejected) == 5
    assert pooled.report.summary() == here.report.summary()


def test_pool_packing_round_trips_models_and_leaves_others_to_pickle():
    from instructgen.pipeline.executors import pack_items, pack_outcomes, unpack_items, unpack_outcomes
    from instructgen.pipeline.outcome import Outcome

    record = Record(
        instruction="And in French?",
        output="Bonjour",
        system="You are a careful translator.",
        history=[Turn(user="Translate to Spanish: Good morning", assistant="Buenos días")],
        meta={"line": 2},
    )
    loose = _Loose(a=1, b="extra")
    outcomes = [Outcome(record, b"k", "f.jsonl", 2, {"x": 1}, "", tally=("t:y",)), Outcome(loose)]
    packed = pack_outcomes(outcomes)
    assert packed[0][:3] == (Record, record.__dict__, record.model_fields_set)
    assert packed[1][:3] == (None, loose, None)  # extra fields: pickled as itself
    back = unpack_outcomes(pickle.loads(pickle.dumps(packed)))
    assert [type(o.item) for o in back] == [Record, _Loose]
    assert back[0].item == record and back[0].item.model_fields_set == record.model_fields_set
    assert back[0].item.model_dump_json() == record.model_dump_json()
    assert (back[0].dedup_key, back[0].source_file, back[0].line, back[0].example, back[0].tally) == (
        b"k",
        "f.jsonl",
        2,
        {"x": 1},
        ("t:y",),
    )
    assert back[1].item == loose and back[1].item.b == "extra"
    items = [record, ("a", 1)]
    assert unpack_items(pickle.loads(pickle.dumps(pack_items(items)))) == items
