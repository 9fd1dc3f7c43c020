"""The same job from Python, once over a list of pairs and once over a datasets.Dataset."""

from __future__ import annotations

import datasets

import instructgen

pairs = [
    ("今天天气很好，我们去公园散步吧。", "The weather is nice today, let's take a walk in the park."),
    ("这本书我已经读了三遍了。", "I have read this book three times."),
]
result = instructgen.translate(pairs, "zh", "en", seed=7, instruction_lang="zh")
for record in result.records:
    print(record.model_dump_json())
print(result.report.summary())

ds = datasets.Dataset.from_dict({"translation": [{"zh": s, "en": t} for s, t in pairs]})
result = instructgen.translate(ds, "zh", "en", seed=7, instruction_lang="zh", num_proc=1)
instructgen.write_records(result.records, "-")
