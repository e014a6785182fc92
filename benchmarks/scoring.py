"""Scoring-engine throughput, measured side by side in one run.

Compares, on the same model and the same probe examples:

- ``engine``: taskpgm's scorer (length-bucketed batches, log-softmax on response
  positions only);
- ``naive``: one example per forward pass, log-softmax over every position;
- ``raw_forward``: the model's bare forward pass on fully packed rows (no padding, no
  scoring work at all) over the same number of tokens: the ceiling.

Each is timed ``--repeats`` times, interleaved, and the best time is kept (the machine
may be shared). Prints one JSON line with tokens/s, the ratios (targets: engine >= 3x
naive, engine >= 0.8x raw forward) and peak memory. On a GPU it also reports how far
bf16-autocast scores are from fp32 CPU scores.

    python benchmarks/scoring.py [--examples 768] [--layers 2] [--dim 128]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from taskpgm.models.encode import encode_pair, length_batches
from taskpgm.models.load import cpu_threads_for, load_model
from taskpgm.models.scoring import score_encoded
from taskpgm.models.tiny import TinyConfig, build_tiny_model
from taskpgm.models.toy import TRANSFORMS, write_toy_pool
from taskpgm.tasks.pool import Pool


def naive_scores(model, encs, device):
    out = []
    with torch.inference_mode():
        for e in encs:
            ids = torch.tensor([e.ids], device=device)
            lp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
            tgt = ids[0, 1:]
            per_tok = lp[:-1].gather(1, tgt[:, None]).squeeze(1)
            out.append(float(per_tok[e.start - 1:].double().sum()))
    return out


def raw_forward(model, encs, max_batch_tokens, device):
    stream = torch.tensor([t for e in encs for t in e.ids], device=device)
    width = max(len(e) for e in encs)
    rows = stream[: len(stream) // width * width].view(-1, width)
    per_batch = max(1, max_batch_tokens // width)
    amp = device.type == "cuda"
    dt = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    with torch.inference_mode():
        for s in range(0, len(rows), per_batch):
            with torch.autocast(device.type, dtype=dt, enabled=amp):
                model(input_ids=rows[s:s + per_batch])
    return rows.numel()


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=768, help="probe examples in total")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--max-batch-tokens", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-examples", type=int, default=256,
                    help="the naive loop is timed on this many (it is slow); rates compare")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tasks = tuple(TRANSFORMS)
        per_task = max(1, args.examples // len(tasks))
        pool = Pool.load(write_toy_pool(Path(tmp) / "pool", tasks, n_train=64,
                                        n_probe=per_task, n_eval=1))
        cfg = TinyConfig(n_layer=args.layers, n_embd=args.dim, n_head=4)
        base = build_tiny_model(pool, Path(tmp) / "model", config=cfg)
        loaded = load_model(base)
        model, tok, dev = loaded.model, loaded.tokenizer, loaded.device
        encs = [encode_pair(tok, e.prompt, e.response, max_length=cfg.n_positions)
                for t in tasks for e in pool.examples(t, "probe")]
        n_tokens = sum(len(e) for e in encs)
        naive_set = encs[: args.naive_examples]
        naive_tokens = sum(len(e) for e in naive_set)

        best = {"engine": float("inf"), "naive": float("inf"), "raw_forward": float("inf")}
        raw_tokens = 0
        with cpu_threads_for(model, dev):
            threads = torch.get_num_threads()
            for _ in range(args.repeats):
                t, got = timed(lambda: score_encoded(model, encs, pad_id=tok.pad_token_id,
                                                     max_batch_tokens=args.max_batch_tokens), dev)
                best["engine"] = min(best["engine"], t)
                t, naive = timed(lambda: naive_scores(model, naive_set, dev), dev)
                best["naive"] = min(best["naive"], t)
                t, raw_tokens = timed(lambda: raw_forward(model, encs, args.max_batch_tokens, dev),
                                      dev)
                best["raw_forward"] = min(best["raw_forward"], t)
        # The fast path must give the naive loop's numbers, or its speed means nothing.
        max_abs_diff = max(abs(a - b) for a, b in zip(got.logprob, naive, strict=False))
        rate = {
            "engine": n_tokens / best["engine"],
            "naive": naive_tokens / best["naive"],
            "raw_forward": raw_tokens / best["raw_forward"],
        }
        padded = sum(max(len(encs[i]) for i in b) * len(b)
                     for b in length_batches([len(e) for e in encs], args.max_batch_tokens))
        result = {
            "benchmark": "scoring",
            "device": str(dev),
            "threads": threads,
            "model_params": sum(p.numel() for p in model.parameters()),
            "examples": len(encs),
            "tokens": n_tokens,
            "padding_fraction": 1 - n_tokens / padded,
            "tokens_per_s": {k: round(v, 1) for k, v in rate.items()},
            "engine_vs_naive": round(rate["engine"] / rate["naive"], 2),
            "engine_vs_raw_forward": round(rate["engine"] / rate["raw_forward"], 3),
            "targets": {"engine_vs_naive": 3.0, "engine_vs_raw_forward": 0.8},
            "max_abs_diff_vs_naive": max_abs_diff,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        if dev.type == "cuda":
            result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            cpu = load_model(base, device="cpu")
            ref = score_encoded(cpu.model, encs, pad_id=tok.pad_token_id)
            diff = (torch.tensor(got.logprob) - torch.tensor(ref.logprob)).abs()
            per_tok = diff / torch.tensor(ref.n_tokens, dtype=torch.float64)
            result["gpu_half_vs_cpu_fp32"] = {
                "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                "max_abs_diff_per_token": float(per_tok.max()),
                "mean_abs_logprob": float(torch.tensor(ref.logprob).abs().mean()),
            }
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
