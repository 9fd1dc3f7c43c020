"""translate: the issue's acceptance points on real data, determinism, checks and formats."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from helpers import EXAMPLES, read_jsonl

import instructgen
from instructgen.io.writers import write_records
from instructgen.templates.languages import language_name
from instructgen.templates.pool import PoolSet

ZH_EN = "wmt21_newstest_zh_en/newstest2021.zh-en.src.zh", "wmt21_newstest_zh_en/newstest2021.zh-en.ref.A.en"
DE_EN = "wmt21_newstest_de_en/newstest2021.de-en.src.de", "wmt21_newstest_de_en/newstest2021.de-en.ref.A.en"
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{%|%\}|\[(?:src_lang|tgt_lang|source|target|input)\]")


@pytest.mark.parametrize(
    ("files", "src", "tgt"), [(ZH_EN, "zh", "en"), (DE_EN, "de", "en")], ids=["zh-en", "de-en"]
)
@pytest.mark.parametrize("instruction_lang", ["en", "zh"])
def test_shared_sets_render_fully_and_use_every_template(shared_data, files, src, tgt, instruction_lang):
    result = _translate_files(shared_data, files, src, tgt, instruction_lang=instruction_lang, meta=True)
    records = result.records
    assert len(records) >= 1000
    assert result.report.rejected_total <= len(records) * 0.01
    target_name = language_name(tgt, instruction_lang)
    for r in records:
        for text in (r.instruction, r.input, r.output):
            assert not PLACEHOLDER.search(text.replace(r.output, "")), r
        assert target_name in r.instruction, (target_name, r.instruction)
    pool = PoolSet.load("translation").by_language[instruction_lang]
    used = Counter(r.meta["template_id"] for r in records[:1000])
    assert set(used) == {t.id for t in pool}, f"unused: {sorted({t.id for t in pool} - set(used))}"


def _translate_files(shared, files, src, tgt, **options):
    from instructgen.api import Result, run_items
    from instructgen.converters.translation import TranslationConverter, TranslationOptions
    from instructgen.io.readers import read_parallel
    from instructgen.quality.report import Report

    conv = TranslationConverter(TranslationOptions(src_lang=src, tgt_lang=tgt, **options))
    report = Report(task="translation")
    result = Result(report=report)
    items = read_parallel(src_file=shared / files[0], tgt_file=shared / files[1], src_lang=src, tgt_lang=tgt)
    for item in run_items(items, conv.convert, report=report):
        (result.records if isinstance(item, instructgen.Record) else result.rejected).append(item)
    return result


def test_cli_twice_and_api_with_num_proc_1_and_2_are_byte_identical(shared_data, tmp_path, run_cli):
    import datasets

    src_path, tgt_path = shared_data / ZH_EN[0], shared_data / ZH_EN[1]
    args = [
        "translate",
        "--src-file",
        src_path,
        "--tgt-file",
        tgt_path,
        "--src-lang",
        "zh",
        "--tgt-lang",
        "en",
        "--instruction-lang",
        "mix",
        "--direction",
        "both",
        "--seed",
        "11",
        "-q",
    ]
    run_cli(*args, "-o", tmp_path / "a.jsonl")
    run_cli(*args, "-o", tmp_path / "b.jsonl")
    a = (tmp_path / "a.jsonl").read_bytes()
    assert a == (tmp_path / "b.jsonl").read_bytes()

    src_lines = src_path.read_text(encoding="utf-8").splitlines()
    tgt_lines = tgt_path.read_text(encoding="utf-8").splitlines()
    ds = datasets.Dataset.from_dict(
        {"translation": [{"zh": s, "en": t} for s, t in zip(src_lines, tgt_lines)]}
    )
    for n in (1, 2):
        result = instructgen.translate(
            ds, "zh", "en", num_proc=n, instruction_lang="mix", direction="both", seed=11
        )
        write_records(result.records, tmp_path / f"api{n}.jsonl")
        assert (tmp_path / f"api{n}.jsonl").read_bytes() == a, f"num_proc={n}"
    assert len(a.splitlines()) > 3000


def test_batch_fn_in_user_map_equals_translate(tmp_path):
    import datasets

    rows = {
        "de": ["Guten Morgen, wie geht es dir heute?", "Ja", "Ja"],
        "en": ["Good morning, how are you today?", "Yes", "Yes"],
    }
    ds = datasets.Dataset.from_dict(rows)
    fn = instructgen.translation_batch_fn("de", "en", seed=3, meta=True)
    mapped = ds.map(fn, batched=True, with_indices=True, remove_columns=ds.column_names, num_proc=2)
    collected = instructgen.collect(mapped)
    direct = instructgen.translate(list(zip(rows["de"], rows["en"])), "de", "en", seed=3, meta=True)
    assert collected.records == direct.records
    assert [r.reason for r in collected.rejected] == ["duplicate_pair"]


def test_seed_changes_templates_but_direction_does_not(tmp_path):
    data = [(f"Satz Nummer {i} ist hier.", f"Sentence number {i} is here.") for i in range(200)]
    a = instructgen.translate(data, "de", "en", seed=1, meta=True).records
    b = instructgen.translate(data, "de", "en", seed=2, meta=True).records
    assert [r.meta["template_id"] for r in a] != [r.meta["template_id"] for r in b]
    both = instructgen.translate(data, "de", "en", seed=1, meta=True, direction="both").records
    assert len(both) == 2 * len(a)
    forward = [r for r in both if r.meta["direction"] == "src2tgt"]
    backward = [r for r in both if r.meta["direction"] == "tgt2src"]
    assert [r.meta["template_id"] for r in forward] == [r.meta["template_id"] for r in a]
    assert [r.meta["template_id"] for r in backward] == [r.meta["template_id"] for r in a]
    assert all(f.output == b_.input or f.output in b_.instruction for f, b_ in zip(forward, backward))
    assert backward[0].output == "Satz Nummer 0 ist hier."
    assert backward[0].meta["src_code"] == "en" and backward[0].meta["tgt_code"] == "de"


def test_instruction_lang_src_and_tgt_pick_pool_per_record():
    data = [("今天下雨了，记得带伞。", "It is raining today, remember your umbrella.")]
    rec = instructgen.translate(data, "zh", "en", instruction_lang="src", direction="both", meta=True).records
    assert [r.meta["instruction_lang"] for r in rec] == ["zh", "en"]
    assert "英语" in rec[0].instruction and "Chinese" in rec[1].instruction
    rec = instructgen.translate(data, "zh", "en", instruction_lang="tgt", direction="both", meta=True).records
    assert [r.meta["instruction_lang"] for r in rec] == ["en", "zh"]


def test_instruction_lang_without_a_pool_fails_up_front():
    with pytest.raises(instructgen.ConfigError, match="no 'translation' template pool written in 'de'"):
        instructgen.translate([("Hallo", "Hello")], "de", "en", instruction_lang="src")


def test_mix_uses_every_pool_language():
    data = [(f"Satz Nummer {i} ist hier.", f"Sentence number {i} is here.") for i in range(100)]
    rec = instructgen.translate(data, "de", "en", instruction_lang="mix", meta=True).records
    assert Counter(r.meta["instruction_lang"] for r in rec).keys() == {"en", "zh"}


def test_meta_fields(tmp_path):
    p = tmp_path / "p.tsv"
    p.write_text("你好，世界。\tHello, world.\n", encoding="utf-8")
    (r,) = instructgen.translate(p, "zh", "en", meta=True, seed=5).records
    assert set(r.meta) == {
        "key",
        "template_id",
        "template_hash",
        "instruction_lang",
        "src_code",
        "tgt_code",
        "direction",
        "source_file",
        "line",
    }
    assert (r.meta["source_file"], r.meta["line"], r.meta["direction"]) == (str(p), 1, "src2tgt")
    assert re.fullmatch(r"[0-9a-f]{12}", r.meta["template_hash"])


@pytest.mark.parametrize(
    ("pair", "reason", "detail"),
    [
        (("", "Hello"), "empty_source", "the source side is empty"),
        (("Hallo", "   "), "empty_target", "the target side is empty"),
        (
            ("Ja.", "Yes, and I would also like to add several more words to this very long answer."),
            "length_ratio",
            "length ratio 16.0 > 3",
        ),
        (
            (
                "The weather is lovely today and we are going for a walk.",
                "Hello there my friend, how are you?",
            ),
            "wrong_language_source",
            "detected 'en' (0.99) by fasttext, expected 'de'",
        ),
        (
            (
                "Das Wetter ist heute schön und wir gehen spazieren.",
                "Das Wetter ist heute sehr schön, wir gehen.",
            ),
            "wrong_language_target",
            "detected 'de' (1.00) by fasttext, expected 'en'",
        ),
        (("Hallo", "你好"), "wrong_language_target", "no Latn letters in a text expected to be 'en'"),
    ],
    ids=["empty-source", "empty-target", "ratio", "lang-source", "lang-target", "short-script"],
)
def test_each_check_rejects_with_its_reason(pair, reason, detail):
    result = instructgen.translate([pair], "de", "en")
    assert result.records == []
    (rej,) = result.rejected
    assert (rej.reason, rej.detail) == (reason, detail)
    assert result.report.rejected == {reason: 1}


def test_short_texts_in_the_right_script_pass():
    result = instructgen.translate([("嗨。", "Hi."), ("走吧！", "Go!")], "zh", "en")
    assert len(result.records) == 2


def test_duplicates_are_counted_and_first_kept():
    data = [("Guten Tag.", "Good day."), ("Danke.", "Thanks."), ("Guten Tag.", "Good day.")]
    result = instructgen.translate(data, "de", "en")
    assert [r.output for r in result.records] == ["Good day.", "Thanks."]
    (dup,) = result.rejected
    assert (dup.reason, dup.detail, dup.line) == (
        "duplicate_pair",
        "exact duplicate of an earlier pair (line 1)",
        3,
    )
    assert len(instructgen.translate(data, "de", "en", dedup=False).records) == 3


def test_duplicate_key_tells_apart_pairs_that_differ_where_a_unit_separator_sits():
    # issue 11 item 11: the key joined the texts with U+001F, so these two pairs had one key and
    # the second was dropped as a duplicate of the first
    data = [("Guten\x1fTag.", "Good day."), ("Guten", "Tag.\x1fGood day.")]
    result = instructgen.translate(data, "de", "en", langid="none", max_ratio=None)
    assert [r.output for r in result.records] == ["Good day.", "Tag.\x1fGood day."]
    assert result.rejected == []


def test_duplicate_key_is_a_fixed_size_digest_of_direction_and_texts():
    from instructgen.converters.translation import dedup_key

    long = "x" * 100_000
    assert len(dedup_key("src2tgt", long, long)) == 16  # never the texts themselves (issue 11 item 16)
    assert dedup_key("src2tgt", "a", "b") != dedup_key("tgt2src", "a", "b")
    assert dedup_key("src2tgt", "ab", "c") != dedup_key("src2tgt", "a", "bc")


def test_leftover_placeholder_from_a_user_template_is_rejected(tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text(
        "task: translation\nlanguage: en\ntemplates:\n"
        '  - id: leaky\n    instruction: "Translate [input] into {{ tgt_lang }}:"\n'
        '    input: "{{ source }}"\n    output: "{{ target }}"\n',
        encoding="utf-8",
    )
    result = instructgen.translate(
        [("Guten Tag.", "Good day.")], "de", "en", templates=[pool], builtin_templates=False
    )
    (rej,) = result.rejected
    assert (rej.reason, rej.detail) == ("unrendered_placeholder", "template leaky left [input]")


def test_placeholder_like_text_in_the_data_is_not_a_leftover():
    result = instructgen.translate(
        [("Nutze {{ name }} hier.", "Use {{ name }} here.")], "de", "en", langid="none"
    )
    assert len(result.records) == 1


def test_user_pool_adds_a_language(tmp_path, run_cli):
    pool = tmp_path / "de.yaml"
    pool.write_text(
        "task: translation\nlanguage: de\ntemplates:\n"
        '  - id: de-001\n    instruction: "Übersetze aus dem {{ src_lang }} ins {{ tgt_lang }}:"\n'
        '    input: "{{ source }}"\n    output: "{{ target }}"\n',
        encoding="utf-8",
    )
    out = tmp_path / "o.jsonl"
    res = run_cli(
        "translate",
        EXAMPLES / "data" / "zh_en.tsv",
        "--src-lang",
        "zh",
        "--tgt-lang",
        "en",
        "--templates",
        pool,
        "--instruction-lang",
        "de",
        "-o",
        out,
    )
    assert res.exit_code == 0, res.output
    rows = read_jsonl(out)
    assert len(rows) == 25
    assert rows[0]["instruction"] == "Übersetze aus dem Chinesisch ins Englisch:"


def test_api_rejects_unknown_options():
    with pytest.raises(TypeError, match="unexpected option"):
        instructgen.translate([("a", "b")], "de", "en", sed=1)


def test_example_data_round_trip(tmp_path):
    result = instructgen.translate(EXAMPLES / "data" / "zh_en.tsv", "zh", "en", direction="both")
    assert result.report.read == 25 and result.report.written == 50 and not result.rejected
    assert all(json.loads(r.model_dump_json()) for r in result.records)


def test_tatoeba_exact_duplicates_match_a_plain_count(shared_data):
    path = shared_data / "tatoeba_cmn_eng" / "cmn.head5000.txt"
    rows = [tuple(line.split("\t")[:2]) for line in path.read_text(encoding="utf-8-sig").splitlines()]
    expected_dups = len(rows) - len(set(rows))
    result = instructgen.translate(path, "en", "zh", langid="none", max_ratio=None)
    assert result.report.rejected == {"duplicate_pair": expected_dups}
    assert expected_dups > 0


def test_ratio_check_ignores_short_pairs():
    assert instructgen.translate([("Ja.", "Yes, I do.")], "de", "en", langid="none").records


def test_direction_must_be_known():
    with pytest.raises(instructgen.ConfigError, match="--direction must be one of"):
        instructgen.translate([("a", "b")], "de", "en", direction="sideways")


def test_same_language_is_refused():
    with pytest.raises(instructgen.ConfigError, match="source and target language are both 'en'"):
        instructgen.translate([("a", "b")], "en", "en")
