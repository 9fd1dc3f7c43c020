"""export: LLaMA-Factory data + dataset_info.json, TRL layouts read by SFTTrainer, parquet (issue 14 item 4).

LLaMA-Factory's contract, checked against v0.9.5: src/llamafactory/data/parser.py (DatasetAttr: alpaca
columns default to instruction/input/output, `system` and `history` have no default and must be named;
sharegpt tags default to from/value, human/gpt, system), src/llamafactory/extras/constants.py
(FILEEXT2TYPE: json, jsonl, parquet, ...), src/llamafactory/data/converter.py (sharegpt turns: user tag at
even positions, assistant tag at odd ones; alpaca history is a list of [user, assistant] pairs).
The loader itself is run by examples/load_with_llamafactory.py (by hand: LLaMA-Factory is not a dependency).
"""

from __future__ import annotations

import json

import pytest
from helpers import EXAMPLES, read_jsonl

from instructgen.io.records import row_to_record

LF_FILE_TYPES = {"arrow", "csv", "json", "jsonl", "parquet", "txt"}  # extras/constants.py FILEEXT2TYPE


def _translated(tmp_path, run_cli):
    data = tmp_path / "tr.jsonl"
    res = run_cli(
        "translate", EXAMPLES / "data" / "zh_en.tsv", "--src-lang", "zh", "--tgt-lang", "en",
        "--direction", "both", "--meta", "-o", data,
    )
    assert res.exit_code == 0, res.stderr
    return data


def _identity(tmp_path, run_cli, fmt):
    data = tmp_path / f"id_{fmt}.jsonl"
    res = run_cli(
        "identity", "--name", "雁栖-7B", "--developer", "助教", "-n", "60", "--system-ratio", "0.5",
        "--multi-turn-ratio", "0.4", "--format", fmt, "-o", data,
    )
    assert res.exit_code == 0, res.stderr
    return data


def _lf_check_rows(rows, entry):
    """What LLaMA-Factory's converters read from a row, per dataset_info.json entry."""
    cols = entry["columns"]
    for row in rows:
        for col in cols.values():
            assert col in row, (col, row)  # the converter indexes every named column
        if entry["formatting"] == "alpaca":
            assert isinstance(row[cols["response"]], str)
            for pair in row.get(cols.get("history", "history"), []):
                assert len(pair) == 2
        else:
            tags = entry["tags"]
            turns = row[cols["messages"]]
            if turns and turns[0][tags["role_tag"]] == tags["system_tag"]:
                turns = turns[1:]
            assert len(turns) % 2 == 0
            for i, turn in enumerate(turns):
                want = tags["user_tag"] if i % 2 == 0 else tags["assistant_tag"]
                assert turn[tags["role_tag"]] == want
                assert isinstance(turn[tags["content_tag"]], str)


def test_llamafactory_alpaca_entry_and_rows(tmp_path, run_cli):
    data = _translated(tmp_path, run_cli)
    out = tmp_path / "lf"
    res = run_cli("export", data, "--to", "llamafactory", "-o", out, "--name", "zh_en")
    assert res.exit_code == 0, res.stderr
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert info == {
        "zh_en": {
            "file_name": "zh_en.jsonl",
            "formatting": "alpaca",
            "columns": {"prompt": "instruction", "query": "input", "response": "output"},
        }
    }
    rows = read_jsonl(out / "zh_en.jsonl")
    source = read_jsonl(data)
    assert rows == [{k: r[k] for k in ("instruction", "input", "output")} for r in source]  # meta left out
    _lf_check_rows(rows, info["zh_en"])
    assert res.stderr == (
        f"export: {data} -> {out / 'zh_en.jsonl'} (50 rows, alpaca)\n"
        f"  dataset_info.json: zh_en; train with dataset_dir: {out}, dataset: zh_en\n"
    )


def test_llamafactory_system_and_history_are_named(tmp_path, run_cli):
    alpaca, chat = _identity(tmp_path, run_cli, "alpaca"), _identity(tmp_path, run_cli, "sharegpt")
    out = tmp_path / "lf"
    assert run_cli("export", alpaca, "--to", "llamafactory", "-o", out, "--name", "id_a").exit_code == 0
    assert run_cli("export", chat, "--to", "llamafactory", "-o", out, "--name", "id_s").exit_code == 0
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert list(info) == ["id_a", "id_s"]  # the second export added its entry, kept the first
    assert info["id_a"]["columns"] == {
        "prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history",
    }
    assert info["id_s"] == {
        "file_name": "id_s.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"},
    }
    a_rows, s_rows = read_jsonl(out / "id_a.jsonl"), read_jsonl(out / "id_s.jsonl")
    _lf_check_rows(a_rows, info["id_a"])
    _lf_check_rows(s_rows, info["id_s"])
    assert any(r["system"] for r in a_rows) and any(r["system"] == "" for r in a_rows)
    assert any(r["history"] for r in a_rows) and any(r["history"] == [] for r in a_rows)
    # the same records either way: what LLaMA-Factory builds from each layout agrees
    assert [row_to_record(r).model_dump() for r in a_rows] == [row_to_record(r).model_dump() for r in s_rows]


def test_llamafactory_split_folder_and_parquet(tmp_path, run_cli):
    pq = pytest.importorskip("pyarrow.parquet")
    data = _translated(tmp_path, run_cli)
    assert run_cli("split", data, "-o", tmp_path / "splits", "--ratios", "60,20,20").exit_code == 0
    out = tmp_path / "lf"
    res = run_cli("export", tmp_path / "splits", "--to", "llamafactory", "-o", out, "--name", "zh_en",
                  "--file-format", "parquet")
    assert res.exit_code == 0, res.stderr
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert list(info) == ["zh_en_train", "zh_en_validation", "zh_en_test"]
    for name, entry in info.items():
        assert entry["file_name"] == f"{name}.parquet" and entry["file_name"].rsplit(".", 1)[1] in LF_FILE_TYPES
        split = name.removeprefix("zh_en_")
        source = read_jsonl(tmp_path / "splits" / f"{split}.jsonl")
        table = pq.read_table(out / entry["file_name"]).to_pylist()
        assert table == [{k: r[k] for k in ("instruction", "input", "output")} for r in source]
    assert "dataset: zh_en_train, eval_dataset: zh_en_validation" in res.stderr


def test_parquet_keeps_the_rows_and_their_meta(tmp_path, run_cli):
    pq = pytest.importorskip("pyarrow.parquet")
    data = _translated(tmp_path, run_cli)
    res = run_cli("export", data, "--to", "parquet", "-o", tmp_path / "pq", "--keep-meta")
    assert res.exit_code == 0, res.stderr
    assert pq.read_table(tmp_path / "pq" / "tr.parquet").to_pylist() == read_jsonl(data)
    chat = _identity(tmp_path, run_cli, "sharegpt")
    res = run_cli("export", chat, "--to", "parquet", "-o", tmp_path / "pq")
    assert res.exit_code == 0, res.stderr
    assert pq.read_table(tmp_path / "pq" / "id_sharegpt.parquet").to_pylist() == [
        {"conversations": r["conversations"], "system": r.get("system")} for r in read_jsonl(chat)
    ]


def test_trl_layouts(tmp_path, run_cli):
    chat = _identity(tmp_path, run_cli, "sharegpt")
    records = [row_to_record(r) for r in read_jsonl(chat)]
    for layout in ("messages", "prompt-completion"):
        res = run_cli("export", chat, "--to", "trl", "-o", tmp_path / layout, "--trl-layout", layout)
        assert res.exit_code == 0, res.stderr
    msgs = read_jsonl(tmp_path / "messages" / "id_sharegpt.jsonl")
    pc = read_jsonl(tmp_path / "prompt-completion" / "id_sharegpt.jsonl")
    for rec, m, p in zip(records, msgs, pc, strict=True):
        assert list(m) == ["messages"] and list(p) == ["prompt", "completion"]
        assert m["messages"][-1] == {"role": "assistant", "content": rec.output}
        assert p["prompt"] + p["completion"] == m["messages"]
        assert (m["messages"][0]["role"] == "system") == bool(rec.system)
    res = run_cli("export", chat, "--to", "trl", "-o", tmp_path / "t", "--trl-layout", "prompt-completion-text")
    assert res.exit_code == 2
    first = next(i for i, r in enumerate(records) if r.system or r.history)
    assert res.stderr == (
        f"error: row {first + 1} has a system prompt or earlier turns, which plain-text prompt/completion "
        "cannot carry; use --trl-layout messages or prompt-completion\n"
    )
    data = _translated(tmp_path, run_cli)
    assert run_cli("export", data, "--to", "trl", "-o", tmp_path / "t", "--trl-layout",
                   "prompt-completion-text").exit_code == 0
    rows = read_jsonl(tmp_path / "t" / "tr.jsonl")
    assert rows[0] == {"prompt": row_to_record(read_jsonl(data)[0]).prompt_text(),
                       "completion": read_jsonl(data)[0]["output"]}


def test_trl_sft_trainer_prepares_the_export(tmp_path, run_cli, tiny_dir):
    """TRL's SFTTrainer (trl/trainer/sft_trainer.py `_prepare_dataset`) reads both layouts with no mapping,
    and trains exactly the answers (+ <|im_end|>): the last one with completion_only_loss for
    prompt-completion, every assistant turn (the chat template's {% generation %} marks) with
    assistant_only_loss for messages."""
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from tokenizers_for_tests import CHATML_TEMPLATE
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    chat = _identity(tmp_path, run_cli, "sharegpt")
    records = [row_to_record(r) for r in read_jsonl(chat)]
    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    tok.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048)
    model = LlamaForCausalLM(config)
    for layout, extra, tail in (
        ("prompt-completion", {}, "<|im_end|>\n"),
        ("messages", {"assistant_only_loss": True}, "<|im_end|>"),
    ):
        out = tmp_path / layout
        assert run_cli("export", chat, "--to", "trl", "-o", out, "--trl-layout", layout).exit_code == 0
        ds = datasets.load_dataset("json", data_files=str(out / "id_sharegpt.jsonl"), split="train")
        args = trl.SFTConfig(output_dir=str(tmp_path / "run"), report_to=[], max_length=2048, use_cpu=True,
                             bf16=False, **extra)
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        prepared = trainer.train_dataset
        assert len(prepared) == len(records)
        for rec, row in zip(records, prepared):
            trained = [i for i, lab in zip(row["input_ids"], row["labels"]) if lab != -100]
            # prompt-completion trains the last answer only; messages every assistant turn
            history = "".join(t.assistant + tail for t in rec.history) if layout == "messages" else ""
            assert tok.decode(trained) == history + rec.output + tail, layout
