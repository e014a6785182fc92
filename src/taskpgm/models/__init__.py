"""Models: build/load causal LMs, fine-tune experts, score task probes, evaluate.

This subpackage needs the ``models`` extra (torch, transformers, tokenizers, peft).
The numeric core (affinity, mixture, sample, scores, tasks) never imports it.

Modules:

- :mod:`taskpgm.models.load`      load any Hugging Face causal LM + tokenizer from a directory
- :mod:`taskpgm.models.tiny`      the embedded default: a tiny GPT-2 built from a config
- :mod:`taskpgm.models.encode`    prompt/response -> token ids with response positions
- :mod:`taskpgm.models.train`     supervised fine-tuning (full or LoRA), one expert per task
- :mod:`taskpgm.models.scoring`   the batched scoring engine and its executors
- :mod:`taskpgm.models.evaluate`  held-out loss, exact match, multiple-choice accuracy
"""
