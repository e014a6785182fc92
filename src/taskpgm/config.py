"""The run configuration: one sectioned YAML file, the single source of truth.

Every section is a pydantic model with ``extra="forbid"``, so a misspelt key is an
error naming the key and the file, never a silently ignored setting. ``taskpgm init``
writes the defaults as annotated YAML generated from the field descriptions below, so
the template can never drift from the schema.

The pipeline fingerprints each stage from the config *sections* (or single fields) it
reads; see ``taskpgm.pipeline``. Changing a field therefore re-runs only the stages
that read it and the stages downstream of them.

Every choice list is the library's own registry (``METRICS``, ``KERNELS``, ``UNARIES``,
the strategies, ...: :mod:`taskpgm.choices`, which the implementing modules import too),
and every strategy param is typed and range-checked against the library's option registry
(``taskpgm.choices.OPTION_TYPES``), so what loads is what the stages can run. Loading a
config imports neither scipy nor pyarrow nor torch. The training and tiny-model settings
take their defaults from :mod:`taskpgm.choices` (defined there once);
:mod:`taskpgm.models.train` and :mod:`taskpgm.models.tiny` take theirs from these classes,
and the ``taskpgm models`` / ``experts`` / ``train`` commands from the same constants (so
building the command line does not load this module).
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from taskpgm.choices import (
    ALLOCATIONS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_KERNEL,
    DEFAULT_LORA,
    DEFAULT_LR,
    DEFAULT_STEPS,
    EXECUTORS,
    KERNELS,
    METHOD_OPTIONS,
    METRICS,
    NORMALIZATIONS,
    OPTION_TYPES,
    PROMPT_FORMATS,
    REFERENCE_KERNEL,
    SCORING_SAMPLING,
    TINY_N_EMBD,
    TINY_N_HEAD,
    TINY_N_LAYER,
    TINY_VOCAB_SIZE,
    UNARIES,
    WEIGHTS_DTYPES,
    as_number,
    parse_option,
)
from taskpgm.errors import ConfigError, InputError
from taskpgm.io import atomic_write_text
from taskpgm.mixture.auto import DEFAULT_RULE, RULES
from taskpgm.tasks.pool import SPLITS
from taskpgm.tasks.synth import SUITES

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")

# -- the choice lists: the library's registries (one source of truth) --------------------
# Strategies only the pipeline runs (a random reference mixture; auto, which chooses among
# the run's trained strategies by validation loss, D19; regression, which trains its own
# proxies and fits RegMix/olmix's law), beside the library's.
PIPELINE_METHODS: tuple[str, ...] = ("dirichlet", "auto", "regression")
# The pipeline methods that choose on a validation split (the targets' probe examples).
VALIDATING_METHODS: tuple[str, ...] = ("auto", "regression")
METHODS: tuple[str, ...] = (*METHOD_OPTIONS, *PIPELINE_METHODS)
POOL_SOURCES: tuple[str, ...] = ("synthetic", "dir", "import", "bigbench")
# Metrics computed from stored top-k next-token distributions (need scoring.topk > 0).
TOPK_METRICS: tuple[str, ...] = ("jsd", "skl")


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(values)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(_Section):
    dir: str = Field("run", description="Run directory; every artifact is written under it.")
    seed: int = Field(0, ge=0, description="Master seed; same seed and config give the same bytes.")


class CacheConfig(_Section):
    dir: str | None = Field(
        None, description="A directory several runs can share, holding experts and score "
        "shards by content identity: a run copies what is there instead of training or "
        "scoring it, and adds what it computes (null: no shared cache; each run still "
        "reuses its own experts and shards when the pool changes).")


class PoolConfig(_Section):
    source: Literal[POOL_SOURCES] = Field(
        "synthetic",
        description="Where tasks come from: synthetic (built-in suite), dir (an existing "
        "pool directory), import (JSONL/JSON files or directories), bigbench (BIG-bench tasks).",
    )
    path: str | None = Field(None, description="source=dir: the pool directory to use.")
    paths: list[str] = Field(
        default_factory=list, description="source=import: files or directories to import."
    )
    tasks: list[str] = Field(
        default_factory=list, description="source=bigbench: BIG-bench task names to train on."
    )
    heldout: list[str] = Field(
        default_factory=list,
        description="source=bigbench/import: tasks kept for evaluation only (never trained on).",
    )
    seed: int | None = Field(None, description="Seed of the synthetic suite (default: run.seed).")
    families: list[str] = Field(
        default_factory=list,
        description="source=synthetic: skill families (empty = the default four: reverse, "
        "sort, code, largest; 'add' is also available).",
    )
    suite: Literal[tuple(SUITES)] = Field(
        "default",
        description="source=synthetic: 'default' (4 families, 1-5 templates each, one "
        "held-out template per family) or 'redundancy' (8 skills under 1 to 10 "
        "near-identical templates, two unseen templates per skill held out).",
    )
    family_pattern: str | None = Field(
        None,
        description="source=import: regular expression on task names whose first group "
        "(or whole match) is the task's family label, e.g. '^(.*)_template_\\d+$'.",
    )
    family_field: str | None = Field(
        None, description="source=import: the record field (or dataset column) naming each "
        "task's family (all rows of a task must agree); excludes family_pattern.")
    task_column: str | None = Field(
        None, description="source=import of a dataset saved with save_to_disk: the column "
        "naming each row's task (without it the whole dataset is one task).")
    prompt_field: str | None = Field(
        None, description="source=import: the field/column holding the prompt (default: "
        "guessed from common names: prompt/input/question/instruction ...).")
    response_field: str | None = Field(
        None, description="source=import: the field/column holding the response.")
    scale: float = Field(1.0, gt=0, description="source=synthetic: multiplies train split sizes.")
    max_examples: int | None = Field(
        None, ge=10,
        description="source=bigbench: keep at most this many examples per task (the first "
        "ones in the task file, before the hash split), to bound CPU cost.",
    )


class TinyModelConfig(_Section):
    """The tiny model's shape; also the defaults of ``taskpgm.models.tiny.TinyConfig`` and
    of ``taskpgm models tiny`` (whose flags are these keys: ``--n-layer`` ...)."""

    n_layer: int = Field(TINY_N_LAYER, ge=1, description="Transformer layers of the tiny model.")
    n_embd: int = Field(TINY_N_EMBD, ge=8, description="Hidden size of the tiny model (a "
                        "multiple of n_head).")
    n_head: int = Field(TINY_N_HEAD, ge=1, description="Attention heads of the tiny model.")
    vocab_size: int = Field(TINY_VOCAB_SIZE, ge=64,
                            description="Tokenizer vocabulary trained on the pool.")
    pretrain_steps: int = Field(
        0, ge=0, description="Steps of pre-training before experts branch off (0 = experts "
        "start from random weights)."
    )
    pretrain_corpus: Literal["tasks", "suite", "suite-prompts"] = Field(
        "tasks", description="What the tiny base pre-trains on: 'tasks' (the training tasks' "
        "train splits) or 'suite' (synthetic pools: every skill under every wording of the "
        "suite, held-out wordings included, balanced over skills, with fresh inputs that "
        "never equal a probe or eval prompt; like a real base model that has read the "
        "language before fine-tuning) or 'suite-prompts' (the same prompts as plain text, "
        "without their responses: the base reads every wording but learns no skill, so "
        "fine-tuning must teach them). Read only when pretrain_steps > 0."
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TinyModelConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"model.tiny.n_head: n_embd {self.n_embd} is not divisible by "
                             f"n_head {self.n_head}")
        return self


class ModelConfig(_Section):
    base: str = Field(
        "tiny",
        description="'tiny' builds a small GPT-2-style model locally; otherwise the path "
        "of a Hugging Face causal LM directory (e.g. a downloaded Llama).",
    )
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig)
    prompt_format: Literal[PROMPT_FORMATS] = Field(
        "auto",
        description="How an example becomes training/scoring text, the same for experts, "
        "scoring, evaluation and training: auto (the tokenizer's chat template for chat "
        "examples when it has one, else separator), separator (prompt + separator + response "
        "when neither side has whitespace there), raw, chat_template (docs/models.md).",
    )
    separator: str = Field("\n", description="prompt_format separator: put between a prompt "
                           "and a response that meet without whitespace.")


# Fine-tuning defaults (taskpgm.choices), shared by experts.* and train.* and, through
# them, by taskpgm.models.train (TrainConfig, train_model, train_experts); the CLI takes
# the same constants.


class _FineTuneSection(_Section):
    """Settings shared by ``experts`` and ``train``: LoRA's shape and what bounds memory
    on a GPU (none of them changes what the defaults compute)."""

    lora_r: int = Field(8, ge=1, description="LoRA rank (lora: true).")
    lora_alpha: float = Field(16, gt=0, description="LoRA alpha (scale alpha/r).")
    lora_targets: list[str] | None = Field(
        None, description="LoRA target module names (null: peft's default for the "
        "architecture; c_attn/c_proj/c_fc for GPT-2).")
    accumulate: int = Field(1, ge=1, description="Split each step's batch into this many "
                            "micro-batches (same update, less activation memory).")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass (less memory, ~30% "
        "slower).")
    weights_dtype: Literal[WEIGHTS_DTYPES] = Field(
        "float32", description="Weights while training: float32, or bfloat16 (half the "
        "memory; meant for LoRA on a GPU, where only the adapters train).")

    @model_validator(mode="after")
    def _accumulate_fits(self):
        if self.accumulate > self.batch_size:  # type: ignore[attr-defined]
            raise ValueError(f"accumulate ({self.accumulate}) cannot exceed batch_size "
                             f"({self.batch_size})")  # type: ignore[attr-defined]
        return self


class ExpertsConfig(_FineTuneSection):
    steps: int = Field(DEFAULT_STEPS, ge=1, description="Fine-tuning steps per expert.")
    lr: float = Field(DEFAULT_LR, gt=0, description="Learning rate of expert fine-tuning.")
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, description="Examples per step.")
    lora: bool = Field(DEFAULT_LORA, description="Train LoRA adapters instead of full weights.")
    executor: Literal[EXECUTORS] = Field(
        "local", description=f"Where experts train: {_choices(EXECUTORS)} (one Ray task per "
        "expert; the same bytes either way, so changing it retrains nothing).")
    ray_address: str | None = Field(None, description="executor=ray: cluster address "
                                    "(null: start a local one).")
    gpus_per_task: float = Field(0.0, ge=0, description="executor=ray: GPUs each Ray task "
                                 "(one expert) reserves; 0: none.")

    @model_validator(mode="after")
    def _gpus_need_ray(self) -> ExpertsConfig:
        _check_gpus_per_task("experts", self.executor, self.gpus_per_task)
        return self


def _check_gpus_per_task(section: str, executor: str, gpus: float) -> None:
    # A setting that would do nothing is refused rather than ignored.
    if gpus > 0 and executor != "ray":
        raise ValueError(f"{section}.gpus_per_task reserves GPUs for Ray tasks: it needs "
                         f"{section}.executor: ray (got {executor!r})")


# Where experts are trained, not what they learn: the same expert trained locally or on
# Ray is the same bytes, so these keys stay out of expert identities and stage
# fingerprints (changing them must not retrain anything).
PLACEMENT_KEYS: tuple[str, ...] = ("executor", "ray_address", "gpus_per_task")


def expert_settings(cfg: Config) -> dict[str, Any]:
    """The ``experts`` section without its placement keys: what an expert's weights
    depend on."""
    return {k: v for k, v in cfg.section("experts").items() if k not in PLACEMENT_KEYS}


def scoring_settings(cfg: Config) -> dict[str, Any]:
    """The ``scoring`` section without its placement keys (where experts score does not
    change a score), so moving a finished run's scoring to Ray re-runs nothing."""
    return {k: v for k, v in cfg.section("scoring").items() if k not in PLACEMENT_KEYS}


class ScoringConfig(_Section):
    topk: int = Field(0, ge=0, description="Keep top-k next-token log-probs (needed for jsd).")
    executor: Literal[EXECUTORS] = Field(
        "local", description=f"Where experts score: {_choices(EXECUTORS)}.")
    ray_address: str | None = Field(None, description="executor=ray: cluster address.")
    gpus_per_task: float = Field(0.0, ge=0, description="executor=ray: GPUs each Ray task "
                                 "(one expert's scoring) reserves; 0: none.")
    batch_size: int = Field(
        32, ge=1, description="At most this many probe examples per forward pass (each pass "
        "is also bounded by max_batch_tokens); changes scores by float noise only.")
    max_batch_tokens: int = Field(
        8192, ge=16, description="At most this many padded tokens per forward pass: with "
        "logits only at response positions, this bounds scoring memory (docs/models.md).")
    fraction: float = Field(
        1.0, gt=0, le=1, description="Share of the (expert, training task) pairs to score; "
        "below 1 the rest is estimated by low-rank completion (pmi only; bootstrap intervals "
        "of estimated entries include the completion's estimated error). The diagonal, the "
        "base model and the held-out targets are always scored.")
    sampling: Literal[SCORING_SAMPLING] = Field(
        "balanced", description=f"fraction < 1: which pairs: {_choices(SCORING_SAMPLING)} "
        "(balanced: every expert and every task anchored by about half the average share or more; "
        "pairs: both directions of a "
        "task pair; adaptive: half drawn like balanced, the rest chosen once those are "
        "scored, where the completion is least certain).")

    @model_validator(mode="after")
    def _gpus_need_ray(self) -> ScoringConfig:
        _check_gpus_per_task("scoring", self.executor, self.gpus_per_task)
        return self


class AffinityConfig(_Section):
    metric: Literal[METRICS] = Field(
        "pmi", description="pmi (log-likelihood ratio), jsd (Jensen-Shannon) and skl "
        "(symmetric KL) between next-token distributions (need scoring.topk > 0), ce-gap "
        "(symmetrised per-token cross-entropy gap)."
    )
    normalize: Literal[NORMALIZATIONS] = Field(
        "token", description="pmi: sequence (sum over response tokens) or token (per-token "
        "mean)."
    )
    bootstrap: int = Field(
        100, ge=0,
        description="Bootstrap resamples for per-entry intervals (pmi only: 0 for the other "
        "metrics, which is the default there). The calibrated kernel reads each entry's "
        "noise from them; 0 = noise unknown.",
    )

    @model_validator(mode="before")
    @classmethod
    def _bootstrap_is_for_pmi(cls, data: Any) -> Any:
        # Intervals exist for pmi only: another metric without an explicit bootstrap means
        # none, rather than tripping over the pmi default at the affinity stage.
        if isinstance(data, dict) and "bootstrap" not in data \
                and data.get("metric", "pmi") != "pmi":
            data = {**data, "bootstrap": 0}
        return data

    @model_validator(mode="after")
    def _bootstrap_pmi_only(self) -> AffinityConfig:
        if self.bootstrap and self.metric != "pmi":
            raise ValueError(f"affinity.bootstrap: bootstrap intervals are computed for metric "
                             f"pmi only, not {self.metric!r}; set affinity.bootstrap: 0")
        return self


class MixtureConfig(_Section):
    kernel: Literal[KERNELS] = Field(
        DEFAULT_KERNEL,
        description="How the affinity becomes a PSD kernel K: calibrated (the default: "
        "exp(-t^2/2), t = distance in units of the entry's noise or of mixture.bandwidth "
        "times the median distance, so only near-copies couple; docs/DECISIONS.md D12, D16, "
        "D26), shift (the paper's reference), simplex-shift, clip, exp, laplacian, none.",
    )
    bandwidth: float | None = Field(
        None, gt=0,
        description="Calibrated kernel (and cluster-balanced, and the report's clusters): "
        "the fraction of the median distance between tasks below which two tasks count as "
        "near-copies. null: 0.10 (D26). A strategy's params.bandwidth overrides it.",
    )
    unary: Literal[UNARIES] = Field(
        "auto",
        description="Unary utilities u: auto (the default: rowsum with the reference "
        "kernels, balanced with the calibrated kernel), balanced (u = n K q, q ~ 1/(K 1), each "
        "group of near-copies counted once), rowsum (u = K 1, the paper's reference), target "
        "(aim at mixture.targets), given (mixture.utilities file), none.",
    )
    targets: list[str] | Literal["heldout"] = Field(
        "heldout",
        description="unary=target: task names to aim at, or 'heldout' for the pool's "
        "evaluation-only tasks (their utility is each expert's log-likelihood gain over the "
        "base model on those tasks' probe sets, since held-out tasks have no experts).",
    )
    utilities: str | None = Field(
        None, description="unary=given: file of per-task utilities (JSON list or "
        "{task: value}, or task,utility CSV lines); required with unary: given.")
    r_rel: float | None = Field(
        None, ge=0,
        description="Trade-off r = beta/lam in units of 1/n (r = r_rel/n), so it means the "
        "same for any number of tasks n: 1 is the representativeness end (the uniform "
        "mixture with rowsum utilities, q = 1/(K 1) with balanced ones), 0 the pure "
        "diversity mixture (min p'Kp). null (the default) with no beta/lam: 1 with balanced "
        "utilities (the default's, D26), 0.5 with any other (weighs the two ends equally). "
        "Giving beta or lam uses them instead.",
    )
    beta: float | None = Field(
        None, gt=0, description="Weight of the unary term (only with r_rel: null; default 1)."
    )
    lam: float | None = Field(
        None, gt=0,
        description="Weight of the pairwise (diversity) term (only with r_rel: null; default 1).",
    )
    budget_k: int | None = Field(None, ge=1, description="Pick at most k tasks (greedy).")
    max_epochs: float | None = Field(
        None, gt=0, description="Cap each task's weight at max_epochs * size / sample.budget."
    )

    @model_validator(mode="before")
    @classmethod
    def _beta_lam_replace_r_rel(cls, data: Any) -> Any:
        # beta/lam and r_rel are two spellings of one trade-off: a config that sets beta or
        # lam (and not r_rel) means beta/lam, rather than tripping over r_rel's default.
        if isinstance(data, dict) and "r_rel" not in data and (
            data.get("beta") is not None or data.get("lam") is not None
        ):
            data = {**data, "r_rel": None}
        return data

    @model_validator(mode="after")
    def _bandwidth_needs_calibrated(self) -> MixtureConfig:
        if self.bandwidth is not None and self.kernel != "calibrated":
            raise ValueError(f"mixture.bandwidth is an option of kernel 'calibrated', not "
                             f"{self.kernel!r}")
        return self

    @model_validator(mode="after")
    def _one_trade_off(self) -> MixtureConfig:
        if self.r_rel is not None and (self.beta is not None or self.lam is not None):
            raise ValueError("set either mixture.r_rel or mixture.beta/lam, not both "
                             "(r_rel: null to use beta/lam)")
        return self


class SampleConfig(_Section):
    budget: int = Field(600, ge=1, description="Training examples drawn for each mixture.")
    allocation: Literal[ALLOCATIONS] = Field(
        "largest_remainder",
        description=f"How weights become integer counts: {_choices(ALLOCATIONS)}."
    )
    max_epochs: float | None = Field(None, gt=0, description="Refuse to repeat a task more often.")


class TrainConfig(_FineTuneSection):
    """The ``train`` section. ``taskpgm.models.train.TrainConfig`` (the trainer's full
    settings) takes its defaults from this class."""

    steps: int = Field(DEFAULT_STEPS, ge=1,
                       description="Training steps of the model trained on a mixture.")
    lr: float = Field(DEFAULT_LR, gt=0, description="Learning rate.")
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, description="Examples per step.")
    lora: bool = Field(DEFAULT_LORA, description="Train LoRA adapters instead of full weights.")


class EvaluateConfig(_Section):
    split: Literal[SPLITS] = Field(
        "eval", description=f"Split evaluated: {_choices(SPLITS)}.")
    tasks: list[str] | Literal["heldout", "all"] = Field(
        "heldout", description="heldout (evaluation-only tasks), all, or a list of names."
    )
    max_examples: int | None = Field(
        None, ge=1, description="Evaluate at most this many examples per task."
    )
    max_batch_tokens: int = Field(
        8192, ge=16, description="At most this many padded tokens per forward pass.")


class StrategyConfig(_Section):
    name: str = Field(description="Unique name; used for file names.")
    method: Literal[METHODS] = Field(description="Strategy from the registry.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Options for the strategy; for taskpgm they override the mixture section.",
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("use letters, digits, '_', '.', '-'")
        return v


# Params a strategy may hold beyond the library's options (taskpgm.choices.OPTION_TYPES),
# with their types: read by the pipeline itself (pipeline/stages.py).
_PIPELINE_PARAMS: dict[str, dict[str, str]] = {
    "mixmin": {"targets": "targets"},
    "dirichlet": {"alpha": "number>0", "draw": "int>=0"},
    # auto (D19): which of the run's strategies it chooses among, on which tasks' probe split.
    "auto": {"candidates": "names", "targets": "targets", "r_path": "r_values",
             "rule": "auto_rule"},
    "regression": {"runs": "int>=0", "kl": "number>=0", "targets": "targets", "fit": "fit"},
}
# Every strategy may be replicated: same mixture, other sampling/training seeds.
_COMMON_PARAMS: dict[str, str] = {"replicate": "int>=0"}
# Library options the pipeline fills in itself (a value in the config would be overwritten).
_SUPPLIED_PARAMS: dict[str, dict[str, str]] = {
    "family-balanced": {"families": "the pool's family labels"},
    "mixmin": {"scores": "the run's scores directory"},
}
# Library options a method cannot run without (the pipeline supplies unimax_budget itself).
_REQUIRED_PARAMS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",), "capped": ("cap",), "unimax": ("max_epochs",),
    "given": ("weights",),
}
_TASKPGM_METHODS = ("taskpgm", "taskpgm-paper")
# Mixture-section fields a taskpgm strategy may override in its params.
_MIXTURE_PARAMS = ("kernel", "unary", "targets", "utilities", "r_rel", "beta", "lam", "budget_k")


def _check_strategy_params(st: StrategyConfig, index: int,
                           mixture: MixtureConfig) -> dict[str, Any]:
    """Every param of a strategy known, typed and in range when the config loads, each
    error one line naming ``strategies[i].params.KEY``, not a traceback after hours of
    work. Returns the params with numeric strings (YAML reads ``1e-3`` as one) read."""
    def fail(key: str | None, problem: str) -> ValueError:
        where = f"strategies[{index}].params" + (f".{key}" if key else "")
        return ValueError(f"{where} (strategy {st.name!r}): {problem}")

    lib = METHOD_OPTIONS.get(st.method, ())
    supplied = _SUPPLIED_PARAMS.get(st.method, {})
    types = {**_COMMON_PARAMS, **_PIPELINE_PARAMS.get(st.method, {}),
             **{k: OPTION_TYPES[k] for k in lib if k not in supplied}}
    allowed = set(types) | (set(_MIXTURE_PARAMS) if st.method in _TASKPGM_METHODS else set())
    params = dict(st.params)
    # A null pipeline param means "the default", as if absent (params.get(k, default)
    # downstream would otherwise read None).
    for key in [k for k, v in params.items() if v is None
                and k in {**_COMMON_PARAMS, **_PIPELINE_PARAMS.get(st.method, {})}]:
        del params[key]
    for key in params:
        if key in supplied:
            raise fail(key, f"set by the pipeline from {supplied[key]}; remove it")
        if key not in allowed:
            raise fail(key, f"unknown param {key!r} for method {st.method!r} (allowed: "
                            f"{', '.join(sorted(allowed))})")
    for key, value in params.items():
        kind = types.get(key)
        if kind is None or value is None:
            continue
        if kind == "targets":
            if not (value in ("heldout", "train") or (
                    isinstance(value, list) and all(isinstance(x, str) for x in value))):
                raise fail(key, f"{st.method} targets must be 'heldout', 'train' or a list of "
                                f"task names, got {value!r}")
            continue
        if kind == "r_values":
            if not (isinstance(value, list) and value and all(
                    (x := as_number(v)) is not None and math.isfinite(x) and x >= 0
                    for v in value)):
                raise fail(key, f"a non-empty list of numbers >= 0 (r_rel values), got {value!r}")
            params[key] = [float(v) for v in value]
            continue
        if kind == "fit":
            from taskpgm.mixture.regression import check_fit

            try:  # one check (the choices and the library) for the config, CLI and API
                check_fit(value)
            except InputError as exc:
                raise fail(key, str(exc).removeprefix("regression: ")) from None
            continue
        if kind == "auto_rule":
            if value not in RULES:
                raise fail(key, f"choose one of {', '.join(RULES)} (clear: leave uniform only "
                                f"on a clear validation margin), got {value!r}")
            continue
        if kind == "names":
            if not (isinstance(value, list) and value and all(isinstance(x, str) for x in value)):
                raise fail(key, f"a non-empty list of strategy names, got {value!r}")
            continue
        if kind == "weights":
            # In a config, weights are a file (the library also takes a mapping or list).
            if not isinstance(value, str):
                raise fail(key, "method 'given' needs {weights: FILE} (a mixture.json or a "
                                f"task,weight file), got {value!r}")
            if not Path(value).is_file():
                raise fail(key, f"weights file {value!r} not found")
            continue
        try:
            params[key] = parse_option(kind, value)
        except ValueError as exc:
            raise fail(key, str(exc)) from None
    for key in _REQUIRED_PARAMS.get(st.method, ()):
        if params.get(key) is None:
            need = ("{weights: FILE} (a mixture.json or a task,weight file)"
                    if key == "weights" else f"{{{key}: {_TYPE_HINTS[types[key]]}}}")
            raise fail(key, f"method {st.method!r} needs params {need}")
    if st.method in _TASKPGM_METHODS:
        params.update(_check_mixture_params(params, mixture, fail))
        kernel = params.get("kernel", mixture.kernel)
        for key in ("ridge", "bandwidth"):
            if params.get(key) is not None and kernel != "calibrated":
                raise fail(key, f"{key} is an option of kernel 'calibrated', not {kernel!r}")
        if params.get("sigma") is not None and kernel not in ("exp", "laplacian"):
            raise fail("sigma", f"sigma is an option of kernels 'exp' and 'laplacian', not "
                                f"{kernel!r}")
        budget_k = params.get("budget_k", mixture.budget_k)
        if st.method == "taskpgm-paper" and budget_k is not None:
            raise fail("budget_k", "taskpgm-paper has no budgeted variant (mixture.budget_k "
                                   "applies to it too: set params {budget_k: null})")
        if mixture.max_epochs is not None and (budget_k is not None
                                               or params.get("cost_budget") is not None):
            raise fail("budget_k" if budget_k is not None else "cost_budget",
                       "budgeted selection does not take the caps that mixture.max_epochs "
                       "sets")
    return params


_TYPE_HINTS = {"number>0": "a number > 0", "number>=0": "a number >= 0"}


def _check_mixture_params(params: dict[str, Any], mixture: MixtureConfig,
                          fail) -> dict[str, Any]:
    """A taskpgm strategy's overrides of the mixture section, checked like the section."""
    sub = {k: v for k, v in params.items() if k in _MIXTURE_PARAMS}
    try:
        checked = MixtureConfig.model_validate(sub)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or None
        raise fail(key, err["msg"].removeprefix("Value error, ")) from None
    out = {k: getattr(checked, k) for k, v in sub.items()
           if isinstance(v, str) and not isinstance(getattr(checked, k), str)}
    unary = params.get("unary", mixture.unary)
    if unary == "given":
        if params.get("utilities") is not None:
            _check_utilities_file(params["utilities"], lambda p: fail("utilities", p))
        elif mixture.utilities is not None:
            _check_utilities_file(mixture.utilities,
                                  lambda p: fail("utilities", f"(from mixture.utilities) {p}"))
        else:
            raise fail("utilities", "unary 'given' needs a utilities file: set "
                                    "params.utilities or mixture.utilities")
    return out


def _check_utilities_file(path: str, fail) -> None:
    if not Path(path).is_file():
        raise fail(f"utilities file {path!r} not found")


def _inside(path: str, root: str) -> bool:
    p, r = Path(path).absolute().resolve(), Path(root).absolute().resolve()
    return p == r or p.is_relative_to(r)


class ReportConfig(_Section):
    enabled: bool = Field(True, description="Write report.html and its PNG figures.")
    path_points: int = Field(25, ge=3, description="Points on the beta/lambda path figure.")
    influence: bool = Field(True, description="Compute leave-one-task-out influence.")


def auto_candidates(cfg: Config, st: StrategyConfig) -> list[str]:
    """The strategies an ``auto`` strategy chooses among: its ``candidates``, else every
    strategy of the run that is not random, not a replicate and not another auto (D19)."""
    if st.params.get("candidates") is not None:
        return list(st.params["candidates"])
    return [s.name for s in cfg.strategies if s.method not in ("auto", "dirichlet")
            and not int(s.params.get("replicate", 0))]


def default_strategies() -> list[StrategyConfig]:
    """The strategies the demo and the quality benchmark compare on one budget."""
    return [
        StrategyConfig(name="uniform", method="uniform"),
        # The noise floor: the uniform mixture drawn and trained with other seeds.
        StrategyConfig(name="uniform-resampled", method="uniform", params={"replicate": 1}),
        StrategyConfig(name="size", method="size"),
        StrategyConfig(name="temperature", method="temperature", params={"temperature": 2.0}),
        StrategyConfig(name="unimax", method="unimax", params={"max_epochs": 4}),
        StrategyConfig(name="family-balanced", method="family-balanced"),
        StrategyConfig(name="cluster-balanced", method="cluster-balanced"),
        StrategyConfig(name="mixmin", method="mixmin"),
        # The default (calibrated kernel, balanced utilities; D16) and the paper's reference.
        StrategyConfig(name="taskpgm", method="taskpgm"),
        StrategyConfig(name="taskpgm-reference", method="taskpgm",
                       params={"kernel": REFERENCE_KERNEL, "unary": "rowsum"}),
        StrategyConfig(name="taskpgm-target", method="taskpgm",
                       params={"kernel": REFERENCE_KERNEL, "unary": "target"}),
        # Chooses among all of the above by their models' validation loss (D19).
        StrategyConfig(name="taskpgm-auto", method="auto"),
    ]


class Config(_Section):
    run: RunConfig = Field(default_factory=RunConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    experts: ExpertsConfig = Field(default_factory=ExpertsConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    affinity: AffinityConfig = Field(default_factory=AffinityConfig)
    mixture: MixtureConfig = Field(default_factory=MixtureConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    strategies: list[StrategyConfig] = Field(
        default_factory=default_strategies,
        description="Mixtures built, trained on and evaluated side by side (same budget).",
    )
    report: ReportConfig = Field(default_factory=ReportConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_strategies_fit_the_split(cls, data: Any) -> Any:
        # taskpgm-auto validates on the probe split: with evaluate.split probe the default
        # list leaves it out rather than refusing a strategy the user never wrote.
        if isinstance(data, dict) and "strategies" not in data and isinstance(
                data.get("evaluate"), dict) and data["evaluate"].get("split") == "probe":
            data = {**data, "strategies": [s.model_dump() for s in default_strategies()
                                           if s.method != "auto"]}
        return data

    @model_validator(mode="after")
    def _check(self) -> Config:
        names = [s.name for s in self.strategies]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"strategy name {dup!r} appears twice")
        if self.scoring.fraction < 1 and self.affinity.metric != "pmi":
            raise ValueError("scoring.fraction < 1 completes the unscored pairs, which works "
                             "for affinity.metric pmi only; set affinity.metric: pmi")
        if "base" in names:
            # eval/base.json and the stage eval:base hold the base model's evaluation.
            raise ValueError("strategy name 'base' is reserved for the base model's "
                             "evaluation; choose another name")
        if self.cache.dir is not None and _inside(self.cache.dir, self.run.dir):
            # The run would record the cache's files as its own outputs (and remove them).
            raise ValueError("cache.dir is inside run.dir; a cache shared between runs lives "
                             "outside every run directory")
        if self.pool.source == "dir" and not self.pool.path:
            raise ValueError("pool.source is 'dir' but pool.path is not set")
        if self.pool.source == "import" and not self.pool.paths:
            raise ValueError("pool.source is 'import' but pool.paths is empty")
        if self.pool.source == "bigbench" and not self.pool.tasks:
            raise ValueError("pool.source is 'bigbench' but pool.tasks is empty")
        if self.pool.suite != "default" and self.pool.source != "synthetic":
            raise ValueError(f"pool.suite is {self.pool.suite!r} but pool.source is "
                             f"{self.pool.source!r} (suites are synthetic)")
        import_keys = [k for k in ("family_field", "task_column", "prompt_field",
                                   "response_field") if getattr(self.pool, k) is not None]
        if import_keys and self.pool.source != "import":
            raise ValueError(f"pool.{import_keys[0]} applies to pool.source 'import'; "
                             f"pool.source is {self.pool.source!r}")
        if self.pool.family_field is not None and self.pool.family_pattern is not None:
            raise ValueError("pool.family_pattern and pool.family_field exclude each other")
        if self.pool.family_pattern is not None:
            if self.pool.source != "import":
                raise ValueError("pool.family_pattern labels imported tasks; pool.source is "
                                 f"{self.pool.source!r}")
            try:
                re.compile(self.pool.family_pattern)
            except re.error as exc:
                raise ValueError(f"pool.family_pattern is not a valid regular expression "
                                 f"({exc})") from None
        if self.model.tiny.pretrain_corpus != "tasks" and self.pool.source != "synthetic":
            raise ValueError(f"model.tiny.pretrain_corpus {self.model.tiny.pretrain_corpus!r} "
                             "needs a synthetic pool; "
                             f"pool.source is {self.pool.source!r} (use 'tasks')")
        if self.pool.source == "synthetic" and self.pool.families:
            known = SUITES[self.pool.suite].families
            unknown = [f for f in self.pool.families if f not in known]
            if unknown:
                raise ValueError(f"pool.families: unknown synthetic family {unknown[0]!r} for "
                                 f"suite {self.pool.suite!r} (known: {_choices(tuple(known))})")
        if self.affinity.metric in TOPK_METRICS and self.scoring.topk == 0:
            raise ValueError(f"scoring.topk: affinity.metric {self.affinity.metric!r} reads the "
                             "experts' top-k next-token distributions; set scoring.topk > 0 "
                             "(e.g. 20)")
        m = self.mixture
        if m.unary == "given":
            if m.utilities is None:
                raise ValueError("mixture.utilities: mixture.unary is 'given' but no utilities "
                                 "file is set")
            _check_utilities_file(m.utilities, lambda p: ValueError(f"mixture.utilities: {p}"))
        if m.max_epochs is not None and m.budget_k is not None:
            raise ValueError("mixture.max_epochs: budgeted selection (mixture.budget_k) does "
                             "not take the caps that max_epochs sets")
        for index, st in enumerate(self.strategies):
            params = _check_strategy_params(st, index, m)
            if params != st.params:
                st.params = params
        for st in list(self.strategies):
            # A replicate of an auto reuses the original's r-path points (same candidates).
            if st.method == "auto" and st.params.get("r_path") and not int(
                    st.params.get("replicate", 0)):
                self._add_r_path(st)
        for index, st in enumerate(self.strategies):
            if st.method == "auto":
                self._check_auto(index, st)
            if st.method in VALIDATING_METHODS and self.evaluate.split == "probe":
                raise ValueError(f"strategies[{index}] (strategy {st.name!r}): {st.method} "
                                 "chooses on the probe split, so evaluate.split cannot be "
                                 "'probe' (the evaluation split never chooses a mixture)")
            if st.method == "regression" and st.params.get("runs") == 1:
                raise ValueError(f"strategies[{index}].params.runs (strategy {st.name!r}): "
                                 "at least 2 proxy runs are needed to fit (0 or absent: 4 "
                                 "per training task)")
        return self

    def _add_r_path(self, st: StrategyConfig) -> None:
        """An auto strategy's ``r_path``: one taskpgm strategy per r_rel (the mixture
        section's kernel and utilities), named ``<auto>.r<value>``, added to the run (once:
        a saved config already holds them) and to the auto's explicit candidates."""
        by_name = {s.name: s for s in self.strategies}
        where = f"strategies[{self.strategies.index(st)}].params.r_path (strategy {st.name!r})"
        made: list[str] = []
        for r in st.params["r_path"]:
            name = f"{st.name}.r{r:g}"
            if not _NAME_RE.match(name):
                raise ValueError(f"{where}: r_rel {r:g} makes the strategy name {name!r}, "
                                 "which is not a valid name (shorten the auto's name)")
            if name in made:
                raise ValueError(f"{where}: two values give the same strategy {name!r}")
            existing = by_name.get(name)
            if existing is None:
                existing = StrategyConfig(name=name, method="taskpgm", params={"r_rel": r})
                self.strategies.append(existing)
                by_name[name] = existing
            elif existing.method != "taskpgm" or existing.params != {"r_rel": r}:
                raise ValueError(f"{where}: a strategy named {name!r} already exists and is "
                                 "not the r-path point it would add; rename it")
            made.append(name)
        if st.params.get("candidates") is not None:
            st.params["candidates"] = list(dict.fromkeys([*st.params["candidates"], *made]))

    def _check_auto(self, index: int, st: StrategyConfig) -> None:
        where = f"strategies[{index}].params.candidates (strategy {st.name!r})"
        names = st.params.get("candidates")
        by_name = {s.name: s for s in self.strategies}
        if names is None:
            if not auto_candidates(self, st):
                raise ValueError(f"{where}: the run has no other strategy to choose among")
        else:
            for n in names:
                if n not in by_name:
                    raise ValueError(f"{where}: no strategy named {n!r} in this config")
                if by_name[n].method == "auto":
                    raise ValueError(f"{where}: {n!r} is itself an auto strategy")
            if len(set(names)) != len(names):
                raise ValueError(f"{where}: a candidate is named twice")
        if st.params.get("rule", DEFAULT_RULE) == "clear" and not any(
                by_name[n].method == "uniform" for n in auto_candidates(self, st)):
            raise ValueError(
                f"strategies[{index}].params.rule (strategy {st.name!r}): the rule 'clear' "
                "(the default) leaves uniform only on a clear validation margin, so a "
                "strategy of method 'uniform' must be a candidate (a replicate is one only "
                "when params.candidates names it); add one, or set params.rule: lowest")

    # -- helpers ------------------------------------------------------------------------
    def section(self, dotted: str) -> Any:
        """The JSON value at a dotted path (``"mixture"``, ``"run.seed"``)."""
        node: Any = self.model_dump(mode="json")
        for part in dotted.split("."):
            node = node[part]
        return node

    def strategy(self, name: str) -> StrategyConfig:
        for s in self.strategies:
            if s.name == name:
                return s
        raise ConfigError(f"no strategy named {name!r} in the config")


# -- loading and saving -----------------------------------------------------------------


def _format_error(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key {loc!r}"
    if err["type"] == "missing":
        return f"{source}: missing key {loc!r}"
    msg = err["msg"].removeprefix("Value error, ")
    if not loc or msg.startswith((f"{loc}.", f"{loc}:")):
        # The message already names the field (e.g. a check across fields of a section).
        return f"{source}: {msg}"
    return f"{source}: field {loc!r}: {msg}"


def config_from_dict(data: Any, source: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config; ``overrides`` are ``dotted.key=yaml_value`` strings."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{path}{line}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    data = data if data is not None else {}
    for ov in overrides or []:
        data = apply_override(data, ov, str(path))
    return config_from_dict(data, str(path))


def apply_override(data: Any, override: str, source: str = "--set") -> dict[str, Any]:
    """Set ``a.b.c=value`` (value parsed as YAML) inside a nested dict."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. sample.budget=800")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"--set {override!r}: value is not valid YAML") from None
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value
    return data


def dump_config(cfg: Config) -> str:
    """The resolved config as plain YAML (saved as ``run/config.yaml``)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_config(cfg: Config, path: str | Path) -> None:
    atomic_write_text(path, dump_config(cfg))


def annotated_yaml(cfg: Config | None = None) -> str:
    """The config as YAML with a comment above every field (``taskpgm init``)."""
    cfg = cfg or Config()
    lines = [
        "# taskpgm run configuration. Every key is optional; unknown keys are errors.",
        "# Run it with:  taskpgm run THIS_FILE",
        "",
    ]
    for name, field in Config.model_fields.items():
        value = getattr(cfg, name)
        if name == "strategies":
            lines.append(f"# {field.description}")
            lines.append(f"# Each: name, method ({', '.join(METHODS)}), params.")
            lines.append("# given: params {weights: FILE}; mixmin: params {targets: heldout | "
                         "[names]}; auto: params {candidates: [names], r_path: [r_rel, ...], rule: "
                         f"{'|'.join(RULES)}}}")
            lines.append("# chooses among the run's strategies by validation loss; regression: "
                         "params {runs: N, kl: 0.05} trains N proxies (docs/config.md);")
            lines.append("# any method: params {replicate: k} draws and trains the same mixture "
                         "with other seeds (a noise floor).")
            lines.append(_yaml_block({name: [s.model_dump(mode="json") for s in value]}, 0))
            lines.append("")
            continue
        lines.append(f"{name}:")
        lines.extend(_annotate(value, 1))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _annotate(section: BaseModel, depth: int) -> list[str]:
    pad = "  " * depth
    out: list[str] = []
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            out.extend(_annotate(value, depth + 1))
            continue
        if field.description:
            out.extend(f"{pad}# {line}" for line in textwrap.wrap(field.description, 86))
        out.append(f"{pad}{name}: {_flow(value)}")
    return out


def _flow(value: Any) -> str:
    """One value in YAML flow style (``[a, b]``, ``null``, ``0.003``)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _yaml_block(obj: dict[str, Any], depth: int) -> str:
    text = yaml.safe_dump(obj, sort_keys=False, default_flow_style=None, allow_unicode=True)
    # Indent nested blocks under their parent key.
    pad = "  " * depth
    return "\n".join(pad + line for line in text.rstrip("\n").splitlines())
