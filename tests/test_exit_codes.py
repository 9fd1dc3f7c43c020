"""Exit codes that tell the truth (issue 14 item 5): a converting run that writes nothing, or
rejects more than --max-reject-ratio, exits 3 with the top reasons and a hint; `ner` on input
with no entity tags says so and exits 2 before writing anything."""

from __future__ import annotations

import json

import pytest
from helpers import EXAMPLES

ZH_EN = EXAMPLES / "data" / "zh_en.tsv"


def test_swapped_languages_exit_3_with_reasons_and_the_hint(tmp_path, run_cli):
    # --header no: with its "zh<TAB>en" header the reader would pick the columns by name and
    # the swapped flags would do no harm; positional columns are where a swap bites
    out = tmp_path / "o.jsonl"
    res = run_cli("translate", ZH_EN, "--src-lang", "en", "--tgt-lang", "zh", "--header", "no", "-o", out)
    assert res.exit_code == 3
    assert res.stderr.splitlines() == [
        "translation: read 26, wrote 0, rejected 26",
        "  rejected wrong_language_source: 24",
        "  rejected wrong_language_target: 2",
        "error: wrote nothing: all 26 outcomes were rejected; top reasons: wrong_language_source 24, "
        "wrong_language_target 2",
        "hint: 26 of 26 rejections are wrong_language_*: are --src-lang and --tgt-lang swapped? "
        "(or --src-col/--tgt-col, --src-file/--tgt-file)",
    ]
    assert out.read_text() == ""  # the (empty) output and the rejects are still written, to look at


def test_the_same_file_the_right_way_round_exits_0(tmp_path, run_cli):
    res = run_cli("translate", ZH_EN, "--src-lang", "zh", "--tgt-lang", "en", "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 0, res.stderr
    assert "error:" not in res.stderr and "hint:" not in res.stderr


def _pairs(tmp_path, good: int, bad: int):
    p = tmp_path / "pairs.jsonl"
    rows = [{"de": f"Guten Tag Nummer {i}.", "en": f"Good day number {i}."} for i in range(good)]
    rows += [{"de": "", "en": f"Empty {i}."} for i in range(bad)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("good", "bad", "ratio", "code"),
    [(4, 6, None, 3), (6, 4, None, 0), (4, 6, "0.7", 0), (6, 4, "0.3", 3), (4, 6, "1", 0)],
)
def test_max_reject_ratio_threshold(tmp_path, run_cli, good, bad, ratio, code):
    extra = [] if ratio is None else ["--max-reject-ratio", ratio]
    res = run_cli("translate", _pairs(tmp_path, good, bad), "--src-lang", "de", "--tgt-lang", "en",
                  "--langid", "none", *extra, "-o", tmp_path / "o.jsonl")  # fmt: skip
    assert res.exit_code == code, res.stderr
    if code:
        limit = ratio or "0.5"
        assert res.stderr.splitlines()[-1] == (
            f"error: rejected {bad} of {good + bad} outcomes ({bad / (good + bad):.0%}), over "
            f"--max-reject-ratio {limit}; top reasons: empty_source {bad}"
        )
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == good


def test_empty_input_exits_3(tmp_path, run_cli):
    p = tmp_path / "empty.tsv"
    p.write_text("", encoding="utf-8")
    res = run_cli("classify", p, "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 3
    assert res.stderr.splitlines()[-1] == "error: the input has no rows: nothing to convert"


def test_ner_on_a_file_that_is_not_ner_data_says_so(tmp_path, run_cli):
    out = tmp_path / "o.jsonl"
    res = run_cli("ner", ZH_EN, "-o", out)
    assert res.exit_code == 2
    assert res.stderr == (
        f"error: {ZH_EN}: no entity tags: no B-, I-, E- or S- tag with a type in the 1 sentence read "
        "(is this NER data? the tag column is --tag-col, -1 = the last)\n"
    )
    assert not out.exists()
    all_o = tmp_path / "plain.conll"
    all_o.write_text("John O\nruns O\n\nAnn O\n", encoding="utf-8")
    res = run_cli("ner", all_o, "-o", out)
    assert res.exit_code == 2
    assert "no entity tags: no B-, I-, E- or S- tag with a type in the 2 sentences read" in res.stderr


def test_ner_that_rejects_everything_exits_3(tmp_path, run_cli):
    p = tmp_path / "bad.conll"
    p.write_text("John B-PER\nruns VERB\n\nAnn B-PER\nsings NOUN\n", encoding="utf-8")
    res = run_cli("ner", p, "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 3
    assert (
        res.stderr.splitlines()[-1]
        == "error: wrote nothing: all 2 outcomes were rejected; top reasons: bad_tag 2"
    )


def test_classify_over_the_threshold_exits_3(tmp_path, run_cli):
    p = tmp_path / "d.tsv"
    p.write_text("text\tlabel\ngood\tpos\n\tneg\n\tpos\n", encoding="utf-8")
    res = run_cli("classify", p, "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 3
    assert res.stderr.splitlines()[-1] == (
        "error: rejected 2 of 3 outcomes (67%), over --max-reject-ratio 0.5; top reasons: empty_text 2"
    )


def test_planned_empty_sentence_drops_do_not_count_as_rejections(tmp_path, run_cli):
    """A per-type NER run over a corpus of mostly entity-less sentences drops the surplus by its empty quota:
    those drops were asked for, so the run exits 0 (11 of 12 sentences here have no entity)."""
    lines = ["John NNP B-NP B-PER", "lives VBZ B-VP O", "here RB B-ADVP O", ""]
    for i in range(11):
        lines += [f"word{i} NN B-NP O", "again RB B-ADVP O", ""]
    data = tmp_path / "few.conll"
    data.write_text("\n".join(lines), encoding="utf-8")
    res = run_cli("ner", data, "--target", "per-type", "-o", tmp_path / "out.jsonl")
    assert "too_many_empty" in res.stderr
    assert res.exit_code == 0, res.stderr


@pytest.mark.shared
def test_ner_empty_share_option(shared_data, tmp_path, run_cli):
    data = shared_data / "conll2003_en" / "eng.testa"
    res = run_cli("ner", data, "--target", "per-type", "--empty-share", "0.5", "-q", "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 0, res.stderr
    # exact duplicate records (CoNLL repeats sentences) are dropped and counted since issue 12
    assert res.stderr.splitlines()[:2] == [
        "ner: read 3250, wrote 3071, rejected 179",
        "  rejected duplicate_record: 179",
    ]
    assert "  note: empty answers: 1538 of 3071 (50.1%), per-type target 50%" in res.stderr.splitlines()
    no_dedup = ("--target", "per-type", "--empty-share", "0.5", "--no-dedup", "-q")
    res = run_cli("ner", data, *no_dedup, "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 0, res.stderr
    assert "  note: empty answers: 1624 of 3250 (50.0%), per-type target 50%" in res.stderr.splitlines()
