"""Exports read by the trainers' own loaders, with exact per-task counts and the loss
where the experts put it.

- LLaMA-Factory: ``get_dataset`` (parser, loader, converter, supervised processor) on
  ``dataset_info.json`` + ``mix.yaml``, run from the sample directory. Installed with
  ``pip install --no-deps llamafactory`` plus ``omegaconf``; its multimodal plugin
  imports torchaudio at module level, so a bare stand-in module is put in its place for
  the import only (no audio is processed), and ``DISABLE_VERSION_CHECK`` lets it run
  with newer transformers/datasets than it pins.
- TRL: ``SFTTrainer``'s own dataset preparation and one training step on the ``hf``
  export, with a tiny random GPT-2 and a tokenizer built locally (no hub).
- axolotl: its SFT dataset loading (``_load_raw_datasets``: schema, local files, prompt
  strategies, merge) on ``axolotl.yaml``; skipped where axolotl is not importable (it is
  not a test dependency: it pins CUDA-only packages).

The ``interleave`` export is read by ``datasets.interleave_datasets`` in
test_export_roundtrip.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from export_data import chat_example as _chat
from taskpgm.mixture.record import Mixture
from taskpgm.sample import materialise
from taskpgm.tasks.importers import import_files

BUDGET = 333
TASKS = ("alpha", "beta", "gamma", "chat")


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """``plain``: three prompt/response tasks whose prompt and response need the
    separator; ``chat``: the same plus a multi-turn chat task. Every format of both."""
    root = tmp_path_factory.mktemp("loaders")
    src = root / "src"
    src.mkdir()
    for k, n in (("alpha", 40), ("beta", 90), ("gamma", 15)):
        (src / f"{k}.jsonl").write_text(
            "".join(json.dumps({"prompt": f"{k} {i}", "response": f"r{i}"}) + "\n"
                    for i in range(n)))
    import_files([src], root / "plain-pool")
    (src / "chat.jsonl").write_text("".join(json.dumps(_chat(i)) + "\n" for i in range(30)))
    import_files([src], root / "chat-pool")
    Mixture("t", ["alpha", "beta", "gamma"], np.array([0.5, 0.3, 0.2])).save(root / "plain.json")
    Mixture("t", list(TASKS), np.array([0.4, 0.3, 0.2, 0.1])).save(root / "chat.json")

    def make(kind: str, fmt: str) -> tuple[Path, dict[str, int]]:
        out = root / f"{kind}-{fmt}"
        if not out.exists():
            materialise(root / f"{kind}-pool", root / f"{kind}.json", BUDGET, out, seed=5,
                        format=fmt)
        m = json.loads((out / "manifest.json").read_text())
        return out, {t["task"]: t["count"] for t in m["tasks"] if t["count"]}

    return make


def _task_of(text: str) -> str:
    """Which task a decoded training sequence comes from (each names its task)."""
    found = [t for t in TASKS if f"{t} " in text]
    assert len(found) == 1, text
    return found[0]


@pytest.fixture(scope="module")
def tokenizer_factory():
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from tokenizer_zoo import byte_level

    return lambda: byte_level(chat_template=True)


# ---------------------------------------------------------------- LLaMA-Factory


@pytest.fixture(scope="module")
def llamafactory():
    pytest.importorskip("llamafactory")
    pytest.importorskip("omegaconf")  # llamafactory.hparams
    import peft  # noqa: F401  (imported before the stand-in: they probe for torchaudio)
    import transformers  # noqa: F401

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISABLE_VERSION_CHECK", "1")
        if importlib.util.find_spec("torchaudio") is None:
            mp.setitem(sys.modules, "torchaudio", types.ModuleType("torchaudio"))
        from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
        from llamafactory.data.loader import _get_merged_dataset
        from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    return types.SimpleNamespace(
        get_dataset=get_dataset, get_template=get_template_and_fix_tokenizer,
        merged=_get_merged_dataset, DataArguments=DataArguments,
        ModelArguments=ModelArguments, TrainingArguments=Seq2SeqTrainingArguments)


def _lf_args(lf, data_dir: Path, tmp_path: Path, **overrides):
    mix = yaml.safe_load((data_dir / "llamafactory" / "mix.yaml").read_text())
    mix.update(overrides)
    data_args = lf.DataArguments(cutoff_len=512, **mix)
    model_args = lf.ModelArguments(model_name_or_path="unused", cache_dir=str(tmp_path / "cache"))
    training_args = lf.TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], seed=0)
    return data_args, model_args, training_args


def _commented_probs(data_dir: Path) -> str:
    text = (data_dir / "llamafactory" / "mix.yaml").read_text()
    line = next(x for x in text.splitlines() if x.startswith("#") and "interleave_probs:" in x)
    return line.split("interleave_probs:", 1)[1].strip()


def test_llamafactory_get_dataset_plain(samples, llamafactory, tokenizer_factory, tmp_path,
                                        monkeypatch):
    lf = llamafactory
    data_dir, want = samples("plain", "llamafactory")
    monkeypatch.setenv("DISABLE_VERSION_CHECK", "1")
    monkeypatch.chdir(data_dir)  # dataset_dir is relative to the sample directory
    data_args, model_args, training_args = _lf_args(lf, data_dir, tmp_path, template="empty")
    assert data_args.mix_strategy == "concat"
    # Each dataset, as LLaMA-Factory's parser and converter see it.
    per = lf.merged(data_args.dataset, model_args, data_args, training_args, "sft",
                    return_dict=True)
    assert [len(d) for d in per.values()] == list(want.values())
    tok = tokenizer_factory()
    template = lf.get_template(tok, data_args)
    train = lf.get_dataset(template, model_args, data_args, training_args, "sft",
                           tok)["train_dataset"]
    assert len(train) == BUDGET  # nothing dropped as invalid
    seen = Counter()
    for ex in train:
        text = tok.decode(ex["input_ids"])
        target = tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True)
                             if lab != -100])
        task = _task_of(text)
        seen[task] += 1
        # `template: empty` trains on exactly the experts' text: prompt, "\n", response.
        number = text.split(" ", 1)[1].split("\n", 1)[0]
        assert text == f"{task} {number}\nr{number}" and target == f"r{number}"
    assert seen == Counter(want)


def test_llamafactory_get_dataset_chat(samples, llamafactory, tokenizer_factory, tmp_path,
                                       monkeypatch):
    lf = llamafactory
    data_dir, want = samples("chat", "llamafactory")
    monkeypatch.setenv("DISABLE_VERSION_CHECK", "1")
    monkeypatch.chdir(data_dir)
    data_args, model_args, training_args = _lf_args(lf, data_dir, tmp_path, template="chatml")
    assert data_args.mask_history is True
    tok = tokenizer_factory()
    template = lf.get_template(tok, data_args)
    train = lf.get_dataset(template, model_args, data_args, training_args, "sft",
                           tok)["train_dataset"]
    assert len(train) == BUDGET
    seen = Counter()
    for ex in train:
        text = tok.decode(ex["input_ids"])
        target = tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True)
                             if lab != -100])
        task = _task_of(text)
        seen[task] += 1
        if task == "chat":  # sharegpt: system, two turns; loss on the last turn only
            i = text.split("chat ", 1)[1].split("<", 1)[0]
            assert "<|im_start|>system\nbe brief<|im_end|>" in text and f"a{i}" in text
            assert target.startswith(f"b{i}") and f"a{i}" not in target
        else:
            assert target.startswith("r") and task not in target
    assert seen == Counter(want)


def test_llamafactory_interleave_once(samples, llamafactory, tmp_path, monkeypatch):
    """The streaming alternative written in mix.yaml's comment reads each file once."""
    lf = llamafactory
    data_dir, want = samples("chat", "llamafactory")
    monkeypatch.setenv("DISABLE_VERSION_CHECK", "1")
    monkeypatch.chdir(data_dir)
    probs = _commented_probs(data_dir)
    data_args, model_args, training_args = _lf_args(
        lf, data_dir, tmp_path, template="chatml", mix_strategy="interleave_once",
        interleave_probs=probs)
    assert sum(data_args.interleave_probs) == 1.0
    mixed = lf.merged(data_args.dataset, model_args, data_args, training_args, "sft")
    rows = list(mixed)
    assert len(rows) == BUDGET
    assert Counter(r["_prompt"][0]["content"].split()[0] for r in rows) == Counter(want)


# ---------------------------------------------------------------- TRL


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tokenizer_factory):
    pytest.importorskip("trl")
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tokenizer_factory()
    path = tmp_path_factory.mktemp("tiny-gpt2")
    config = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _sft(model_dir: Path, data_dir: Path, tmp_path: Path):
    import datasets
    from trl import SFTConfig, SFTTrainer

    train = datasets.load_from_disk(str(data_dir / "hf"))
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, report_to=[],
                     per_device_train_batch_size=4, save_strategy="no", use_cpu=True,
                     dataloader_num_workers=0, max_length=128)
    return SFTTrainer(model=str(model_dir), train_dataset=train, args=args)


def _split(tok, ex) -> tuple[str, str]:
    """Decoded (masked prompt, trained completion) of one prepared row."""
    ids = ex["input_ids"]
    if "completion_mask" in ex:  # TRL that keeps the mask beside the ids
        keep = [bool(m) for m in ex["completion_mask"]]
    else:  # TRL that folds it into the labels
        keep = [lab != -100 for lab in ex["labels"]]
    return (tok.decode([t for t, k in zip(ids, keep, strict=True) if not k]),
            tok.decode([t for t, k in zip(ids, keep, strict=True) if k]))


@pytest.mark.slow
def test_trl_sft_trainer_plain(samples, tiny_model, tmp_path):
    data_dir, want = samples("plain", "hf")
    trainer = _sft(tiny_model, data_dir, tmp_path)
    tok = trainer.processing_class
    train = trainer.train_dataset
    assert len(train) == BUDGET and Counter(train["task"]) == Counter(want)
    for ex in train:
        prompt, completion = _split(tok, ex)
        # The experts' text: prompt + "\n" + response, loss on the response and EOS only.
        number = prompt.split(" ", 1)[1][:-1]
        assert prompt == ex["prompt"] == f"{ex['task']} {number}\n"
        assert completion == f"r{number}{tok.eos_token}"
    trainer.train()
    assert trainer.state.global_step == 1


@pytest.mark.slow
def test_trl_sft_trainer_conversational(samples, tiny_model, tmp_path):
    data_dir, want = samples("chat", "hf")
    trainer = _sft(tiny_model, data_dir, tmp_path)
    tok = trainer.processing_class
    train = trainer.train_dataset
    assert len(train) == BUDGET and Counter(train["task"]) == Counter(want)
    for ex in train:
        prompt, completion = _split(tok, ex)
        assert prompt == tok.apply_chat_template(ex["prompt"], tokenize=False,
                                                 add_generation_prompt=True)
        last = ex["completion"][0]["content"]
        assert completion == f"{last}<|im_end|>\n"  # the last assistant message only
        if ex["task"] == "chat":
            assert last.startswith("b") and f"a{last[1:]}" in prompt
    trainer.train()
    assert trainer.state.global_step == 1


# ---------------------------------------------------------------- axolotl


def test_axolotl_dataset_loading(samples, tokenizer_factory, tmp_path, monkeypatch):
    sft = pytest.importorskip("axolotl.utils.data.sft")
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.schemas.datasets import SFTDataset

    data_dir, want = samples("chat", "axolotl")
    monkeypatch.chdir(data_dir)  # the paths are relative to the sample directory
    # Its cache of the prepared dataset is not what is tested (and forks a process pool).
    monkeypatch.setattr(sft, "save_preprocessed_dataset", lambda *a, **k: None)
    frag = yaml.safe_load(Path("axolotl.yaml").read_text())
    entries = []
    for e in frag["datasets"]:
        d = SFTDataset.model_validate(e).model_dump(exclude_none=True)
        if isinstance(d.get("type"), dict):
            d["type"] = DictDefault(d["type"])
        entries.append(DictDefault(d))
    cfg = DictDefault({**frag, "datasets": entries, "sequence_len": 256, "seed": 0,
                       "dataset_num_proc": 1, "is_preprocess": True, "sample_packing": False,
                       "dataset_prepared_path": str(tmp_path / "prepared")})
    tok = tokenizer_factory()
    train, _ = sft._load_raw_datasets(cfg, cfg.datasets, tok, "train")
    assert len(train) == BUDGET
    seen = Counter()
    for ex in train:
        text = tok.decode(ex["input_ids"])
        target = tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True)
                             if lab != -100])
        task = _task_of(text)
        seen[task] += 1
        if task == "chat":  # loss on the last assistant message only
            i = text.split("chat ", 1)[1].split("<", 1)[0]
            assert target.startswith(f"b{i}") and f"a{i}" not in target
        else:
            number = text.split(" ", 1)[1].split("\n", 1)[0]
            assert text == f"{task} {number}\nr{number}{tok.eos_token}"
            assert target == f"r{number}{tok.eos_token}"
    assert seen == Counter(want)
