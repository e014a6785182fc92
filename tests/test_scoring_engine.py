"""The scoring engine: exact values, batching invariance, resume after SIGKILL, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from taskpgm.errors import InputError
from taskpgm.models.encode import encode_pair
from taskpgm.models.load import load_model
from taskpgm.models.scoring import score_encoded, score_pool
from taskpgm.models.tiny import TinyConfig, build_tiny_model
from taskpgm.models.toy import write_toy_pool
from taskpgm.scores import ScoreTable, shard_path
from taskpgm.tasks.pool import Pool

TINY = TinyConfig(vocab_size=300, n_layer=1, n_embd=32, n_head=2, n_positions=64)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A toy pool, a tiny base model, and 'experts' that are differently seeded copies.

    Scoring does not care whether an expert was trained, so seeded random models keep
    these tests fast while still giving each expert different numbers.
    """
    root = tmp_path_factory.mktemp("scoring")
    pool = Pool.load(write_toy_pool(root / "pool", ("upper", "reverse", "copy", "first"),
                                    n_train=24, n_probe=10, n_eval=4))
    base = build_tiny_model(pool, root / "base", seed=0, config=TINY)
    experts = root / "experts"
    for i, name in enumerate(("upper", "reverse", "copy", "first")):
        build_tiny_model(pool, experts / name, seed=i + 1, config=TINY)
    return pool, base, experts


def hand_logprob(model, ids: list[int], start: int) -> float:
    """Token by token: feed the exact prefix, read the last position's distribution."""
    total = 0.0
    with torch.no_grad():
        for p in range(start, len(ids)):
            logits = model(input_ids=torch.tensor([ids[:p]])).logits[0, -1]
            total += float(torch.log_softmax(logits.double(), -1)[ids[p]])
    return total


def test_scores_equal_hand_computed_values(setup):
    _pool, base, _ = setup
    loaded = load_model(base, device="cpu")
    tok = loaded.tokenizer
    examples = [("upper: apple\n", "APPLE"), ("reverse: stone river\n", "revir enots"),
                ("", "x"), ("copy: a\n", "")]
    encs = [encode_pair(tok, p, r, max_length=64) for p, r in examples]
    got = score_encoded(loaded.model, encs, pad_id=tok.pad_token_id, max_batch_tokens=10_000)
    for (prompt, response), enc, lp, n in zip(examples, encs, got.logprob, got.n_tokens,
                                               strict=True):
        # n_tokens is the response's own tokens plus EOS, and nothing from the prompt.
        assert n == len(tok(response, add_special_tokens=False)["input_ids"]) + 1
        assert enc.ids[-1] == tok.eos_token_id
        assert lp == pytest.approx(hand_logprob(loaded.model, list(enc.ids), enc.start), abs=1e-4)
        assert lp < 0
    # An empty prompt still gets a first-token prediction: from the BOS stand-in.
    assert encs[2].start == 1 and encs[2].ids[0] == tok.bos_token_id


def test_first_response_token_is_counted(setup):
    _pool, base, _ = setup
    loaded = load_model(base, device="cpu")
    tok = loaded.tokenizer
    enc = encode_pair(tok, "upper: apple\n", "APPLE", max_length=64)
    full = score_encoded(loaded.model, [enc], pad_id=tok.pad_token_id).logprob[0]
    # Dropping the first response token changes the sum by exactly its log-probability.
    shorter = type(enc)(enc.ids, enc.start + 1)
    rest = score_encoded(loaded.model, [shorter], pad_id=tok.pad_token_id).logprob[0]
    with torch.no_grad():
        first = torch.log_softmax(loaded.model(input_ids=torch.tensor([enc.ids[:enc.start]]))
                                  .logits[0, -1].double(), -1)[enc.ids[enc.start]]
    assert full == pytest.approx(rest + float(first), abs=1e-5)


def test_mixed_length_batch_equals_one_by_one_and_order_is_kept(setup):
    pool, base, _ = setup
    loaded = load_model(base, device="cpu")
    tok = loaded.tokenizer
    exs = [e for t in ("upper", "reverse", "copy") for e in pool.examples(t, "probe")]
    encs = [encode_pair(tok, e.prompt, e.response, max_length=64) for e in exs]
    assert len({len(e) for e in encs}) > 3  # really mixed lengths, so padding happens
    batched = score_encoded(loaded.model, encs, pad_id=tok.pad_token_id, topk=4,
                            max_batch_tokens=400)
    # A different pad id must not matter either: padding is never attended to or counted.
    other_pad = score_encoded(loaded.model, encs, pad_id=tok.eos_token_id, max_batch_tokens=400)
    for i, enc in enumerate(encs):
        one = score_encoded(loaded.model, [enc], pad_id=tok.pad_token_id, topk=4)
        assert batched.logprob[i] == pytest.approx(one.logprob[0], abs=1e-5)
        assert other_pad.logprob[i] == pytest.approx(one.logprob[0], abs=1e-5)
        assert batched.n_tokens[i] == enc.n_response
        np.testing.assert_array_equal(batched.topk_ids[i], one.topk_ids[0])
        assert batched.topk_logprobs[i].shape == (enc.n_response, 4)
        # Top-k rows are sorted and the best is at least the observed token's log-prob.
        assert np.all(np.diff(batched.topk_logprobs[i], axis=1) <= 0)
    assert np.all(np.exp(batched.topk_logprobs[0]).sum(axis=1) <= 1 + 1e-5)


def test_score_pool_writes_every_shard_and_skips_present_ones(setup, tmp_path):
    pool, base, experts = setup
    table = score_pool(pool, experts, tmp_path / "s", include_base=base, progress=False)
    assert table.experts == ["upper", "reverse", "copy", "first", "base"]
    assert table.missing_pairs() == []
    assert table.manifest.metadata["run"]["shards_computed"] == 20
    m = table.matrix("upper")
    assert m.shape == (5, 10) and np.all(m < 0)
    assert not np.allclose(m[0], m[1])  # differently seeded experts disagree
    ids = [e.id for e in pool.examples("upper", "probe")]
    assert table.shard("copy", "upper").example_ids == ids
    again = score_pool(pool, experts, tmp_path / "s", include_base=base, progress=False)
    assert again.manifest.metadata["run"]["shards_computed"] == 0


SLOW_SCORER = """
import sys, time
import taskpgm.models.scoring as scoring
real = scoring.write_shard
count = 0
def slow_write(path, shard):
    global count
    real(path, shard)
    count += 1
    if count == 2:
        time.sleep(120)  # the test kills us here
scoring.write_shard = slow_write
from taskpgm.cli import run
sys.exit(run(sys.argv[1:]))
"""


def test_killed_run_resumes_with_identical_scores(setup, tmp_path):
    pool, _base, experts = setup
    out = tmp_path / "killed"
    args = ["score", "--pool", str(pool.root), "--experts", str(experts), "--out", str(out),
            "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SCORER, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list(out.glob("shards/*/*.parquet"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "scorer never wrote two shards"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    survivors = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("shards/*/*.parquet")}
    assert len(survivors) == 2
    assert not list(out.glob("shards/*/.*"))  # no temp file left where a shard belongs

    resumed = score_pool(pool, experts, out, progress=False)
    assert resumed.manifest.metadata["run"]["shards_computed"] == 16 - 2
    for p, stamp in survivors.items():  # finished shards were not recomputed
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp
    fresh = score_pool(pool, experts, tmp_path / "fresh", progress=False)
    for e in fresh.experts:
        for t in fresh.tasks:
            np.testing.assert_array_equal(resumed.shard(e, t).logprob, fresh.shard(e, t).logprob)
            np.testing.assert_array_equal(resumed.shard(e, t).n_tokens, fresh.shard(e, t).n_tokens)
    reloaded = ScoreTable.load(out)
    assert reloaded.missing_pairs() == []


def test_changed_settings_do_not_mix_with_old_shards(setup, tmp_path):
    pool, _base, experts = setup
    score_pool(pool, experts, tmp_path / "s", experts=["upper"], progress=False)
    with pytest.raises(InputError, match="other settings"):
        score_pool(pool, experts, tmp_path / "s", experts=["upper"], topk=3, progress=False)
    assert shard_path(tmp_path / "s", "upper", "copy").is_file()


def test_bad_inputs_are_one_line_and_exit_2(setup, tmp_path, cli):
    pool, _base, experts = setup
    # An expert missing for a task.
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "upper").symlink_to(experts / "upper")
    code, _, err = cli("score", "--pool", pool.root, "--experts", partial, "--out", tmp_path / "o1")
    assert code == 2 and "expert for task 'reverse' not found" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # A pool whose task has no probe split.
    noprobe = write_toy_pool(tmp_path / "noprobe", ("upper",), splits=("train", "eval"))
    code, _, err = cli("score", "--pool", noprobe, "--experts", experts, "--out", tmp_path / "o2")
    assert code == 2 and "has no probe split" in err and "probe.jsonl" in err
    assert not (tmp_path / "o2").exists()  # nothing written before input is checked
    # A base model directory that does not load.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    code, _, err = cli("score", "--pool", pool.root, "--experts", experts, "--out", tmp_path / "o3",
                       "--base", broken, "--no-progress")
    assert code == 2 and str(broken) in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("score", "--pool", pool.root, "--experts", experts, "--out", tmp_path / "o4",
                       "--executor", "spark")
    assert code == 2 and "unknown executor" in err
