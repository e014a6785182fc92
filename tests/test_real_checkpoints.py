"""The real-checkpoint path: random-weight Llama and Qwen2 configs saved with
``save_pretrained`` beside locally built tokenizers (SentencePiece-style with a Llama-2
chat template and no pad token; byte-level BPE with ChatML), on a pool of FLAN-style,
QA and chat tasks: experts train, score and evaluate with the prompt format applied."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from taskpgm.models.evaluate import evaluate_model
from taskpgm.models.scoring import ScoreSettings, score_pool
from taskpgm.models.train import read_train_info, train_experts
from taskpgm.scores import ScoreTable
from taskpgm.tasks.importers import import_sources
from tokenizer_zoo import random_checkpoint


def _pool(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    flan = [{"prompt": f"Premise: item {i}.\nOPTIONS:\n- yes\n- no", "response": "yes" if i % 2
             else "no"} for i in range(24)]
    qa = [{"prompt": f"Is review {i} positive or negative?", "response": "negative"}
          for i in range(24)]
    chat = [{"messages": [{"role": "user", "content": f"Hello {i}"},
                          {"role": "assistant", "content": "Hello there!"}]} for i in range(24)]
    for name, rows in (("flan", flan), ("qa", qa), ("chat", chat)):
        (src / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    import_sources([src], tmp_path / "pool")
    return tmp_path / "pool"


def _checkpoint(tmp_path, kind):
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 256}
    return random_checkpoint(tmp_path / kind, kind, **small)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_experts_score_and_evaluate_on_a_real_checkpoint_layout(tmp_path, kind):
    pool = _pool(tmp_path)
    base = _checkpoint(tmp_path, kind)
    train_experts(pool, base, tmp_path / "experts", steps=2, batch_size=4, progress=False)
    assert read_train_info(tmp_path / "experts" / "chat")["config"]["prompt_format"] == "auto"
    table = score_pool(pool, tmp_path / "experts", tmp_path / "scores", include_base=base,
                       settings=ScoreSettings(prompt_format="auto"), progress=False)
    assert set(table.experts) == {"flan", "qa", "chat", "base"}
    loaded = ScoreTable.load(tmp_path / "scores")
    assert loaded.manifest.metadata["settings"]["prompt_format"] == "auto"
    res = evaluate_model(tmp_path / "experts" / "chat", pool, ["chat", "flan"], "eval")
    # The chat task is scored on the template's text: 'Hello there!' + end of turn.
    assert res["chat"].n_tokens > 0 and res["flan"].n_tokens > 0
    for r in res.values():
        assert torch.isfinite(torch.tensor(r.loss_per_token))
