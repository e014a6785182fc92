"""The library's choice lists, strategy-option types and shared defaults, in one light
module.

Each list is defined here once; the modules that implement the choices
(:mod:`taskpgm.affinity.compute`, :mod:`taskpgm.affinity.pmi`,
:mod:`taskpgm.mixture.kernels`, :mod:`taskpgm.mixture.unary`, :mod:`taskpgm.mixture.api`)
import them from here and re-export them, and so do the run config
(:mod:`taskpgm.config`) and the command line. The training and tiny-model defaults are
here too: the config's fields and the ``taskpgm models`` / ``experts`` / ``train`` flags
take theirs from them, so the command line need not load the config (pydantic) to build
its options. This module imports nothing beyond the standard library, so loading a config
or printing ``taskpgm --help`` does not pay for numpy, scipy or pyarrow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

# -- defaults shared by the run config and the command line -----------------------------
# Fine-tuning: experts.* and train.* (and through them taskpgm.models.train) and the
# flags of ``taskpgm experts train`` / ``taskpgm train``.
DEFAULT_STEPS = 60
DEFAULT_LR = 3e-3
DEFAULT_BATCH_SIZE = 16
DEFAULT_LORA = False
# The tiny model's shape: model.tiny.* (and through it taskpgm.models.tiny.TinyConfig) and
# the flags of ``taskpgm models tiny`` (--n-layer, --n-embd, --n-head, --vocab-size).
TINY_N_LAYER = 2
TINY_N_EMBD = 64
TINY_N_HEAD = 2
TINY_VOCAB_SIZE = 512

# -- affinity ----------------------------------------------------------------------------
# Affinity metrics of taskpgm.affinity.compute_affinity.
METRICS: tuple[str, ...] = ("pmi", "jsd", "skl", "ce-gap")
# How PMI turns a response's log-likelihood into a score (taskpgm.affinity.pmi).
NORMALIZATIONS: tuple[str, ...] = ("sequence", "token")

# -- mixture -----------------------------------------------------------------------------
# PSD kernels built from an affinity matrix (taskpgm.mixture.kernels.build_kernel).
KERNELS: tuple[str, ...] = ("shift", "calibrated", "simplex-shift", "clip", "exp",
                            "laplacian", "none")
# The default kernel: the redundancy-aware `calibrated` (docs/DECISIONS.md D15-D16: it
# passed the rule written before the round-3 runs); `shift` is the paper's reference.
DEFAULT_KERNEL = "calibrated"
REFERENCE_KERNEL = "shift"
# Unary utilities (taskpgm.mixture.unary.unary_utilities; "auto" is resolved by solve).
UNARIES: tuple[str, ...] = ("auto", "balanced", "rowsum", "target", "given", "none")
# taskpgm.sample: how a budget is split into per-task counts.
ALLOCATIONS: tuple[str, ...] = ("largest_remainder", "multinomial")
# taskpgm.sample / taskpgm.export: what a materialised mixture is written as.
EXPORT_FORMATS: tuple[str, ...] = ("jsonl", "messages", "hf", "llamafactory", "axolotl",
                                   "interleave")
# taskpgm.models.prompt_format: how an example becomes training/scoring text.
PROMPT_FORMATS: tuple[str, ...] = ("auto", "separator", "raw", "chat_template")
# taskpgm.affinity.completion: which (expert, task) pairs a partial scoring run scores.
SAMPLING: tuple[str, ...] = ("random", "balanced", "pairs")
# scoring.sampling: the one-round draws above, or ``adaptive`` (taskpgm.pipeline.adaptive):
# half the pairs drawn like ``balanced``, the rest where the completion is least certain.
SCORING_SAMPLING: tuple[str, ...] = (*SAMPLING, "adaptive")
# taskpgm.models.train: the dtype of the weights while fine-tuning.
WEIGHTS_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
# Where experts train and score (taskpgm.models.train, taskpgm.models.scoring): in this
# process, or one Ray task per expert.
EXECUTORS: tuple[str, ...] = ("local", "ray")

_KERNEL_OPTIONS = ("kernel_floor", "sigma", "ridge", "bandwidth", "scale_utilities")
# Every strategy of taskpgm.mixture.solve, in registry order, with the extra keyword
# options (``**params`` of solve) it reads; taskpgm.mixture.api.STRATEGIES pairs each with
# its implementation.
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "taskpgm": (*_KERNEL_OPTIONS, "costs", "cost_budget"),
    "taskpgm-paper": _KERNEL_OPTIONS,
    "uniform": (),
    "size": (),
    "temperature": ("temperature",),
    "capped": ("cap",),
    "unimax": ("unimax_budget", "max_epochs"),
    "given": ("weights",),
    "family-balanced": ("families",),
    "cluster-balanced": ("bandwidth",),
    "mixmin": ("scores",),
}
METHODS: tuple[str, ...] = tuple(METHOD_OPTIONS)

# What each strategy option takes: the one registry the Python API
# (taskpgm.mixture.api.check_options) and the run config (taskpgm.config, strategy
# params) both check values against.
#   number>0 / number>=0: a finite real number (a numeric string is read as one)
#   bool: true or false;  values>0: a mapping task -> number > 0, or a list of them
#   weights: a file, a mapping task -> weight or a list;  mapping: task -> label
#   scores: a scores directory or a ScoreTable
OPTION_TYPES: dict[str, str] = {
    "kernel_floor": "number>=0",
    "sigma": "number>0",
    "ridge": "number>=0",
    "bandwidth": "number>0",
    "scale_utilities": "bool",
    "costs": "values>0",
    "cost_budget": "number>0",
    "temperature": "number>0",
    "cap": "number>0",
    "unimax_budget": "number>0",
    "max_epochs": "number>0",
    "weights": "weights",
    "families": "mapping",
    "scores": "scores",
}

TYPE_WORDS: dict[str, str] = {
    "number>0": "a number > 0", "number>=0": "a number >= 0", "int>=0": "an integer >= 0",
    "bool": "true or false", "values>0": "a mapping task -> number > 0 or a list of them",
    "weights": "a file, a mapping task -> weight or a list of weights",
    "mapping": "a mapping task -> label", "scores": "a scores directory or a ScoreTable",
}


def _numpy():
    """numpy if something already imported it (a numpy value can only come from there)."""
    import sys

    return sys.modules.get("numpy")


def _is_bool(value: Any) -> bool:
    np = _numpy()
    return isinstance(value, bool) or (np is not None and isinstance(value, np.bool_))


def as_number(value: Any) -> float | None:
    if _is_bool(value):
        return None
    np = _numpy()
    if isinstance(value, (int, float)) or (
            np is not None and isinstance(value, (np.integer, np.floating))):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_sequence(value: Any) -> bool:
    np = _numpy()
    return isinstance(value, (list, tuple)) or (np is not None and isinstance(value, np.ndarray))


def parse_option(kind: str, value: Any) -> Any:
    """``value`` checked against ``kind`` (a value of :data:`OPTION_TYPES`) and normalised
    (a numeric string becomes a float); raises ValueError whose message says what the
    value must be."""
    want = TYPE_WORDS.get(kind, kind)
    if kind in ("number>0", "number>=0"):
        x = as_number(value)
        if x is None or not math.isfinite(x) or (x <= 0 if kind == "number>0" else x < 0):
            raise ValueError(f"must be {want}, got {value!r}")
        return float(value) if isinstance(value, str) else value
    if kind == "int>=0":
        x = as_number(value)
        if x is None or not math.isfinite(x) or x != int(x) or x < 0:
            raise ValueError(f"must be {want}, got {value!r}")
        return int(x) if isinstance(value, str) else value
    if kind == "bool":
        if not _is_bool(value):
            raise ValueError(f"must be {want}, got {value!r}")
        return value
    if kind == "values>0":
        items = (list(value.values()) if isinstance(value, Mapping)
                 else list(value) if _is_sequence(value) else None)
        if items is None or any((x := as_number(v)) is None or not math.isfinite(x) or x <= 0
                                for v in items):
            raise ValueError(f"must be {want}, got {value!r}")
        return value
    if kind == "weights":
        if not (isinstance(value, (str, PurePath, Mapping)) or _is_sequence(value)):
            raise ValueError(f"must be {want}, got {value!r}")
        return value
    if kind == "mapping":
        if not isinstance(value, Mapping):
            raise ValueError(f"must be {want}, got {value!r}")
        return value
    return value
