"""GPU check: the pipeline's CUDA paths, measured against the CPU (run on a CUDA machine).

    python benchmarks/gpu_check.py OUT_DIR

1. The demo pipeline end to end on CUDA (experts and mixture models trained under bf16
   autocast, scoring under bf16 autocast), run twice with one seed: which artifacts are
   byte-identical on a GPU, and how long each run took.
2. The first run's experts scored again on the CPU in fp32 and on CUDA: per-example
   log-prob differences, the PMI matrices' largest difference and correlation, and the
   default mixture's L1 distance between the two (what mixing devices within one run,
   e.g. a resumed scoring stage, can cost).
3. Real-checkpoint layouts (random Llama with a SentencePiece-style tokenizer and no pad
   token, Qwen2 with byte-level BPE and ChatML) of ~20M parameters: experts trained on
   CUDA with float32 weights, bfloat16 weights and LoRA (losses finite and falling), and
   scoring time on CPU vs CUDA.

Each check records its error instead of stopping the others. Writes OUT_DIR/gpu_check.json
and prints it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # tokenizer_zoo: the tokenizers real checkpoints use


# A smoke run on a machine without CUDA (GPU_CHECK_SMOKE=1) uses the CPU in the GPU's
# place and small sizes: it checks the script, not the GPU.
SMOKE = bool(__import__("os").environ.get("GPU_CHECK_SMOKE"))


def _gpu() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _digest(root: Path, pattern: str) -> str:
    h = hashlib.sha256()
    for p in sorted(root.glob(pattern)):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def demo_twice(out: Path) -> dict:
    from taskpgm.pipeline import run_pipeline
    from taskpgm.pipeline.demo import demo_config

    runs = {}
    for name in ("a", "b"):
        t0 = time.perf_counter()
        run_pipeline(demo_config(out / f"demo-{name}"), progress=False)
        runs[name] = round(time.perf_counter() - t0, 1)
    same = {}
    for what, pattern in (("base", "base/*.safetensors"), ("experts", "experts/*/*.safetensors"),
                          ("score shards", "scores/shards/*/*.parquet"),
                          ("affinity", "affinity.npz"), ("mixtures", "mixtures/*.json"),
                          ("eval", "eval/*.json")):
        da, db = _digest(out / "demo-a", pattern), _digest(out / "demo-b", pattern)
        same[what] = da == db
    mix = json.loads((out / "demo-a" / "mixture.json").read_text())
    return {"seconds": runs, "byte_identical": same, "weights_a": mix.get("weights")}


def _demo_once_small(out: Path) -> dict:
    from taskpgm.pipeline import run_pipeline
    from taskpgm.pipeline.demo import demo_config

    cfg = demo_config(out / "demo-a")
    cfg.experts.steps, cfg.train.steps = 5, 5
    run_pipeline(cfg, progress=False)
    return {}


def cpu_vs_cuda_scores(out: Path) -> dict:
    from taskpgm.affinity.compute import compute_affinity
    from taskpgm.mixture.api import solve
    from taskpgm.models.scoring import score_pool

    run = out / "demo-a"
    res: dict = {}
    tables = {}
    for dev in ("cpu", "cuda"):
        t0 = time.perf_counter()
        tables[dev] = score_pool(run / "pool", run / "experts", out / f"scores-{dev}",
                                 include_base=run / "base", device=dev if dev == "cpu" else _gpu(),
                                 progress=False)
        _sync()
        res[f"score_seconds_{dev}"] = round(time.perf_counter() - t0, 2)
    diffs, per_token = [], []
    cpu, gpu = tables["cpu"], tables["cuda"]
    for key in ((e, t) for e in cpu.experts for t in cpu.tasks):
        a, b = cpu.shard(*key), gpu.shard(*key)
        assert a.example_ids == b.example_ids
        d = np.abs(a.logprob - b.logprob)
        diffs.append(d.max())
        per_token.append(d / np.maximum(a.n_tokens, 1))
    res["max_abs_logprob_diff"] = float(np.max(diffs))
    res["mean_abs_logprob_diff_per_token"] = float(np.mean(np.concatenate(per_token)))
    mats = {dev: compute_affinity(t) for dev, t in tables.items()}
    a, b = (np.asarray(mats[d].matrix) for d in ("cpu", "cuda"))
    res["pmi_max_abs_diff"] = float(np.max(np.abs(a - b)))
    res["pmi_scale"] = float(np.max(np.abs(a)))
    off = ~np.eye(len(a), dtype=bool)
    res["pmi_offdiag_corr"] = float(np.corrcoef(a[off], b[off])[0, 1])
    for kernel in ("calibrated", "shift"):
        wa = np.asarray(solve(mats["cpu"], kernel=kernel).weights)
        wb = np.asarray(solve(mats["cuda"], kernel=kernel).weights)
        res[f"mixture_l1_{kernel}"] = float(np.abs(wa - wb).sum())
    return res


def _real_pool(root: Path) -> Path:
    from taskpgm.tasks.importers import import_sources

    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    flan = [{"prompt": f"Premise: item {i} is {words[i % 6]}.\nOPTIONS:\n- yes\n- no",
             "response": "yes" if i % 2 else "no"} for i in range(96)]
    qa = [{"prompt": f"Is review {i} ({words[int(rng.integers(6))]}) positive or negative?",
           "response": "negative" if i % 3 else "positive"} for i in range(96)]
    chat = [{"messages": [{"role": "user", "content": f"Hello {i}"},
                          {"role": "assistant", "content": f"Hello there, {words[i % 6]}!"}]}
            for i in range(96)]
    for name, rows in (("flan", flan), ("qa", qa), ("chat", chat)):
        (src / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    import_sources([src], root / "pool")
    return root / "pool"


def _checkpoint(root: Path, kind: str) -> Path:
    from tokenizer_zoo import random_checkpoint

    size = {"hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 6,
            "num_attention_heads": 8, "num_key_value_heads": 4, "max_position_embeddings": 512}
    if SMOKE:
        size.update(hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    return random_checkpoint(root / kind, kind, **size)


def real_checkpoints(out: Path) -> dict:
    from safetensors.torch import load_file

    from taskpgm.models.scoring import score_pool
    from taskpgm.models.train import TrainConfig, train_experts

    pool = _real_pool(out / "real")
    res: dict = {}
    for kind in ("llama", "qwen2"):
        base = _checkpoint(out / "real", kind)
        n_params = sum(int(np.prod(t.shape)) for t in load_file(str(base / "model.safetensors")).values())
        row: dict = {"params": n_params}
        for variant, extra in (("fp32", {}), ("bf16_weights", {"weights_dtype": "bfloat16"}),
                               ("lora", {"lora": True})):
            cfg = TrainConfig(steps=3 if SMOKE else 40, batch_size=16, lr=1e-3, **extra)
            t0 = time.perf_counter()
            results = train_experts(pool, base, out / "real" / f"{kind}-{variant}", config=cfg,
                                    progress=False)
            _sync()
            row[variant] = {"seconds": round(time.perf_counter() - t0, 2),
                            "loss": {t: [round(r.first_loss, 3), round(r.final_loss, 3)]
                                     for t, r in results.items() if r is not None}}
        for dev in ("cpu", "cuda"):
            t0 = time.perf_counter()
            score_pool(pool, out / "real" / f"{kind}-fp32", out / "real" / f"{kind}-scores-{dev}",
                       include_base=base, device=dev if dev == "cpu" else _gpu(), progress=False)
            _sync()
            row[f"score_seconds_{dev}"] = round(time.perf_counter() - t0, 2)
        res[kind] = row
    return res


def main(argv: list[str]) -> int:
    import torch

    out = Path(argv[0] if argv else "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        report["device"] = torch.cuda.get_device_name(0)
        report["bf16"] = torch.cuda.is_bf16_supported()
    import transformers
    report["transformers"] = transformers.__version__
    demo = (("demo_twice", demo_twice),) if not SMOKE else (("demo_twice", _demo_once_small),)
    for name, fn in (*demo, ("cpu_vs_cuda_scores", cpu_vs_cuda_scores),
                     ("real_checkpoints", real_checkpoints)):
        t0 = time.perf_counter()
        try:
            report[name] = fn(out)
        except Exception:  # noqa: BLE001 - a check's failure is its result
            report[name] = {"error": traceback.format_exc()[-3000:]}
        report[name]["check_seconds"] = round(time.perf_counter() - t0, 1)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
        print(json.dumps({name: report[name]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
