"""Tiny model build, SFT (full and LoRA), expert training with skip, evaluation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from taskpgm.errors import InputError
from taskpgm.models.encode import encode_pair
from taskpgm.models.evaluate import evaluate_model, greedy_generate
from taskpgm.models.load import load_model
from taskpgm.models.scoring import score_pool
from taskpgm.models.tiny import TinyConfig, build_tiny_model
from taskpgm.models.toy import write_toy_pool
from taskpgm.models.train import IGNORE, TRAIN_MARKER, collate, train_experts, train_model
from taskpgm.tasks.pool import Pool

TINY = TinyConfig(vocab_size=300, n_layer=2, n_embd=64, n_head=2, n_positions=64)
TASKS = ("upper", "reverse", "first")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    pool = Pool.load(write_toy_pool(root / "pool", TASKS, n_train=64, n_probe=12, n_eval=12,
                                    multiple_choice=True, heldout=("pick",)))
    base = build_tiny_model(pool, root / "base", seed=0, config=TINY)
    results = train_experts(pool, base, root / "experts", steps=80, batch_size=16, lr=3e-3,
                            progress=False)
    return pool, base, root / "experts", results


def test_tiny_model_is_reproducible_and_loads_through_auto_classes(tmp_path):
    pool = write_toy_pool(tmp_path / "pool", ("copy",), n_train=16, n_probe=2, n_eval=2)
    a = build_tiny_model(pool, tmp_path / "a", seed=3, config=TINY)
    b = build_tiny_model(pool, tmp_path / "b", seed=3, config=TINY)
    c = build_tiny_model(pool, tmp_path / "c", seed=4, config=TINY)
    files = sorted(p.name for p in a.iterdir())
    assert "model.safetensors" in files and "tokenizer.json" in files
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    loaded = load_model(a)
    tok = loaded.tokenizer
    assert tok.eos_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert loaded.model.config.n_layer == TINY.n_layer
    text = "copy: ocean tiger\n"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level BPE round-trips


def test_loss_mask_covers_response_tokens_only(trained):
    _pool, base, _, _ = trained
    tok = load_model(base).tokenizer
    encs = [encode_pair(tok, "upper: apple\n", "APPLE"), encode_pair(tok, "first: a b c\n", "a")]
    batch = collate(encs, tok.pad_token_id)
    for r, e in enumerate(encs):
        labels = batch["labels"][r]
        assert torch.all(labels[: e.start] == IGNORE)  # prompt masked
        assert labels[: len(e)][e.start:].tolist() == list(e.ids[e.start:])  # response + EOS
        assert torch.all(labels[len(e):] == IGNORE)  # padding masked
        assert int(batch["attention_mask"][r].sum()) == len(e)


def test_experts_learn_their_own_task(trained, tmp_path):
    pool, base, experts, results = trained
    assert set(results) == set(TASKS)  # role 'heldout' tasks get no expert
    assert all(r.final_loss < r.first_loss / 2 for r in results.values())
    table = score_pool(pool, experts, tmp_path / "scores", include_base=base, progress=False)
    for task in TASKS:
        def per_token(expert, task=task):
            s = table.shard(expert, task)
            return -s.logprob.sum() / s.n_tokens.sum()
        assert per_token(task) < 0.5 * per_token("base"), task
        others = [per_token(e) for e in TASKS if e != task]
        assert per_token(task) < min(others), task  # the task's own expert is best on it


def test_finished_experts_are_skipped(trained):
    pool, base, experts, _ = trained
    marker = experts / "upper" / TRAIN_MARKER
    before = marker.stat().st_mtime_ns
    again = train_experts(pool, base, experts, steps=60, progress=False)
    assert all(r is None for r in again.values())
    assert marker.stat().st_mtime_ns == before
    # A half-written leftover (no marker) is retrained, not trusted.
    (experts / "first" / TRAIN_MARKER).unlink()
    weights = (experts / "first" / "model.safetensors").read_bytes()
    again = train_experts(pool, base, experts, steps=80, batch_size=16, lr=3e-3, progress=False)
    assert again["first"] is not None and again["upper"] is None
    assert (experts / "first" / TRAIN_MARKER).is_file()
    # Same settings and seed: the retrained expert is bit-identical to the first one.
    assert (experts / "first" / "model.safetensors").read_bytes() == weights


def test_same_seed_same_bytes(trained, tmp_path):
    pool, base, _, _ = trained
    data = pool.examples("upper", "train")
    for name in ("a", "b"):
        train_model(base, data, tmp_path / name, steps=4, batch_size=8, seed=7, progress=False)
    train_model(base, data, tmp_path / "c", steps=4, batch_size=8, seed=8, progress=False)
    weights = {n: (tmp_path / n / "model.safetensors").read_bytes() for n in "abc"}
    assert weights["a"] == weights["b"] != weights["c"]


def test_lora_expert_trains_saves_adapters_and_scores(trained, tmp_path):
    pool, base, _, _ = trained
    out = tmp_path / "lora"
    r = train_model(base, pool.examples("reverse", "train"), out, steps=30, lr=1e-2, lora=True,
                    progress=False)
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    assert r.final_loss < r.first_loss
    res_lora = evaluate_model(out, pool, ["reverse"], split="probe")["reverse"]
    res_base = evaluate_model(base, pool, ["reverse"], split="probe")["reverse"]
    assert res_lora.loss_per_token < res_base.loss_per_token


def test_cli_train_on_a_data_dir_with_messages(trained, tmp_path, cli):
    _pool, base, _, _ = trained
    data = tmp_path / "data"
    data.mkdir()
    lines = [{"prompt": "upper: apple\n", "response": "APPLE"},
             {"messages": [{"role": "user", "content": "upper: tiger"},
                           {"role": "assistant", "content": "TIGER"}]}] * 8
    (data / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    code, _out, err = cli("train", "--data", data, "--base", base, "--out", tmp_path / "m",
                         "--steps", "3", "--no-progress")
    assert code == 0, err
    info = json.loads((tmp_path / "m" / TRAIN_MARKER).read_text())
    assert info["n_examples"] == 16 and info["config"]["steps"] == 3


def test_evaluation_metrics(trained):
    pool, base, experts, _ = trained
    res = evaluate_model(experts / "first", pool, ["first", "pick"])
    assert res["first"].exact_match is not None and res["first"].accuracy is None
    assert res["pick"].accuracy is not None and 0 <= res["pick"].accuracy_norm <= 1
    base_res = evaluate_model(base, pool, ["first"])["first"]
    assert res["first"].exact_match > base_res.exact_match
    assert res["first"].loss_per_token < base_res.loss_per_token
    # Batched greedy decoding with left padding equals decoding one prompt at a time.
    loaded = load_model(experts / "first")
    prompts = [e.prompt for e in pool.examples("first", "eval")]
    batched = greedy_generate(loaded, prompts, max_new_tokens=12)
    single = [greedy_generate(loaded, [p], max_new_tokens=12)[0] for p in prompts]
    assert batched == single
    assert len(set(batched)) > 1  # really different prompts, different answers


def test_bad_inputs_are_one_line_and_exit_2(trained, tmp_path, cli):
    pool, base, _, _ = trained
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    code, _, err = cli("experts", "train", "--pool", pool.root, "--base", broken,
                       "--out", tmp_path / "e", "--no-progress")
    assert code == 2 and str(broken) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()
    code, _, err = cli("train", "--data", tmp_path / "nodata", "--base", base,
                       "--out", tmp_path / "m", "--no-progress")
    assert code == 2 and "nodata: training data not found" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text('{"prompt": "a", "response": "b"}\n{"prompt": 3}\n')
    code, _, err = cli("train", "--data", bad, "--base", base, "--out", tmp_path / "m")
    assert code == 2 and "train.jsonl:2" in err
    code, _, err = cli("experts", "train", "--pool", pool.root, "--base", base,
                       "--out", tmp_path / "e", "--tasks", "nope")
    assert code == 2 and "'nope'" in err
    with pytest.raises(InputError, match="steps must be >= 1"):
        train_model(base, pool.examples("upper", "train"), tmp_path / "z", steps=0)
    assert not np.any([p.name == "z" for p in tmp_path.iterdir()])


def test_evaluate_model_refuses_unknown_split_and_zero_tokens_before_loading(tmp_path):
    from taskpgm.errors import InputError
    from taskpgm.models.evaluate import evaluate_model

    missing_model = tmp_path / "no-model"
    with pytest.raises(InputError, match="unknown split 'dev'"):
        evaluate_model(missing_model, tmp_path / "no-pool", split="dev")
    with pytest.raises(InputError, match="max_new_tokens must be at least 1"):
        evaluate_model(missing_model, tmp_path / "no-pool", max_new_tokens=0)
