"""The reader registry (instructgen/io/registry.py), the one skip-or-raise loop (readers.guard) and
the one atomic-file helper (io/atomic.py).

A reader registered from this module (no edit under instructgen/) is found by extension and by
name and gets the shared on_error handling; the shipped kinds keep the detection and wording the
CLI tests pin.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from instructgen.errors import ConfigError, InputError
from instructgen.io import atomic, registry
from instructgen.io.readers import FieldSpec, guard, read_parallel
from instructgen.io.registry import KINDS, detect, formats, open_input, register_reader
from instructgen.schema import Example, Rejected


@pytest.fixture
def toy_reader():
    """A `pairs` reader for `.pairs` files ("src => tgt" per line), removed again afterwards."""

    def read_arrow_pairs(path, *, spec: FieldSpec, on_error: str = "raise", **_):
        shown = str(path)

        def parse(line: int, text: str) -> Example:
            if " => " not in text:
                raise InputError("no ' => ' in the line", path=shown, line=line, reason="malformed_row")
            src, tgt = text.split(" => ", 1)
            return Example(key="", fields={"source": src, "target": tgt}, source_file=shown, line=line)

        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return guard(((i + 1, t, t) for i, t in enumerate(lines)), parse, on_error)

    register_reader("pairs", "arrows", extensions=(".pairs",))(read_arrow_pairs)
    yield
    del KINDS["pairs"].readers["arrows"]


def test_the_shipped_readers_are_registered_by_kind():
    assert formats("pairs") == ["tsv", "csv", "jsonl", "json", "hf", "aligned"]
    assert formats("tagged") == ["conll", "jsonl", "hf"]
    assert formats("records") == ["json", "jsonl"]
    assert formats("rows") == ["csv", "tsv", "jsonl", "json", "hf"]


def test_a_reader_registered_from_a_test_module_is_found_and_shares_on_error(tmp_path, toy_reader):
    f = tmp_path / "x.pairs"
    f.write_text("hello => bonjour\nbroken line\nyes => oui\n", encoding="utf-8")
    assert detect("pairs", f).name == "arrows"  # by extension, through read_parallel's detection
    with pytest.raises(InputError, match="no ' => ' in the line") as err:
        list(read_parallel(f, src_lang="en", tgt_lang="fr"))
    assert err.value.line == 2
    items = list(read_parallel(f, src_lang="en", tgt_lang="fr", on_error="skip"))
    assert [i.fields["target"] for i in items if isinstance(i, Example)] == ["bonjour", "oui"]
    (bad,) = [i for i in items if isinstance(i, Rejected)]
    assert (bad.reason, bad.line, bad.example) == ("malformed_row", 2, {"raw": "broken line"})
    # and by name, whatever the extension
    g = tmp_path / "x.txt"
    g.write_text("a => b\n", encoding="utf-8")
    got = list(read_parallel(g, src_lang="en", tgt_lang="fr", input_format="arrows"))
    assert got[0].fields == {"source": "a", "target": "b"}


def test_detection_keeps_each_kinds_wording(tmp_path):
    odd = tmp_path / "data.xyz"
    odd.write_text("x\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"cannot tell the format from the extension '\.xyz'; pass --input-format tsv"
    ):
        detect("pairs", odd)
    with pytest.raises(ConfigError, match=r"^unknown input format 'yaml' \(tsv, csv, jsonl, json, hf\)$"):
        detect("pairs", odd, "yaml")
    assert detect("tagged", odd).name == "conll"  # NER: anything unclaimed is CoNLL columns
    with pytest.raises(ConfigError, match=r"^unknown NER input format 'yaml' \(conll, jsonl, hf\)$"):
        detect("tagged", odd, "yaml")
    with pytest.raises(
        ConfigError, match=r"cannot tell the format; pass --input-format csv\|tsv\|jsonl\|json\|hf$"
    ):
        detect("rows", odd)
    assert detect("records", odd).name == "jsonl"
    assert detect("records", tmp_path / "a.JSON").name == "json"
    with pytest.raises(InputError, match="file not found"):
        open_input("records", tmp_path / "missing.jsonl")


def test_on_error_is_checked_before_reading(tmp_path):
    f = tmp_path / "p.tsv"
    f.write_text("a\tb\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^--on-error must be raise or skip, not 'ignore'$"):
        read_parallel(f, src_lang="en", tgt_lang="fr", on_error="ignore")


def test_guard_keeps_the_raw_text_or_the_row_as_json():
    def parse(line, value):
        if value == "bad":
            raise InputError("bad value", line=line, reason="bad_field")
        return value

    rows = [
        (1, None, "ok"),
        (2, None, "bad"),
        (3, "raw text", InputError("no", line=3, reason="malformed_json")),
    ]
    out = list(guard(rows, parse, "skip"))
    assert out[0] == "ok"
    assert (out[1].reason, out[1].example) == ("bad_field", {"raw": '"bad"'})
    assert (out[2].reason, out[2].example) == ("malformed_json", {"raw": "raw text"})
    with pytest.raises(InputError, match="bad value"):
        list(guard(rows, parse, "raise"))


def test_registry_loads_the_shipped_readers_on_first_use():
    assert registry._LOADED or formats("pairs")
    assert "aligned" in KINDS["pairs"].readers


# --- the atomic-file helper ----------------------------------------------------------------------


def test_atomic_text_and_folder_follow_the_umask_and_leave_no_temporaries(tmp_path):
    old = os.umask(0o027)
    try:
        target = tmp_path / "out" / "a.json"
        atomic.write_text_atomic(target, "[]\n")
        assert target.read_text(encoding="utf-8") == "[]\n"
        assert target.stat().st_mode & 0o777 == 0o640
        folder = tmp_path / "ds"
        stage = atomic.stage_folder(folder, ".ig-")
        assert stage.stat().st_mode & 0o777 == 0o750
        (stage / "x").write_text("1", encoding="utf-8")
        atomic.swap_folder_in(stage, folder, ".ig-")
        stage2 = atomic.stage_folder(folder, ".ig-")
        (stage2 / "x").write_text("2", encoding="utf-8")
        atomic.swap_folder_in(stage2, folder, ".ig-")  # an existing folder is replaced whole
    finally:
        os.umask(old)
    assert (folder / "x").read_text(encoding="utf-8") == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.json"]


def test_a_dead_writers_folder_is_removed_a_live_ones_kept(tmp_path):
    target = tmp_path / "ds"
    host = atomic.host_name()
    dead = tmp_path / f".ds.ig-tmp-{host}-999999999-abc"  # no such process on this host
    live = tmp_path / f".ds.ig-tmp-{host}-{os.getppid()}-abc"
    elsewhere = tmp_path / ".ds.ig-tmp-otherhost-999999999-abc"  # a pid on another host means nothing
    for q in (dead, live, elsewhere):
        q.mkdir()
    assert atomic.remove_stale_folders(target, ".ig-") == [dead.name]
    assert live.is_dir() and elsewhere.is_dir() and not dead.exists()
    # a day without a write: stale whatever the host
    later = time.time() + atomic.STALE_AFTER_S + 60
    assert sorted(atomic.remove_stale_folders(target, ".ig-", now=later)) == sorted([elsewhere.name, live.name])


def test_atomic_path_removes_the_temp_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        Path(tmp).write_text("half", encoding="utf-8")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []
