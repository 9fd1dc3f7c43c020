"""Load an `instructgen export --to llamafactory` folder with LLaMA-Factory's own data loader.

Run by hand (LLaMA-Factory is not a dependency of instructgen):

    instructgen export data.jsonl --to llamafactory -o lf_data --name my_set
    python examples/load_with_llamafactory.py lf_data --dataset my_set --tokenizer PATH/TO/TOKENIZER

It goes through LLaMA-Factory's whole SFT data path, as `llamafactory-cli train` would:
`hparams.get_train_args` (the YAML keys), `model.load_tokenizer`, `data.get_template_and_fix_tokenizer`,
then `data.get_dataset(..., stage="sft")`, which reads `dataset_info.json` (data/parser.py), loads the
file (data/loader.py), converts alpaca/sharegpt rows (data/converter.py) and tokenizes them with the
template (data/processor/supervised.py). It prints the counts and the first example decoded, with its
trained part, and exits non-zero if any row was lost.

Install LLaMA-Factory in its own venv without letting it replace the CPU torch (its requirements
would pull a CUDA torch 2.14 and torchvision/torchaudio built for it). What was run for v0.9.5:
    python -m venv /tmp/lf && /tmp/lf/bin/pip install torch==2.13.0
    echo torch==2.13.0 > /tmp/lf-constraints.txt
    /tmp/lf/bin/pip install llamafactory==0.9.5 -c /tmp/lf-constraints.txt
    /tmp/lf/bin/pip uninstall -y torchvision torchaudio   # CUDA builds that cannot load beside CPU torch
    /tmp/lf/bin/pip install -e .                          # instructgen itself, to run the export
`llamafactory.data.mm_plugin` imports torchaudio at module level (for audio inputs only); when it is
missing or cannot load, this script stands in an empty module for it and says so.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import json
import sys
import tempfile
import types
from pathlib import Path


def _torchaudio_or_stub() -> None:
    try:
        importlib.import_module("torchaudio")
    except (ImportError, OSError) as exc:  # OSError: a build for another torch fails to load its library
        print(f"note: torchaudio unusable here ({type(exc).__name__}); text datasets do not need it, "
              "using an empty stand-in", file=sys.stderr)
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)  # find_spec() must not fail
        sys.modules["torchaudio"] = stub


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset_dir", help="the folder `instructgen export --to llamafactory -o` wrote")
    ap.add_argument("--dataset", default=None, help="entry name in dataset_info.json (default: the first)")
    ap.add_argument("--eval-dataset", default=None, help="an entry to load as the evaluation set too")
    ap.add_argument("--tokenizer", required=True, help="a local HF tokenizer folder (nothing is downloaded)")
    ap.add_argument("--template", default="qwen", help="LLaMA-Factory template name (default qwen)")
    ap.add_argument("--cutoff-len", type=int, default=1024)
    args = ap.parse_args()

    info = json.loads((Path(args.dataset_dir) / "dataset_info.json").read_text(encoding="utf-8"))
    name = args.dataset or next(iter(info))
    entry = info[name]
    rows_in = _count_rows(Path(args.dataset_dir) / entry["file_name"])

    _torchaudio_or_stub()
    import llamafactory
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    with tempfile.TemporaryDirectory() as out_dir:
        hparams = {
            "stage": "sft",
            "do_train": True,
            "model_name_or_path": args.tokenizer,
            "dataset_dir": args.dataset_dir,
            "dataset": name,
            "template": args.template,
            "cutoff_len": args.cutoff_len,
            "output_dir": out_dir,
            "overwrite_cache": True,
            "report_to": "none",
        }
        if args.eval_dataset:
            hparams["eval_dataset"] = args.eval_dataset
        model_args, data_args, training_args, _finetune, _gen = get_train_args(hparams)
        tokenizer_module = load_tokenizer(model_args)
        tokenizer = tokenizer_module["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)

    train = module["train_dataset"]
    print(f"llamafactory {llamafactory.__version__}: dataset '{name}' ({entry['formatting']}), "
          f"{rows_in} rows in the file, {len(train)} examples tokenized")
    if "eval_dataset" in module:
        print(f"  eval dataset '{args.eval_dataset}': {len(module['eval_dataset'])} examples")
    first = train[0]
    trained = [t for t, lab in zip(first["input_ids"], first["labels"]) if lab != -100]
    print("  first example:", repr(tokenizer.decode(first["input_ids"]))[:300])
    print("  its trained part:", repr(tokenizer.decode(trained))[:300])
    if len(train) != rows_in:
        print(f"error: {rows_in - len(train)} rows were dropped by LLaMA-Factory", file=sys.stderr)
        return 1
    return 0


def _count_rows(path: Path) -> int:
    if path.suffix == ".jsonl":
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if path.suffix == ".json":
        return len(json.loads(path.read_text(encoding="utf-8")))
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


if __name__ == "__main__":
    sys.exit(main())
