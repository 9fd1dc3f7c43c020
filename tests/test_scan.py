"""scan (issue 13 item 10): three categories, each measured on a labelled sample with precision and
recall >= 0.9. The sample (tests/data/scan_labelled.jsonl) holds 130 written lines in seven languages
and 386 rows of LLaMA-Factory's alpaca demo files (hiyouga/LLaMA-Factory data/alpaca_en_demo.json,
alpaca_zh_demo.json; rows 1-based, all rows a broad keyword search finds plus 60 random others per
file), read from ../shared/data when present."""

from __future__ import annotations

import json

import pytest

from instructgen.identity.scan import CATEGORIES, scan_hits, scan_record, scan_text
from instructgen.identity.scan_eval import DEFAULT_SAMPLE, evaluate, load_sample, main, table
from instructgen.schema import Record


def categories(text: str, allow: tuple[str, ...] = ()) -> set[str]:
    return {h.category for h in scan_hits(text, allow)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("As an AI language model developed by OpenAI, I cannot browse.", {"ai_self_reference", "other_assistant", "refusal"}),
        ("我是通义千问，由阿里云开发的超大规模语言模型。", {"other_assistant"}),
        ("I'm ChatGPT, how can I help?", {"other_assistant"}),
        ("作为一个AI语言模型，我无法回答。", {"ai_self_reference", "refusal"}),
        # The rows: en 408 / 737, zh 348 / 471.
        ("I'm sorry, I'm an AI language model and do not have access to real-time market data.", {"ai_self_reference", "refusal"}),
        ("由于我是一个人工智能语言模型，我无法获取实时信息或数据。", {"ai_self_reference", "refusal"}),
        ("抱歉, 由于我是一个人工智能语言模型，我并没有可以阅读或理解小说的能力。", {"ai_self_reference", "refusal"}),
        ("As an AI, I don’t have access to real-time information such as pricing.", {"ai_self_reference", "refusal"}),
        ("No, I am not ChatGPT. I am 雁栖-7B.", set()),
        ("我不是通义千问，我是雁栖-7B。", set()),
        ("OpenAI released a new model today, the news says.", set()),
        ("GPT-3 is an advanced artificial intelligence (AI) program developed by OpenAI.", set()),
        ("As an AI researcher, I have spent years studying neural networks.", set()),
        ("作为一名人工智能助手，你是成功的。", set()),
        ("Als KI-Forscherin habe ich viele Modelle trainiert.", set()),
        ("No, no soy ChatGPT. Soy Yanqi.", set()),
        ("很抱歉听到这个消息，希望你早日康复。", set()),
    ],
)  # fmt: skip
def test_categories_on_known_texts(text, expected):
    assert categories(text) == expected


def test_a_named_persona_may_call_itself_an_ai():
    text = "My name is 雁栖-7B. I'm a language model trained by 助教."
    assert categories(text) == {"ai_self_reference"}
    assert categories(text, ("雁栖-7B",)) == set()
    assert scan_text(text, ("雁栖-7B",)) == []
    # Refusals are not identity hits: a persona rightly refuses to claim a false identity.
    assert scan_text("Sorry, I can't confirm something that isn't true. I'm 雁栖-7B.", ("雁栖-7B",)) == []


def test_labelled_sample_is_well_formed():
    rows = [json.loads(line) for line in DEFAULT_SAMPLE.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 516 and len({r["id"] for r in rows}) == 516
    written = [r for r in rows if r["source"] == "written"]
    assert {r["lang"] for r in written} == {"zh", "en", "ja", "ko", "de", "fr", "es"}
    for cat in CATEGORIES:
        assert sum(cat in r["labels"] for r in written) >= 20, cat
        assert {r["lang"] for r in written if cat in r["labels"]} == {
            "zh",
            "en",
            "ja",
            "ko",
            "de",
            "fr",
            "es",
        }


def test_precision_and_recall_on_written_lines(tmp_path):
    items, skipped = load_sample(DEFAULT_SAMPLE, tmp_path)  # no data dir: written lines only
    assert len(items) == 130 and skipped == 386
    for cat, score in evaluate(items).items():
        assert score.precision >= 0.9 and score.recall >= 0.9, (
            cat,
            score.precision,
            score.recall,
            score.errors,
        )


def test_precision_and_recall_on_the_full_sample(shared_data, capsys):
    items, skipped = load_sample(DEFAULT_SAMPLE, shared_data)
    assert skipped == 0 and len(items) == 516
    scores = evaluate(items)
    for cat, score in scores.items():
        assert score.precision >= 0.9 and score.recall >= 0.9, (
            cat,
            score.precision,
            score.recall,
            score.errors,
        )
    assert scores["ai_self_reference"].tp + scores["ai_self_reference"].fn == 95
    assert scores["refusal"].tp + scores["refusal"].fn == 102
    assert main(["--data", str(shared_data)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("scan on 516 labelled lines (0 skipped: data file absent)")
    assert table(scores, 516, 0) in out


def test_cli_counts_by_category_and_filters(shared_data, run_cli, tmp_path):
    res = run_cli("scan", shared_data / "alpaca_zh_demo.json", "-o", tmp_path / "hits.jsonl")
    assert res.exit_code == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0].startswith("scan: 1000 records, ")
    assert any(x.startswith("  ai_self_reference: ") for x in lines)
    hits = {json.loads(x)["line"]: json.loads(x) for x in (tmp_path / "hits.jsonl").read_text().splitlines()}
    assert {h["category"] for h in hits[348]["hits"]} == {"ai_self_reference", "refusal"}
    assert {h["category"] for h in hits[471]["hits"]} == {"ai_self_reference", "refusal"}
    only = run_cli("scan", shared_data / "alpaca_en_demo.json", "--category", "other_assistant")
    assert only.stderr == "scan: 999 records, 0 flagged\n"


def test_scan_ignores_user_turns_and_honours_allow(tmp_path, run_cli):
    p = tmp_path / "d.jsonl"
    p.write_text(
        '{"messages": [{"role": "user", "content": "Are you ChatGPT? I am ChatGPT fan"}, '
        '{"role": "assistant", "content": "No, I am Yanqi."}]}\n'
        '{"instruction": "Who made you?", "input": "", "output": "I was developed by Google."}\n',
        encoding="utf-8",
    )
    res = run_cli("scan", p, "--fail-on-hit")
    assert res.exit_code == 1
    assert res.stderr == "scan: 2 records, 1 flagged\n  other_assistant: 1\n    made_by_other_org_en: 1\n"
    assert run_cli("scan", p, "--allow", "Google", "--fail-on-hit").exit_code == 0
    record = Record(instruction="q", output="I'm sorry, but I can't help with that.")
    assert [h.category for h in scan_record(record)] == ["refusal"]
    assert scan_record(record, categories=("other_assistant",)) == []
