"""Every translation record delimits its source (issue: data you would train on, item 6).

The checks on rendered records are written independently of `instructgen.quality.placement`: they look at
the text a model will read and ask where the source starts and ends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import instructgen
from instructgen.quality.placement import MAX_INLINE_CHARS, choose_fitting, misfit, placement
from instructgen.templates.pool import PoolSet

QUOTES = {'"': '"', "“": "”", "「": "」", "'": "'"}
STOPS = ".。!?！？"


def placement_problems(instruction: str, input_text: str, source: str) -> list[str]:
    """What a reader would find wrong about where `source` sits in this rendered record."""
    if input_text:
        return []  # the source is its own field
    at = instruction.find(source)
    if at < 0:
        return ["source not found in the instruction"]
    before, after = instruction[:at], instruction[at + len(source) :]
    if before[-1:] in QUOTES:
        close = QUOTES[before[-1]]
        problems = []
        if not after.startswith(close):
            problems.append("unbalanced quote")
        if before[-1] in source or close in source:
            problems.append("nested same-kind quotes")
        if len(source) > MAX_INLINE_CHARS:
            problems.append("long source inside a question")
        if source[-1:] in STOPS and after[1:2] in tuple(STOPS):
            problems.append("double stop")
        return problems
    starts_line = not before or before.endswith("\n")
    ends_line = not after or after.startswith("\n")
    if starts_line and ends_line:
        return []
    label = before.rsplit("\n", 1)[-1].rstrip(" ")
    if label.endswith((":", "：")) and len(label) <= 30 and after.startswith("\n") and "\n" not in source:
        return []  # "German: <source>\nEnglish:"
    return ["undelimited source"]


def test_no_shipped_template_is_bare_or_doubles_a_stop():
    pools = PoolSet.load("translation")
    for template in pools.all_templates():
        shape = placement(template.spec.instruction, template.spec.input)
        assert shape.shape != "bare", template.id
        assert not shape.stop_after, template.id


def test_shapes():
    assert placement("Translate into German:", "{{ source }}").shape == "input"
    assert placement("{{ source }}\n\nTranslate the text above.", "").shape == "block"
    assert placement("German: {{ source }}\nEnglish:", "").shape == "line"
    assert placement('How do you say "{{ source }}" in German?', "").shape == "quoted"
    assert placement("Translate this message for them: {{ source }}", "").shape == "bare"
    assert placement("Translate this message for them: {{ source | trim }}", "").shape == "bare"
    assert placement('Say "{{- source|trim -}}" in German.', "").shape == "quoted"
    assert placement("Translate {{ source_lang_note }}:", "{{ source }}").shape == "input"


def test_misfits():
    quoted = placement("请把“{{ source }}”翻译成英语。", "")
    assert misfit(quoted, "这是国家大剧院“台湖星期音乐会”的首场演出。") == "the source contains the template's quote “”"
    assert misfit(quoted, "短句。") is None
    assert misfit(quoted, "句" * 201) == "the source is over 200 characters"
    assert misfit(quoted, "第一句。第二句。") == "the source has more than one sentence"
    stop = placement('Here it is: "{{ source }}". Write it in German.', "")
    assert misfit(stop, "Hello there.") == "the source ends with a stop before the template's own"
    assert misfit(stop, "Hello there") is None
    line = placement("German: {{ source }}\nEnglish:", "")
    assert misfit(line, "one\ntwo") == "the source has several lines"


def test_refit_keeps_fitting_choice_and_is_seeded():
    templates = PoolSet.load("translation").by_language["zh"]
    short = "今天天气很好。"
    long = "这是一个很长的句子，" * 30
    for key in map(str, range(200)):
        first = choose_fitting(templates, 7, "translation", key, short)
        again = choose_fitting(templates, 7, "translation", key, short)
        assert first is again
        refit = choose_fitting(templates, 7, "translation", key, long)
        assert misfit(placement(refit.spec.instruction, refit.spec.input), long) is None


def _wmt_pairs(shared_data: Path, src: str, tgt: str) -> list[tuple[str, str]]:
    base = shared_data / f"wmt21_newstest_{src}_{tgt}"
    s = (base / f"newstest2021.{src}-{tgt}.src.{src}").read_text(encoding="utf-8").splitlines()
    t = (base / f"newstest2021.{src}-{tgt}.ref.A.{tgt}").read_text(encoding="utf-8").splitlines()
    return list(zip(s, t))


@pytest.mark.shared
@pytest.mark.parametrize(("src", "tgt"), [("zh", "en"), ("de", "en")])
def test_wmt21_records_delimit_every_source(shared_data, src, tgt):
    pairs = _wmt_pairs(shared_data, src, tgt)
    result = instructgen.translate(
        pairs, src, tgt, seed=7, direction="both", instruction_lang="mix", meta=True, langid="none"
    )
    by_line = {i + 1: p for i, p in enumerate(pairs)}
    counts: dict[str, int] = {}
    inline = 0
    for record in result.records:
        s, t = by_line[record.meta["line"]]
        source = s.strip() if record.meta["direction"] == "src2tgt" else t.strip()
        if not record.input:
            inline += 1
        for problem in placement_problems(record.instruction, record.input, source):
            counts[problem] = counts.get(problem, 0) + 1
    assert inline > 100  # question shapes are still used
    assert counts == {}
