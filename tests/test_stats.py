"""stats: table, JSON and PNG plots over records and tokenized folders (issue 14 item 3)."""

from __future__ import annotations

import json
import math
import sys

import pytest
from helpers import EXAMPLES, read_jsonl

from instructgen.dataops.stats import describe


def _check_png(path, min_size=(600, 200)):
    """The PNG opens, is at least `min_size`, and is not blank (pixel variance, several colours)."""
    image_mod = pytest.importorskip("PIL.Image")
    with image_mod.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1], im.size
        gray = list(im.convert("L").tobytes())
        colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
    mean = sum(gray) / len(gray)
    var = sum((g - mean) ** 2 for g in gray) / len(gray)
    assert var > 100, f"{path} looks blank (variance {var:.1f})"
    assert len(colors) > 20, f"{path} has only {len(colors)} colours"
    assert sum(1 for g in gray if g < 128) > 0.002 * len(gray), f"{path} has almost no dark pixels (no text?)"


def _translated(tmp_path, run_cli, *extra):
    data = tmp_path / "tr.jsonl"
    res = run_cli(
        "translate", EXAMPLES / "data" / "zh_en.tsv", "--src-lang", "zh", "--tgt-lang", "en",
        "--direction", "both", "--meta", "-o", data, *extra,
    )
    assert res.exit_code == 0, res.stderr
    return data


def test_describe_is_nearest_rank():
    d = describe(list(range(1, 101)))
    assert (d["count"], d["mean"], d["min"], d["p50"], d["p90"], d["p99"], d["max"]) == (100, 50.5, 1, 50, 90, 99, 100)
    assert describe([]) == {"count": 0}


@pytest.mark.shared
def test_alpaca_zh_demo_table_json_and_plots(shared_data, tmp_path, run_cli):
    pytest.importorskip("matplotlib")
    src = shared_data / "alpaca_zh_demo.json"
    res = run_cli("stats", src, "--plots", tmp_path / "plots", "--json", tmp_path / "s.json")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{src}: 1000 records (alpaca 1000); 0 with a system prompt, 0 multi-turn"
    rows = json.loads(src.read_text(encoding="utf-8"))
    out_len = sorted(len(r["output"]) for r in rows)
    mean = sum(out_len) / len(out_len)
    p90 = out_len[math.ceil(0.9 * len(out_len)) - 1]
    assert f"  chars response{mean:>16.1f}{out_len[0]:>7}{out_len[499]:>7}{p90:>7}" in lines[3]
    stats = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert stats["rows"] == 1000 and stats["lengths"]["chars response"]["max"] == out_len[-1]
    # a Chinese set: most rows detected as zh on both sides
    assert stats["languages"]["zh"] > 900
    assert lines[-1].startswith("  languages (prompt->response, detected): zh ")
    assert res.stderr == f"plots: {tmp_path / 'plots' / 'lengths.png'}, {tmp_path / 'plots' / 'languages.png'}\n"
    _check_png(tmp_path / "plots" / "lengths.png")
    _check_png(tmp_path / "plots" / "languages.png")


def test_templates_languages_and_rejects_from_meta(tmp_path, run_cli):
    pytest.importorskip("matplotlib")
    tsv = tmp_path / "pairs.tsv"
    shipped = (EXAMPLES / "data" / "zh_en.tsv").read_text(encoding="utf-8").splitlines()
    # the shipped pairs, one of them twice (a duplicate_pair rejection)
    tsv.write_text("\n".join([*shipped, shipped[1]]) + "\n", encoding="utf-8")
    data, rejects = tmp_path / "tr.jsonl", tmp_path / "rejects.jsonl"
    res = run_cli(
        "translate", tsv, "--src-lang", "zh", "--tgt-lang", "en", "--direction", "both", "--meta",
        "--rejects", rejects, "-o", data,
    )
    assert res.exit_code == 0, res.stderr
    rows = read_jsonl(data)
    res = run_cli("stats", data, "--rejects", rejects, "--plots", tmp_path / "p")
    assert res.exit_code == 0, res.stderr
    n_templates = len({r["meta"]["template_id"] for r in rows})
    n_rejects = len(read_jsonl(rejects))
    assert n_rejects >= 1
    lines = res.stdout.splitlines()
    assert "  languages (meta): zh->en 25, en->zh 25" in lines
    assert any(line.startswith(f"  templates: {n_templates} distinct; ") for line in lines)
    assert f"  rejected ({rejects}): {n_rejects}: duplicate_pair {n_rejects}" in lines
    for name in ("lengths", "templates", "languages", "rejects"):
        _check_png(tmp_path / "p" / f"{name}.png")


def test_token_lengths_with_a_tokenizer(tmp_path, run_cli, tiny_dir):
    from transformers import AutoTokenizer

    data = _translated(tmp_path, run_cli)
    res = run_cli("stats", data, "--tokenizer", tiny_dir, "--json", tmp_path / "s.json", "--no-langid")
    assert res.exit_code == 0, res.stderr
    stats = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    rows = read_jsonl(data)
    response = [len(tok.encode(r["output"], add_special_tokens=False)) for r in rows]
    prompt = [
        len(tok.encode(r["instruction"] + ("\n" + r["input"] if r["input"] else ""), add_special_tokens=False))
        for r in rows
    ]
    assert stats["lengths"]["tokens response"] == describe(response)
    assert stats["lengths"]["tokens prompt"] == describe(prompt)
    assert stats["lengths"]["tokens total"]["max"] == max(a + b for a, b in zip(prompt, response))
    assert stats["tokenizer"] == str(tiny_dir)


def test_tokenized_folder_trained_share_packing_and_plots(tmp_path, run_cli, tiny_dir):
    pytest.importorskip("matplotlib")
    datasets = pytest.importorskip("datasets")
    data = _translated(tmp_path, run_cli)
    for name, extra in (("tok", []), ("packed", ["--pack"])):
        res = run_cli(
            "tokenize", data, "--tokenizer", tiny_dir, "--format", "chatml", "--max-length", "512",
            "-o", tmp_path / name, *extra,
        )
        assert res.exit_code == 0, res.stderr
    ds = datasets.load_from_disk(str(tmp_path / "tok"))
    tokens = sum(len(x) for x in ds["input_ids"])
    trained = sum(1 for labels in ds["labels"] for x in labels if x != -100)
    res = run_cli("stats", tmp_path / "tok", "--plots", tmp_path / "p", "--json", tmp_path / "s.json")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{tmp_path / 'tok'}: tokenized, {len(ds)} rows, format chatml, max_length 512"
    assert f"  trained tokens: {trained} of {tokens} ({trained / tokens:.1%}); truncated rows: 0; " \
        "rows without a trained token: 0" in lines
    stats = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert stats["tokenized"]["fill"] == pytest.approx(tokens / (512 * len(ds)))
    _check_png(tmp_path / "p" / "tokens.png")

    packed = datasets.load_from_disk(str(tmp_path / "packed"))
    meta = json.loads((tmp_path / "packed" / "instructgen_meta.json").read_text(encoding="utf-8"))
    res = run_cli("stats", tmp_path / "packed", "--json", tmp_path / "sp.json")
    assert res.exit_code == 0, res.stderr
    sp = json.loads((tmp_path / "sp.json").read_text(encoding="utf-8"))["tokenized"]
    assert sp["packed"] and sp["rows"] == len(packed) and sp["examples"] == len(ds)
    assert sp["fill"] == pytest.approx(meta["report"]["packing_efficiency"])
    # what stats predicted for --pack on the unpacked folder is what --pack made
    assert stats["tokenized"]["pack_rows"] == len(packed)
    assert f"  packing efficiency: {sp['fill']:.1%} of {len(packed)} x 512 tokens" in res.stdout.splitlines()


def test_plots_without_matplotlib_say_how_to_install(tmp_path, run_cli, monkeypatch):
    data = _translated(tmp_path, run_cli)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    res = run_cli("stats", data, "--plots", tmp_path / "p")
    assert res.exit_code == 2
    assert res.stderr == (
        "error: --plots needs matplotlib: pip install 'instructgen[plots]' (or pip install matplotlib)\n"
    )
    assert not (tmp_path / "p").exists()


def test_a_split_folder_gets_one_table_per_split(tmp_path, run_cli):
    data = _translated(tmp_path, run_cli)
    assert run_cli("split", data, "-o", tmp_path / "s", "--ratios", "60,20,20").exit_code == 0
    res = run_cli("stats", tmp_path / "s", "--no-langid", "--json", tmp_path / "s.json")
    assert res.exit_code == 0, res.stderr
    heads = [line for line in res.stdout.splitlines() if not line.startswith(" ")]
    assert heads == [
        f"{tmp_path / 's' / name}.jsonl: {n} records (alpaca {n}); 0 with a system prompt, 0 multi-turn"
        for name, n in (("train", 30), ("validation", 10), ("test", 10))
    ]
    per_split = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert [v["rows"] for v in per_split.values()] == [30, 10, 10]
    assert all(v["languages"] == {"zh->en": v["rows"] // 2, "en->zh": v["rows"] // 2} for v in per_split.values())
