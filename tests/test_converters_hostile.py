"""Converters and writers under hostile conditions (issue 11): killed runs, umask, unwritable
outputs, rows that are not objects, labels and entities that contain the answer syntax."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO

import instructgen
from instructgen.errors import ConfigError
from instructgen.io.writers import STALE_AFTER_S, JsonlSink, RecordWriter, remove_stale_temps
from instructgen.schema import Record


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temps(folder: Path, name: str) -> list[str]:
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp")
    )


# --- item 21: temp files of killed runs, and the umask -------------------------------------------


def test_stale_temp_of_a_dead_writer_is_removed_and_a_live_ones_kept(tmp_path):
    import re
    import socket

    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]
    dead = tmp_path / f".out.jsonl.ig-{host}-{_dead_pid()}-0badc0de.tmp"
    live = tmp_path / f".out.jsonl.ig-{host}-{os.getppid()}-00c0ffee.tmp"  # pytest's parent runs
    other_host_recent = tmp_path / ".out.jsonl.ig-elsewhere-12345-0abc.tmp"
    other_host_old = tmp_path / ".out.jsonl.ig-elsewhere-12346-0abd.tmp"
    not_ours = tmp_path / ".out.jsonl.abcd1234.tmp"  # mkstemp's shape: could be anyone's
    for p in (dead, live, other_host_recent, other_host_old, not_ours):
        p.write_text("partial")
    old = time.time() - STALE_AFTER_S - 60
    os.utime(other_host_old, (old, old))
    removed = remove_stale_temps(tmp_path / "out.jsonl")
    assert sorted(p.name for p in removed) == sorted([dead.name, other_host_old.name])
    assert _temps(tmp_path, "out.jsonl") == sorted([live.name, other_host_recent.name, not_ours.name])


def test_writer_cleans_up_after_a_sigkilled_translate(tmp_path):
    """issue 11 item 21: SIGKILL during a write left `.out.jsonl.*.tmp` behind for good."""
    src = tmp_path / "big.tsv"
    with open(src, "w", encoding="utf-8") as f:
        for i in range(400_000):
            f.write(f"Guten Tag Nummer {i}.\tGood day number {i}.\n")
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-c", "from instructgen.cli.main import main; main()", "translate", str(src), "--src-lang", "de",
           "--tgt-lang", "en", "--langid", "none", "-q", "-o", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not _temps(tmp_path, "out.jsonl") and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (leftover,) = _temps(tmp_path, "out.jsonl")
    assert not out.exists()
    assert f"-{proc.pid}-" in leftover  # the name says which process wrote it
    small = tmp_path / "small.tsv"
    small.write_text("Guten Tag.\tGood day.\n", encoding="utf-8")
    cmd[4] = str(small)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert _temps(tmp_path, "out.jsonl") == []
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    """issue 11 item 21: mkstemp made every output 0600 whatever the umask."""
    old = os.umask(umask)
    try:
        with RecordWriter(tmp_path / "o.jsonl") as w:
            w.write(Record(instruction="i", input="", output="o"))
        with JsonlSink(tmp_path / "r.jsonl") as sink:
            sink.write({"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "o.jsonl").stat().st_mode & 0o777 == mode
    assert (tmp_path / "r.jsonl").stat().st_mode & 0o777 == mode


def test_failed_run_leaves_neither_output_nor_temp(tmp_path):
    with pytest.raises(RuntimeError), RecordWriter(tmp_path / "o.jsonl") as w:
        w.write(Record(instruction="i", input="", output="o"))
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


# --- item 15: an output that cannot be written ----------------------------------------------------


def test_unwritable_output_is_an_error_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError) as info, RecordWriter(blocker / "sub" / "o.jsonl"):
        pass
    assert str(info.value).startswith(f"cannot write {blocker / 'sub' / 'o.jsonl'}: ")


@pytest.mark.parametrize("command", ["translate", "ner", "classify"])
def test_cli_unwritable_output_dir_prints_an_error_line(tmp_path, run_cli, command):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = {
        "translate": [REPO / "examples/data/zh_en.tsv", "--src-lang", "zh", "--tgt-lang", "en"],
        "ner": [_conll(tmp_path)],
        "classify": [_tsv(tmp_path)],
    }[command]
    res = run_cli(command, *args, "-o", blocker / "out" / "o.jsonl")
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: cannot write {blocker / 'out' / 'o.jsonl'}: ")
    assert "Traceback" not in res.stderr


def _conll(tmp_path: Path) -> Path:
    p = tmp_path / "t.conll"
    p.write_text("John B-PER\nlives O\nin O\nParis B-LOC\n", encoding="utf-8")
    return p


def _tsv(tmp_path: Path) -> Path:
    p = tmp_path / "t.tsv"
    p.write_text("text\tlabel\ngood film\tpos\nbad film\tneg\n", encoding="utf-8")
    return p


# --- item 15: classification rows that are not objects --------------------------------------------


def test_classify_rows_that_are_not_objects_are_counted_rejections(tmp_path, run_cli):
    p = tmp_path / "rows.jsonl"
    rows = [{"text": "good film", "label": "pos"}, [1, 2], "just text", None, {"text": "bad", "label": "neg"}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run = instructgen.classify(p, on_error="skip")
    assert run.report.rejected == {"malformed_json": 3}
    assert [(r.line, r.detail) for r in run.rejected] == [
        (2, "expected a JSON object, found array"),
        (3, "expected a JSON object, found string"),
        (4, "expected a JSON object, found null"),
    ]
    assert [r.meta["label"] for r in run.records] == ["pos", "neg"]
    with pytest.raises(instructgen.errors.InputError) as info:
        instructgen.classify(p)
    assert str(info.value) == f"{p}:2: expected a JSON object, found array"
    res = run_cli("classify", p, "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 2
    assert res.stderr == f"error: {p}:2: expected a JSON object, found array\n"
    as_list = instructgen.classify(rows)  # the Python API with rows in memory: counted, not a crash
    assert as_list.report.rejected == {"malformed_json": 3}
    assert [r.meta["label"] for r in as_list.records] == ["pos", "neg"]


# --- item 16: two reads in flat memory instead of holding the input -------------------------------


def test_two_pass_keeps_a_small_input_and_reads_a_large_one_again():
    from instructgen.converters.twopass import TwoPass

    opened = []

    def source():
        opened.append(1)
        return iter(range(5))

    small = TwoPass(source, limit=5)
    assert list(small.first()) == list(range(5)) and small.count == 5
    assert list(small.second()) == list(range(5)) and len(opened) == 1  # replayed from memory
    large = TwoPass(source, limit=4)
    assert list(large.first()) == list(range(5))
    assert large._held is None  # nothing kept beyond the limit
    assert list(large.second()) == list(range(5)) and len(opened) == 3  # read again
    once = TwoPass(iter(range(5)), limit=1)  # a generator cannot be read twice: held whatever its size
    assert list(once.first()) == list(range(5)) and list(once.second()) == list(range(5))


def test_input_that_changes_between_the_two_reads_is_an_error(tmp_path):
    from instructgen.converters.twopass import TwoPass

    p = tmp_path / "rows.txt"
    p.write_text("a\nb\nc\n")
    passes = TwoPass(lambda: p.read_text().splitlines(), limit=1, shown=str(p))
    assert list(passes.first()) == ["a", "b", "c"]
    p.write_text("a\nb\n")
    with pytest.raises(instructgen.errors.InputError) as info:
        list(passes.second())
    assert (
        str(info.value)
        == f"{p}: the input changed while it was converted: 3 items on the first read, 2 on the second"
    )


def test_ner_and_classify_give_the_same_bytes_whether_the_input_is_kept_or_read_twice(
    tmp_path, run_cli, monkeypatch
):
    from instructgen.converters import twopass

    conll = tmp_path / "t.conll"
    conll.write_text(
        "John B-PER\nruns O\n\nbroken\n\nAnn I-PER\nin O\nParis I-LOC\n\nnothing O\n\nBob I-PER\n",
        encoding="utf-8",
    )
    tsv = _tsv(tmp_path)
    outputs = []
    for limit in (1_000_000, 1):  # kept in memory, then read twice
        monkeypatch.setattr(twopass, "REPLAY_LIMIT", limit)
        d = tmp_path / str(limit)
        res = run_cli("ner", conll, "--on-error", "skip", "--max-empty-ratio", "0.2", "--meta",
                      "--rejects", d / "r.jsonl", "-o", d / "o.jsonl")  # fmt: skip
        assert res.exit_code == 0, res.stderr
        assert "note: scheme: iob1" in res.stderr  # voted over the whole file on the first read
        assert [json.loads(x)["reason"] for x in (d / "r.jsonl").read_text().splitlines()] == [
            "malformed_row",
            "too_many_empty",
        ]
        res = run_cli("classify", tsv, "--meta", "-o", d / "c.jsonl")
        assert res.exit_code == 0, res.stderr
        outputs.append([(d / n).read_bytes() for n in ("o.jsonl", "r.jsonl", "c.jsonl")])
    assert outputs[0] == outputs[1]
    ner_rows = [json.loads(x) for x in outputs[0][0].decode().splitlines()]
    assert [r["meta"]["entities"] for r in ner_rows] == [[["John", "PER"]], [["Ann", "PER"], ["Paris", "LOC"]],
                                                         [["Bob", "PER"]]]  # fmt: skip
    rows = [json.loads(x) for x in outputs[0][2].decode().splitlines()]
    assert [r["meta"]["label"] for r in rows] == ["pos", "neg"]


# --- items 4, 15, 20 through the shared readers: labels and texts that are not what they seem ------


def test_classify_labels_and_texts_of_the_wrong_json_type_are_counted_by_field(tmp_path):
    p = tmp_path / "rows.jsonl"
    rows = [
        {"text": "good film", "label": "pos"},
        {"text": "odd", "label": ["pos", "neg"]},  # was a new class "['pos', 'neg']" in every option list
        {"text": "blank", "label": "   "},  # was an empty label
        {"text": {"a": 1}, "label": "neg"},  # was written as "{'a': 1}"
        {"text": "bad film", "label": "neg"},
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run = instructgen.classify(p, meta=True)
    assert [(r.line, r.reason, r.detail) for r in run.rejected] == [
        (2, "bad_field", "expected a label (text or integer), found array"),
        (3, "missing_label", "empty label"),
        (4, "bad_field", "expected text, found object"),
    ]
    assert [r.meta["label"] for r in run.records] == ["pos", "neg"]
    assert {tuple(sorted(r.meta["options"])) for r in run.records if r.meta["options"]} <= {("neg", "pos")}


def test_classify_csv_with_a_lone_cr_or_a_broken_quote_names_the_line(tmp_path, run_cli):
    p = tmp_path / "d.csv"
    p.write_bytes(b'text,label\r"good, film",pos\r"bad film,neg\rok,pos\r')
    res = run_cli("classify", p, "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: {p}:3")
    assert "Traceback" not in res.stderr and "universal-newline" not in res.stderr


def test_classify_on_a_plain_folder_is_an_error_naming_it(tmp_path, run_cli):
    (tmp_path / "folder").mkdir()
    res = run_cli("classify", tmp_path / "folder", "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: {tmp_path / 'folder'}: a folder that is not a dataset")


def test_classify_batch_fn_applies_the_same_row_checks():
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["great", "fine"], "label": ["pos", "   "]})
    fn = instructgen.ClassifyBatchFn(
        instructgen.converters.classification.ClassifyOptions(label_names=("neg", "pos"))
    )
    mapped = ds.map(fn, batched=True, remove_columns=ds.column_names)
    assert mapped["rejected"] == [None, "missing_label: empty label"]  # a whitespace label is no label
