"""The layout registry (instructgen/io/layouts.py): every layout round-trips, rows are the shapes
the references write, and a layout registered from outside the package works in the writers and
in `read_records`.

Row shapes checked against: Alpaca (tatsu-lab/stanford_alpaca, alpaca_data.json: instruction /
input / output), ShareGPT with `system` and Alpaca `history` (hiyouga/LLaMA-Factory,
data/README.md), OpenAI chat `messages`, ms-swift's self-cognition rows (query / response / tag).
"""

from __future__ import annotations

import json

import pytest

from instructgen.errors import ConfigError, InputError
from instructgen.io import layouts
from instructgen.io.layouts import (
    LAYOUTS,
    Layout,
    detect_layout,
    record_to_row,
    register_layout,
    row_to_record,
)
from instructgen.io.records import read_records
from instructgen.io.writers import FORMATS, write_records
from instructgen.schema import Record, Turn

PLAIN = Record(instruction="Translate to French:", output="Bonjour", meta={"lang": "fr"})
FULL = Record(
    instruction="And now?",
    output="Au revoir",
    system="You translate.",
    history=[Turn(user="Hello", assistant="Bonjour")],
    meta={"lang": "fr"},
)
WITH_INPUT = Record(instruction="Translate to French:", input="Goodbye", output="Au revoir")
COLUMNS = ["q", "ctx", "a", "sys"]


def test_the_writers_list_every_layout_in_their_order():
    assert FORMATS == ("alpaca", "alpaca-json", "sharegpt", "messages", "query-response", "columns")
    assert tuple(LAYOUTS) == FORMATS


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("record", [PLAIN, FULL], ids=["plain", "system+history"])
def test_every_layout_round_trips(name, record):
    cols = COLUMNS if name == "columns" else None
    row = record_to_row(record, name, columns=cols, with_meta=True)
    back = row_to_record(json.loads(json.dumps(row)), layout=name, columns=cols)
    want = record
    if name == "columns":  # custom columns carry no history
        want = record.model_copy(update={"history": []})
    assert back == want
    if LAYOUTS[name].detect is not None:  # a guessable layout is found without being named
        assert row_to_record(row) == want
        assert detect_layout(row) == ("alpaca" if name == "alpaca-json" else name)


@pytest.mark.parametrize("name", ["sharegpt", "messages", "query-response"])
def test_chat_layouts_put_the_input_under_the_instruction(name):
    # one user turn holds both, as chat templates show it; reading it back is one instruction
    row = record_to_row(WITH_INPUT, name)
    back = row_to_record(row)
    assert back.instruction == "Translate to French:\nGoodbye" and back.input == ""
    assert record_to_row(back, name) == row


def test_rows_are_the_reference_shapes():
    assert record_to_row(FULL, "alpaca") == {
        "instruction": "And now?",
        "input": "",
        "output": "Au revoir",
        "system": "You translate.",
        "history": [["Hello", "Bonjour"]],
    }
    assert record_to_row(FULL, "sharegpt") == {
        "conversations": [
            {"from": "human", "value": "Hello"},
            {"from": "gpt", "value": "Bonjour"},
            {"from": "human", "value": "And now?"},
            {"from": "gpt", "value": "Au revoir"},
        ],
        "system": "You translate.",
    }
    assert record_to_row(FULL, "messages")["messages"][0] == {"role": "system", "content": "You translate."}
    assert record_to_row(PLAIN, "query-response") == {
        "query": "Translate to French:",
        "response": "Bonjour",
        "tag": "fr",
    }
    assert record_to_row(FULL, "columns", columns=COLUMNS) == {
        "q": "And now?",
        "ctx": "",
        "a": "Au revoir",
        "sys": "You translate.",
    }


def test_detection_order_messages_before_sharegpt_before_alpaca_before_query_response():
    row = {"messages": [], "conversations": [], "instruction": "", "output": "", "query": "", "response": ""}
    assert detect_layout(row) == "messages"
    del row["messages"]
    assert detect_layout(row) == "sharegpt"
    del row["conversations"]
    assert detect_layout(row) == "alpaca"
    del row["instruction"]
    assert detect_layout(row) == "query-response"
    assert detect_layout({"text": "x"}) is None


def test_unknown_layouts_and_bad_columns_keep_their_messages():
    with pytest.raises(ConfigError, match=r"^unknown output format 'yaml' \(choose alpaca, alpaca-json, "):
        record_to_row(PLAIN, "yaml")
    with pytest.raises(ConfigError, match=r"^--columns needs three names: instruction,input,output"):
        record_to_row(PLAIN, "columns", columns=["a", "b"])
    with pytest.raises(InputError, match=r"not an Alpaca, ShareGPT, messages or query/response row") as err:
        row_to_record({"text": "x"}, path="f.jsonl", line=4)
    assert err.value.reason == "unknown_layout" and err.value.line == 4
    with pytest.raises(InputError, match=r"no 'a' column") as err:
        row_to_record({"q": "x"}, layout="columns", columns=COLUMNS)
    assert err.value.reason == "missing_field"


def test_a_layout_registered_here_works_in_the_writer_and_the_reader(tmp_path):
    def to_row(record, columns=None):
        return {"prompt": record.instruction, "completion": record.output}

    def from_row(row, meta, path, line, columns=None):
        return Record(instruction=row["prompt"], output=row["completion"], meta=meta)

    register_layout(Layout("prompt-completion", to_row, from_row, lambda r: "prompt" in r, rank=5))
    try:
        out = tmp_path / "pc.jsonl"
        write_records([PLAIN, FULL], out, "prompt-completion")
        first = out.read_text(encoding="utf-8").splitlines()[0]
        assert first == '{"prompt": "Translate to French:", "completion": "Bonjour"}'
        got = [r for _, r in read_records(out)]
        assert [(r.instruction, r.output) for r in got] == [
            ("Translate to French:", "Bonjour"),
            ("And now?", "Au revoir"),
        ]
    finally:
        del LAYOUTS["prompt-completion"]
        layouts._DETECTING[:] = [lay for lay in layouts._DETECTING if lay.name != "prompt-completion"]
