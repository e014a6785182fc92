"""Peak memory of scoring, evaluation-style scoring and one training step with a
128k-vocabulary model: logits at response positions only (taskpgm.models.heads) vs the
full [batch, seq, vocab] forward pass, side by side, each in a fresh process.

    python benchmarks/memory.py [--vocab 128256] [--examples 64] [--prompt 480] [--response 32]

The model is a random-weight Llama (hidden 64, 2 layers: ~16.5M parameters, almost all
in the 128k embedding and head), examples are random token ids: memory depends on shapes,
not on the text. Prints one JSON line per (task, path) and the ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def child(task: str, full: bool, vocab: int, n: int, prompt: int, response: int) -> dict:
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from taskpgm.models import heads
    from taskpgm.models.encode import Encoded
    from taskpgm.models.scoring import score_encoded
    from taskpgm.models.train import collate, response_loss

    heads.FULL_LOGITS = full
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048))
    rng = np.random.default_rng(0)
    encs = [Encoded(tuple(int(t) for t in rng.integers(3, vocab, prompt + response)), prompt)
            for _ in range(n)]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if task == "train-step":
        model.train()
        batch = collate(encs[:8], pad_id=0)
        response_loss(model, batch).backward()
    else:
        model.eval()
        score_encoded(model, encs, pad_id=0, topk=16 if task == "score-topk" else 0,
                      max_batch_tokens=8192)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    params = sum(p.numel() for p in model.parameters())
    return {"task": task, "path": "full" if full else "response-only", "peak_rss_mb":
            round(peak / 1024, 1), "before_mb": round(base / 1024, 1), "parameters": params}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=480)
    ap.add_argument("--response", type=int, default=32)
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1] == "full", a.vocab, a.examples, a.prompt,
                               a.response)))
        return
    for task in ("score", "score-topk", "train-step"):
        rows = {}
        for path in ("full", "response-only"):
            out = subprocess.run([sys.executable, __file__, "--vocab", str(a.vocab), "--examples",
                                  str(a.examples), "--prompt", str(a.prompt), "--response",
                                  str(a.response), "--child", task, path],
                                 capture_output=True, text=True, check=True)
            rows[path] = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(rows[path]))
        print(json.dumps({"task": task, "peak_ratio_full_over_response_only": round(
            rows["full"]["peak_rss_mb"] / rows["response-only"]["peak_rss_mb"], 2)}))


if __name__ == "__main__":
    main()
