"""Logits at response positions only: the same numbers as the full forward pass, for
GPT-2, Llama and Qwen2 layouts, and a fallback for heads that are not a plain projection."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from taskpgm.models import heads
from taskpgm.models.encode import encode_pairs
from taskpgm.models.scoring import score_encoded
from taskpgm.models.train import collate, response_loss
from tokenizer_zoo import byte_level

PAIRS = [("Question: what is 2 + 2? Answer:", " 4"), ("OPTIONS:\n- yes\n- no\n", "yes"),
         ("Is this review positive or negative?\n", "negative"), ("", "only a response")]


def _models(vocab):
    small = {"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64,
             "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1}
    yield transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=vocab, n_layer=1, n_embd=32, n_head=2))
    yield transformers.LlamaForCausalLM(transformers.LlamaConfig(**small))
    yield transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**small))


@pytest.fixture(scope="module")
def tok():
    return byte_level()


def _full_then_split(model, fn):
    heads.FULL_LOGITS = True
    try:
        full = fn(model)
    finally:
        heads.FULL_LOGITS = False
    return full, fn(model)


def test_scores_and_topk_equal_the_full_forward_pass(tok, monkeypatch):
    encs = encode_pairs(tok, PAIRS)
    n_response = sum(e.n_response for e in encs)
    for model in _models(len(tok)):
        torch.manual_seed(0)
        model.eval()
        full, split = _full_then_split(
            model, lambda m: score_encoded(m, encs, pad_id=tok.pad_token_id, topk=3))
        assert split.logprob == pytest.approx(full.logprob, rel=1e-5, abs=1e-5)
        for a, b in zip(full.topk_logprobs, split.topk_logprobs, strict=True):
            assert b == pytest.approx(a, abs=1e-5)
        # The head saw only the response rows, never [batch, seq, vocab].
        seen: list = []
        head = model.get_output_embeddings()

        def spy(x, _f=head.forward, _seen=seen):
            _seen.append(x.shape)
            return _f(x)

        monkeypatch.setattr(head, "forward", spy)
        score_encoded(model, encs, pad_id=tok.pad_token_id)
        assert sum(s[0] for s in seen) == n_response and all(len(s) == 2 for s in seen)
        monkeypatch.undo()


def test_training_loss_equals_the_models_own_loss(tok):
    batch = collate(encode_pairs(tok, PAIRS), tok.pad_token_id)
    for model in _models(len(tok)):
        model.eval()  # no dropout, so both passes see the same network
        with torch.no_grad():
            ours, theirs = float(response_loss(model, batch)), float(model(**batch).loss)
        assert ours == pytest.approx(theirs, rel=1e-5)


def test_chunks_cover_every_row_once(tok, monkeypatch):
    monkeypatch.setattr(heads, "CHUNK_FLOATS", len(tok) * 2)  # two rows per chunk
    encs = encode_pairs(tok, PAIRS)
    model = next(_models(len(tok))).eval()
    full, split = _full_then_split(model, lambda m: score_encoded(m, encs, pad_id=tok.pad_token_id))
    assert split.logprob == pytest.approx(full.logprob, rel=1e-5)


def test_a_head_with_soft_capping_falls_back_to_the_full_pass(tok):
    model = next(_models(len(tok)))
    model.config.final_logit_softcapping = 30.0
    assert heads._split_model(model) is None
    model.config.final_logit_softcapping = None
    assert heads._split_model(model) is not None


def test_a_lora_wrapped_model_splits_into_its_own_body_and_head(tok):
    # peft forwards `model.model` to the wrapped causal LM for Llama/Qwen2 (prefix "model"):
    # the split must take the LM's body, with the adapters in it, not the LM itself.
    peft = pytest.importorskip("peft")
    batch = collate(encode_pairs(tok, PAIRS), tok.pad_token_id)
    for model in _models(len(tok)):
        targets = ["c_attn"] if model.config.model_type == "gpt2" else ["q_proj", "v_proj"]
        wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=targets,
                                                             init_lora_weights=False))
        wrapped.eval()
        body, _head = heads._split_model(wrapped)
        assert "ForCausalLM" not in type(body).__name__ and "LMHead" not in type(body).__name__
        with torch.no_grad():
            ours, theirs = float(response_loss(wrapped, batch)), float(wrapped(**batch).loss)
        assert ours == pytest.approx(theirs, rel=1e-5)
