"""Exports read by the trainers' own loaders, with exact per-task counts and the loss
where the experts put it.

- LLaMA-Factory: ``get_dataset`` (parser, loader, converter, supervised processor) on
  ``dataset_info.json`` + ``mix.yaml``, run from the sample directory. Installed with
  ``pip install --no-deps llamafactory`` plus ``omegaconf``; its multimodal plugin
  imports torchaudio at module level, so a bare stand-in module is put in its place for
  the import only (no audio is processed), and ``DISABLE_VERSION_CHECK`` lets it run
  with newer transformers/datasets than it pins.
- TRL: ``SFTTrainer``'s own dataset preparation and one training step on the ``hf``
  export and on the ``messages`` export's train.jsonl, with a tiny random GPT-2 and a
  tokenizer built locally (no hub): the completion mask covers exactly the last assistant
  message (and the response, for plain rows).
- axolotl: the training YAML that ``axolotl.yaml`` is merged into, loaded, validated and
  prepared as ``axolotl preprocess`` does (``load_cfg`` then ``load_datasets``), in a child
  process. Installed with ``pip install --no-deps axolotl`` plus ``addict``, ``colorama``,
  ``termcolor`` (its full requirements pin CUDA-only packages and older transformers);
  ``numba`` (sample packing only) and ``posthog`` (telemetry, switched off) stand in for
  the import where absent. Skipped where axolotl is not installed.

The ``interleave`` export is read by ``datasets.interleave_datasets`` in
test_export_roundtrip.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
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


def _decoded(tok, rows):
    """(task, whole text, the text of the tokens that carry loss) of each tokenised row."""
    for ex in rows:
        text = tok.decode(ex["input_ids"])
        target = tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True)
                             if lab != -100])
        yield _task_of(text), text, target


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
    for task, text, target in _decoded(tok, train):
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
    for task, text, target in _decoded(tok, train):
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


def _sft(model_dir: Path, data_dir: Path, tmp_path: Path, train=None):
    import datasets
    from trl import SFTConfig, SFTTrainer

    if train is None:
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


def _check_conversational(trainer, want: dict[str, int]) -> None:
    """TRL's prepared rows: exact per-task counts; each row is the whole conversation
    in the chat template, and the loss mask (``completion_mask`` and the ``labels`` TRL
    builds from it) covers exactly the last assistant message's tokens and its turn end:
    nothing of the system/user turns or of earlier assistant turns."""
    tok = trainer.processing_class
    train = trainer.train_dataset
    assert len(train) == BUDGET and Counter(train["task"]) == Counter(want)
    for ex in train:
        ids = ex["input_ids"]
        whole = tok.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=False)
        prompt = tok.apply_chat_template(ex["prompt"], tokenize=False, add_generation_prompt=True)
        last = ex["completion"][0]["content"]
        assert tok.decode(ids) == whole == f"{prompt}{last}<|im_end|>\n"
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        n_last = len(tok(f"{last}<|im_end|>\n", add_special_tokens=False)["input_ids"])
        assert len(ids) == n_prompt + n_last
        if "completion_mask" in ex:
            assert ex["completion_mask"] == [0] * n_prompt + [1] * n_last
        if "labels" in ex:
            assert ex["labels"] == [-100] * n_prompt + ids[n_prompt:]
        assert "completion_mask" in ex or "labels" in ex
        _, completion = _split(tok, ex)
        assert completion == f"{last}<|im_end|>\n"  # the last assistant message only
        if ex["task"] == "chat":
            assert last.startswith("b") and f"a{last[1:]}" in prompt


@pytest.mark.slow
def test_trl_sft_trainer_conversational(samples, tiny_model, tmp_path):
    data_dir, want = samples("chat", "hf")
    trainer = _sft(tiny_model, data_dir, tmp_path)
    _check_conversational(trainer, want)
    trainer.train()
    assert trainer.state.global_step == 1


@pytest.mark.parametrize("kind", ["plain", "chat"])
def test_messages_rows_for_taskpgm_and_trl(kind, samples):
    """``--format messages``: taskpgm's own reader still takes ``messages``; ``prompt`` +
    ``completion`` (TRL's) are the same conversation, split before the last message."""
    from taskpgm.models.data import read_train_jsonl

    data_dir, want = samples(kind, "messages")
    rows = [json.loads(x) for x in (data_dir / "train.jsonl").read_text().splitlines()]
    examples = read_train_jsonl(data_dir)
    assert len(rows) == len(examples) == BUDGET
    assert Counter(r["task"] for r in rows) == Counter(want)
    for rec, ex in zip(rows, examples, strict=True):
        assert rec["prompt"] + rec["completion"] == rec["messages"] == list(ex.messages)
        assert [m["role"] for m in rec["completion"]] == ["assistant"]
        assert ex.response == rec["completion"][0]["content"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plain", "chat"])
def test_trl_sft_trainer_messages(kind, samples, tiny_model, tmp_path):
    """``--format messages``: train.jsonl as it is, read with datasets' JSON loader, gives
    TRL prompt-completion rows (loss on the last assistant message), not a language-
    modelling dataset trained on every token."""
    import datasets

    data_dir, want = samples(kind, "messages")
    train = datasets.load_dataset("json", data_files=str(data_dir / "train.jsonl"),
                                  split="train")
    trainer = _sft(tiny_model, data_dir, tmp_path, train=train)
    assert trainer.completion_only_loss  # TRL's default for prompt-completion rows
    _check_conversational(trainer, want)
    trainer.train()
    assert trainer.state.global_step == 1


# ---------------------------------------------------------------- axolotl

#: What ``axolotl preprocess CONFIG`` does (``axolotl.cli.preprocess.do_cli`` and
#: ``do_preprocess``, less its HF-token and accelerate-config checks, whose module needs
#: httpx and fire), run in a child process: axolotl configures logging, warnings and
#: stdout globally. Two imports stand in, for the import only (the real ones are used
#: where installed):
#: - ``numba``: ``axolotl.utils.samplers.multipack`` decorates its sample-packing bin
#:   packer with ``numba.njit`` at import time; packing is off here, and numba with
#:   llvmlite would add ~210 MB for code that never runs;
#: - ``posthog``: telemetry, imported by ``axolotl.telemetry.manager``; it is switched
#:   off (``AXOLOTL_DO_NOT_TRACK=1``), so nothing of it is used and nothing is sent.
AXOLOTL_PREPROCESS = """
import importlib.util, os, sys, types
if importlib.util.find_spec("numba") is None:
    numba = sys.modules["numba"] = types.ModuleType("numba")
    numba.njit = lambda fn=None, **_: fn if fn is not None else (lambda f: f)
if importlib.util.find_spec("posthog") is None:
    sys.modules["posthog"] = types.ModuleType("posthog")
os.environ["AXOLOTL_IS_PREPROCESS"] = "1"
from axolotl.cli.config import load_cfg
from axolotl.common.datasets import load_datasets
from axolotl.utils.trainer import disable_datasets_caching
cfg = load_cfg(sys.argv[1], is_preprocess=True)
cfg.is_preprocess = True
with disable_datasets_caching():
    load_datasets(cfg=cfg)
"""


@pytest.fixture(scope="module")
def axolotl_base(tmp_path_factory, tokenizer_factory):
    """A local ``base_model`` for axolotl's config: a tiny GPT-2 config and the test
    tokenizer (``preprocess`` reads the model config and the tokenizer; no weights)."""
    for mod in ("axolotl.common.datasets", "addict", "colorama", "termcolor"):
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        if not found:  # installed by the Makefile's setup (pip install --no-deps axolotl)
            pytest.skip(f"{mod} is not installed")
    from transformers import GPT2Config

    tok = tokenizer_factory()
    path = tmp_path_factory.mktemp("axolotl-base")
    GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=16, n_layer=1, n_head=2,
               bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["plain", "chat"])
def test_axolotl_preprocess(kind, samples, axolotl_base, tmp_path):
    """``axolotl.yaml`` merged into a training YAML and prepared as ``axolotl
    preprocess`` does (config loading and validation, tokenizer, dataset loading, prompt
    strategies, merge, length filter, save): every example kept, each task's exact count,
    loss on the response only."""
    import datasets
    from transformers import AutoTokenizer

    data_dir, want = samples(kind, "axolotl")
    frag = yaml.safe_load((data_dir / "axolotl.yaml").read_text())
    prepared = tmp_path / "prepared"
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "base_model": str(axolotl_base), **frag, "sequence_len": 256, "seed": 0,
        "micro_batch_size": 1, "gradient_accumulation_steps": 1, "num_epochs": 1,
        "learning_rate": 1e-4, "sample_packing": False, "dataset_num_proc": 1,
        # The tokenizer's EOS is not its turn end (as axolotl.yaml's header says to set).
        "eot_tokens": ["<|im_end|>"],
        "output_dir": str(tmp_path / "out"), "dataset_prepared_path": str(prepared)}))
    env = {**os.environ, "AXOLOTL_DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
    # Run from the sample directory: the paths in axolotl.yaml are relative to it.
    proc = subprocess.run([sys.executable, "-c", AXOLOTL_PREPROCESS, str(config)],
                          cwd=data_dir, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [saved] = [d for d in prepared.iterdir() if d.is_dir()]
    train = datasets.load_from_disk(str(saved))
    tok = AutoTokenizer.from_pretrained(axolotl_base)
    assert len(train) == BUDGET  # nothing dropped, merged or deduplicated
    seen = Counter()
    for task, text, target in _decoded(tok, train):
        seen[task] += 1
        if task == "chat":  # chat template; loss on the last assistant message only
            i = int(text.split("chat ", 1)[1].split("<", 1)[0])
            assert text == tok.apply_chat_template(_chat(i)["messages"], tokenize=False)
            assert target == f"b{i}<|im_end|>"
        else:  # the experts' text: prompt, "\n", response; loss on the response and EOS
            number = text.split(" ", 1)[1].split("\n", 1)[0]
            assert text == f"{task} {number}\nr{number}{tok.eos_token}"
            assert target == f"r{number}{tok.eos_token}"
    assert seen == Counter(want)
