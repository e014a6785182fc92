"""Load a Hugging Face causal LM and its tokenizer from a directory.

One code path serves the tiny embedded model on a laptop CPU and a
``meta-llama/...`` checkpoint on a GPU machine. A directory that holds a LoRA
adapter (``adapter_config.json``) is loaded on top of its recorded base model and
merged, so experts trained with ``--lora`` score exactly like full experts.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from taskpgm.errors import InputError
from taskpgm.models.local import check_model_dir

ADAPTER_CONFIG = "adapter_config.json"


def pick_device(device: str | None = None) -> torch.device:
    """``None`` means CUDA when present, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"--device {device!r}: not a device (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {device!r}: only {torch.cuda.device_count()} CUDA "
                             "device(s) here")
    return dev


def default_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU (bf16 matmuls are slow there); bf16 on GPUs that have it, else fp16."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def set_cpu_threads(n: int | None) -> None:
    """Cap intra-op threads; tiny models run faster with few threads than with many."""
    if n is not None and n > 0:
        torch.set_num_threads(n)


# Below this many parameters a CPU matmul is too small to split across threads: the
# OpenMP hand-off costs more than it saves, and on a busy machine spinning threads
# made a tiny model's training 10x slower than one thread (measured on 2 shared cores).
SMALL_MODEL_PARAMS = 20_000_000


@contextlib.contextmanager
def cpu_threads_for(model: Any, device: torch.device, threads: int | None = None):
    """Run with ``threads`` intra-op threads (default: 1 for small models on CPU)."""
    before = torch.get_num_threads()
    if threads is None and device.type == "cpu":
        n_params = sum(p.numel() for p in model.parameters())
        threads = 1 if n_params < SMALL_MODEL_PARAMS else None
    set_cpu_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_budget() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class LoadedModel:
    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    path: Path
    device: torch.device


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    path = check_model_dir(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for a bad dir
        raise InputError(f"{path}: cannot load a tokenizer ({_one_line(exc)})") from None
    if tok.eos_token_id is None:
        raise InputError(f"{path}: tokenizer has no eos token (needed to end responses)")
    if tok.pad_token_id is None:
        # Padding positions are always masked out, so any id will do.
        tok.pad_token = tok.eos_token
    return tok


def quiet_transformers() -> None:
    """Silence per-load progress bars and chatter; our own progress bars say enough."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_model(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    trainable: bool = False,
) -> LoadedModel:
    """Load model + tokenizer from ``path``; any failure is one line naming the directory."""
    from transformers import AutoModelForCausalLM

    path = check_model_dir(path)
    quiet_transformers()
    dev = device if isinstance(device, torch.device) else pick_device(device)
    dtype = dtype or default_dtype(dev)
    tokenizer = load_tokenizer(path)
    try:
        if (path / ADAPTER_CONFIG).is_file():
            model = _load_adapter_model(path, dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to load is the user's directory
        raise InputError(f"{path}: cannot load a causal language model ({_one_line(exc)})") from None
    model.to(dev)
    model.train(trainable)
    if not trainable:
        model.requires_grad_(False)
    return LoadedModel(model, tokenizer, path, dev)


def _load_adapter_model(path: Path, dtype: torch.dtype) -> Any:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = json.loads((path / ADAPTER_CONFIG).read_text())
    base = cfg.get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise InputError(f"{path / ADAPTER_CONFIG}: base model {base!r} not found")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    model = PeftModel.from_pretrained(model, str(path))
    # Merging makes scoring as fast as a full model and the maths identical.
    return model.merge_and_unload()
