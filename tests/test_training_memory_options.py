"""Training options that bound memory on a GPU: accumulation gives the same update,
gradient checkpointing the same loss, bf16 weights train, and LoRA's shape is the one
asked for; all reachable from the run config."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file

from taskpgm.errors import InputError
from taskpgm.models.train import TrainConfig, train_model
from tokenizer_zoo import byte_level

PAIRS = [(f"Question: what is {i} + {i}? Answer:", f" {2 * i}") for i in range(24)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tok = byte_level()
    out = tmp_path_factory.mktemp("base") / "gpt2"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=len(tok), n_layer=2, n_embd=32, n_head=2, n_positions=128,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _train(base, out, **kw):
    cfg = TrainConfig(steps=3, batch_size=8, lr=1e-2, seed=0, **kw)
    r = train_model(base, PAIRS, out, config=cfg, progress=False)
    return r, load_file(str(out / "model.safetensors")) if (out / "model.safetensors").exists() \
        else None


def test_accumulation_and_checkpointing_give_the_same_gradient(base):
    from taskpgm.models.encode import encode_pairs
    from taskpgm.models.train import backward_batch

    tok = byte_level()
    rows = encode_pairs(tok, PAIRS[:8])

    def grads(accumulate, checkpointing=False):
        model = transformers.GPT2LMHeadModel.from_pretrained(base)
        if checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        loss, _ = backward_batch(model, rows, tok.pad_token_id, accumulate)
        return float(loss), {n: p.grad.clone() for n, p in model.named_parameters()}

    ref_loss, ref = grads(1)
    for acc, ckpt in ((4, False), (8, False), (1, True)):
        loss, g = grads(acc, ckpt)
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        for n in ref:
            assert torch.allclose(g[n], ref[n], rtol=1e-4, atol=1e-7), (acc, ckpt, n)
    # A wrong weighting (plain mean of micro-batch means) would differ: rows differ in length.
    assert len({e.n_response for e in rows}) > 1


def test_accumulation_trains_end_to_end(base, tmp_path):
    r, _ = _train(base, tmp_path / "acc", accumulate=4, gradient_checkpointing=True)
    ref, _ = _train(base, tmp_path / "ref")
    assert r.first_loss == pytest.approx(ref.first_loss, rel=1e-5)


def test_bfloat16_weights_and_lora_shape(base, tmp_path):
    r, _ = _train(base, tmp_path / "bf16", weights_dtype="bfloat16")
    assert r.final_loss == r.final_loss  # finite, trained
    _train(base, tmp_path / "lora", lora=True, lora_r=4, lora_alpha=8, lora_targets=["c_attn"])
    adapter = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    assert adapter["target_modules"] == ["c_attn"]


def test_bad_values_are_refused_before_training():
    with pytest.raises(InputError, match="accumulate must be an integer in 1..batch_size"):
        TrainConfig(batch_size=4, accumulate=5).check()
    with pytest.raises(InputError, match="weights_dtype must be one of"):
        TrainConfig(weights_dtype="float16").check()


def test_config_sections_carry_the_options_to_the_trainer(tmp_path):
    from taskpgm.config import config_from_dict
    from taskpgm.errors import ConfigError
    from taskpgm.pipeline.stages import PipelineContext, finetune_config

    cfg = config_from_dict({"experts": {"lora": True, "lora_r": 4, "accumulate": 2,
                                        "gradient_checkpointing": True,
                                        "weights_dtype": "bfloat16"},
                            "model": {"separator": " "}}, "t.yaml")
    tc = finetune_config(PipelineContext(cfg, tmp_path), cfg.experts, 7)
    assert (tc.lora_r, tc.accumulate, tc.gradient_checkpointing, tc.weights_dtype,
            tc.separator, tc.seed) == (4, 2, True, "bfloat16", " ", 7)
    with pytest.raises(ConfigError, match="accumulate"):
        config_from_dict({"train": {"batch_size": 4, "accumulate": 8}}, "t.yaml")
