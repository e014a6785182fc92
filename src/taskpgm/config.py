"""The run configuration: one sectioned YAML file, the single source of truth.

Every section is a pydantic model with ``extra="forbid"``, so a misspelt key is an
error naming the key and the file, never a silently ignored setting. ``taskpgm init``
writes the defaults as annotated YAML generated from the field descriptions below, so
the template can never drift from the schema.

The pipeline fingerprints each stage from the config *sections* (or single fields) it
reads; see ``taskpgm.pipeline``. Changing a field therefore re-runs only the stages
that read it and the stages downstream of them.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from taskpgm.errors import ConfigError
from taskpgm.io import atomic_write_text

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(_Section):
    dir: str = Field("run", description="Run directory; every artifact is written under it.")
    seed: int = Field(0, ge=0, description="Master seed; same seed and config give the same bytes.")


class PoolConfig(_Section):
    source: Literal["synthetic", "dir", "import", "bigbench"] = Field(
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
    suite: Literal["default", "redundancy"] = Field(
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
    scale: float = Field(1.0, gt=0, description="source=synthetic: multiplies train split sizes.")
    max_examples: int | None = Field(
        None, ge=10,
        description="source=bigbench: keep at most this many examples per task (the first "
        "ones in the task file, before the hash split), to bound CPU cost.",
    )


class TinyModelConfig(_Section):
    n_layer: int = Field(2, ge=1, description="Transformer layers of the tiny model.")
    n_embd: int = Field(64, ge=8, description="Hidden size of the tiny model.")
    n_head: int = Field(2, ge=1, description="Attention heads of the tiny model.")
    vocab_size: int = Field(512, ge=64, description="Tokenizer vocabulary trained on the pool.")
    pretrain_steps: int = Field(
        0, ge=0, description="Steps of training on all tasks' train splits before experts "
        "branch off (0 = experts start from random weights)."
    )


class ModelConfig(_Section):
    base: str = Field(
        "tiny",
        description="'tiny' builds a small GPT-2-style model locally; otherwise the path "
        "of a Hugging Face causal LM directory (e.g. a downloaded Llama).",
    )
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig)


class ExpertsConfig(_Section):
    steps: int = Field(60, ge=1, description="Fine-tuning steps per expert.")
    lr: float = Field(3e-3, gt=0, description="Learning rate of expert fine-tuning.")
    batch_size: int = Field(16, ge=1, description="Examples per step.")
    lora: bool = Field(False, description="Train LoRA adapters instead of full weights.")


class ScoringConfig(_Section):
    topk: int = Field(0, ge=0, description="Keep top-k next-token log-probs (needed for jsd).")
    executor: Literal["local", "ray"] = Field("local", description="local or ray.")
    ray_address: str | None = Field(None, description="executor=ray: cluster address.")
    batch_size: int = Field(32, ge=1, description="Probe examples per forward pass.")


class AffinityConfig(_Section):
    metric: Literal["pmi", "jsd", "skl", "ce"] = Field(
        "pmi", description="pmi (log-likelihood ratio), jsd, skl (symmetric KL), ce."
    )
    normalize: Literal["sequence", "token"] = Field(
        "token", description="sequence: sum over response tokens; token: per-token mean."
    )
    bootstrap: int = Field(
        100, ge=0,
        description="Bootstrap resamples for per-entry intervals (pmi only). The calibrated "
        "kernel reads each entry's noise from them; 0 = noise unknown.",
    )


class MixtureConfig(_Section):
    kernel: Literal["shift", "calibrated", "simplex-shift", "clip", "exp", "laplacian",
                    "none"] = Field(
        "shift",
        description="How the affinity becomes a PSD kernel K: shift (the paper's reference, "
        "the default), calibrated (exp(-t^2/2), t = distance in units of the entry's noise "
        "or 5% of the median distance, so only near-copies couple; docs/DECISIONS.md D12), "
        "simplex-shift, clip, exp, laplacian, none.",
    )
    unary: Literal["auto", "balanced", "rowsum", "target", "given", "none"] = Field(
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
    utilities: str | None = Field(None, description="unary=given: file of utilities.")
    r_rel: float | None = Field(
        0.5, gt=0,
        description="Trade-off r = beta/lam in units of 1/n (r = r_rel/n), so it means the "
        "same for any number of tasks n. With rowsum utilities only r matters: 1 gives the "
        "uniform mixture, towards 0 the pure diversity mixture (min p'Kp), and 0.5 (the "
        "default) weighs the two equally. Set null to use beta/lam instead; giving beta or "
        "lam without r_rel does that too.",
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
    def _one_trade_off(self) -> MixtureConfig:
        if self.r_rel is not None and (self.beta is not None or self.lam is not None):
            raise ValueError("set either mixture.r_rel or mixture.beta/lam, not both "
                             "(r_rel: null to use beta/lam)")
        return self


class SampleConfig(_Section):
    budget: int = Field(600, ge=1, description="Training examples drawn for each mixture.")
    allocation: Literal["largest_remainder", "multinomial"] = Field(
        "largest_remainder", description="How weights become integer counts."
    )
    max_epochs: float | None = Field(None, gt=0, description="Refuse to repeat a task more often.")


class TrainConfig(_Section):
    steps: int = Field(60, ge=1, description="Training steps of the model trained on a mixture.")
    lr: float = Field(3e-3, gt=0, description="Learning rate.")
    batch_size: int = Field(16, ge=1, description="Examples per step.")
    lora: bool = Field(False, description="Train LoRA adapters instead of full weights.")


class EvaluateConfig(_Section):
    split: Literal["train", "probe", "eval"] = Field("eval", description="Split evaluated.")
    tasks: list[str] | Literal["heldout", "all"] = Field(
        "heldout", description="heldout (evaluation-only tasks), all, or a list of names."
    )
    max_examples: int | None = Field(
        None, ge=1, description="Evaluate at most this many examples per task."
    )


class StrategyConfig(_Section):
    name: str = Field(description="Unique name; used for file names.")
    method: Literal[
        "taskpgm", "taskpgm-paper", "uniform", "size", "temperature", "capped", "unimax",
        "given", "family-balanced", "cluster-balanced", "mixmin", "dirichlet",
    ] = Field(description="Strategy from the registry.")
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


# Options a strategy's params may hold beyond the registry's own (see _check_strategy_params).
_PIPELINE_PARAMS = {"mixmin": ("targets",), "dirichlet": ("alpha", "draw")}


def _check_strategy_params(st: StrategyConfig, index: int) -> None:
    """A misspelt option fails at load time, naming the strategy, not after hours of work."""
    from taskpgm.mixture.api import STRATEGIES

    # Every strategy may be replicated: same mixture, other sampling/training seeds.
    allowed = set(_PIPELINE_PARAMS.get(st.method, ())) | {"replicate"}
    rep = st.params.get("replicate", 0)
    if isinstance(rep, bool) or not isinstance(rep, int) or rep < 0:
        raise ValueError(f"strategies[{index}] ({st.name}): replicate must be an integer "
                         ">= 0 (0 = the run's own seed)")
    if st.method in STRATEGIES:
        allowed |= set(STRATEGIES[st.method].options)
    if st.method in ("taskpgm", "taskpgm-paper"):
        allowed |= set(MixtureConfig.model_fields) - {"max_epochs"}
    for key in st.params:
        if key not in allowed:
            raise ValueError(f"strategies[{index}] ({st.name}): unknown param {key!r} for "
                             f"method {st.method!r} (allowed: {', '.join(sorted(allowed))})")
    if st.method == "given":
        w = st.params.get("weights")
        if not isinstance(w, str):
            raise ValueError(f"strategies[{index}] ({st.name}): method 'given' needs params "
                             "{weights: FILE} (a mixture.json or a task,weight file)")
        if not Path(w).is_file():
            raise ValueError(f"strategies[{index}] ({st.name}): weights file {w!r} not found")
    if st.method == "mixmin":
        t = st.params.get("targets", "heldout")
        if not (t in ("heldout", "train") or (isinstance(t, list)
                                               and all(isinstance(x, str) for x in t))):
            raise ValueError(f"strategies[{index}] ({st.name}): mixmin targets must be "
                             "'heldout', 'train' or a list of task names")


class ReportConfig(_Section):
    enabled: bool = Field(True, description="Write report.html and its PNG figures.")
    path_points: int = Field(25, ge=3, description="Points on the beta/lambda path figure.")
    influence: bool = Field(True, description="Compute leave-one-task-out influence.")


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
        StrategyConfig(name="taskpgm", method="taskpgm"),
        StrategyConfig(name="taskpgm-calibrated", method="taskpgm",
                       params={"kernel": "calibrated", "unary": "balanced"}),
        StrategyConfig(name="taskpgm-target", method="taskpgm", params={"unary": "target"}),
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

    @model_validator(mode="after")
    def _check(self) -> Config:
        names = [s.name for s in self.strategies]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"strategy name {dup!r} appears twice")
        if self.pool.source == "dir" and not self.pool.path:
            raise ValueError("pool.source is 'dir' but pool.path is not set")
        if self.pool.source == "import" and not self.pool.paths:
            raise ValueError("pool.source is 'import' but pool.paths is empty")
        if self.pool.source == "bigbench" and not self.pool.tasks:
            raise ValueError("pool.source is 'bigbench' but pool.tasks is empty")
        if self.pool.suite != "default" and self.pool.source != "synthetic":
            raise ValueError(f"pool.suite is {self.pool.suite!r} but pool.source is "
                             f"{self.pool.source!r} (suites are synthetic)")
        if self.pool.family_pattern is not None:
            if self.pool.source != "import":
                raise ValueError("pool.family_pattern labels imported tasks; pool.source is "
                                 f"{self.pool.source!r}")
            try:
                re.compile(self.pool.family_pattern)
            except re.error as exc:
                raise ValueError(f"pool.family_pattern is not a valid regular expression "
                                 f"({exc})") from None
        for st in self.strategies:
            _check_strategy_params(st, self.strategies.index(st))
        return self

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
    return f"{source}: {'field ' + repr(loc) + ': ' if loc else ''}{msg}"


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
            lines.append("# Each: name, method (taskpgm, taskpgm-paper, uniform, size, "
                         "temperature, capped, unimax, given, family-balanced,")
            lines.append("# cluster-balanced, mixmin, dirichlet), params. given: "
                         "params {weights: FILE}; mixmin: params {targets: heldout | [names]};")
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
