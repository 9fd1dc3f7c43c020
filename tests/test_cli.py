"""The CLI: summaries, exit codes, nothing written on failure, rejects files, formats, help."""

from __future__ import annotations

import json

import pytest
from helpers import EXAMPLES, read_jsonl

from instructgen.io.writers import record_to_row
from instructgen.schema import Record, Turn

TSV = EXAMPLES / "data" / "zh_en.tsv"


def test_translate_example_writes_records_and_summary(tmp_path, run_cli):
    out = tmp_path / "out.jsonl"
    res = run_cli("translate", TSV, "--src-lang", "zh", "--tgt-lang", "en", "-o", out)
    assert res.exit_code == 0
    assert (
        res.stderr
        == "translation: read 25, wrote 25, rejected 0\n  instruction languages: en 25\n  templates used: 17\n"
    )
    rows = read_jsonl(out)
    assert len(rows) == 25
    assert set(rows[0]) == {"instruction", "input", "output"}
    assert rows[0]["output"] == "The weather is nice today, let's take a walk in the park."


def test_stdout_output(run_cli):
    res = run_cli("translate", TSV, "--src-lang", "zh", "--tgt-lang", "en", "-o", "-", "--format", "messages")
    assert res.exit_code == 0
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 25
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]


def test_misaligned_files_exit_2_and_write_nothing(tmp_path, run_cli):
    (tmp_path / "a.zh").write_text("一\n二\n三\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("one\ntwo\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    res = run_cli(
        "translate",
        "--src-file",
        tmp_path / "a.zh",
        "--tgt-file",
        tmp_path / "a.en",
        "--src-lang",
        "zh",
        "--tgt-lang",
        "en",
        "-o",
        out,
    )
    assert res.exit_code == 2
    assert res.stderr == (
        f"error: line-aligned files differ in length: {tmp_path / 'a.zh'} has 3 lines, "
        f"{tmp_path / 'a.en'} has 2 lines; nothing was written\n"
    )
    assert not out.exists()
    assert list(tmp_path.iterdir()) == sorted(tmp_path.iterdir()) and len(list(tmp_path.iterdir())) == 2


BAD = (
    '{"translation": {"zh": "你好，世界。", "en": "Hello, world."}}\n'
    '{"translation": {"zh": "谢谢" "en": "Thanks"}}\n'
    '{"translation": {"zh": "再见。", "en": "Goodbye."}}\n'
)


def test_malformed_json_mid_file_stops_and_leaves_no_partial_output(tmp_path, run_cli):
    src = tmp_path / "bad.jsonl"
    src.write_text(BAD, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    res = run_cli("translate", src, "--src-lang", "zh", "--tgt-lang", "en", "-o", out)
    assert res.exit_code == 2
    assert res.stderr == f"error: {src}:2: invalid JSON: Expecting ',' delimiter (column 29)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]  # no out.jsonl, no temp file


def test_on_error_skip_counts_and_writes_rejects(tmp_path, run_cli):
    src = tmp_path / "bad.jsonl"
    src.write_text(BAD, encoding="utf-8")
    out, rej = tmp_path / "out.jsonl", tmp_path / "rej.jsonl"
    res = run_cli(
        "translate",
        src,
        "--src-lang",
        "zh",
        "--tgt-lang",
        "en",
        "-o",
        out,
        "--on-error",
        "skip",
        "--rejects",
        rej,
    )
    assert res.exit_code == 0
    assert "translation: read 3, wrote 2, rejected 1\n  rejected malformed_json: 1\n" in res.stderr
    assert len(read_jsonl(out)) == 2
    assert read_jsonl(rej) == [
        {
            "reason": "malformed_json",
            "detail": "invalid JSON: Expecting ',' delimiter (column 29)",
            "source_file": str(src),
            "line": 2,
            "example": {"raw": '{"translation": {"zh": "谢谢" "en": "Thanks"}}'},
        }
    ]


def test_bad_template_file_is_a_clean_error(tmp_path, run_cli):
    pool = tmp_path / "p.yaml"
    pool.write_text(
        "task: translation\nlanguage: en\ntemplates:\n  - id: x\n    instruction: hi\n    output: o\n"
    )
    res = run_cli("translate", TSV, "--src-lang", "zh", "--tgt-lang", "en", "--templates", pool)
    assert res.exit_code == 2
    assert res.stderr == (
        f"error: {pool}:4, template 'x': the prompt must contain the source text: use {{{{ source }}}} in "
        "instruction or input\n"
    )


def test_help_explains_itself(run_cli):
    res = run_cli("translate", "--help")
    assert res.exit_code == 0
    for needle in ("Examples:", "--src-file", "--instruction-lang", "--rejects", "--on-error", "--columns"):
        assert needle in res.stdout
    assert "translate" in run_cli("--help").stdout


def test_templates_list_show_validate(tmp_path, run_cli):
    res = run_cli("templates", "list")
    assert res.exit_code == 0
    assert "builtin:translation/en.yaml\ttask=translation\tlanguage=en\ttemplates=24" in res.stdout
    res = run_cli("templates", "show", "translation-zh-013")
    assert res.exit_code == 0
    assert "instruction: '“{{ source }}”用{{ tgt_lang }}怎么说？'" in res.stdout
    assert "  instruction: “SAMPLE-SOURCE”用TGT-LANG怎么说？" in res.stdout
    res = run_cli("templates", "validate")
    assert res.exit_code == 0 and res.stdout.count("ok   builtin:") >= 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "task: translation\nlanguage: en\ntemplates:\n  - id: b\n    instruction: '{{ tgt_lang }} {{ sourc }}'\n"
        "    output: '{{ target }}'\n"
    )
    res = run_cli("templates", "validate", bad)
    assert res.exit_code == 1
    assert res.stdout.startswith(
        f"FAIL {bad}:4, template 'b': unknown variable 'sourc' (did you mean 'source'?)"
    )
    assert run_cli("templates", "show", "nope").exit_code == 2


REC = Record(
    instruction="Translate into English:",
    input="你好",
    output="Hello",
    system="Be brief.",
    history=[Turn(user="hi", assistant="hello")],
    meta={"template_id": "t"},
)


@pytest.mark.parametrize(
    ("fmt", "columns", "expected"),
    [
        (
            "alpaca",
            None,
            {
                "instruction": "Translate into English:",
                "input": "你好",
                "output": "Hello",
                "system": "Be brief.",
                "history": [["hi", "hello"]],
            },
        ),
        (
            "columns",
            ["instruct", "query", "answer"],
            {"instruct": "Translate into English:", "query": "你好", "answer": "Hello"},
        ),
        (
            "sharegpt",
            None,
            {
                "conversations": [
                    {"from": "human", "value": "hi"},
                    {"from": "gpt", "value": "hello"},
                    {"from": "human", "value": "Translate into English:\n你好"},
                    {"from": "gpt", "value": "Hello"},
                ],
                "system": "Be brief.",
            },
        ),
        (
            "messages",
            None,
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "Translate into English:\n你好"},
                    {"role": "assistant", "content": "Hello"},
                ]
            },
        ),
    ],
)
def test_row_layouts(fmt, columns, expected):
    assert record_to_row(REC, fmt, columns=columns) == expected
    assert record_to_row(REC, fmt, columns=columns, with_meta=True)["meta"] == {"template_id": "t"}


def test_alpaca_json_array_and_columns_flag(tmp_path, run_cli):
    out = tmp_path / "o.json"
    res = run_cli(
        "translate", TSV, "--src-lang", "zh", "--tgt-lang", "en", "--format", "alpaca-json", "-o", out
    )
    assert res.exit_code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(data, list) and len(data) == 25
    out = tmp_path / "c.jsonl"
    run_cli(
        "translate",
        TSV,
        "--src-lang",
        "zh",
        "--tgt-lang",
        "en",
        "--columns",
        "instruct,query,answer",
        "-o",
        out,
    )
    assert set(read_jsonl(out)[0]) == {"instruct", "query", "answer"}


def test_version(run_cli):
    assert run_cli("--version").stdout.startswith("instructgen, version ")
